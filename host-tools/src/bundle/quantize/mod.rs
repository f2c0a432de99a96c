//! `napctl quantize`: post-training static quantization of a float bundle.
//!
//! The backbone's convolutions are found (`sites`); calibration frames give the range of every
//! activation that becomes u8 codes (`ranges`, coded by `codes`); the backbone graph is
//! rewritten into a form tract runs well (`rewrite`); the head's dense layers are stored as int8
//! rows (`neck` for those of a head graph). The result is compared with the float bundle frame by frame
//! (`compare`), so a user sees what quantization cost before flashing it.

mod codes;
mod compare;
mod neck;
mod program;
mod ranges;
mod rewrite;
mod sites;

pub use compare::{Agreement, compare};
pub use program::{LayerCounts, NoProgram, frame_quant};
pub use ranges::RangeMethod;

use crate::onnx::graph::Graph;
use crate::onnx::{self, OnnxError};
use nap_core::int8::Quant;
use nap_runtime::bundle::{ActivationStorage, Bundle, Precision};
use program::Plan;
use rewrite::{Int8Plan, Storage};
use sites::{activation_bounds, conv_sites, expand_folds};
use std::collections::HashMap;

/// The precisions `napctl quantize` produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The whole backbone in integers on nap-core's kernels (the integer program), u8 from the
    /// frame to the pre-pool tensor; a backbone they do not cover gets the int8-tract form.
    Int8,
    /// The int8 backbone as an ONNX model for tract: int8 pointwise convolutions on u8
    /// activations, float between them, u8 pre-pool tensor.
    Int8Tract,
    /// int8 storage only, dequantized at load: float arithmetic and results close to float.
    Int8Weights,
    /// f16 storage, widened at load: float arithmetic, results nearly equal to float.
    F16Weights,
}

impl Target {
    fn precision(self) -> Precision {
        match self {
            Target::Int8 | Target::Int8Tract => Precision::Int8,
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

/// A quantized bundle, and for the int8 target why it has no integer program when it has none.
#[derive(Debug)]
pub struct Quantized {
    /// The quantized bundle.
    pub bundle: Bundle,
    /// Why an int8 bundle has no integer program (its backbone then runs in tract only);
    /// `None` when it has one, or for the other targets.
    pub no_program: Option<NoProgram>,
}

/// Quantizes a float bundle. `frames` are preprocessed calibration inputs (only the int8
/// target runs them); `progress` is called once per frame. The int8 target also maps the
/// backbone to nap-core's integer kernels (the bundle's program); a backbone they do not cover
/// keeps only its tract int8 form, and the result says why.
pub fn quantize(
    bundle: &Bundle,
    frames: &[Vec<f32>],
    options: Options,
    progress: impl Fn() + Sync,
) -> Result<Quantized, QuantizeError> {
    let precision = bundle.manifest.backbone.precision;
    if precision.is_quantized() {
        return Err(QuantizeError::AlreadyQuantized(precision));
    }
    let mut model = onnx::decode(&bundle.backbone)?;
    // One index of the float graph (with one tract shape analysis) answers every question
    // about it; it must be gone before the rewrite changes the graph.
    let (sites, folds, output, output_clip, plan) = {
        let graph = Graph::new(&model)?;
        let plan = (options.target == Target::Int8).then(|| Plan::new(&graph));
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
        let clip = graph
            .producer(&output)
            .and_then(|i| activation_bounds(&graph, i))
            .filter(|(low, high)| low.is_finite() && high.is_finite());
        (sites, folds, output, clip, plan)
    };
    let mut out = bundle.clone();
    let mut observed = HashMap::new();
    let mut pre_pool = None;
    if matches!(options.target, Target::Int8 | Target::Int8Tract) {
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
        // The integer program's layer outputs come from the same calibration run.
        if let Some(Ok(plan)) = &plan {
            for t in plan.tensors() {
                if !tensors.iter().any(|x| x == t) {
                    tensors.push(t.to_string());
                }
            }
        }
        if !tensors.contains(&output) {
            tensors.push(output.clone());
        }
        let size = bundle.manifest.input.size as usize;
        observed = ranges::observe(&model, size, &tensors, frames, options.ranges, progress)
            .map_err(QuantizeError::Calibration)?;
        let seen = observed
            .get(&output)
            .cloned()
            .ok_or_else(|| QuantizeError::Graph("the pre-pool tensor was not observed".into()))?;
        // A ReLU6-style clip gives the pre-pool tensor's exact range, whatever the frames showed.
        let (low, high) = output_clip.unwrap_or((seen.low, seen.high));
        let q = Quant::covering(low, high).ok_or_else(|| {
            QuantizeError::Graph(format!("the pre-pool range [{low}, {high}] is not finite"))
        })?;
        out.manifest.pre_pool.storage = ActivationStorage::U8(q);
        pre_pool = Some(q);
    }
    out.manifest.backbone.precision = options.target.precision();
    out.quantize_head();
    if !out.neck.is_empty() {
        out.neck = neck::int8_rows(&out.neck).map_err(QuantizeError::Graph)?;
    }
    let mut no_program = None;
    if let (Some(plan), Some(pre_pool)) = (plan, pre_pool) {
        let program = plan.and_then(|plan| {
            let input = frame_quant(&bundle.manifest.input).ok_or_else(|| {
                NoProgram("the input normalization gives no finite frame range".into())
            })?;
            let size = bundle.manifest.input.size;
            plan.program(size, input, &observed, pre_pool, options.per_channel)
        });
        match program {
            Ok(program) => {
                // The program is the whole backbone: no tract model beside it.
                out.program = Some(program);
                out.backbone = Vec::new();
                return Ok(Quantized {
                    bundle: out,
                    no_program: None,
                });
            }
            Err(why) => no_program = Some(why),
        }
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
    Ok(Quantized {
        bundle: out,
        no_program,
    })
}
