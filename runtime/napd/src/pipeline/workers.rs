//! The scoring workers: each takes frames from the queue, scores them with its own state and
//! reports every outcome; a fatal scoring error stops them all. An OOD frame's pixels go with
//! its outcome when they are to be saved.

use super::{Job, Msg, Outcome, ScoreError, Scorer};
use crate::queue::{self, QueueReceiver, Take};
use crossbeam_channel::Sender;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Starts `count` worker threads.
pub(super) fn spawn<S: Scorer>(
    count: usize,
    scorer: &Arc<S>,
    halt: &Arc<AtomicBool>,
    queue: &QueueReceiver<Job>,
    results: &Sender<Msg>,
    keep_flagged: bool,
) -> Vec<JoinHandle<()>> {
    (0..count)
        .map(|i| {
            let (scorer, halt) = (scorer.clone(), halt.clone());
            let (queue, results) = (queue.clone(), results.clone());
            std::thread::Builder::new()
                .name(format!("napd-worker-{i}"))
                .spawn(move || work(&*scorer, &halt, &queue, &results, keep_flagged))
                .expect("spawning a worker thread")
        })
        .collect()
}

/// One worker's life: until the queue closes, or `halt` is raised and the queue is idle.
fn work<S: Scorer>(
    scorer: &S,
    halt: &AtomicBool,
    queue: &QueueReceiver<Job>,
    results: &Sender<Msg>,
    keep_flagged: bool,
) {
    let mut worker = match scorer.worker() {
        Ok(w) => w,
        Err(e) => {
            let _ = results.send(Msg::Fatal(format!("starting a worker: {e}")));
            halt.store(true, Ordering::Relaxed);
            return;
        }
    };
    loop {
        match queue::take(queue, Duration::from_millis(50)) {
            Take::Item(job) => {
                let name = job.frame.name.clone();
                let outcome = match scorer.score(&mut worker, &job.frame) {
                    Ok(scored) => Outcome::Verdict {
                        name,
                        captured: job.frame.captured,
                        pts: job.frame.pts,
                        scored,
                        pixels: (keep_flagged && scored.ood).then_some(job.frame.pixels),
                    },
                    Err(ScoreError::Frame(error)) => Outcome::Bad { name, error },
                    Err(ScoreError::Fatal(error)) => {
                        let _ = results.send(Msg::Fatal(error.clone()));
                        halt.store(true, Ordering::Relaxed);
                        let _ = results.send(Msg::Done(job.seq, Outcome::Bad { name, error }));
                        return;
                    }
                };
                let _ = results.send(Msg::Done(job.seq, outcome));
            }
            Take::Idle => {
                if halt.load(Ordering::Relaxed) {
                    return;
                }
            }
            Take::Closed => return,
        }
    }
}
