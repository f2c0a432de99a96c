//! `napctl quantize`: post-training static quantization of a float bundle.
//!
//! Calibration frames give the range of every activation that becomes u8 codes
//! ([`ranges`]); the backbone graph is rewritten into a form tract runs well ([`rewrite`]); the
//! head is stored as int8 rows. The result is compared with the float bundle frame by frame
//! ([`compare`]), so a user sees what quantization cost before flashing it.

mod compare;
mod ranges;
mod rewrite;

pub use compare::{Agreement, compare};
pub use ranges::RangeMethod;

use crate::onnx::graph::Graph;
use crate::onnx::{self, OnnxError};
use nap_runtime::bundle::{ActivationStorage, Bundle, Precision};
use rewrite::{ConvSite, ExpandFold, Int8Plan, Storage};
use std::collections::HashMap;

/// The precisions `napctl quantize` produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// int8 pointwise convolutions on u8 activations, u8 pre-pool tensor.
    Int8,
    /// int8 storage only, dequantized at load: float arithmetic and results close to float.
    Int8Weights,
    /// f16 storage, widened at load: float arithmetic, results nearly equal to float.
    F16Weights,
}

impl Target {
    fn precision(self) -> Precision {
        match self {
            Target::Int8 => Precision::Int8,
            Target::Int8Weights => Precision::Int8Weights,
            Target::F16Weights => Precision::F16Weights,
        }
    }
}

/// How to quantize.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// What to produce.
    pub target: Target,
    /// How activation ranges are taken from the calibration frames.
    pub ranges: RangeMethod,
    /// One weight scale per output channel (otherwise one per tensor).
    pub per_channel: bool,
}

/// Why a bundle could not be quantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// The input bundle is already quantized.
    #[error("the bundle is already quantized ({0}); quantize the float bundle `napctl split` made")]
    AlreadyQuantized(Precision),
    /// The backbone is not a graph the quantizer understands.
    #[error("backbone: {0}")]
    Onnx(#[from] OnnxError),
    /// Something in the backbone graph stops the rewrite.
    #[error("cannot quantize the backbone: {0}")]
    Graph(String),
    /// Running the float backbone on the calibration frames failed.
    #[error("calibration run: {0:#}")]
    Calibration(tract_onnx::prelude::TractError),
    /// The int8 target needs calibration frames.
    #[error("no calibration frames")]
    NoFrames,
}

/// Quantizes a float bundle. `frames` are preprocessed calibration inputs (only the int8
/// target runs them); `progress` is called once per frame.
pub fn quantize(
    bundle: &Bundle,
    frames: &[Vec<f32>],
    options: Options,
    progress: impl Fn() + Sync,
) -> Result<Bundle, QuantizeError> {
    let precision = bundle.manifest.backbone.precision;
    if precision.is_quantized() {
        return Err(QuantizeError::AlreadyQuantized(precision));
    }
    let mut model = onnx::decode(&bundle.backbone)?;
    // One index of the float graph (with one tract shape analysis) answers every question
    // about it; it must be gone before the rewrite changes the graph.
    let (sites, folds, output, output_clip) = {
        let graph = Graph::new(&model)?;
        let sites = conv_sites(&graph)?;
        let folds = expand_folds(&graph, &sites);
        let output = graph
            .g
            .output
            .first()
            .ok_or_else(|| QuantizeError::Graph("the backbone has no output".into()))?
            .name
            .clone();
        let clip = graph.producer(&output).and_then(|i| clip_bounds(&graph, i));
        (sites, folds, output, clip)
    };
    let mut out = bundle.clone();
    let mut observed = HashMap::new();
    let mut pre_pool = None;
    if options.target == Target::Int8 {
        if frames.is_empty() {
            return Err(QuantizeError::NoFrames);
        }
        let graph = model.graph.as_ref().expect("decode checked the graph");
        let mut tensors: Vec<String> = Vec::new();
        for site in sites.iter().filter(|s| s.pointwise && !s.stays_float()) {
            let x = &graph.node[site.node].input[0];
            if !tensors.contains(x) {
                tensors.push(x.clone());
            }
        }
        tensors.push(output.clone());
        let size = bundle.manifest.input.size as usize;
        observed = ranges::observe(&model, size, &tensors, frames, options.ranges, progress)
            .map_err(QuantizeError::Calibration)?;
        let seen = observed
            .remove(&output)
            .ok_or_else(|| QuantizeError::Graph("the pre-pool tensor was not observed".into()))?;
        // A ReLU6-style clip gives the pre-pool tensor's exact range, whatever the frames showed.
        let (low, high) = output_clip.unwrap_or((seen.low, seen.high));
        let q = rewrite::activation_quant(low, high);
        out.manifest.pre_pool.storage = ActivationStorage::U8(q);
        pre_pool = Some(q);
    }
    let plan = pre_pool.map(|pre_pool| Int8Plan {
        inputs: &observed,
        folds: &folds,
        pre_pool,
    });
    let storage = match options.target {
        Target::F16Weights => Storage::F16,
        _ => Storage::Int8 {
            per_channel: options.per_channel,
        },
    };
    rewrite::rewrite(&mut model, &sites, storage, plan.as_ref()).map_err(QuantizeError::Graph)?;
    out.backbone = prost::Message::encode_to_vec(&model);
    out.manifest.backbone.precision = options.target.precision();
    out.quantize_head();
    Ok(out)
}

/// Every convolution with constant float weights, and whether it is pointwise.
fn conv_sites(graph: &Graph) -> Result<Vec<ConvSite>, QuantizeError> {
    use crate::onnx::tensor::{attr_i, attr_ints, f32_values};
    let mut sites = Vec::new();
    for (i, node) in graph.g.node.iter().enumerate() {
        if node.op_type != "Conv" || !node.domain.is_empty() {
            continue;
        }
        let Some(w) = node.input.get(1).and_then(|w| graph.constant(w)) else {
            continue;
        };
        let weights = f32_values(&w, &node.input[1])?;
        if w.dims.len() != 4 || w.dims[0] <= 0 || weights.is_empty() {
            continue;
        }
        let bias = match node.input.get(2).filter(|b| !b.is_empty()) {
            None => None,
            Some(b) => match graph.constant(b) {
                Some(t) => Some(f32_values(&t, b)?),
                None => continue,
            },
        };
        let ones = |name: &str| attr_ints(node, name).is_none_or(|v| v.iter().all(|&x| x == 1));
        let zeros = attr_ints(node, "pads").is_none_or(|v| v.iter().all(|&x| x == 0));
        let pointwise = w.dims[2] == 1
            && w.dims[3] == 1
            && attr_i(node, "group", 1) == 1
            && ones("strides")
            && ones("dilations")
            && zeros;
        sites.push(ConvSite {
            node: i,
            weights,
            dims: w.dims.clone(),
            bias,
            pointwise,
            grouped: attr_i(node, "group", 1) != 1,
        });
    }
    if sites.is_empty() {
        return Err(QuantizeError::Graph(
            "no convolution with constant float weights".into(),
        ));
    }
    Ok(sites)
}

/// The expansion layers of the graph (see [`ExpandFold`]).
fn expand_folds(graph: &Graph, sites: &[ConvSite]) -> Vec<ExpandFold> {
    let only_use = |tensor: &str| match graph.consumers(tensor) {
        [one] if !graph.is_output(tensor) => Some(*one),
        _ => None,
    };
    let mut folds = Vec::new();
    for site in sites.iter().filter(|s| s.pointwise && !s.stays_float()) {
        let Some(clip) = only_use(&graph.node(site.node).output[0]) else {
            continue;
        };
        let Some((0.0, max)) = clip_bounds(graph, clip) else {
            continue;
        };
        let clipped = &graph.node(clip).output[0];
        let Some(depthwise) = only_use(clipped) else {
            continue;
        };
        let is_depthwise = sites
            .iter()
            .any(|s| s.node == depthwise && s.grouped && !s.stays_float());
        if is_depthwise && graph.node(depthwise).input[0] == *clipped {
            folds.push(ExpandFold {
                conv: site.node,
                clip,
                depthwise,
                max,
            });
        }
    }
    folds
}

/// The constant bounds of the Clip at node `i`, if it is one.
fn clip_bounds(graph: &Graph, i: usize) -> Option<(f32, f32)> {
    use crate::onnx::tensor::{attr, f32_values};
    let node = graph.node(i);
    if node.op_type != "Clip" {
        return None;
    }
    let bound = |i: usize, attr_name: &str| -> Option<f32> {
        match node.input.get(i).filter(|s| !s.is_empty()) {
            Some(name) => f32_values(&*graph.constant(name)?, name)
                .ok()?
                .first()
                .copied(),
            None => attr(node, attr_name).map(|a| a.f),
        }
    };
    Some((bound(1, "min")?, bound(2, "max")?))
}
