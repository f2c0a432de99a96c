//! An expansion and the depthwise convolution it alone feeds, as one op.

use super::{DepthwiseOp, Kernel, PointwiseOp};
use nap_core::depthwise::{Geometry, TAPS};
use nap_core::pointwise::{self, PANEL};
use std::fmt;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// An expansion (pointwise convolution) and the depthwise convolution it alone feeds, as in
/// every MobileNetV2 block: computed six expanded channels at a time, each group's planes
/// convolved depthwise while they are in cache, so the expanded tensor (the block's largest:
/// 96 x 112 x 112 floats, 4.8 MB, in the second block) is never whole in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpandDepthwiseOp {
    expand: PointwiseOp,
    depthwise: DepthwiseOp,
}

impl ExpandDepthwiseOp {
    /// The two as one; `depthwise` reads what `expand` writes.
    pub fn new(expand: PointwiseOp, depthwise: DepthwiseOp) -> ExpandDepthwiseOp {
        ExpandDepthwiseOp { expand, depthwise }
    }
}

impl Kernel for ExpandDepthwiseOp {
    const NAME: &'static str = "NapExpandDepthwise";

    fn info(&self) -> Vec<String> {
        let mut info = self.expand.info();
        info.extend(self.depthwise.info());
        info
    }

    fn output_shape(&self) -> &[usize] {
        &self.depthwise.output_shape
    }

    fn run(&self, input: &[f32], out: &mut [f32]) -> TractResult<()> {
        let (e, d) = (&self.expand, &self.depthwise);
        let (k, plane) = (e.shape.in_channels, e.shape.plane);
        let out_plane = d.geometry.out_height * d.geometry.out_width;
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
        Ok(())
    }
}
