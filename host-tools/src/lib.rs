//! Host-side tooling for the NAP runtime: everything `napctl` does, as a library.
//!
//! - [`onnx`]: find the pre-pool tensor and head of a classifier ONNX, and cut it.
//! - [`bundle_build`]: a cut model plus input and scorer settings become a bundle.
//! - [`images`] and [`score`]: score image folders with a bundle, on all cores.
//! - [`bench`]: per-stage timing of a bundle.
//! - [`metrics`]: FPR95 in both conventions, AUROC, AUPR.
//! - [`cache`], [`extract`] and [`corrupt`]: per-image features, cached; pseudo-OOD copies.
//! - [`eval`], [`calibrate`] and [`plots`]: the paper's tables, a calibrated bundle, figures.

pub mod bench;
pub mod bundle_build;
pub mod cache;
pub mod calibrate;
pub mod corrupt;
pub mod eval;
pub mod extract;
pub mod images;
pub mod metrics;
pub mod onnx;
pub mod plots;
pub mod quantize;
pub mod score;
