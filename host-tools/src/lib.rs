//! Host-side tooling for the NAP runtime: everything `napctl` does, as a library.
//!
//! - [`onnx`]: find the pre-pool tensor and head of a classifier ONNX, and cut it.
//! - [`bundle`]: make bundles: build one from a cut model, quantize it, calibrate its scorer.
//! - [`images`] and [`score`]: score image folders with a bundle, on all cores.
//! - [`bench`]: per-stage timing of a bundle.
//! - [`eval`]: per-image features (cached), every method's FPR95, AUROC and AUPR against OOD
//!   sets, pseudo-OOD sets and figures.
//! - [`review`]: a device's captured OOD frames as one HTML page.
//! - [`fleet`]: what the devices publish to a broker, one row per device.

pub mod bench;
pub mod bundle;
pub mod eval;
pub mod fleet;
pub mod images;
pub mod onnx;
pub mod review;
pub mod score;
