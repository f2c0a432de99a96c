//! The sensor controller's logic: the Cortex-M end of the runtime's link, with no operating system,
//! no allocator and no hardware timer of its own.
//!
//! The runtime sends [`Verdict`](nap_core::protocol::Verdict)s, heartbeats and status over a UART;
//! this crate turns those bytes into actions on two output lines and answers with acknowledgements
//! and its own status. It is written against traits only (embedded-io for the link, embedded-hal
//! for the lines) and takes the time as a tick count from the caller, so the same code runs on any
//! board and, deterministically, in host tests.
//!
//! - [`link`]: bytes in and out through an embedded-io port, bounded per poll.
//! - [`controller`]: the state machine: what each message and each silence does.
//! - [`lines`]: the reject line (pulse or level) and the fault line, through `OutputPin`.
//! - [`sequence`]: sequence-number checking (gaps, duplicates, restarts).
//! - [`counters`]: what was received and what was done since boot.
//! - [`config`], [`time`]: timeouts and pulse lengths in ticks.
//!
//! Frame decoding and encoding are `nap_core::protocol`'s: the firmware and the runtime share one
//! implementation of the wire format.
#![no_std]
#![warn(missing_docs)]

#[macro_use]
mod log;

pub mod config;
pub mod controller;
pub mod counters;
pub mod lines;
pub mod link;
pub mod sequence;
pub mod time;

pub use config::{Config, RejectMode};
pub use controller::Controller;
pub use counters::Counters;
pub use lines::{LineError, Lines};
pub use link::Link;
pub use time::Tick;
