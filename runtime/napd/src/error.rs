//! What stops the daemon, each with the status code the controller hears.

use crate::status::{self, code};
use nap_core::protocol::RuntimeStatus;

/// A failure that ends the daemon (or keeps it from starting). The message is complete as it
/// stands: it goes to stderr, the log's `final` object and the exit report unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is invalid (a setting, the log, the OOD line).
    #[error("{0}")]
    Config(String),
    /// The bundle could not be read or loaded.
    #[error("{0}")]
    Bundle(String),
    /// The bundle is not signed by a trusted key, or was changed after signing.
    #[error("{0}")]
    Untrusted(String),
    /// The backbone failed while scoring: nothing more will score.
    #[error("{0}")]
    Backbone(String),
    /// The frame source failed and cannot go on.
    #[error("{0}")]
    Source(String),
}

impl DaemonError {
    /// The reason code of the fault status this failure sends.
    pub fn code(&self) -> u16 {
        match self {
            DaemonError::Config(_) => code::CONFIG,
            DaemonError::Bundle(_) => code::BUNDLE,
            DaemonError::Untrusted(_) => code::UNTRUSTED_BUNDLE,
            DaemonError::Backbone(_) => code::BACKBONE,
            DaemonError::Source(_) => code::SOURCE,
        }
    }

    /// The fault status for the controller.
    pub fn status(&self) -> RuntimeStatus {
        status::fault(self.code())
    }
}
