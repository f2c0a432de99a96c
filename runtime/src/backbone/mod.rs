//! The backbone in tract: the bundle's ONNX graph (frame -> pre-pool tensor), typed, decluttered
//! and optimized once per detector.
//!
//! Between declutter and optimization, every depthwise 3x3 convolution and every pointwise (1x1)
//! convolution, each with the clip that follows it (MobileNet's ReLU6), is handed to `nap-core`'s
//! vectorized kernels. tract runs depthwise convolutions pixel by pixel on NCHW data (about a
//! third of MobileNetV2's frame time), and packs every pointwise convolution's input on every
//! frame and clips in a pass of its own; everything else stays tract's.
//!
//! - `rewrite`: finds the convolutions our kernels take and swaps them in;
//! - [`ops`]: the tract ops that run them, one file per op, one shape for their trait code.

pub mod ops;
mod rewrite;

use ops::{DepthwiseOp, ExpandDepthwiseOp, NapOp, PointwiseOp};
use tract_onnx::prelude::*;

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
}

impl Default for BackboneOptions {
    fn default() -> Self {
        BackboneOptions {
            own_depthwise: cfg!(target_arch = "x86_64"),
            own_pointwise: cfg!(target_arch = "x86_64"),
            integer: true,
        }
    }
}

/// Reads the ONNX backbone, fixes its input to one `3 x size x size` frame and optimizes it.
pub fn optimized_model(
    onnx: &[u8],
    size: usize,
    options: BackboneOptions,
) -> TractResult<TypedModel> {
    optimize(decluttered_model(onnx, size)?, options)
}

/// Reads the ONNX backbone for one `3 x size x size` frame, typed and decluttered: the first
/// half of [`optimized_model`], after which the ONNX bytes are no longer needed.
pub fn decluttered_model(onnx: &[u8], size: usize) -> TractResult<TypedModel> {
    tract_onnx::onnx()
        .model_for_read(&mut &*onnx)?
        .with_input_fact(0, f32::fact([1, 3, size, size]).into())?
        .into_typed()?
        .into_decluttered()
}

/// The second half of [`optimized_model`]: our depthwise and pointwise kernels swapped in, then
/// tract's optimization.
pub fn optimize(mut model: TypedModel, options: BackboneOptions) -> TractResult<TypedModel> {
    rewrite::replace_convolutions(&mut model, options)?;
    model.into_optimized()
}

/// Number of depthwise convolutions of an optimized model that run on `nap-core`'s kernel.
pub fn own_depthwise_count(model: &TypedModel) -> usize {
    model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<NapOp<DepthwiseOp>>() || n.op_is::<NapOp<ExpandDepthwiseOp>>())
        .count()
}

/// Number of pointwise convolutions of an optimized model that run on `nap-core`'s kernel.
pub fn own_pointwise_count(model: &TypedModel) -> usize {
    model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<NapOp<PointwiseOp>>() || n.op_is::<NapOp<ExpandDepthwiseOp>>())
        .count()
}
