//! The backbone's ONNX graph in tract: read for one frame, decluttered, our kernels swapped in,
//! optimized.

use super::BackboneOptions;
use super::guard::guarded;
use super::ops::{DepthwiseOp, ExpandDepthwiseOp, NapOp, PointwiseOp};
use super::rewrite;
use tract_onnx::prelude::*;

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
    guarded("reading the backbone", || {
        tract_onnx::onnx()
            .model_for_read(&mut &*onnx)?
            .with_input_fact(0, f32::fact([1, 3, size, size]).into())?
            .into_typed()?
            .into_decluttered()
    })
}

/// The second half of [`optimized_model`]: our depthwise and pointwise kernels swapped in, then
/// tract's optimization.
pub fn optimize(mut model: TypedModel, options: BackboneOptions) -> TractResult<TypedModel> {
    rewrite::replace_convolutions(&mut model, options)?;
    guarded("optimizing the backbone", || model.into_optimized())
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
