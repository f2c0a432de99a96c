//! Test support for the NAP workspace, shared by the crates' tests and the fuzz targets; never a
//! dependency of a library or binary.
//!
//! - [`data`]: the shared real data (models, photos, reference scores), found through one setting.
//! - [`peer`]: a stand-in sensor controller on TCP that records what a runtime sends.
//! - [`protocol`]: the invariants every byte stream through the frame decoder must keep.

pub mod data;
pub mod peer;
pub mod protocol;
