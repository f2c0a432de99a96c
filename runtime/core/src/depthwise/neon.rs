//! NEON: four output pixels of a row per step.
//!
//! Stride 1 reads each tap as an unaligned vector shifted by its column. Stride 2 uses the
//! de-interleaving load (`ld2`), which gives even and odd columns at once.

use core::arch::aarch64::*;

use super::{Clip, TAPS, Window};

const LANES: usize = 4;

/// One output row; see `Depthwise::row`. Each scratch row holds the floats a last, partial
/// vector reads (`Geometry::scratch_width`).
#[target_feature(enable = "neon")]
pub(super) fn row(
    stride: usize,
    window: Window<'_>,
    w: &[f32; TAPS],
    bias: f32,
    clip: Clip,
    out_row: &mut [f32],
) {
    let (lo, hi) = (vdupq_n_f32(clip.min), vdupq_n_f32(clip.max));
    let reach = stride * LANES + 2;
    for ox in (0..out_row.len()).step_by(LANES) {
        let mut acc = vdupq_n_f32(bias);
        for (ky, row) in window.iter().enumerate() {
            let p = row[stride * ox..stride * ox + reach].as_ptr();
            // SAFETY: the slice above holds every float read: ox .. ox + 6 for stride 1,
            // 2 ox .. 2 ox + 10 for stride 2.
            unsafe {
                let (x0, x1, x2) = if stride == 1 {
                    (vld1q_f32(p), vld1q_f32(p.add(1)), vld1q_f32(p.add(2)))
                } else {
                    let (split, shifted) = (vld2q_f32(p), vld2q_f32(p.add(2)));
                    (split.0, split.1, shifted.0)
                };
                acc = vfmaq_n_f32(acc, x0, w[3 * ky]);
                acc = vfmaq_n_f32(acc, x1, w[3 * ky + 1]);
                acc = vfmaq_n_f32(acc, x2, w[3 * ky + 2]);
            }
        }
        let v = vminq_f32(vmaxq_f32(acc, lo), hi);
        let n = (out_row.len() - ox).min(LANES);
        if n == LANES {
            // SAFETY: ox + 4 <= out_row.len().
            unsafe { vst1q_f32(out_row[ox..ox + LANES].as_mut_ptr(), v) };
        } else {
            let mut lanes = [0.0f32; LANES];
            // SAFETY: `lanes` holds four floats.
            unsafe { vst1q_f32(lanes.as_mut_ptr(), v) };
            out_row[ox..ox + n].copy_from_slice(&lanes[..n]);
        }
    }
}
