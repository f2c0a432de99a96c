//! Test support for the NAP workspace, shared by the crates' tests and the fuzz targets; never a
//! dependency of a library or binary.
//!
//! - `broker` (feature `mqtt`): a real mosquitto broker on loopback and a subscriber to it.
//! - `bundle_bytes`, `encoded_frame` (feature `runtime`): the invariants the bundle reader and
//!   loader, and the image decoders with the preprocessing, keep under any input.
//! - [`cli`]: running a command-line tool as its user does, and checking what it said.
//! - [`http`]: a plain HTTP GET, for metrics pages and query APIs.
//! - [`controller`]: the invariants the sensor controller's state machine keeps under any input.
//! - `config_text`, `raw_stream` (feature `napd`): the invariants napd's config and spec
//!   parsers and its raw frame stream reader keep under any input.
//! - [`data`]: the shared real data (models, photos, reference scores), found through one setting.
//! - `onnx` (feature `onnx`): tiny ONNX classifiers built in code with napctl's proto builder;
//!   `mobilenet` (same feature): the shared MobileNetV2 split into a bundle.
//! - `heads` (feature `onnx`): small classifiers with torchvision's exported heads, random weights.
//! - [`fuzz`]: replaying a fuzz target's corpus as a plain test.
//! - [`peer`]: a stand-in sensor controller on TCP that records what a runtime sends.
//! - [`protocol`]: the invariants every byte stream through the frame decoder must keep.
//! - [`reference`]: independent arithmetic (f64 products, relative differences) to compare with.
//! - `soak` (feature `soak`): napd run for a long time under faults, and what it did.
//! - [`tools`]: real programs a test runs beside ours, skipped only off CI when missing.

#[cfg(feature = "mqtt")]
pub mod broker;
#[cfg(feature = "runtime")]
pub mod bundle_bytes;
pub mod cli;
#[cfg(feature = "napd")]
pub mod config_text;
pub mod controller;
pub mod data;
#[cfg(feature = "runtime")]
pub mod encoded_frame;
pub mod fuzz;
#[cfg(feature = "onnx")]
pub mod heads;
pub mod http;
#[cfg(feature = "onnx")]
pub mod mobilenet;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod peer;
pub mod protocol;
#[cfg(feature = "napd")]
pub mod raw_stream;
pub mod reference;
#[cfg(feature = "soak")]
pub mod soak;
pub mod tools;
