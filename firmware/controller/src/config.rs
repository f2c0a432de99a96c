//! What a board chooses: how the reject line signals and how long silence is tolerated.

/// How the reject line signals an out-of-distribution verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RejectMode {
    /// A high pulse of `ticks` ticks per OOD verdict (at least 1). An OOD verdict during a pulse
    /// extends it rather than starting a new one, so a consumer counting edges may count fewer
    /// pulses than verdicts when verdicts come faster than the pulse length.
    Pulse {
        /// Pulse length in ticks.
        ticks: u32,
    },
    /// The line follows the latest verdict: high after an OOD verdict, low after an
    /// in-distribution one. For consumers that sample the line once per camera frame.
    Level,
}

/// The controller's settings, in ticks of the board's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Longest silence tolerated while armed: when no valid heartbeat or verdict arrived for more
    /// than this many ticks, the controller goes safe and raises the fault line. Checked on every
    /// [`Controller::tick`](crate::Controller::tick), so with one call per tick the fault line
    /// rises at most `heartbeat_timeout + 1` ticks after the last valid message.
    pub heartbeat_timeout: u32,
    /// How the reject line signals an OOD verdict.
    pub reject: RejectMode,
}

impl Config {
    /// 500 ms timeout and 50 ms reject pulses at a 100 Hz tick: the runtime sends a heartbeat at
    /// least every 100 ms, so five in a row may be lost before the controller gives up.
    pub const DEFAULT_100HZ: Config = Config {
        heartbeat_timeout: 50,
        reject: RejectMode::Pulse { ticks: 5 },
    };
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT_100HZ
    }
}
