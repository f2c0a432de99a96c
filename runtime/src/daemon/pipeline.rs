//! The real-time pipeline: source thread -> bounded queue -> N workers -> reorder -> outputs.
//!
//! The source thread numbers every frame it produces (scored, rejected or dropped, each number
//! gets exactly one outcome), so the main thread can emit verdicts in capture order and account
//! for every gap. Latency runs from capture to the moment the verdict is handed to the link.

use super::log::JsonLog;
use super::order::Reorder;
use super::queue::{self, Overflow, PushError, Take};
use super::stats::{self, Counts, Stats};
use crate::link::{self, Link, LinkEvent, code};
use crate::ood_line::OodOutput;
use crate::source::{Frame, Source, SourceEvent};
use crossbeam_channel::RecvTimeoutError;
use nap_core::protocol::{Health, RuntimeStatus};
use serde_json::json;
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

/// Why the pipeline stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum EndReason {
    /// The source had no more frames.
    EndOfStream,
    /// The stop flag was raised (SIGINT / SIGTERM).
    Stopped,
    /// The source broke.
    SourceFailed(String),
    /// Scoring broke.
    Fatal(String),
}

impl EndReason {
    /// The final status for the controller.
    pub fn status(&self) -> RuntimeStatus {
        let code = match self {
            EndReason::EndOfStream => code::END_OF_STREAM,
            EndReason::Stopped => code::SHUTDOWN,
            EndReason::SourceFailed(_) => code::SOURCE,
            EndReason::Fatal(_) => code::BACKBONE,
        };
        // Whatever the reason, no verdict follows: the controller must go safe.
        RuntimeStatus {
            health: Health::Fault,
            code,
        }
    }

    /// True for the ends that are not errors.
    pub fn is_clean(&self) -> bool {
        matches!(self, EndReason::EndOfStream | EndReason::Stopped)
    }

    fn name(&self) -> &'static str {
        match self {
            EndReason::EndOfStream => "end_of_stream",
            EndReason::Stopped => "stopped",
            EndReason::SourceFailed(_) => "source_failed",
            EndReason::Fatal(_) => "fatal",
        }
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Why it ended.
    pub reason: EndReason,
    /// Frames numbered by the source.
    pub frames: u64,
    /// Verdicts emitted.
    pub verdicts: u64,
    /// Of which OOD.
    pub ood: u64,
    /// Frames dropped (queue overflow, or in flight at shutdown).
    pub dropped: u64,
    /// Frames rejected.
    pub bad: u64,
    /// Median latency, capture to verdict, in microseconds.
    pub p50_us: Option<u64>,
    /// 99th percentile latency, in microseconds.
    pub p99_us: Option<u64>,
    /// Verdicts per second over the run.
    pub fps: f64,
    /// Time from the start of the run (bundle loaded) to the first verdict.
    pub first_verdict: Option<Duration>,
    /// Time from the process's clock origin ([`link::monotonic_us`]: the start of `napd`) to
    /// the first verdict.
    pub first_verdict_since_start: Option<Duration>,
    /// Length of the run.
    pub elapsed: Duration,
    /// Peak resident memory of the process, in KiB (Linux).
    pub peak_rss_kib: Option<u64>,
}

impl Summary {
    /// The summary as the log's `final` object.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "type": "final",
            "reason": self.reason.name(),
            "error": match &self.reason {
                EndReason::SourceFailed(e) | EndReason::Fatal(e) => Some(e.as_str()),
                _ => None,
            },
            "frames": self.frames,
            "verdicts": self.verdicts,
            "ood": self.ood,
            "dropped": self.dropped,
            "bad": self.bad,
            "fps": round2(self.fps),
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "first_verdict_ms": self.first_verdict_since_start.map(|d| round2(d.as_secs_f64() * 1e3)),
            "first_verdict_after_load_ms": self.first_verdict.map(|d| round2(d.as_secs_f64() * 1e3)),
            "elapsed_s": round2(self.elapsed.as_secs_f64()),
            "peak_rss_kib": self.peak_rss_kib,
        })
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

enum Outcome {
    Verdict {
        name: String,
        captured: Instant,
        scored: Scored,
    },
    Bad {
        name: String,
        error: String,
    },
    Dropped {
        name: String,
    },
}

enum Msg {
    Done(u64, Outcome),
    SourceEnd,
    SourceFailed(String),
    Fatal(String),
}

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
}

/// Runs until the source ends, `stop` is raised or something fatal happens; then drains the
/// frames already queued and returns what happened. Sends health changes to the link but not
/// the final status (the caller does, after logging).
pub fn run<S: Scorer>(
    scorer: Arc<S>,
    mut source: Box<dyn Source>,
    outputs: Outputs<'_, '_>,
    options: &PipelineOptions,
    stop: &AtomicBool,
) -> Summary {
    let Outputs {
        link,
        mut line,
        log,
    } = outputs;
    let started = Instant::now();
    let overflow = options.overflow.unwrap_or(if source.is_live() {
        Overflow::DropOldest
    } else {
        Overflow::Block
    });
    let halt = Arc::new(AtomicBool::new(false));
    let (qtx, qrx) = queue::bounded::<Job>(options.queue, overflow);
    let (rtx, rrx) = crossbeam_channel::unbounded::<Msg>();

    let source_thread = {
        let halt = halt.clone();
        let rtx = rtx.clone();
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
                            match qtx.push(job, &halt) {
                                Ok(evicted) => {
                                    for j in evicted {
                                        let _ = rtx.send(Msg::Done(
                                            j.seq,
                                            Outcome::Dropped { name: j.frame.name },
                                        ));
                                    }
                                }
                                Err(PushError::Stopped(j)) => {
                                    let _ = rtx.send(Msg::Done(
                                        j.seq,
                                        Outcome::Dropped { name: j.frame.name },
                                    ));
                                    break;
                                }
                            }
                        }
                        SourceEvent::Bad { name, error } => {
                            let _ = rtx.send(Msg::Done(seq, Outcome::Bad { name, error }));
                            seq += 1;
                        }
                        SourceEvent::End => {
                            let _ = rtx.send(Msg::SourceEnd);
                            break;
                        }
                        SourceEvent::Failed(e) => {
                            let _ = rtx.send(Msg::SourceFailed(e));
                            break;
                        }
                    }
                }
            })
            .expect("spawning the source thread")
    };

    let workers: Vec<JoinHandle<()>> = (0..options.workers.max(1))
        .map(|i| {
            let (scorer, halt, rx, rtx) = (scorer.clone(), halt.clone(), qrx.clone(), rtx.clone());
            std::thread::Builder::new()
                .name(format!("napd-worker-{i}"))
                .spawn(move || worker_loop(&*scorer, &halt, &rx, &rtx))
                .expect("spawning a worker thread")
        })
        .collect();
    drop((qrx, rtx));

    let threshold = scorer.threshold();
    let mut stats = Stats::new(started);
    let mut reorder = Reorder::new();
    let mut end: Option<EndReason> = None;
    let mut health = RuntimeStatus {
        health: Health::Ok,
        code: code::OK,
    };
    let mut next_stats = started + options.stats_interval;
    let line_failed = std::cell::Cell::new(false);
    let mut frames = 0u64;

    let emit = |seq: u64,
                outcome: Outcome,
                stats: &mut Stats,
                log: &mut JsonLog,
                line: &mut Option<&mut dyn OodOutput>| {
        let now = Instant::now();
        match outcome {
            Outcome::Verdict {
                name,
                captured,
                scored,
            } => {
                let latency = now.saturating_duration_since(captured);
                link.verdict(
                    link::timestamp_us(captured),
                    scored.score,
                    threshold,
                    scored.ood,
                );
                if let Some(l) = line.as_deref_mut()
                    && let Err(e) = l.verdict(scored.ood, now)
                    && !line_failed.replace(true)
                {
                    eprintln!("napd: {e}");
                    log.write(&json!({"type": "error", "seq": seq, "frame": name, "error": e}));
                }
                stats.verdict(scored.ood, latency, now);
                log.write(&json!({
                    "type": "verdict",
                    "seq": seq,
                    "frame": name,
                    "ood": scored.ood,
                    "score": scored.score,
                    "threshold": threshold,
                    "latency_us": latency.as_micros() as u64,
                    "top1": scored.top1,
                }));
            }
            Outcome::Bad { name, error } => {
                stats.bad();
                eprintln!("napd: frame {seq} ({name}) rejected: {error}");
                log.write(&json!({"type": "error", "seq": seq, "frame": name, "error": error}));
            }
            Outcome::Dropped { name } => {
                stats.dropped();
                log.write(&json!({"type": "dropped", "seq": seq, "frame": name}));
            }
        }
    };

    loop {
        if stop.load(Ordering::Relaxed) && end.is_none() {
            end = Some(EndReason::Stopped);
            halt.store(true, Ordering::Relaxed);
        }
        if halt.load(Ordering::Relaxed) && workers.iter().all(JoinHandle::is_finished) {
            break;
        }
        let now = Instant::now();
        let mut wait = next_stats
            .saturating_duration_since(now)
            .min(Duration::from_millis(50));
        if let Some(d) = line.as_deref().and_then(OodOutput::deadline) {
            wait = wait.min(d.saturating_duration_since(now));
        }
        match rrx.recv_timeout(wait) {
            Ok(Msg::Done(seq, outcome)) => {
                frames = frames.max(seq + 1);
                reorder.insert(seq, outcome);
                while let Some((s, o)) = reorder.pop_ready() {
                    emit(s, o, &mut stats, log, &mut line);
                }
            }
            Ok(Msg::SourceEnd) => {
                end.get_or_insert(EndReason::EndOfStream);
            }
            Ok(Msg::SourceFailed(e)) => {
                eprintln!("napd: source failed: {e}");
                end.get_or_insert(EndReason::SourceFailed(e));
            }
            Ok(Msg::Fatal(e)) => {
                eprintln!("napd: fatal: {e}");
                end = Some(EndReason::Fatal(e));
                halt.store(true, Ordering::Relaxed);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if let Some(l) = line.as_deref_mut()
            && let Err(e) = l.poll(now)
            && !line_failed.replace(true)
        {
            eprintln!("napd: {e}");
        }
        for event in link.events() {
            log_link_event(log, &event);
        }
        if now >= next_stats {
            next_stats = now + options.stats_interval;
            let (interval, span) = stats.roll(now);
            report(log, &stats, &interval, span, link);
            let new = health_of(&interval);
            if new != health {
                health = new;
                link.status(new);
                log.write(&json!({"type": "status", "health": format!("{:?}", new.health), "code": new.code}));
            }
        }
    }

    // Drain: the workers are finished (or all senders are gone); collect what is left.
    for w in workers {
        let _ = w.join();
    }
    for msg in rrx.try_iter() {
        match msg {
            Msg::Done(seq, outcome) => {
                frames = frames.max(seq + 1);
                reorder.insert(seq, outcome);
            }
            Msg::SourceEnd => {
                end.get_or_insert(EndReason::EndOfStream);
            }
            Msg::SourceFailed(e) => {
                end.get_or_insert(EndReason::SourceFailed(e));
            }
            Msg::Fatal(e) => end = Some(EndReason::Fatal(e)),
        }
    }
    for (seq, skipped, outcome) in reorder.drain() {
        // Numbers whose outcome never came were frames lost in the shutdown race.
        for _ in 0..skipped {
            stats.dropped();
        }
        emit(seq, outcome, &mut stats, log, &mut line);
    }
    if source_thread.is_finished() {
        let _ = source_thread.join();
    }
    // A source blocked in a read (stdin, a camera) is left behind: the process is ending.
    for event in link.events() {
        log_link_event(log, &event);
    }
    if let Some(l) = line
        && let Err(e) = l.shutdown()
    {
        eprintln!("napd: {e}");
    }
    let now = Instant::now();
    let (interval, span) = stats.roll(now);
    report(log, &stats, &interval, span, link);
    let total = &stats.total;
    Summary {
        reason: end.unwrap_or(EndReason::EndOfStream),
        frames,
        verdicts: total.verdicts,
        ood: total.ood,
        dropped: total.dropped,
        bad: total.bad,
        p50_us: total.latency.quantile_us(0.5),
        p99_us: total.latency.quantile_us(0.99),
        fps: stats::rate(total.verdicts, now - started),
        first_verdict: stats.first_verdict,
        first_verdict_since_start: stats
            .first_verdict
            .map(|d| Duration::from_micros(link::timestamp_us(started + d))),
        elapsed: now - started,
        peak_rss_kib: stats::memory_kib().1,
    }
}

fn worker_loop<S: Scorer>(
    scorer: &S,
    halt: &AtomicBool,
    rx: &queue::QueueReceiver<Job>,
    results: &crossbeam_channel::Sender<Msg>,
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
        match queue::take(rx, Duration::from_millis(50)) {
            Take::Item(job) => {
                let name = job.frame.name.clone();
                let outcome = match scorer.score(&mut worker, &job.frame) {
                    Ok(scored) => Outcome::Verdict {
                        name,
                        captured: job.frame.captured,
                        scored,
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

fn health_of(interval: &Counts) -> RuntimeStatus {
    let (health, code) = if interval.dropped > 0 {
        (Health::Degraded, code::FRAMES_DROPPED)
    } else if interval.bad > 0 {
        (Health::Degraded, code::BAD_FRAMES)
    } else {
        (Health::Ok, code::OK)
    };
    RuntimeStatus { health, code }
}

fn log_link_event(log: &mut JsonLog, event: &LinkEvent) {
    let value = match event {
        LinkEvent::Up { reconnects } => {
            eprintln!("napd: link up (reconnects: {reconnects})");
            json!({"type": "link", "event": "up", "reconnects": reconnects})
        }
        LinkEvent::Down { reason } => {
            eprintln!("napd: link down: {reason}");
            json!({"type": "link", "event": "down", "reason": reason})
        }
        LinkEvent::Controller(s) => json!({
            "type": "link",
            "event": "controller",
            "state": format!("{:?}", s.state),
            "frames": s.frames,
            "ood": s.ood,
            "crc_errors": s.crc_errors,
            "seq_gaps": s.seq_gaps,
        }),
    };
    log.write(&value);
}

fn report(log: &mut JsonLog, stats: &Stats, interval: &Counts, span: Duration, link: &Link) {
    let c = link.counters();
    let (rss, peak) = stats::memory_kib();
    let fps = stats::rate(interval.verdicts, span);
    let ood_rate = if interval.verdicts > 0 {
        interval.ood as f64 / interval.verdicts as f64
    } else {
        0.0
    };
    log.write(&json!({
        "type": "stats",
        "uptime_s": round2(stats.started.elapsed().as_secs_f64()),
        "fps": round2(fps),
        "p50_us": interval.latency.quantile_us(0.5),
        "p99_us": interval.latency.quantile_us(0.99),
        "ood_rate": round2(ood_rate * 100.0) / 100.0,
        "verdicts": interval.verdicts,
        "dropped": interval.dropped,
        "bad": interval.bad,
        "total_verdicts": stats.total.verdicts,
        "total_dropped": stats.total.dropped,
        "total_bad": stats.total.bad,
        "rss_kib": rss,
        "peak_rss_kib": peak,
        "link": {
            "connected": c.connected.load(Ordering::Relaxed),
            "sent": c.sent.load(Ordering::Relaxed),
            "heartbeats": c.heartbeats.load(Ordering::Relaxed),
            "unsent": c.unsent.load(Ordering::Relaxed),
            "reconnects": c.reconnects.load(Ordering::Relaxed),
            "acks": c.acks.load(Ordering::Relaxed),
            "rx_errors": c.rx_errors.load(Ordering::Relaxed),
        },
    }));
    eprintln!(
        "napd: {:.1} fps, p50 {} us, p99 {} us, OOD {:.0}%, dropped {}, rejected {} (totals: {} verdicts, {} dropped)",
        fps,
        interval.latency.quantile_us(0.5).unwrap_or(0),
        interval.latency.quantile_us(0.99).unwrap_or(0),
        ood_rate * 100.0,
        interval.dropped,
        interval.bad,
        stats.total.verdicts,
        stats.total.dropped,
    );
}
