//! The runtime's health as the controller hears it: [`RuntimeStatus`] with a reason code.
//!
//! A controller acts on the health (it goes safe on any `Fault`); the code says why, for people
//! reading its log. Codes below 10 come with `Ok` or `Degraded`, codes from 10 with `Fault`.

use nap_core::protocol::{Health, RuntimeStatus};

/// Reason codes carried by [`RuntimeStatus::code`].
pub mod code {
    /// Scoring normally.
    pub const OK: u16 = 0;
    /// Frames were dropped in the last stats interval: the runtime is behind the camera.
    pub const FRAMES_DROPPED: u16 = 1;
    /// Frames were rejected (unreadable, malformed) in the last stats interval.
    pub const BAD_FRAMES: u16 = 2;
    /// The link came back after a loss; verdicts in between were not delivered.
    pub const LINK_RESTORED: u16 = 3;
    /// Loading the bundle: no verdicts yet.
    pub const STARTING: u16 = 4;
    /// The drift alarm is raised: the OOD rate is far above what calibration implies (the
    /// scene changed, the lens fogged, the camera turned).
    pub const DRIFT: u16 = 5;
    /// A live source lost its input (a camera rebooting, the network to it down) and napd is
    /// reconnecting: no frames until it is back.
    pub const SOURCE_LOST: u16 = 6;
    /// Stopping on request (SIGINT / SIGTERM): no more verdicts will come.
    pub const SHUTDOWN: u16 = 10;
    /// The source ended (end of folder or stream): no more verdicts will come.
    pub const END_OF_STREAM: u16 = 11;
    /// The bundle could not be read or loaded.
    pub const BUNDLE: u16 = 20;
    /// The backbone failed while scoring.
    pub const BACKBONE: u16 = 21;
    /// The frame source failed and cannot go on.
    pub const SOURCE: u16 = 22;
    /// The configuration is invalid.
    pub const CONFIG: u16 = 23;
    /// The bundle is not signed by a trusted key, or was changed after signing.
    pub const UNTRUSTED_BUNDLE: u16 = 24;
}

/// What a reason code means, in a few words (for logs and dashboards).
pub fn reason(code: u16) -> &'static str {
    match code {
        code::OK => "scoring",
        code::FRAMES_DROPPED => "frames dropped: behind the camera",
        code::BAD_FRAMES => "frames rejected",
        code::LINK_RESTORED => "controller link restored",
        code::STARTING => "loading the bundle",
        code::DRIFT => "drift alarm: OOD rate far above calibration",
        code::SOURCE_LOST => "source lost, reconnecting",
        code::SHUTDOWN => "stopped on request",
        code::END_OF_STREAM => "source ended",
        code::BUNDLE => "bundle could not be loaded",
        code::BACKBONE => "backbone failed",
        code::SOURCE => "source failed",
        code::CONFIG => "invalid configuration",
        code::UNTRUSTED_BUNDLE => "bundle not signed by a trusted key",
        _ => "unknown",
    }
}

/// Scoring normally.
pub const OK: RuntimeStatus = RuntimeStatus {
    health: Health::Ok,
    code: code::OK,
};

/// Loading: the status a link opens with.
pub const STARTING: RuntimeStatus = degraded(code::STARTING);

/// Still scoring, but something is wrong (`code` says what).
pub const fn degraded(code: u16) -> RuntimeStatus {
    RuntimeStatus {
        health: Health::Degraded,
        code,
    }
}

/// No verdict follows: the controller must go safe (`code` says why).
pub const fn fault(code: u16) -> RuntimeStatus {
    RuntimeStatus {
        health: Health::Fault,
        code,
    }
}
