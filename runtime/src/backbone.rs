//! The backbone in tract: the bundle's ONNX graph (frame -> pre-pool tensor), typed, decluttered
//! and optimized once per detector.
//!
//! Between declutter and optimization, every depthwise 3x3 convolution and every pointwise (1x1)
//! convolution, each with the clip that follows it (MobileNet's ReLU6), is handed to `nap-core`'s
//! vectorized kernels. tract runs depthwise convolutions pixel by pixel on NCHW data (about a
//! third of MobileNetV2's frame time), and packs every pointwise convolution's input on every
//! frame and clips in a pass of its own; everything else stays tract's.

use std::fmt;

use nap_core::depthwise::{Clip, Depthwise, Geometry, TAPS};
use nap_core::pointwise::{self, PANEL, Pointwise};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::DataFormat;

/// How the backbone's graph is prepared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackboneOptions {
    /// Run depthwise 3x3 convolutions with `nap-core`'s kernel (the default). Off, tract runs
    /// them itself: the two are compared by `napctl bench --tract-depthwise`.
    pub own_depthwise: bool,
    /// Run pointwise (1x1) convolutions with `nap-core`'s kernel where its strips suit the
    /// plane (see `Pointwise::suits`). The default on x86_64, where it was measured faster than
    /// tract's; on aarch64 tract's hand-written kernels stay the default until a board measures
    /// the two (`napctl bench --pointwise nap` against `--pointwise tract`).
    pub own_pointwise: bool,
}

impl Default for BackboneOptions {
    fn default() -> Self {
        BackboneOptions {
            own_depthwise: true,
            own_pointwise: cfg!(target_arch = "x86_64"),
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
    replace_convolutions(&mut model, options)?;
    model.into_optimized()
}

/// Number of depthwise convolutions of an optimized model that run on `nap-core`'s kernel.
pub fn own_depthwise_count(model: &TypedModel) -> usize {
    model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<DepthwiseOp>() || n.op_is::<ExpandDepthwiseOp>())
        .count()
}

/// Number of pointwise convolutions of an optimized model that run on `nap-core`'s kernel.
pub fn own_pointwise_count(model: &TypedModel) -> usize {
    model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<PointwiseOp>() || n.op_is::<ExpandDepthwiseOp>())
        .count()
}

/// Swaps each depthwise 3x3 and each pointwise convolution (with the min/max clip right after
/// it) for a [`DepthwiseOp`] or a [`PointwiseOp`], as `options` ask, and an expansion that alone
/// feeds a depthwise convolution together with it for an [`ExpandDepthwiseOp`]. Convolutions of
/// any other shape are left to tract.
fn replace_convolutions(model: &mut TypedModel, options: BackboneOptions) -> TractResult<()> {
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
            (Box::new(depthwise.op), depthwise.replaces)
        } else if options.own_pointwise
            && let Some(expand) = pointwise_plan(model, id, pointwise)?
        {
            match sole_successor(model, expand.replaces) {
                Some((next, 0))
                    if options.own_depthwise
                        && let Some(depthwise) = depthwise_plan(model, next.id)? =>
                {
                    fused.insert(next.id);
                    let op = ExpandDepthwiseOp {
                        expand: expand.op,
                        depthwise: depthwise.op,
                    };
                    (Box::new(op), depthwise.replaces)
                }
                _ => (Box::new(expand.op), expand.replaces),
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
        op: DepthwiseOp {
            geometry,
            weights,
            bias,
            clip,
            output_shape,
            kernel: Depthwise::new(),
        },
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
    let Some(einsum) = node.op_as::<EinSum>() else {
        return Ok(None);
    };
    if einsum.q_params.is_some()
        || einsum.operating_dt != f32::datum_type()
        || node.inputs.len() != 2
        || !FORMS.contains(&&*einsum.axes.to_string())
    {
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
        op: PointwiseOp {
            shape: pointwise_shape,
            packed,
            bias,
            clip,
            output_shape,
            kernel,
        },
        replaces,
    }))
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

/// A depthwise 3x3 convolution with bias and clip, run by `nap-core`'s kernel.
#[derive(Clone)]
pub struct DepthwiseOp {
    geometry: Geometry,
    weights: Vec<f32>,
    bias: Vec<f32>,
    clip: Clip,
    output_shape: TVec<usize>,
    kernel: Depthwise,
}

impl fmt::Debug for DepthwiseOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The weights would drown the model dumps.
        f.debug_struct("DepthwiseOp")
            .field("geometry", &self.geometry)
            .field("clip", &self.clip)
            .field("isa", &self.kernel.isa())
            .finish_non_exhaustive()
    }
}

/// Equal ops compute the same function: same geometry and kernel, bit-identical numbers (so the
/// relation is reflexive even for NaN weights, as tract's graph rewrites require).
impl PartialEq for DepthwiseOp {
    fn eq(&self, other: &Self) -> bool {
        self.geometry == other.geometry
            && self.kernel == other.kernel
            && self.output_shape == other.output_shape
            && clip_bits(self.clip) == clip_bits(other.clip)
            && float_bits(&self.weights) == float_bits(&other.weights)
            && float_bits(&self.bias) == float_bits(&other.bias)
    }
}

impl Eq for DepthwiseOp {}

impl Op for DepthwiseOp {
    fn name(&self) -> StaticName {
        "NapDepthwise3x3".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![
            format!("{:?}", self.geometry),
            format!("{:?}", self.clip),
        ])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for DepthwiseOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = input.try_as_plain_ram()?;
        // SAFETY: f32 has no invalid bit patterns, and `run` writes every output element
        // before anything reads the tensor (on error the tensor is dropped unread).
        let mut output = unsafe { Tensor::uninitialized::<f32>(&self.output_shape)? };
        let mut scratch = vec![0.0; self.geometry.scratch_len()];
        self.kernel
            .run(
                &self.geometry,
                input.as_slice::<f32>()?,
                &self.weights,
                &self.bias,
                self.clip,
                &mut scratch,
                output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
            )
            .map_err(|e| anyhow!("depthwise 3x3: {e}"))?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for DepthwiseOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(f32::fact(&*self.output_shape)))
    }

    as_op!();
}

/// A pointwise (1x1) convolution with bias and clip, run by `nap-core`'s kernel.
#[derive(Clone)]
pub struct PointwiseOp {
    shape: pointwise::Shape,
    /// The weights as `nap_core::pointwise::pack` lays them out.
    packed: Vec<f32>,
    bias: Vec<f32>,
    clip: Clip,
    output_shape: TVec<usize>,
    kernel: Pointwise,
}

impl fmt::Debug for PointwiseOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The weights would drown the model dumps.
        f.debug_struct("PointwiseOp")
            .field("shape", &self.shape)
            .field("clip", &self.clip)
            .field("isa", &self.kernel.isa())
            .finish_non_exhaustive()
    }
}

/// Equal ops compute the same function, bit for bit (see [`DepthwiseOp`]'s equality).
impl PartialEq for PointwiseOp {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape
            && self.kernel == other.kernel
            && self.output_shape == other.output_shape
            && clip_bits(self.clip) == clip_bits(other.clip)
            && float_bits(&self.packed) == float_bits(&other.packed)
            && float_bits(&self.bias) == float_bits(&other.bias)
    }
}

impl Eq for PointwiseOp {}

impl Op for PointwiseOp {
    fn name(&self) -> StaticName {
        "NapPointwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![
            format!("{:?}", self.shape),
            format!("{:?}", self.clip),
        ])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for PointwiseOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = input.try_as_plain_ram()?;
        // SAFETY: f32 has no invalid bit patterns, and `run` writes every output element
        // before anything reads the tensor (on error the tensor is dropped unread).
        let mut output = unsafe { Tensor::uninitialized::<f32>(&self.output_shape)? };
        self.kernel
            .run(
                &self.shape,
                &self.packed,
                &self.bias,
                self.clip,
                input.as_slice::<f32>()?,
                output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
            )
            .map_err(|e| anyhow!("pointwise convolution: {e}"))?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for PointwiseOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(f32::fact(&*self.output_shape)))
    }

    as_op!();
}

/// Bit patterns, so that equality is reflexive even for NaN.
fn float_bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn clip_bits(c: Clip) -> (u32, u32) {
    (c.min.to_bits(), c.max.to_bits())
}

/// An expansion (pointwise convolution) and the depthwise convolution it alone feeds, as in
/// every MobileNetV2 block: computed six expanded channels at a time, each group's planes
/// convolved depthwise while they are in cache, so the expanded tensor (the block's largest:
/// 96 x 112 x 112 floats, 4.8 MB, in the second block) is never whole in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpandDepthwiseOp {
    expand: PointwiseOp,
    depthwise: DepthwiseOp,
}

impl Op for ExpandDepthwiseOp {
    fn name(&self) -> StaticName {
        "NapExpandDepthwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = self.expand.info()?;
        info.extend(self.depthwise.info()?);
        Ok(info)
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for ExpandDepthwiseOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let (e, d) = (&self.expand, &self.depthwise);
        let (k, plane) = (e.shape.in_channels, e.shape.plane);
        let out_plane = d.geometry.out_height * d.geometry.out_width;
        // SAFETY: f32 has no invalid bit patterns, and every group below writes its channels'
        // planes before anything reads the tensor (on error the tensor is dropped unread).
        let mut output = unsafe { Tensor::uninitialized::<f32>(&d.output_shape)? };
        let mut plain = output.try_as_plain_ram_mut()?;
        let out = plain.as_slice_mut::<f32>()?;
        let mut expanded = vec![0.0; PANEL * plane];
        let group = Geometry {
            channels: PANEL,
            ..d.geometry
        };
        let mut scratch = vec![0.0; group.scratch_len()];
        let fail =
            |what: &str, e: &dyn fmt::Display| anyhow!("expansion + depthwise ({what}): {e}");
        for (p, packed) in e.packed.chunks_exact(PANEL * k).enumerate() {
            let first = p * PANEL;
            let rows = (e.shape.out_channels - first).min(PANEL);
            let channels = first..first + rows;
            let expanded = &mut expanded[..rows * plane];
            let shape = pointwise::Shape {
                out_channels: rows,
                ..e.shape
            };
            e.kernel
                .run(
                    &shape,
                    packed,
                    &e.bias[channels.clone()],
                    e.clip,
                    input,
                    expanded,
                )
                .map_err(|err| fail("expansion", &err))?;
            let geometry = Geometry {
                channels: rows,
                ..d.geometry
            };
            d.kernel
                .run(
                    &geometry,
                    expanded,
                    &d.weights[first * TAPS..(first + rows) * TAPS],
                    &d.bias[channels],
                    d.clip,
                    &mut scratch,
                    &mut out[first * out_plane..(first + rows) * out_plane],
                )
                .map_err(|err| fail("depthwise", &err))?;
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for ExpandDepthwiseOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(f32::fact(&*self.depthwise.output_shape)))
    }

    as_op!();
}
