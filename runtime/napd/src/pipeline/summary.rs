//! How a run ended and what it did: the log's `final` object.

use crate::DaemonError;
use crate::flagged::CaptureCounts;
use crate::status::{self, code};
use nap_core::protocol::RuntimeStatus;
use serde_json::json;
use std::time::Duration;

/// Why the pipeline stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum EndReason {
    /// The source had no more frames.
    EndOfStream,
    /// The stop flag was raised (SIGINT / SIGTERM).
    Stopped,
    /// The source or the scoring broke.
    Failed(DaemonError),
}

impl EndReason {
    /// The final status for the controller. Whatever the reason, no verdict follows: the
    /// controller must go safe.
    pub fn status(&self) -> RuntimeStatus {
        match self {
            EndReason::EndOfStream => status::fault(code::END_OF_STREAM),
            EndReason::Stopped => status::fault(code::SHUTDOWN),
            EndReason::Failed(e) => e.status(),
        }
    }

    /// True for the ends that are not errors.
    pub fn is_clean(&self) -> bool {
        matches!(self, EndReason::EndOfStream | EndReason::Stopped)
    }

    /// What failed, for a run that did not end cleanly.
    pub fn error(&self) -> Option<&DaemonError> {
        match self {
            EndReason::Failed(e) => Some(e),
            _ => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            EndReason::EndOfStream => "end_of_stream",
            EndReason::Stopped => "stopped",
            EndReason::Failed(DaemonError::Source(_)) => "source_failed",
            EndReason::Failed(_) => "fatal",
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
    /// Time from the process's clock origin ([`crate::link::monotonic_us`]: the start of
    /// `napd`) to the first verdict.
    pub first_verdict_since_start: Option<Duration>,
    /// Length of the run.
    pub elapsed: Duration,
    /// Peak resident memory of the process, in KiB (Linux).
    pub peak_rss_kib: Option<u64>,
    /// What the flagged-frame capture did, if it was on.
    pub capture: Option<CaptureCounts>,
}

impl Summary {
    /// The summary as the log's `final` object.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = json!({
            "type": "final",
            "reason": self.reason.name(),
            "error": self.reason.error().map(ToString::to_string),
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
        });
        if let Some(capture) = self.capture {
            object["capture"] = json!(capture);
        }
        object
    }
}

/// Two decimals: enough for rates and milliseconds in a log line.
pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
