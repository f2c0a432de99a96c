//! An expansion (1x1 convolution) fused with the depthwise 3x3 convolution it feeds, as in
//! MobileNetV2's inverted residual blocks: the expanded tensor, the block's largest (six times
//! its input), never exists whole. Each input row the depthwise windows read is expanded
//! straight into the depthwise kernel's scratch ring and read back while it is still in the
//! nearest cache, and the backbone keeps no buffer for it.
//!
//! The result is, byte for byte, [`Pointwise::run`] then [`Depthwise::run`] with the expansion's
//! output zero point as the depthwise input's: the same kernels on the same codes, in another
//! order. On [`Isa::Scalar`](crate::isa::Isa) the depthwise reads the ring with the reference's
//! arithmetic.

use super::depthwise::{self, Depthwise, DepthwiseError, Geometry, Packed, scalar};
use super::pointwise::{Pointwise, PointwiseError, Shape};
use super::{OutputStage, stride};

/// The expansion's packed layer, as [`Pointwise::pack`] made it for the [`Pointwise`] that
/// runs it; `shape.pixels` is the input tensor's (the depthwise input's) pixel count.
#[derive(Clone, Copy, Debug)]
pub struct Expansion<'a> {
    /// The expansion's sizes over the whole input tensor.
    pub shape: Shape,
    /// Packed weights.
    pub weights: &'a [i8],
    /// Packed bias, requantization and header.
    pub params: &'a [i32],
}

/// Why a fused expansion and depthwise convolution was refused, or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpandDepthwiseError {
    /// The expansion's packed layer or input (see [`PointwiseError`]).
    Pointwise(PointwiseError),
    /// The depthwise layer, scratch or output (see [`DepthwiseError`]).
    Depthwise(DepthwiseError),
    /// The expansion's output channels or pixels are not the depthwise input's.
    Mismatch,
}

impl core::fmt::Display for ExpandDepthwiseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ExpandDepthwiseError::Pointwise(e) => write!(f, "fused expansion: {e}"),
            ExpandDepthwiseError::Depthwise(e) => write!(f, "fused expansion: {e}"),
            ExpandDepthwiseError::Mismatch => f.write_str(
                "fused expansion: the expansion's output is not the depthwise convolution's input",
            ),
        }
    }
}

impl core::error::Error for ExpandDepthwiseError {}

/// Runs an expansion and its depthwise convolution together, with one implementation of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExpandDepthwise {
    /// Runs the expansion; the [`Expansion`] must be packed for it.
    pub pointwise: Pointwise,
    /// Runs the depthwise convolution.
    pub depthwise: Depthwise,
}

impl ExpandDepthwise {
    /// `output = depthwise(expansion(input))`: `input` NHWC with `stride(K)` bytes per pixel,
    /// `scratch` at least [`scratch_len`](super::depthwise::scratch_len)`(g)` bytes, `output`
    /// as [`Depthwise::run`] wants it. The depthwise input's zero point is the expansion's
    /// output zero point.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        expansion: &Expansion<'_>,
        g: &Geometry,
        packed: &Packed<'_>,
        stage: OutputStage,
        input: &[u8],
        scratch: &mut [u8],
        output: &mut [u8],
    ) -> Result<(), ExpandDepthwiseError> {
        use ExpandDepthwiseError::{Depthwise as Dw, Mismatch, Pointwise as Pw};
        let shape = expansion.shape;
        let header = self
            .pointwise
            .header(&shape, expansion.weights, expansion.params)
            .map_err(Pw)?;
        if Some(input.len()) != shape.input_len() {
            return Err(Pw(PointwiseError::BufferLength));
        }
        if shape.out_channels != g.channels
            || Some(shape.pixels) != g.in_height.checked_mul(g.in_width)
        {
            return Err(Mismatch);
        }
        let expanded = shape.output_len().ok_or(Pw(PointwiseError::Shape))?;
        Depthwise::check(g, packed, stage, expanded, scratch.len(), output.len()).map_err(Dw)?;
        let row = self.depthwise.row_fn().unwrap_or(scalar::row);
        let (sk, sc) = (stride(shape.in_channels), stride(g.channels));
        let mut failed = None;
        self.depthwise.run_ring(
            g,
            row,
            packed,
            header.stage.zero_point,
            stage,
            scratch,
            output,
            |iy, flip, data| {
                let pixels = data.len() / sc;
                let x = &input[iy * g.in_width * sk..][..pixels * sk];
                let row_shape = Shape { pixels, ..shape };
                let done = self.pointwise.run_checked(
                    &row_shape,
                    expansion.weights,
                    expansion.params,
                    header,
                    x,
                    data,
                );
                if let Err(e) = done {
                    failed.get_or_insert(e);
                }
                if flip != 0 {
                    depthwise::flip_in_place(data);
                }
            },
        );
        failed.map_or(Ok(()), |e| Err(Pw(e)))
    }
}
