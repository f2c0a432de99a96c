//! The source thread: numbers every frame the source yields and queues it for the workers.
//!
//! Every number gets exactly one outcome: a queued frame is scored (or dropped if the queue
//! evicts it or the pipeline stops first), a frame the source could not read is rejected here.

use super::{Job, Msg, Outcome};
use crate::queue::{PushError, QueueSender};
use crate::source::{Source, SourceEvent};
use crossbeam_channel::Sender;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Starts the source thread; it ends at the end of the source or when `halt` is raised.
pub(super) fn spawn(
    mut source: Box<dyn Source>,
    queue: QueueSender<Job>,
    results: Sender<Msg>,
    halt: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let dropped = |job: Job| {
        Msg::Done(
            job.seq,
            Outcome::Dropped {
                name: job.frame.name,
            },
        )
    };
    std::thread::Builder::new()
        .name("napd-source".into())
        .spawn(move || {
            let mut seq = 0u64;
            while !halt.load(Ordering::Relaxed) {
                let event = source.next_event();
                if halt.load(Ordering::Relaxed) {
                    break;
                }
                match event {
                    SourceEvent::Frame(frame) => {
                        let job = Job { seq, frame };
                        seq += 1;
                        match queue.push(job, &halt) {
                            Ok(evicted) => {
                                for job in evicted {
                                    let _ = results.send(dropped(job));
                                }
                            }
                            Err(PushError::Stopped(job)) => {
                                let _ = results.send(dropped(job));
                                break;
                            }
                        }
                    }
                    SourceEvent::Bad { name, error } => {
                        let _ = results.send(Msg::Done(seq, Outcome::Bad { name, error }));
                        seq += 1;
                    }
                    SourceEvent::Lost(reason) => {
                        let _ = results.send(Msg::SourceLost(reason));
                    }
                    SourceEvent::Resumed => {
                        let _ = results.send(Msg::SourceResumed);
                    }
                    SourceEvent::End => {
                        let _ = results.send(Msg::SourceEnd);
                        break;
                    }
                    SourceEvent::Failed(e) => {
                        let _ = results.send(Msg::SourceFailed(e));
                        break;
                    }
                }
            }
        })
        .expect("spawning the source thread")
}
