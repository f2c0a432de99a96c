//! Test support for the NAP workspace, shared by the crates' tests and the fuzz targets; never a
//! dependency of a library or binary.
//!
//! - `broker` (feature `mqtt`): a real mosquitto broker on loopback and a subscriber to it.
//! - [`cli`]: running a command-line tool as its user does, and checking what it said.
//! - [`http`]: a plain HTTP GET, for metrics pages and query APIs.
//! - [`data`]: the shared real data (models, photos, reference scores), found through one setting.
//! - `onnx` (feature `onnx`): tiny ONNX classifiers built in code with napctl's proto builder;
//!   `mobilenet` (same feature): the shared MobileNetV2 split into a bundle.
//! - [`peer`]: a stand-in sensor controller on TCP that records what a runtime sends.
//! - [`protocol`]: the invariants every byte stream through the frame decoder must keep.
//! - [`tools`]: real programs a test runs beside ours, skipped only off CI when missing.

#[cfg(feature = "mqtt")]
pub mod broker;
pub mod cli;
pub mod data;
pub mod http;
#[cfg(feature = "onnx")]
pub mod mobilenet;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod peer;
pub mod protocol;
pub mod tools;
