//! `napctl quantize`: post-training static quantization of a float bundle.
//!
//! The backbone's convolutions are found (`sites`); calibration frames give the range of every
//! activation that becomes u8 codes (`ranges`, coded by `codes`); the backbone graph is
//! rewritten into a form tract runs well (`rewrite`); the head is stored as int8 rows. The result is compared with the float bundle frame by frame
//! (`compare`), so a user sees what quantization cost before flashing it.

mod codes;
mod compare;
mod ranges;
mod rewrite;
mod sites;

pub use compare::{Agreement, compare};
pub use ranges::RangeMethod;

use crate::onnx::graph::Graph;
use crate::onnx::{self, OnnxError};
use nap_core::int8::Quant;
use nap_runtime::bundle::{ActivationStorage, Bundle, Precision};
use rewrite::{Int8Plan, Storage};
use sites::{clip_bounds, conv_sites, expand_folds};
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
        if sites.is_empty() {
            return Err(QuantizeError::Graph(
                "no convolution with constant float weights".into(),
            ));
        }
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
        let q = Quant::covering(low, high).ok_or_else(|| {
            QuantizeError::Graph(format!("the pre-pool range [{low}, {high}] is not finite"))
        })?;
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
