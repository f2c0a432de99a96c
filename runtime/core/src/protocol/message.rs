//! The messages exchanged between the runtime and the sensor controller.
//!
//! Every type here is serialized with postcard (see the byte layout in [`super`]). The order of
//! enum variants and of struct fields IS the wire format: append new variants at the end and bump
//! [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION) for any other change. The golden-frame test in
//! `tests/protocol.rs` fails when the encoding of an existing message changes.

use serde::{Deserialize, Serialize};

/// The runtime's decision for one camera frame (runtime -> controller).
///
/// `ood` is the decision the controller acts on; `score` and `threshold` travel along for logs and
/// counters (higher score = more in-distribution, `ood` is set when `score < threshold`, but the
/// runtime decides, so the controller never recomputes it from the floats).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Sequence number shared with [`Heartbeat`]: one wrapping counter, +1 per message.
    pub seq: u32,
    /// Capture time of the camera frame, in microseconds of the runtime's monotonic clock.
    pub timestamp_us: u64,
    /// The fused OOD score of the frame (higher = more familiar).
    pub score: f32,
    /// The calibrated threshold the score was compared against.
    pub threshold: f32,
    /// `true` when the frame is out of distribution: the controller rejects it.
    pub ood: bool,
}

/// "The runtime is alive" when no verdict is due (runtime -> controller).
///
/// The controller enters its safe state when neither a heartbeat nor a verdict arrives in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Sequence number shared with [`Verdict`]: one wrapping counter, +1 per message.
    pub seq: u32,
    /// Send time, in microseconds of the runtime's monotonic clock.
    pub timestamp_us: u64,
}

/// How well the runtime is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Health {
    /// Scoring normally.
    Ok,
    /// Still scoring, with reduced guarantees (e.g. frames dropped, camera late).
    Degraded,
    /// Not scoring: the controller should not trust verdicts until health recovers.
    Fault,
}

/// The runtime's health and the reason for it (runtime -> controller), sent on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuntimeStatus {
    /// Overall health.
    pub health: Health,
    /// Runtime-defined reason code for the health (0 = no particular reason).
    pub code: u16,
}

/// Acknowledges the [`Verdict`] or [`Heartbeat`] with this sequence number (controller -> runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ack {
    /// The acknowledged sequence number.
    pub seq: u32,
}

/// The controller's state machine state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ControllerState {
    /// Outputs in their safe position (after boot, on heartbeat loss, on runtime fault).
    Safe,
    /// Acting on verdicts.
    Armed,
    /// The controller itself failed; it stays safe until reset.
    Fault,
}

/// The controller's state and counters since boot (controller -> runtime).
///
/// Counters wrap at `u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ControllerStatus {
    /// Current state.
    pub state: ControllerState,
    /// Valid frames received.
    pub frames: u32,
    /// Verdicts received with `ood` set.
    pub ood: u32,
    /// Frames rejected for a checksum mismatch.
    pub crc_errors: u32,
    /// Sequence numbers missed (sum of the gaps seen).
    pub seq_gaps: u32,
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sent by the runtime, received by the controller.
    ToController,
    /// Sent by the controller, received by the runtime.
    ToRuntime,
}

/// Every message of the protocol, in both directions: one decoder serves both ends.
///
/// The variant index is the first payload byte on the wire (see [`super`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Tag 0, runtime -> controller.
    Verdict(Verdict),
    /// Tag 1, runtime -> controller.
    Heartbeat(Heartbeat),
    /// Tag 2, runtime -> controller.
    RuntimeStatus(RuntimeStatus),
    /// Tag 3, controller -> runtime.
    Ack(Ack),
    /// Tag 4, controller -> runtime.
    ControllerStatus(ControllerStatus),
}

impl Message {
    /// Which way this message travels. A receiver that gets its own direction's messages is most
    /// likely wired in loopback (TX tied to RX).
    pub const fn direction(&self) -> Direction {
        match self {
            Message::Verdict(_) | Message::Heartbeat(_) | Message::RuntimeStatus(_) => {
                Direction::ToController
            }
            Message::Ack(_) | Message::ControllerStatus(_) => Direction::ToRuntime,
        }
    }
}

macro_rules! impl_from {
    ($($t:ident),*) => {$(
        impl From<$t> for Message {
            fn from(m: $t) -> Self {
                Message::$t(m)
            }
        }
    )*};
}
impl_from!(Verdict, Heartbeat, RuntimeStatus, Ack, ControllerStatus);
