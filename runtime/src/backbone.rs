//! The backbone in tract: the bundle's ONNX graph (frame -> pre-pool tensor), typed, decluttered
//! and optimized once per detector.
//!
//! Between declutter and optimization, every depthwise 3x3 convolution (and the clip that follows
//! it, MobileNet's ReLU6) is handed to `nap-core`'s vectorized kernel. tract runs those
//! convolutions pixel by pixel on NCHW data, and they took about a third of MobileNetV2's frame
//! time; everything else stays tract's.

use std::fmt;

use nap_core::depthwise::{Clip, Depthwise, Geometry, TAPS};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// How the backbone's graph is prepared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackboneOptions {
    /// Run depthwise 3x3 convolutions with `nap-core`'s kernel (the default). Off, tract runs
    /// them itself: the two are compared by `napctl bench --tract-depthwise`.
    pub own_depthwise: bool,
}

impl Default for BackboneOptions {
    fn default() -> Self {
        BackboneOptions {
            own_depthwise: true,
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

/// The second half of [`optimized_model`]: our depthwise kernel swapped in, then tract's
/// optimization.
pub fn optimize(mut model: TypedModel, options: BackboneOptions) -> TractResult<TypedModel> {
    if options.own_depthwise {
        replace_depthwise(&mut model)?;
    }
    model.into_optimized()
}

/// Number of depthwise convolutions of an optimized model that run on `nap-core`'s kernel.
pub fn own_depthwise_count(model: &TypedModel) -> usize {
    model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<DepthwiseOp>())
        .count()
}

/// Swaps each depthwise 3x3 convolution (with the min/max clip right after it) for a
/// [`DepthwiseOp`]. Convolutions of any other shape are left to tract.
fn replace_depthwise(model: &mut TypedModel) -> TractResult<()> {
    for id in model.eval_order()? {
        let Some(plan) = depthwise_plan(model, id)? else {
            continue;
        };
        let node = model.node(id);
        let mut patch = TypedModelPatch::new(format!("nap depthwise {}", node.name));
        let input = patch.tap_model(model, node.inputs[0])?;
        let wire = patch.wire_node(&node.name, plan.op, &[input])?;
        patch.shunt_outside(model, plan.replaces, wire[0])?;
        patch.apply(model)?;
    }
    Ok(())
}

struct DepthwisePlan {
    op: DepthwiseOp,
    /// The outlet the new op's output stands in for: the conv's, or its clip's.
    replaces: OutletId,
}

/// The replacement for node `id`, if it is a float depthwise 3x3 conv on one NCHW frame with
/// constant weights and bias.
fn depthwise_plan(model: &TypedModel, id: usize) -> TractResult<Option<DepthwisePlan>> {
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
    let konst = |i: usize| model.outlet_fact(node.inputs[i]).map(|f| f.konst.clone());
    let (Some(kernel), Some(bias)) = (konst(1)?, konst(2)?) else {
        return Ok(None);
    };
    if kernel.datum_type() != f32::datum_type() || bias.datum_type() != f32::datum_type() {
        return Ok(None);
    }
    let weights = kernel.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
    let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
    let bias = match bias.len() {
        1 => vec![bias[0]; channels],
        n if n == channels => bias.to_vec(),
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
    Ok(Some(DepthwisePlan {
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

/// The min/max clip nodes that only consume node `id`'s output (ReLU6 is declutterd into a Max
/// then a Min against constants), folded into one [`Clip`], and the outlet where they end.
fn following_clip(model: &TypedModel, id: usize) -> TractResult<(Clip, OutletId)> {
    let mut clip = Clip::NONE;
    let mut end = OutletId::new(id, 0);
    let outputs = model.output_outlets()?;
    for _ in 0..2 {
        let successors = &model.outlet_successors(end);
        if outputs.contains(&end) || successors.len() != 1 {
            break;
        }
        let next = model.node(successors[0].node);
        let Some(bin) = next.op_as::<TypedBinOp>() else {
            break;
        };
        let other = next.inputs[1 - successors[0].slot];
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
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let clip = |c: Clip| (c.min.to_bits(), c.max.to_bits());
        self.geometry == other.geometry
            && self.kernel == other.kernel
            && self.output_shape == other.output_shape
            && clip(self.clip) == clip(other.clip)
            && bits(&self.weights) == bits(&other.weights)
            && bits(&self.bias) == bits(&other.bias)
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
