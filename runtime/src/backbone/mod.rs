//! The backbone in tract: the bundle's ONNX graph (frame -> pre-pool tensor), typed, decluttered
//! and optimized once per detector.
//!
//! Between declutter and optimization, every depthwise 3x3 convolution and every pointwise (1x1)
//! convolution, each with the clip that follows it (MobileNet's ReLU6), is handed to `nap-core`'s
//! vectorized kernels. tract runs depthwise convolutions pixel by pixel on NCHW data (about a
//! third of MobileNetV2's frame time), and packs every pointwise convolution's input on every
//! frame and clips in a pass of its own; everything else stays tract's.
//!
//! - `graph`: the ONNX graph read, decluttered and optimized;
//! - `guard`: tract's panics on malformed models turned into errors;
//! - `rewrite`: finds the convolutions our kernels take and swaps them in;
//! - [`ops`]: the tract ops that run them, one file per op, one shape for their trait code.
//!
//! Without the `tract` feature only [`BackboneOptions`] is left: such a build runs int8 bundles'
//! integer programs and nothing else.

#[cfg(feature = "tract")]
mod graph;
#[cfg(feature = "tract")]
mod guard;
#[cfg(feature = "tract")]
pub mod ops;
#[cfg(feature = "tract")]
mod rewrite;

#[cfg(feature = "tract")]
pub use graph::{
    decluttered_model, optimize, optimized_model, own_depthwise_count, own_pointwise_count,
};
#[cfg(feature = "tract")]
pub(crate) use guard::guarded;
#[cfg(feature = "tract")]
pub use guard::quiet_guarded_panics;
#[cfg(feature = "tract")]
pub(crate) use rewrite::float_product;

/// How the backbone's graph is prepared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackboneOptions {
    /// Run depthwise 3x3 convolutions with `nap-core`'s kernel. The default on x86_64; on
    /// aarch64 tract's take fewer instructions per frame (BENCHMARKS.md, "ARM cost"): the two
    /// are compared by `napctl bench --depthwise nap|tract`.
    pub own_depthwise: bool,
    /// Run pointwise (1x1) convolutions with `nap-core`'s kernel where its strips suit the
    /// plane (see `Pointwise::suits`). The default on x86_64, where it was measured faster than
    /// tract's; on aarch64 tract's hand-written kernels stay the default until a board measures
    /// the two (`napctl bench --pointwise nap` against `--pointwise tract`).
    pub own_pointwise: bool,
    /// Run an int8 bundle's integer program on `nap-core`'s integer kernels, without tract (the
    /// default). Off, or for a bundle without one, tract runs the bundle's backbone model.
    pub integer: bool,
    /// Run the integer program's expansions fused with the depthwise convolutions they feed,
    /// where their rows are wide enough ([`FUSE_MIN_WIDTH`](crate::integer::FUSE_MIN_WIDTH)):
    /// the default, measured faster on x86_64 and holding less memory. Off, every layer writes
    /// its whole tensor.
    pub fuse_expansions: bool,
}

impl Default for BackboneOptions {
    fn default() -> Self {
        BackboneOptions {
            own_depthwise: cfg!(target_arch = "x86_64"),
            own_pointwise: cfg!(target_arch = "x86_64"),
            integer: true,
            fuse_expansions: true,
        }
    }
}
