//! NEON: six output channels by eight pixels per tile, in twelve accumulators.

use core::arch::aarch64::*;

use super::{Clip, PANEL, Shape, Tile};

/// Pixels per tile.
pub(super) const WIDTH: usize = 8;

/// One tile: pixels `n..n + 8` of the panel's channels (`cols` is always 8).
///
/// # Safety
/// The buffers must match `shape` and `n + 8 <= plane`.
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile(
    shape: &Shape,
    panel: &[f32],
    tile: &Tile,
    clip: Clip,
    input: &[f32],
    n: usize,
    cols: usize,
    output: &mut [f32],
) {
    debug_assert_eq!(cols, WIDTH);
    let plane = shape.plane;
    let mut acc = [[vdupq_n_f32(0.0); 2]; PANEL];
    for (a, &b) in acc.iter_mut().zip(&tile.bias) {
        *a = [vdupq_n_f32(b); 2];
    }
    let x = input[n..].as_ptr();
    for (k, w) in panel.chunks_exact(PANEL).enumerate() {
        // SAFETY: k < in_channels and n + 8 <= plane, so the eight floats lie in `input`; `w`
        // holds six floats, read as four and two.
        unsafe {
            let p = x.add(k * plane);
            let (x0, x1) = (vld1q_f32(p), vld1q_f32(p.add(4)));
            let (w03, w45) = (vld1q_f32(w.as_ptr()), vld1_f32(w.as_ptr().add(4)));
            acc[0] = [
                vfmaq_laneq_f32::<0>(acc[0][0], x0, w03),
                vfmaq_laneq_f32::<0>(acc[0][1], x1, w03),
            ];
            acc[1] = [
                vfmaq_laneq_f32::<1>(acc[1][0], x0, w03),
                vfmaq_laneq_f32::<1>(acc[1][1], x1, w03),
            ];
            acc[2] = [
                vfmaq_laneq_f32::<2>(acc[2][0], x0, w03),
                vfmaq_laneq_f32::<2>(acc[2][1], x1, w03),
            ];
            acc[3] = [
                vfmaq_laneq_f32::<3>(acc[3][0], x0, w03),
                vfmaq_laneq_f32::<3>(acc[3][1], x1, w03),
            ];
            acc[4] = [
                vfmaq_lane_f32::<0>(acc[4][0], x0, w45),
                vfmaq_lane_f32::<0>(acc[4][1], x1, w45),
            ];
            acc[5] = [
                vfmaq_lane_f32::<1>(acc[5][0], x0, w45),
                vfmaq_lane_f32::<1>(acc[5][1], x1, w45),
            ];
        }
    }
    let (lo, hi) = (vdupq_n_f32(clip.min), vdupq_n_f32(clip.max));
    for (r, a) in acc.iter().enumerate().take(tile.rows) {
        let out = &mut output[(tile.first + r) * plane + n..][..8];
        for (half, v) in a.iter().enumerate() {
            let v = vminq_f32(vmaxq_f32(*v, lo), hi);
            // SAFETY: `out` holds eight floats.
            unsafe { vst1q_f32(out[4 * half..].as_mut_ptr(), v) };
        }
    }
}
