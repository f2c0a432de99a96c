//! NEON: sixteen bytes per step, as four i32x4 through the requantization's lane forms.

use core::arch::aarch64::*;

use super::{AddParams, LEFT};
use crate::int8::requant::neon::{apply, narrow, stage};

/// `(code - zero_point) << LEFT` of eight codes, as two i32x4: the difference in i16, shifted
/// by `LEFT - 16` there (|x - z| << 4 fits), then widened by SHLL's shift of 16.
#[inline]
#[target_feature(enable = "neon")]
fn centred(codes: uint8x8_t, zero_point: uint8x8_t) -> [int32x4_t; 2] {
    const { assert!(LEFT == 20) };
    // u8 - u8 in 16 bits wraps to the right i16 (within ±255).
    let x = vshlq_n_s16::<4>(vreinterpretq_s16_u16(vsubl_u8(codes, zero_point)));
    [
        vshll_n_s16::<16>(vget_low_s16(x)),
        vshll_high_n_s16::<16>(x),
    ]
}

/// The add over the whole sixteen-byte steps of the buffers (one length, checked by the
/// caller); returns how many bytes it wrote.
#[target_feature(enable = "neon")]
pub(super) fn run(params: &AddParams, a: &[u8], b: &[u8], out: &mut [u8]) -> usize {
    if params.out.left() == 0 {
        steps::<false>(params, a, b, out)
    } else {
        steps::<true>(params, a, b, out)
    }
}

/// [`run`]; `OUT_LEFT`: whether the output's factor shifts left (else that step, a shift by 0,
/// is left out).
#[inline]
#[target_feature(enable = "neon")]
fn steps<const OUT_LEFT: bool>(params: &AddParams, a: &[u8], b: &[u8], out: &mut [u8]) -> usize {
    // The inputs' factors never shift left (`AddParams::new`): step 1 of their `apply` is a
    // shift by 0, and `centred` gives `(x - z) << LEFT` exactly.
    let zero = vdupq_n_s32(0);
    let splat =
        |r: crate::int8::Requant| (vdupq_n_s32(r.multiplier), vdupq_n_s32(-(r.right() as i32)));
    let ((ma, ra), (mb, rb), (mo, ro)) = (splat(params.a), splat(params.b), splat(params.out));
    let lo_ = if OUT_LEFT {
        vdupq_n_s32(params.out.left() as i32)
    } else {
        zero
    };
    let (lo, hi) = params.stage.bounds();
    let (lo, hi, zp) = (
        vdupq_n_s32(lo),
        vdupq_n_s32(hi),
        vdupq_n_s32(i32::from(params.stage.zero_point)),
    );
    let (za, zb) = (
        vdup_n_u8(params.a_zero_point),
        vdup_n_u8(params.b_zero_point),
    );
    let steps = out.len() / 16;
    assert!(a.len() >= 16 * steps && b.len() >= 16 * steps);
    for i in 0..steps {
        let at = 16 * i;
        // SAFETY: at + 16 <= a.len(), b.len(), out.len() (asserted above).
        let (x, y) = unsafe {
            (
                vld1_u8_x2(a.as_ptr().add(at)),
                vld1_u8_x2(b.as_ptr().add(at)),
            )
        };
        let x = [centred(x.0, za), centred(x.1, za)];
        let y = [centred(y.0, zb), centred(y.1, zb)];
        let lane = |j: usize| {
            let (x, y) = (x[j / 2][j % 2], y[j / 2][j % 2]);
            let sum = vaddq_s32(apply(x, ma, zero, ra), apply(y, mb, zero, rb));
            stage(apply(sum, mo, lo_, ro), lo, hi, zp)
        };
        let bytes = narrow(lane(0), lane(1), lane(2), lane(3));
        // SAFETY: as for the loads.
        unsafe { vst1q_u8(out.as_mut_ptr().add(at), bytes) };
    }
    16 * steps
}
