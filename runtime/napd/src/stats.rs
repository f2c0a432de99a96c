//! Throughput and latency statistics: totals since start and the current reporting interval.

use std::time::{Duration, Instant};

/// Relative width of a latency bucket: percentiles are exact to within 1%.
const GROWTH: f64 = 1.01;
/// Buckets from 1 us to past 100 s.
const BUCKETS: usize = 1900;

/// A log-scale latency histogram: fixed memory however long the daemon runs.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl LatencyHistogram {
    fn bucket(us: u64) -> usize {
        if us <= 1 {
            return 0;
        }
        ((us as f64).ln() / GROWTH.ln())
            .ceil()
            .min((BUCKETS - 1) as f64) as usize
    }

    /// Counts one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[Self::bucket(us)] += 1;
        self.total += 1;
    }

    /// Latencies counted.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The `q`-quantile (0..=1) in microseconds, as the upper edge of its bucket; `None` when
    /// empty.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(GROWTH.powi(i as i32).round() as u64);
            }
        }
        None
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.total = 0;
    }
}

/// Counters for one span of time.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Verdicts emitted.
    pub verdicts: u64,
    /// Of which out of distribution.
    pub ood: u64,
    /// Frames dropped because the workers were behind.
    pub dropped: u64,
    /// Frames rejected (unreadable, malformed, undecodable).
    pub bad: u64,
    /// Latencies of the verdicts.
    pub latency: LatencyHistogram,
}

impl Counts {
    fn record_verdict(&mut self, ood: bool, latency: Duration) {
        self.verdicts += 1;
        self.ood += u64::from(ood);
        self.latency.record(latency);
    }
}

/// What the daemon has done: totals, and the interval since the last report.
#[derive(Debug)]
pub struct Stats {
    /// When counting started.
    pub started: Instant,
    /// When the current interval started.
    pub interval_started: Instant,
    /// Since start.
    pub total: Counts,
    /// Since the last report.
    pub interval: Counts,
    /// Time from start to the first verdict.
    pub first_verdict: Option<Duration>,
}

impl Stats {
    /// Starts counting at `now`.
    pub fn new(now: Instant) -> Self {
        Stats {
            started: now,
            interval_started: now,
            total: Counts::default(),
            interval: Counts::default(),
            first_verdict: None,
        }
    }

    /// Counts a verdict emitted at `now`.
    pub fn verdict(&mut self, ood: bool, latency: Duration, now: Instant) {
        self.first_verdict.get_or_insert(now - self.started);
        self.total.record_verdict(ood, latency);
        self.interval.record_verdict(ood, latency);
    }

    /// Counts a dropped frame.
    pub fn dropped(&mut self) {
        self.total.dropped += 1;
        self.interval.dropped += 1;
    }

    /// Counts a rejected frame.
    pub fn bad(&mut self) {
        self.total.bad += 1;
        self.interval.bad += 1;
    }

    /// Starts a new interval at `now`, giving back the one that ended and its length.
    pub fn roll(&mut self, now: Instant) -> (Counts, Duration) {
        let len = now - self.interval_started;
        self.interval_started = now;
        (std::mem::take(&mut self.interval), len)
    }
}

/// Verdicts per second over `span`.
pub fn rate(count: u64, span: Duration) -> f64 {
    let s = span.as_secs_f64();
    if s > 0.0 { count as f64 / s } else { 0.0 }
}

/// The resident set size now and at its peak, in KiB (Linux `/proc/self/status`; `None`
/// elsewhere).
pub fn memory_kib() -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}
