//! Making bundles: a classifier ONNX cut into a float bundle ([`build_bundle`]), a float bundle
//! quantized ([`quantize`]), a bundle's scorer calibrated on image features ([`calibrate`]).

mod build;
pub mod calibrate;
pub mod quantize;

pub use build::{BuildError, BuildOptions, build_bundle};
