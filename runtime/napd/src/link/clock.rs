//! The clock of the timestamps on the wire: microseconds since the process started.

use std::sync::OnceLock;
use std::time::Instant;

/// Microseconds of the process's monotonic clock: the timestamps on the wire.
pub fn monotonic_us() -> u64 {
    clock_origin().elapsed().as_micros() as u64
}

/// Microseconds from the clock origin to `t` (0 for instants before it).
pub fn timestamp_us(t: Instant) -> u64 {
    t.saturating_duration_since(clock_origin()).as_micros() as u64
}

fn clock_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}
