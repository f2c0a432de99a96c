//! The reference: every output pixel summed over the input channels in order.

use core::ops::Range;

use super::{Clip, PANEL, Shape, Tile};

/// Output pixels `columns` of one panel's channels.
pub(super) fn panel(
    shape: &Shape,
    panel: &[f32],
    tile: &Tile,
    clip: Clip,
    input: &[f32],
    columns: Range<usize>,
    output: &mut [f32],
) {
    let plane = shape.plane;
    for r in 0..tile.rows {
        let out = &mut output[(tile.first + r) * plane..][..plane];
        for p in columns.clone() {
            let mut acc = tile.bias[r];
            for (k, weights) in panel.chunks_exact(PANEL).enumerate() {
                acc += weights[r] * input[k * plane + p];
            }
            out[p] = clip.apply(acc);
        }
    }
}
