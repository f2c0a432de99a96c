//! NEON: sixteen codes of a row per step, in four independent sums.

use core::arch::aarch64::*;

use super::{I16_BLOCK, scalar};

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

/// See `Int8Gemv::dots_i16`: sixteen codes per step, widened to i16 and multiplied with
/// widening multiply-accumulates into four i32 sums, moved into i64 every [`I16_BLOCK`] steps.
///
/// # Safety
/// `codes.len() == out.len() * x.len()`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dots_i16(codes: &[i8], x: &[i16], out: &mut [f32]) {
    let features = x.len();
    let body = features / STEP * STEP;
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(features.max(1))) {
        let mut sum = 0i64;
        for block in (0..body).step_by(STEP * I16_BLOCK) {
            let mut acc = [vdupq_n_s32(0); 4];
            for i in (block..body.min(block + STEP * I16_BLOCK)).step_by(STEP) {
                // SAFETY: i + 16 <= body <= features, the length of `x` and of the row.
                unsafe {
                    let q = vld1q_s8(row.as_ptr().add(i));
                    let (lo, hi) = (vmovl_s8(vget_low_s8(q)), vmovl_high_s8(q));
                    let v0 = vld1q_s16(x.as_ptr().add(i));
                    let v1 = vld1q_s16(x.as_ptr().add(i + 8));
                    acc[0] = vmlal_s16(acc[0], vget_low_s16(lo), vget_low_s16(v0));
                    acc[1] = vmlal_high_s16(acc[1], lo, v0);
                    acc[2] = vmlal_s16(acc[2], vget_low_s16(hi), vget_low_s16(v1));
                    acc[3] = vmlal_high_s16(acc[3], hi, v1);
                }
            }
            sum += acc.iter().map(|&a| vaddlvq_s32(a)).sum::<i64>();
        }
        *o = (sum + scalar::dot_i16(&row[body..], &x[body..])) as f32;
    }
}
