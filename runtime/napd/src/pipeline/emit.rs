//! The ordered emission: each frame's outcome, in frame order, to the link, the OOD line, the log
//! the stats and the capture; and the periodic work beside it (stats objects, health, link and
//! capture events).

use super::summary::{EndReason, Summary, round2};
use super::{Outcome, Outputs};
use crate::drift::{DriftAction, DriftAlarm, DriftEvent};
use crate::flagged::{Capture, CaptureCounts, CaptureEvent, FlaggedFrame};
use crate::link::{self, Link, LinkEvent};
use crate::log::JsonLog;
use crate::ood_line::OodOutput;
use crate::reorder::Reorder;
use crate::stats::{self, Counts, Stats};
use crate::status::{self, code};
use crate::telemetry::Telemetry;
use nap_core::protocol::RuntimeStatus;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// Where outcomes go, and the state of the run's reporting.
pub(super) struct Emitter<'a, 'l> {
    link: &'a Link,
    line: Option<&'l mut (dyn OodOutput + 'l)>,
    log: &'a mut JsonLog,
    threshold: f32,
    stats: Stats,
    reorder: Reorder<Outcome>,
    /// Frame numbers seen so far (the highest plus one).
    frames: u64,
    /// The status the controller last heard.
    health: RuntimeStatus,
    /// The status the last stats interval called for, before the drift alarm's say.
    interval_health: RuntimeStatus,
    drift: Option<DriftAlarm>,
    /// Whether a live source is lost and reconnecting.
    source_lost: bool,
    capture: Option<Capture>,
    telemetry: Vec<&'a dyn Telemetry>,
    stats_interval: Duration,
    next_stats: Instant,
    /// The OOD line's first error is reported; the rest would flood the log.
    line_failed: bool,
}

impl<'a, 'l> Emitter<'a, 'l> {
    /// An emitter for a run that started at `started`.
    pub(super) fn new(
        outputs: Outputs<'a, 'l>,
        threshold: f32,
        started: Instant,
        stats_interval: Duration,
    ) -> Self {
        Emitter {
            link: outputs.link,
            line: outputs.line,
            log: outputs.log,
            threshold,
            stats: Stats::new(started),
            reorder: Reorder::new(),
            frames: 0,
            health: status::OK,
            interval_health: status::OK,
            drift: outputs.drift,
            source_lost: false,
            capture: outputs.capture,
            telemetry: outputs.telemetry,
            stats_interval,
            next_stats: started + stats_interval,
            line_failed: false,
        }
    }

    /// Frame `seq`'s outcome arrived: emit it and every later one that was waiting for it.
    pub(super) fn outcome(&mut self, seq: u64, outcome: Outcome) {
        self.frames = self.frames.max(seq + 1);
        self.reorder.insert(seq, outcome);
        while let Some((seq, outcome)) = self.reorder.pop_ready() {
            self.emit(seq, outcome);
        }
    }

    /// How long the pipeline may wait for the next outcome before the periodic work is due.
    pub(super) fn patience(&self, now: Instant) -> Duration {
        let mut wait = self
            .next_stats
            .saturating_duration_since(now)
            .min(Duration::from_millis(50));
        if let Some(d) = self.line.as_deref().and_then(OodOutput::deadline) {
            wait = wait.min(d.saturating_duration_since(now));
        }
        wait
    }

    /// The periodic work: the OOD line's pulses, link events, and every stats interval a stats
    /// object and the health the controller hears.
    pub(super) fn tick(&mut self, now: Instant) {
        if let Some(l) = self.line.as_deref_mut()
            && let Err(e) = l.poll(now)
            && !std::mem::replace(&mut self.line_failed, true)
        {
            eprintln!("napd: {e}");
        }
        self.log_link_events();
        if let Some(c) = &self.capture {
            for event in c.events() {
                self.log.write(&capture_event_json(&event));
            }
        }
        if now >= self.next_stats {
            self.next_stats = now + self.stats_interval;
            let (interval, span) = self.stats.roll(now);
            let capture = self.capture.as_ref().map(Capture::counts);
            self.report(&interval, span, capture);
            self.interval_health = health_of(&interval);
            self.update_health();
        }
    }

    /// A live source was lost (`Some(reason)`) or is back (`None`): logged, and the controller
    /// hears it at once.
    pub(super) fn source_lost(&mut self, reason: Option<String>) {
        self.source_lost = reason.is_some();
        self.log.write(&match reason {
            Some(reason) => json!({"type": "source", "event": "lost", "reason": reason}),
            None => json!({"type": "source", "event": "resumed"}),
        });
        self.update_health();
    }

    /// Tells the controller (and the log) when the health changed: a lost source comes first,
    /// then a raised drift alarm that degrades, then what the last interval called for.
    fn update_health(&mut self) {
        let drifting = self
            .drift
            .as_ref()
            .is_some_and(|d| d.action == DriftAction::Degrade && d.test.raised());
        let new = if self.source_lost {
            status::degraded(code::SOURCE_LOST)
        } else if drifting {
            status::degraded(code::DRIFT)
        } else {
            self.interval_health
        };
        if new != self.health {
            self.health = new;
            self.link.status(new);
            for t in &self.telemetry {
                t.status(new);
            }
            self.log.write(
                &json!({"type": "status", "health": format!("{:?}", new.health), "code": new.code}),
            );
        }
    }

    /// One verdict through the drift alarm: its log object and status when it is raised or
    /// cleared.
    fn drift_verdict(&mut self, seq: u64, name: &str, ood: bool) {
        let Some(alarm) = self.drift.as_mut() else {
            return;
        };
        let Some(event) = alarm.test.verdict(ood) else {
            return;
        };
        let (what, count) = match event {
            DriftEvent::Raised { ood } => ("raised", ood),
            DriftEvent::Cleared { ood } => ("cleared", ood),
        };
        let window = alarm.test.window();
        eprintln!(
            "napd: drift alarm {what} at frame {seq} ({name}): {count} of the last {window} verdicts OOD, {:.1}% expected",
            100.0 * alarm.test.expected_rate()
        );
        let object = json!({
            "type": "drift",
            "event": what,
            "seq": seq,
            "frame": name,
            "ood": count,
            "window": window,
            "rate": count as f64 / window as f64,
            "expected_rate": alarm.test.expected_rate(),
            "action": format!("{:?}", alarm.action).to_lowercase(),
        });
        self.log.write(&object);
        for t in &self.telemetry {
            t.drift(&object);
        }
        self.update_health();
    }

    /// Emits what is left in frame order (numbers whose outcome never came were frames lost in
    /// the shutdown race: counted as dropped), releases the OOD line and sums the run up.
    pub(super) fn finish(mut self, reason: EndReason, started: Instant) -> Summary {
        for (seq, skipped, outcome) in self.reorder.drain() {
            for _ in 0..skipped {
                self.count_dropped();
            }
            self.emit(seq, outcome);
        }
        self.log_link_events();
        if let Some(l) = self.line.as_deref_mut()
            && let Err(e) = l.shutdown()
        {
            eprintln!("napd: {e}");
        }
        // The frames already queued for the disk are saved before the run is summed up.
        let capture = self.capture.take().map(|c| {
            let (counts, events) = c.finish();
            for event in &events {
                self.log.write(&capture_event_json(event));
            }
            counts
        });
        let now = Instant::now();
        let (interval, span) = self.stats.roll(now);
        self.report(&interval, span, capture);
        let total = &self.stats.total;
        Summary {
            reason,
            frames: self.frames,
            verdicts: total.verdicts,
            ood: total.ood,
            dropped: total.dropped,
            bad: total.bad,
            p50_us: total.latency.quantile_us(0.5),
            p99_us: total.latency.quantile_us(0.99),
            fps: stats::rate(total.verdicts, now - started),
            first_verdict: self.stats.first_verdict,
            first_verdict_since_start: self
                .stats
                .first_verdict
                .map(|d| Duration::from_micros(link::timestamp_us(started + d))),
            elapsed: now - started,
            peak_rss_kib: stats::memory_kib().1,
            capture,
        }
    }

    fn emit(&mut self, seq: u64, outcome: Outcome) {
        let now = Instant::now();
        match outcome {
            Outcome::Verdict {
                name,
                captured,
                pts,
                scored,
                pixels,
            } => {
                let latency = now.saturating_duration_since(captured);
                let threshold = self.threshold;
                self.link.verdict(
                    link::timestamp_us(captured),
                    scored.score,
                    threshold,
                    scored.ood,
                );
                if let Some(l) = self.line.as_deref_mut()
                    && let Err(e) = l.verdict(scored.ood, now)
                    && !std::mem::replace(&mut self.line_failed, true)
                {
                    eprintln!("napd: {e}");
                    self.log
                        .write(&json!({"type": "error", "seq": seq, "frame": name, "error": e}));
                }
                self.stats.verdict(scored.ood, latency, now);
                let mut object = json!({
                    "type": "verdict",
                    "seq": seq,
                    "frame": name,
                    "ood": scored.ood,
                    "score": scored.score,
                    "threshold": threshold,
                    "latency_us": latency.as_micros() as u64,
                    "top1": scored.top1,
                    "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                });
                if let Some(pts) = pts {
                    object["pts_us"] = json!(pts.as_micros() as u64);
                }
                self.log.write(&object);
                for t in &self.telemetry {
                    t.verdict(&object, scored.ood);
                }
                if let (Some(capture), Some(pixels)) = (self.capture.as_mut(), pixels) {
                    let flagged = FlaggedFrame {
                        seq,
                        frame: name.clone(),
                        time: SystemTime::now(),
                        score: scored.score,
                        threshold,
                        top1: scored.top1,
                        pixels,
                    };
                    capture.offer(flagged, now);
                }
                self.drift_verdict(seq, &name, scored.ood);
            }
            Outcome::Bad { name, error } => {
                self.stats.bad();
                for t in &self.telemetry {
                    t.rejected();
                }
                eprintln!("napd: frame {seq} ({name}) rejected: {error}");
                self.log
                    .write(&json!({"type": "error", "seq": seq, "frame": name, "error": error}));
            }
            Outcome::Dropped { name } => {
                self.count_dropped();
                self.log
                    .write(&json!({"type": "dropped", "seq": seq, "frame": name}));
            }
        }
    }

    /// Counts a dropped frame in the stats and the telemetry.
    fn count_dropped(&mut self) {
        self.stats.dropped();
        for t in &self.telemetry {
            t.dropped();
        }
    }

    /// Link events, and the broker connection's, as log objects.
    fn log_link_events(&mut self) {
        for event in self.link.events() {
            self.log.write(&link_event_json(&event));
        }
        for event in self.telemetry.iter().flat_map(|t| t.events()) {
            self.log.write(&event);
        }
    }

    /// The `stats` object for the interval just closed, and its one-line summary on stderr.
    fn report(&mut self, interval: &Counts, span: Duration, capture: Option<CaptureCounts>) {
        let (stats, c) = (&self.stats, self.link.counters());
        let (rss, peak) = stats::memory_kib();
        let fps = stats::rate(interval.verdicts, span);
        let ood_rate = if interval.verdicts > 0 {
            interval.ood as f64 / interval.verdicts as f64
        } else {
            0.0
        };
        let mut object = json!({
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
        });
        if let Some(capture) = capture {
            object["capture"] = json!(capture);
        }
        for (key, counts) in self.telemetry.iter().filter_map(|t| t.counts()) {
            object[key] = counts;
        }
        self.log.write(&object);
        for t in &self.telemetry {
            t.stats(&object);
        }
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
}

/// The health an interval's counts call for: dropped frames first, then rejected ones.
fn health_of(interval: &Counts) -> RuntimeStatus {
    if interval.dropped > 0 {
        status::degraded(code::FRAMES_DROPPED)
    } else if interval.bad > 0 {
        status::degraded(code::BAD_FRAMES)
    } else {
        status::OK
    }
}

/// A capture event as a `capture` log object (and a line on stderr).
fn capture_event_json(event: &CaptureEvent) -> serde_json::Value {
    match event {
        CaptureEvent::Failed { seq, error } => {
            eprintln!("napd: capture failing from frame {seq}: {error}");
            json!({"type": "capture", "event": "failed", "seq": seq, "error": error})
        }
        CaptureEvent::Recovered { seq } => {
            eprintln!("napd: capture writing again from frame {seq}");
            json!({"type": "capture", "event": "recovered", "seq": seq})
        }
    }
}

/// A link event as a `link` log object (up and down also go to stderr).
fn link_event_json(event: &LinkEvent) -> serde_json::Value {
    match event {
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
    }
}
