//! A depthwise 3x3 convolution with bias and clip.

use super::{Kernel, clip_bits, float_bits};
use nap_core::depthwise::{Clip, Depthwise, Geometry};
use std::fmt;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// A depthwise 3x3 convolution with bias and clip, run by `nap-core`'s kernel.
#[derive(Clone)]
pub struct DepthwiseOp {
    pub(super) geometry: Geometry,
    pub(super) weights: Vec<f32>,
    pub(super) bias: Vec<f32>,
    pub(super) clip: Clip,
    pub(super) output_shape: TVec<usize>,
    pub(super) kernel: Depthwise,
}

impl DepthwiseOp {
    /// The op for weights `[channels, 3, 3]` and one bias per channel, checked against
    /// `geometry` by the caller.
    pub fn new(
        geometry: Geometry,
        weights: Vec<f32>,
        bias: Vec<f32>,
        clip: Clip,
        output_shape: TVec<usize>,
    ) -> DepthwiseOp {
        DepthwiseOp {
            geometry,
            weights,
            bias,
            clip,
            output_shape,
            kernel: Depthwise::new(),
        }
    }
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

impl Kernel for DepthwiseOp {
    const NAME: &'static str = "NapDepthwise3x3";

    fn info(&self) -> Vec<String> {
        vec![format!("{:?}", self.geometry), format!("{:?}", self.clip)]
    }

    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn run(&self, input: &[f32], output: &mut [f32]) -> TractResult<()> {
        let mut scratch = vec![0.0; self.geometry.scratch_len()];
        self.kernel
            .run(
                &self.geometry,
                input,
                &self.weights,
                &self.bias,
                self.clip,
                &mut scratch,
                output,
            )
            .map_err(|e| anyhow!("depthwise 3x3: {e}"))
    }
}
