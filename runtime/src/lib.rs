//! The on-device NAP runtime: what turns a bundle and camera frames into verdicts.
//!
//! - [`bundle`]: the single-file model format, read and checked at load.
//! - [`preprocess`]: a frame (JPEG, PNG or raw RGB8) to the backbone's input tensor.
//! - [`detector`]: the backbone in tract, then `nap-core`'s reduction, head and scores.
pub mod bundle;
pub mod detector;
pub mod preprocess;
