//! NEON: sixteen codes of a row per step, in four independent sums.

use core::arch::aarch64::*;

use super::scalar;

const STEP: usize = 16;

/// See `Int8Gemv::dots`.
///
/// # Safety
/// `codes.len() == out.len() * x.len()`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dots(codes: &[i8], x: &[f32], out: &mut [f32]) {
    let features = x.len();
    let body = features / STEP * STEP;
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(features.max(1))) {
        let mut acc = [vdupq_n_f32(0.0); 4];
        for i in (0..body).step_by(STEP) {
            // SAFETY: i + 16 <= body <= features, the length of `x` and of the row.
            unsafe {
                let q = vld1q_s8(row.as_ptr().add(i));
                let (lo, hi) = (vmovl_s8(vget_low_s8(q)), vmovl_high_s8(q));
                let w = [
                    vmovl_s16(vget_low_s16(lo)),
                    vmovl_high_s16(lo),
                    vmovl_s16(vget_low_s16(hi)),
                    vmovl_high_s16(hi),
                ];
                for (j, (a, w)) in acc.iter_mut().zip(w).enumerate() {
                    let v = vld1q_f32(x.as_ptr().add(i + 4 * j));
                    *a = vfmaq_f32(*a, vcvtq_f32_s32(w), v);
                }
            }
        }
        let tail = scalar::dot(&row[body..], &x[body..]);
        let sum = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
        *o = vaddvq_f32(sum) + tail;
    }
}
