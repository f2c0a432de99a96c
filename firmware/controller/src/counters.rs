//! What the controller received and did since boot.
//!
//! The first four counters travel to the runtime in
//! [`ControllerStatus`](nap_core::protocol::ControllerStatus); the rest are local diagnostics
//! (logged, readable by the board). All counters wrap at `u32::MAX` rather than saturate, like the
//! protocol's: the runtime looks at differences between two reports.

use nap_core::protocol::FrameError;

/// Counters since boot. Every field wraps at `u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Counters {
    /// Valid frames received (every message that passed CRC, version and payload checks).
    pub frames: u32,
    /// Verdicts received with `ood` set (duplicates not counted again).
    pub ood: u32,
    /// Frames dropped for a checksum mismatch.
    pub crc_errors: u32,
    /// Sequence numbers missed: the sum of all forward gaps.
    pub seq_gaps: u32,
    /// Frames dropped for any other damage: oversize, bad COBS, too short, bad payload.
    pub malformed: u32,
    /// Intact frames of another protocol version (a peer that speaks another version).
    pub version_errors: u32,
    /// Verdicts or heartbeats that repeated the previous sequence number: acknowledged, not acted
    /// on again.
    pub duplicates: u32,
    /// Sequence numbers that went backwards: taken as a runtime restart.
    pub restarts: u32,
    /// Valid messages meant for the runtime (`Ack`, `ControllerStatus`): a link wired in loopback.
    pub wrong_direction: u32,
    /// Receive errors the port reported (overrun, framing, parity).
    pub link_errors: u32,
    /// Outgoing messages lost: the outbox was full, or the port failed to write them.
    pub tx_dropped: u32,
    /// Times the reject line was activated (pulse started, or level raised).
    pub rejects: u32,
    /// Times the controller left the armed state (heartbeat loss, runtime fault).
    pub disarms: u32,
}

/// Adds one, wrapping.
pub(crate) fn bump(counter: &mut u32) {
    *counter = counter.wrapping_add(1);
}

impl Counters {
    /// Counts one damaged frame under the counter for its first failed check.
    pub fn count_error(&mut self, error: FrameError) {
        match error {
            FrameError::Crc => bump(&mut self.crc_errors),
            FrameError::Version(_) => bump(&mut self.version_errors),
            FrameError::Oversize
            | FrameError::Cobs
            | FrameError::TooShort
            | FrameError::Payload => bump(&mut self.malformed),
        }
    }

    /// All frames that were received damaged or foreign, whatever the reason.
    pub fn frame_errors(&self) -> u32 {
        self.crc_errors
            .wrapping_add(self.malformed)
            .wrapping_add(self.version_errors)
    }
}
