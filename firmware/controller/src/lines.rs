//! The two output lines: reject (per OOD verdict) and fault (do not trust the runtime).
//!
//! Both are active high (a board with active-low hardware wraps its pin). Pins are written only
//! when a line changes, so every write is an edge: a board can log or count them, and the host
//! tests pin exact expectations on them.

use embedded_hal::digital::OutputPin;

use crate::config::RejectMode;
use crate::time::Tick;

/// Which line's pin reported an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LineError {
    /// Writing the reject pin failed.
    Reject,
    /// Writing the fault pin failed.
    Fault,
}

/// The reject and fault lines and their current levels.
#[derive(Debug)]
pub struct Lines<R, F> {
    reject: R,
    fault: F,
    reject_high: bool,
    fault_high: bool,
    /// End of the running reject pulse, if one runs.
    pulse_end: Option<Tick>,
}

impl<R: OutputPin, F: OutputPin> Lines<R, F> {
    /// Takes the pins; nothing is written until [`Lines::init`].
    pub fn new(reject: R, fault: F) -> Self {
        // Unknown until `init`: recorded as the opposite of the boot levels, so that after a
        // failed `init` the next request for those levels writes the pins again.
        Self {
            reject,
            fault,
            reject_high: true,
            fault_high: false,
            pulse_end: None,
        }
    }

    /// Drives the boot levels whatever the pins held before: fault high, reject low. Fail-safe
    /// by default: downstream sees "do not trust" from the first instant the controller runs.
    pub fn init(&mut self) -> Result<(), LineError> {
        self.pulse_end = None;
        self.fault.set_high().map_err(|_| LineError::Fault)?;
        self.fault_high = true;
        self.reject.set_low().map_err(|_| LineError::Reject)?;
        self.reject_high = false;
        Ok(())
    }

    /// Current level of the reject line.
    pub fn reject_high(&self) -> bool {
        self.reject_high
    }

    /// Current level of the fault line.
    pub fn fault_high(&self) -> bool {
        self.fault_high
    }

    /// Raises or lowers the fault line (no pin write if it is already there).
    pub fn set_fault(&mut self, high: bool) -> Result<(), LineError> {
        drive(
            &mut self.fault,
            &mut self.fault_high,
            high,
            LineError::Fault,
        )
    }

    fn set_reject(&mut self, high: bool) -> Result<(), LineError> {
        drive(
            &mut self.reject,
            &mut self.reject_high,
            high,
            LineError::Reject,
        )
    }

    /// Applies one verdict in `mode` at `now`. Returns `true` when this activated the line (a
    /// pulse started or the level rose), `false` when the line was already active or the verdict
    /// is in distribution.
    pub fn verdict(&mut self, ood: bool, mode: RejectMode, now: Tick) -> Result<bool, LineError> {
        let was_high = self.reject_high;
        match (mode, ood) {
            (RejectMode::Pulse { ticks }, true) => {
                // A zero-length pulse would never be seen: at least one tick.
                self.pulse_end = Some(now.after(ticks.max(1)));
                self.set_reject(true)?;
            }
            // In pulse mode an in-distribution verdict leaves a running pulse alone.
            (RejectMode::Pulse { .. }, false) => {}
            (RejectMode::Level, ood) => self.set_reject(ood)?,
        }
        Ok(!was_high && self.reject_high)
    }

    /// Ends a reject pulse whose time is up.
    pub fn tick(&mut self, now: Tick) -> Result<(), LineError> {
        if let Some(end) = self.pulse_end
            && now.reached(end)
        {
            self.set_reject(false)?;
            self.pulse_end = None;
        }
        Ok(())
    }

    /// Drops the reject line and cancels any pulse: used when the controller stops acting on
    /// verdicts (the fault line then speaks for it).
    pub fn release_reject(&mut self) -> Result<(), LineError> {
        self.pulse_end = None;
        self.set_reject(false)
    }

    /// Gives the pins back.
    pub fn release(self) -> (R, F) {
        (self.reject, self.fault)
    }
}

/// Drives `pin` to `high` unless `level` says it is there already. The level is recorded only
/// once the pin took it, so after an error the next call writes the pin again.
fn drive<P: OutputPin>(
    pin: &mut P,
    level: &mut bool,
    high: bool,
    error: LineError,
) -> Result<(), LineError> {
    if *level != high {
        let result = if high { pin.set_high() } else { pin.set_low() };
        result.map_err(|_| error)?;
        *level = high;
    }
    Ok(())
}
