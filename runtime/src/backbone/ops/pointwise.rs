//! A pointwise (1x1) convolution with bias and clip.

use super::{Kernel, clip_bits, float_bits};
use nap_core::depthwise::Clip;
use nap_core::pointwise::{self, Pointwise};
use std::fmt;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// A pointwise (1x1) convolution with bias and clip, run by `nap-core`'s kernel.
#[derive(Clone)]
pub struct PointwiseOp {
    pub(super) shape: pointwise::Shape,
    /// The weights as `nap_core::pointwise::pack` lays them out.
    pub(super) packed: Vec<f32>,
    pub(super) bias: Vec<f32>,
    pub(super) clip: Clip,
    pub(super) output_shape: TVec<usize>,
    pub(super) kernel: Pointwise,
}

impl PointwiseOp {
    /// The op for weights packed by `nap_core::pointwise::pack` and one bias per output channel.
    pub fn new(
        shape: pointwise::Shape,
        packed: Vec<f32>,
        bias: Vec<f32>,
        clip: Clip,
        output_shape: TVec<usize>,
        kernel: Pointwise,
    ) -> PointwiseOp {
        PointwiseOp {
            shape,
            packed,
            bias,
            clip,
            output_shape,
            kernel,
        }
    }
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

impl Kernel for PointwiseOp {
    const NAME: &'static str = "NapPointwise";

    fn info(&self) -> Vec<String> {
        vec![format!("{:?}", self.shape), format!("{:?}", self.clip)]
    }

    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn run(&self, input: &[f32], output: &mut [f32]) -> TractResult<()> {
        self.kernel
            .run(
                &self.shape,
                &self.packed,
                &self.bias,
                self.clip,
                input,
                output,
            )
            .map_err(|e| anyhow!("pointwise convolution: {e}"))
    }
}
