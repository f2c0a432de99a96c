//! The real-time pipeline: source thread -> bounded queue -> N workers -> reorder -> outputs.
//!
//! The source thread numbers every frame it produces (scored, rejected or dropped, each number
//! gets exactly one outcome), so the main thread can emit verdicts in capture order and account
//! for every gap. Latency runs from capture to the moment the verdict is handed to the link.
//!
//! - [`capture`](self::capture): the source thread; `workers`: the scoring threads;
//! - `emit`: the ordered emission to the outputs, with stats and health;
//! - [`summary`](self::summary): how the run ended and what it did.

mod capture;
mod emit;
pub mod summary;
mod workers;

pub use summary::{EndReason, Summary};

use crate::DaemonError;
use crate::drift::DriftAlarm;
use crate::flagged::Capture;
use crate::link::Link;
use crate::log::JsonLog;
use crate::ood_line::OodOutput;
use crate::queue::{self, Overflow};
use crate::source::{Frame, Pixels, Source};
use crate::telemetry::Telemetry;
use crossbeam_channel::RecvTimeoutError;
use emit::Emitter;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The decision on one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    /// The deciding score (higher = more familiar).
    pub score: f32,
    /// `score < threshold`.
    pub ood: bool,
    /// The classifier's top class, for the log.
    pub top1: usize,
}

/// Why a frame was not scored.
#[derive(Clone, Debug, PartialEq)]
pub enum ScoreError {
    /// This frame is bad (undecodable, wrong size): log it, go on.
    Frame(String),
    /// Scoring itself broke (the backbone failed): stop and report a fault.
    Fatal(String),
}

/// What turns frames into decisions: the detector in `napd`, something simpler in tests.
pub trait Scorer: Send + Sync + 'static {
    /// Per-thread state.
    type Worker: Send;
    /// State for one worker thread.
    fn worker(&self) -> Result<Self::Worker, String>;
    /// Scores one frame.
    fn score(&self, worker: &mut Self::Worker, frame: &Frame) -> Result<Scored, ScoreError>;
    /// The threshold verdicts are decided against.
    fn threshold(&self) -> f32;
}

/// Shape of the pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineOptions {
    /// Worker threads.
    pub workers: usize,
    /// Frames the queue holds.
    pub queue: usize,
    /// What a full queue does; `None`: drop the oldest for live sources, block for replays.
    pub overflow: Option<Overflow>,
    /// Period of the stats objects and of health re-evaluation.
    pub stats_interval: Duration,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            workers: 1,
            queue: 2,
            overflow: None,
            stats_interval: Duration::from_secs(5),
        }
    }
}

/// What became of one numbered frame.
enum Outcome {
    Verdict {
        name: String,
        captured: Instant,
        pts: Option<Duration>,
        scored: Scored,
        /// An OOD frame's pixels, kept when the capture is on.
        pixels: Option<Pixels>,
    },
    Bad {
        name: String,
        error: String,
    },
    Dropped {
        name: String,
    },
}

/// What the source and worker threads tell the pipeline.
enum Msg {
    Done(u64, Outcome),
    SourceEnd,
    SourceLost(String),
    SourceResumed,
    SourceFailed(String),
    Fatal(String),
}

/// A numbered frame on its way to a worker.
struct Job {
    seq: u64,
    frame: Frame,
}

/// The outputs a verdict goes to.
pub struct Outputs<'a, 'l> {
    /// The controller link.
    pub link: &'a Link,
    /// The OOD line, if wired.
    pub line: Option<&'l mut (dyn OodOutput + 'l)>,
    /// The JSON Lines log.
    pub log: &'a mut JsonLog,
    /// The drift alarm, if on.
    pub drift: Option<DriftAlarm>,
    /// Where OOD frames are saved, if anywhere.
    pub capture: Option<Capture>,
    /// The fleet's telemetry sinks (MQTT, metrics), those that are on.
    pub telemetry: Vec<&'a dyn Telemetry>,
}

/// Runs until the source ends, `stop` is raised or something fatal happens; then drains the
/// frames already queued and returns what happened. Sends health changes to the link but not
/// the final status (the caller does, after logging).
pub fn run<S: Scorer>(
    scorer: Arc<S>,
    source: Box<dyn Source>,
    outputs: Outputs<'_, '_>,
    options: &PipelineOptions,
    stop: &AtomicBool,
) -> Summary {
    let started = Instant::now();
    let overflow = options.overflow.unwrap_or(if source.is_live() {
        Overflow::DropOldest
    } else {
        Overflow::Block
    });
    let halt = Arc::new(AtomicBool::new(false));
    let (qtx, qrx) = queue::bounded::<Job>(options.queue, overflow);
    let (rtx, rrx) = crossbeam_channel::unbounded::<Msg>();
    let capture = capture::spawn(source, qtx, rtx.clone(), halt.clone());
    let keep_flagged = outputs.capture.is_some();
    let workers = workers::spawn(
        options.workers.max(1),
        &scorer,
        &halt,
        &qrx,
        &rtx,
        keep_flagged,
    );
    drop((qrx, rtx));

    let mut emitter = Emitter::new(outputs, scorer.threshold(), started, options.stats_interval);
    let mut end: Option<EndReason> = None;
    loop {
        if stop.load(Ordering::Relaxed) && end.is_none() {
            end = Some(EndReason::Stopped);
            halt.store(true, Ordering::Relaxed);
        }
        if halt.load(Ordering::Relaxed) && workers.iter().all(JoinHandle::is_finished) {
            break;
        }
        match rrx.recv_timeout(emitter.patience(Instant::now())) {
            Ok(msg) => receive(msg, &mut emitter, &mut end, &halt),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        emitter.tick(Instant::now());
    }

    // Drain: the workers are finished (or all senders are gone); collect what is left.
    for w in workers {
        let _ = w.join();
    }
    for msg in rrx.try_iter() {
        receive(msg, &mut emitter, &mut end, &halt);
    }
    // A source blocked in a read (stdin, a camera) is left behind: the process is ending.
    if capture.is_finished() {
        let _ = capture.join();
    }
    emitter.finish(end.unwrap_or(EndReason::EndOfStream), started)
}

/// One message from the source or a worker: an outcome to emit, or how the run ends.
fn receive(msg: Msg, emitter: &mut Emitter, end: &mut Option<EndReason>, halt: &AtomicBool) {
    match msg {
        Msg::Done(seq, outcome) => emitter.outcome(seq, outcome),
        Msg::SourceEnd => {
            end.get_or_insert(EndReason::EndOfStream);
        }
        Msg::SourceLost(reason) => {
            eprintln!("napd: source lost, reconnecting: {reason}");
            emitter.source_lost(Some(reason));
        }
        Msg::SourceResumed => {
            eprintln!("napd: source resumed");
            emitter.source_lost(None);
        }
        Msg::SourceFailed(e) => {
            eprintln!("napd: source failed: {e}");
            end.get_or_insert(EndReason::Failed(DaemonError::Source(e)));
        }
        Msg::Fatal(e) => {
            eprintln!("napd: fatal: {e}");
            *end = Some(EndReason::Failed(DaemonError::Backbone(e)));
            halt.store(true, Ordering::Relaxed);
        }
    }
}
