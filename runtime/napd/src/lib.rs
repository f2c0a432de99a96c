//! `napd`, the on-device daemon: frames in, verdicts out to the sensor controller, the OOD line
//! and a log, in real time, around `nap-runtime`'s detector.
//!
//! Where a frame goes, in order:
//! - [`source`]: where frames enter (a folder, a raw stream, a V4L2 camera);
//! - [`pipeline`]: the source thread, the bounded [`queue`], the scoring workers and the ordered
//!   emission of each frame's outcome ([`reorder`]), with [`stats`] on the way;
//! - [`link`]: verdicts, heartbeats and [`status`] to the controller, its acks back;
//! - [`ood_line`]: the OOD output line; [`log`]: the JSON Lines log; [`drift`]: the drift
//!   alarm; [`flagged`]: OOD frames saved for review; [`telemetry`]: the fleet's view (MQTT).
//!
//! [`config`] turns flags and the TOML file into settings; [`serve`] is the daemon's life from
//! loading the bundle to the final status; [`DaemonError`] says what failed, with the status
//! code the controller hears.

pub mod config;
pub mod drift;
mod error;
pub mod flagged;
pub mod link;
pub mod log;
mod memory;
pub mod ood_line;
pub mod pipeline;
pub mod queue;
pub mod reorder;
mod scorer;
pub mod serve;
pub mod source;
pub mod stats;
pub mod status;
pub mod telemetry;

pub use config::{Options, Settings};
pub use error::DaemonError;
pub use scorer::DetectorScorer;
pub use serve::{Served, check, serve};
