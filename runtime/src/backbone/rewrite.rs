//! Finding the convolutions `nap-core`'s kernels take, and swapping them into the graph.
//!
//! Runs between tract's declutter and its optimization, on the typed graph: by then ReLU6 is a
//! Max and a Min against constants, and a pointwise convolution a matrix product (`EinSum`) and a
//! bias `Add`.

use super::BackboneOptions;
use super::ops::{DepthwiseOp, ExpandDepthwiseOp, NapOp, PointwiseOp};
use nap_core::depthwise::{Clip, Geometry, TAPS};
use nap_core::pointwise::{self, Pointwise};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::DataFormat;

/// Swaps each depthwise 3x3 and each pointwise convolution (with the min/max clip right after
/// it) for a [`DepthwiseOp`] or a [`PointwiseOp`], as `options` ask, and an expansion that alone
/// feeds a depthwise convolution together with it for an [`ExpandDepthwiseOp`]. Convolutions of
/// any other shape are left to tract.
pub(super) fn replace_convolutions(
    model: &mut TypedModel,
    options: BackboneOptions,
) -> TractResult<()> {
    let pointwise = Pointwise::new();
    // Depthwise convolutions already taken into a fused op: their nodes are dead now.
    let mut fused = std::collections::HashSet::new();
    for id in model.eval_order()? {
        if fused.contains(&id) {
            continue;
        }
        let (op, replaces): (Box<dyn TypedOp>, OutletId) = if options.own_depthwise
            && let Some(depthwise) = depthwise_plan(model, id)?
        {
            (Box::new(NapOp(depthwise.op)), depthwise.replaces)
        } else if options.own_pointwise
            && let Some(expand) = pointwise_plan(model, id, pointwise)?
        {
            match sole_successor(model, expand.replaces) {
                Some((next, 0))
                    if options.own_depthwise
                        && let Some(depthwise) = depthwise_plan(model, next.id)? =>
                {
                    fused.insert(next.id);
                    let op = ExpandDepthwiseOp::new(expand.op, depthwise.op);
                    (Box::new(NapOp(op)), depthwise.replaces)
                }
                _ => (Box::new(NapOp(expand.op)), expand.replaces),
            }
        } else {
            continue;
        };
        let node = model.node(id);
        let mut patch = TypedModelPatch::new(format!("nap kernel {}", node.name));
        let input = patch.tap_model(model, node.inputs[0])?;
        let wire = patch.wire_node(&node.name, op, &[input])?;
        patch.shunt_outside(model, replaces, wire[0])?;
        patch.apply(model)?;
    }
    Ok(())
}

/// A convolution's replacement.
struct KernelPlan<Op> {
    op: Op,
    /// The outlet the new op's output stands in for: the conv's, or its clip's.
    replaces: OutletId,
}

/// The replacement for node `id`, if it is a float depthwise 3x3 conv on one NCHW frame with
/// constant weights and bias.
fn depthwise_plan(model: &TypedModel, id: usize) -> TractResult<Option<KernelPlan<DepthwiseOp>>> {
    let node = model.node(id);
    let Some(conv) = node.op_as::<Conv>() else {
        return Ok(None);
    };
    let spec = &conv.pool_spec;
    let channels = spec.input_channels;
    let input = model.outlet_fact(node.inputs[0])?;
    let unit = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&d| d == 1));
    let stride = match spec.strides.as_deref() {
        None => 1,
        Some(&[a, b]) if a == b => a,
        _ => return Ok(None),
    };
    if conv.q_params.is_some()
        || input.datum_type != f32::datum_type()
        || conv.group != channels
        || spec.output_channels != channels
        || spec.kernel_shape.as_slice() != [3, 3]
        || !unit(&spec.dilations)
        || !(stride == 1 || stride == 2)
        || conv.kernel_fmt != KernelFormat::OIHW
        || !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
    {
        return Ok(None);
    }
    let Some(shape) = input.shape.as_concrete() else {
        return Ok(None);
    };
    let data = spec.data_format.shape(shape.to_vec())?;
    if data.n().is_some_and(|&n| n != 1) || *data.c() != channels {
        return Ok(None);
    }
    let (in_height, in_width) = (data.hw_dims()[0], data.hw_dims()[1]);
    let padded = spec
        .padding
        .compute(&[in_height, in_width], &[3, 3], &[1, 1], &[stride, stride]);
    let (Some(weights), Some(bias)) = (
        konst_f32(model, node.inputs[1])?,
        konst_f32(model, node.inputs[2])?,
    ) else {
        return Ok(None);
    };
    let bias = match bias.len() {
        1 => vec![bias[0]; channels],
        n if n == channels => bias,
        _ => return Ok(None),
    };
    let geometry = Geometry {
        channels,
        in_height,
        in_width,
        stride,
        pad_top: padded[0].pad_before,
        pad_left: padded[1].pad_before,
        out_height: padded[0].convoluted,
        out_width: padded[1].convoluted,
    };
    if weights.len() != channels * TAPS
        || geometry
            .check(shape.iter().product(), weights.len(), channels, {
                channels * geometry.out_height * geometry.out_width
            })
            .is_err()
    {
        return Ok(None);
    }
    let mut output_shape: TVec<usize> = shape.into();
    let rank = output_shape.len();
    output_shape[rank - 2] = geometry.out_height;
    output_shape[rank - 1] = geometry.out_width;
    let (clip, replaces) = following_clip(model, id)?;
    Ok(Some(KernelPlan {
        op: DepthwiseOp::new(geometry, weights, bias, clip, output_shape),
        replaces,
    }))
}

/// The replacement for node `id`, if it is a float pointwise convolution on one frame with
/// constant weights (and bias). tract's declutter has turned each one into a matrix product
/// over the channel axis, `EinSum IHW,OI->OHW` (`NIHW` with a batch of one), then an `Add` of
/// an `[O, 1, 1]` bias.
fn pointwise_plan(
    model: &TypedModel,
    id: usize,
    kernel: Pointwise,
) -> TractResult<Option<KernelPlan<PointwiseOp>>> {
    const FORMS: [&str; 4] = [
        "IHW,OI->OHW",
        "NIHW,OI->OHW",
        "IHW,OI->NOHW",
        "NIHW,OI->NOHW",
    ];
    let node = model.node(id);
    if float_product(node).is_none_or(|e| !FORMS.contains(&&*e.axes.to_string())) {
        return Ok(None);
    }
    let input = model.outlet_fact(node.inputs[0])?;
    let output = model.outlet_fact(OutletId::new(id, 0))?;
    let (Some(shape), Some(output_shape), Some(weights)) = (
        input.shape.as_concrete(),
        output.shape.as_concrete(),
        konst_f32(model, node.inputs[1])?,
    ) else {
        return Ok(None);
    };
    let (in_channels, plane) = match *shape {
        [k, h, w] | [1, k, h, w] => (k, h * w),
        _ => return Ok(None),
    };
    if input.datum_type != f32::datum_type() || in_channels == 0 {
        return Ok(None);
    }
    let out_channels = weights.len() / in_channels;
    let output_shape: TVec<usize> = output_shape.into();
    if out_channels == 0
        || output_shape.iter().product::<usize>() != out_channels * plane
        || !kernel.suits(plane)
    {
        return Ok(None);
    }
    let pointwise_shape = pointwise::Shape {
        out_channels,
        in_channels,
        plane,
    };
    let Some(packed_len) = pointwise_shape.packed_len() else {
        return Ok(None);
    };
    let mut packed = vec![0.0; packed_len];
    if pointwise::pack(&pointwise_shape, &weights, &mut packed).is_err() {
        return Ok(None);
    }
    // The bias, when the only consumer is an Add of one constant per output channel.
    let (bias, bias_node) = match sole_successor(model, OutletId::new(id, 0)) {
        Some((add, slot))
            if add
                .op_as::<TypedBinOp>()
                .is_some_and(|b| b.0.name() == "Add") =>
        {
            let other = add.inputs[1 - slot];
            let per_channel = matches!(
                model.outlet_fact(other)?.shape.as_concrete(),
                Some(&[o, 1, 1] | &[1, o, 1, 1]) if o == out_channels
            );
            match konst_f32(model, other)? {
                Some(bias) if per_channel => (bias, Some(add.id)),
                _ => (vec![0.0; out_channels], None),
            }
        }
        _ => (vec![0.0; out_channels], None),
    };
    let (clip, replaces) = following_clip(model, bias_node.unwrap_or(id))?;
    if model.outlet_fact(replaces)?.shape.as_concrete() != Some(&output_shape[..]) {
        return Ok(None);
    }
    Ok(Some(KernelPlan {
        op: PointwiseOp::new(pointwise_shape, packed, bias, clip, output_shape, kernel),
        replaces,
    }))
}

/// The node's op when it is a float matrix product of two inputs (tract's `EinSum`, not a
/// quantized one): what a Gemm, a MatMul or a 1x1 convolution becomes in declutter.
pub(crate) fn float_product(node: &TypedNode) -> Option<&EinSum> {
    node.op_as::<EinSum>().filter(|e| {
        e.q_params.is_none() && e.operating_dt == f32::datum_type() && node.inputs.len() == 2
    })
}

/// The values of a constant f32 outlet.
fn konst_f32(model: &TypedModel, outlet: OutletId) -> TractResult<Option<Vec<f32>>> {
    match &model.outlet_fact(outlet)?.konst {
        Some(k) if k.datum_type() == f32::datum_type() => {
            Ok(Some(k.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()))
        }
        _ => Ok(None),
    }
}

/// The node that alone consumes `outlet`, with the input slot it reads it on; `None` when the
/// outlet is a model output or feeds several nodes.
fn sole_successor(model: &TypedModel, outlet: OutletId) -> Option<(&TypedNode, usize)> {
    let successors = model.outlet_successors(outlet);
    let outputs = model.output_outlets().ok()?;
    match successors {
        [only] if !outputs.contains(&outlet) => Some((model.node(only.node), only.slot)),
        _ => None,
    }
}

/// The min/max clip nodes that only consume node `id`'s output (ReLU6 is declutterd into a Max
/// then a Min against constants), folded into one [`Clip`], and the outlet where they end.
fn following_clip(model: &TypedModel, id: usize) -> TractResult<(Clip, OutletId)> {
    let mut clip = Clip::NONE;
    let mut end = OutletId::new(id, 0);
    for _ in 0..2 {
        let Some((next, slot)) = sole_successor(model, end) else {
            break;
        };
        let Some(bin) = next.op_as::<TypedBinOp>() else {
            break;
        };
        let other = next.inputs[1 - slot];
        let Some(bound) = model.outlet_fact(other)?.konst.clone() else {
            break;
        };
        if bound.len() != 1 || bound.datum_type() != f32::datum_type() {
            break;
        }
        let bound = bound.try_as_plain_ram()?.as_slice::<f32>()?[0];
        match bin.0.name() {
            "Max" if !bound.is_nan() => clip.min = clip.min.max(bound),
            "Min" if !bound.is_nan() => clip.max = clip.max.min(bound),
            _ => break,
        }
        if clip.min > clip.max {
            // A clip to an empty range: leave it to tract rather than invent a value.
            return Ok((Clip::NONE, OutletId::new(id, 0)));
        }
        end = OutletId::new(next.id, 0);
    }
    Ok((clip, end))
}
