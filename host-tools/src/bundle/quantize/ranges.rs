//! Activation ranges from calibration frames: the float backbone runs with every tensor the
//! quantizer will turn into u8 codes as an extra output, and each frame widens the ranges.

use rayon::prelude::*;
use std::collections::HashMap;
use tract_onnx::pb::{ModelProto, ValueInfoProto};
use tract_onnx::prelude::*;

/// How a tensor's range is taken from the calibration frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RangeMethod {
    /// The smallest and largest value seen on any frame.
    Minmax,
    /// Per frame, the 0.01% and 99.99% quantiles (a few outlier pixels of one frame do not
    /// stretch the range); over frames, the widest of those.
    Percentile,
}

/// Share of each frame's values a percentile range leaves outside, at each end.
const OUTLIER_SHARE: f64 = 1e-4;

/// What calibration learned about one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Shape, batch of one.
    pub shape: Vec<usize>,
    /// Lowest value of the range.
    pub low: f32,
    /// Highest value of the range.
    pub high: f32,
}

impl Observed {
    fn widen(mut self, other: Observed) -> Observed {
        self.low = self.low.min(other.low);
        self.high = self.high.max(other.high);
        self
    }
}

/// Runs `backbone` (ONNX bytes) on every frame and returns the range of each named tensor.
/// `frames` are preprocessed inputs; frames are processed on all cores.
pub fn observe(
    backbone: &ModelProto,
    size: usize,
    tensors: &[String],
    frames: &[Vec<f32>],
    method: RangeMethod,
    progress: impl Fn() + Sync,
) -> TractResult<HashMap<String, Observed>> {
    let mut model = backbone.clone();
    let graph = model
        .graph
        .as_mut()
        .expect("a decoded bundle backbone has a graph");
    graph.output = tensors
        .iter()
        .map(|name| ValueInfoProto {
            name: name.clone(),
            ..Default::default()
        })
        .collect();
    let plan = tract_onnx::onnx()
        .model_for_proto_model(&model)?
        .with_input_fact(0, f32::fact([1, 3, size, size]).into())?
        .into_optimized()?
        .into_runnable()?;
    let per_frame: Vec<Vec<Observed>> = frames
        .par_iter()
        .map_init(
            || plan.spawn(),
            |state, frame| {
                let state = state.as_mut().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                let input = Tensor::from_shape(&[1, 3, size, size], frame)?;
                let outputs = state.run(tvec!(input.into()))?;
                let observed = outputs
                    .iter()
                    .map(|t| observe_one(t, method))
                    .collect::<TractResult<Vec<_>>>();
                progress();
                observed
            },
        )
        .collect::<TractResult<_>>()?;
    let mut ranges: Vec<Option<Observed>> = vec![None; tensors.len()];
    for frame in per_frame {
        for (range, seen) in ranges.iter_mut().zip(frame) {
            *range = Some(match range.take() {
                None => seen,
                Some(r) => r.widen(seen),
            });
        }
    }
    Ok(tensors
        .iter()
        .cloned()
        .zip(ranges.into_iter().flatten())
        .collect())
}

fn observe_one(t: &TValue, method: RangeMethod) -> TractResult<Observed> {
    let plain = t.try_as_plain_ram()?;
    let values = plain.as_slice::<f32>()?;
    if values.is_empty() {
        anyhow::bail!("an observed tensor is empty");
    }
    let (low, high) = match method {
        RangeMethod::Minmax => values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            }),
        RangeMethod::Percentile => {
            let mut sorted = values.to_vec();
            let last = sorted.len().saturating_sub(1);
            let k = ((last as f64) * OUTLIER_SHARE).round() as usize;
            let low = *sorted.select_nth_unstable_by(k, f32::total_cmp).1;
            let high = *sorted.select_nth_unstable_by(last - k, f32::total_cmp).1;
            (low, high)
        }
    };
    if !(low.is_finite() && high.is_finite()) {
        anyhow::bail!("a calibration frame gave non-finite activations");
    }
    Ok(Observed {
        shape: t.shape().to_vec(),
        low,
        high,
    })
}
