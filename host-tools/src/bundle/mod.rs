//! Making bundles: a classifier ONNX cut into a float bundle ([`build_bundle`]) with its input
//! settled ([`input`]), a float bundle quantized ([`quantize`]), a bundle's scorer calibrated on
//! image features ([`calibrate`]).

mod build;
pub mod calibrate;
pub mod input;
pub mod quantize;
pub mod vim;

pub use build::{BuildError, BuildOptions, Built, build_bundle};
pub use input::{InputRequest, Preset, ResolvedInput};
