//! The on-device NAP runtime: what turns a bundle and camera frames into verdicts.
//!
//! - [`bundle`]: the single-file model format, read and checked at load.
//! - [`preprocess`]: a frame (JPEG, PNG or raw RGB8) to the backbone's input tensor.
//! - [`backbone`]: the bundle's backbone graph, optimized for tract, depthwise convolutions on
//!   `nap-core`'s kernel.
//! - [`detector`]: the backbone in tract, then `nap-core`'s reduction, head and scores.
//! - [`source`], [`link`], [`ood_line`], [`daemon`]: `napd`, the daemon around the detector:
//!   frame sources, the controller link, the OOD output line, and the real-time pipeline.
pub mod backbone;
pub mod bundle;
pub mod daemon;
pub mod detector;
pub mod link;
pub mod ood_line;
pub mod preprocess;
pub mod source;
