//! NEON: 16 channels of one output pixel per step, the channel block's weights held in
//! registers while it sweeps the row.
//!
//! The scratch rows hold flipped codes (`x - 128` as i8) and the weights lie in -127..=127, so
//! a product is within ±16256 and two fit an i16 lane: per pair of taps, SMULL + SMLAL (and
//! their `2` forms for the upper eight channels) give the pair's sums in 16-bit lanes, and four
//! SADDW widen them into the four i32x4 accumulators, which start at the flipped bias. The
//! ninth tap goes alone. Then the requantization's lane forms (one load of a group's numbers per
//! vector) and one 16-byte store. A last block of 8 channels runs the same on 8 lanes.

use core::arch::aarch64::*;
use core::arch::asm;

use super::{BLOCK, FLIP, Packed, QUAD, QUAD_LEN, TAPS};
use crate::int8::OutputStage;
use crate::int8::requant::neon::{apply, narrow, stage as clamp};

/// `acc += pair`, the eight i16 lanes of `pair` widened into two i32x4.
#[inline]
#[target_feature(enable = "neon")]
fn widen_add(acc: &mut [int32x4_t], pair: int16x8_t) {
    acc[0] = vaddw_s16(acc[0], vget_low_s16(pair));
    acc[1] = vaddw_high_s16(acc[1], pair);
}

/// SMULL2: the products of the upper eight lanes, `a[8..] * b[8..]`, as i16.
///
/// Written out because LLVM otherwise splits the weights' upper halves out of the loop, which
/// then costs an EXT per input vector on every pixel.
#[inline]
#[target_feature(enable = "neon")]
fn mull_high(a: int8x16_t, b: int8x16_t) -> int16x8_t {
    let out: int16x8_t;
    // SAFETY: computes on registers only.
    unsafe {
        asm!(
            "smull2 {out:v}.8h, {a:v}.16b, {b:v}.16b",
            out = lateout(vreg) out,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    out
}

/// SMLAL2: `acc + a[8..] * b[8..]`, as [`mull_high`], in i16 lanes (wrapping, as the
/// instruction).
#[inline]
#[target_feature(enable = "neon")]
fn mlal_high(acc: int16x8_t, a: int8x16_t, b: int8x16_t) -> int16x8_t {
    let mut out = acc;
    // SAFETY: computes on registers only.
    unsafe {
        asm!(
            "smlal2 {out:v}.8h, {a:v}.16b, {b:v}.16b",
            out = inout(vreg) out,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    out
}

/// `x`, hidden from the optimizer: given the same offset for all nine taps, LLVM would
/// otherwise turn each tap's address into its own pointer and add to all nine per pixel,
/// where one offset register and register-offset loads need a single add.
#[inline(always)]
fn opaque(mut x: usize) -> usize {
    // SAFETY: an empty template; the register keeps its value.
    unsafe { asm!("/* {x} */", x = inout(reg) x, options(pure, nomem, nostack, preserves_flags)) };
    x
}

/// The output stage's numbers, splat.
#[derive(Clone, Copy)]
struct Stage {
    lo: int32x4_t,
    hi: int32x4_t,
    zp: int32x4_t,
}

/// One output row; see `Depthwise::run` (`RowFn`).
#[target_feature(enable = "neon")]
pub(super) fn row(
    rows: [&[u8]; 3],
    stride: usize,
    sc: usize,
    packed: &Packed<'_>,
    stage: OutputStage,
    out_row: &mut [u8],
) {
    let width = out_row.len() / sc;
    let (lo, hi) = stage.bounds();
    let stage = Stage {
        lo: vdupq_n_s32(lo),
        hi: vdupq_n_s32(hi),
        zp: vdupq_n_s32(i32::from(stage.zero_point)),
    };
    for c in (0..sc).step_by(BLOCK) {
        let args = (rows, stride, sc, width, packed, c, stage, &mut *out_row);
        match (c + BLOCK <= sc, packed.shifts_left) {
            (true, false) => block::<true, false>(args),
            (true, true) => block::<true, true>(args),
            (false, false) => block::<false, false>(args),
            (false, true) => block::<false, true>(args),
        }
    }
}

/// What [`block`] works on: the scratch rows, stride, `stride(C)`, output pixels, the layer,
/// the first channel, the stage and the output row.
type BlockArgs<'r, 'p, 'o> = (
    [&'r [u8]; 3],
    usize,
    usize,
    usize,
    &'p Packed<'p>,
    usize,
    Stage,
    &'o mut [u8],
);

/// Channels `c..c + 16` (`WIDE`) or `c..c + 8` of every pixel of the row; `LEFT`: whether some
/// channel's requantization shifts left (else that step, a shift by 0, is left out).
#[inline]
#[target_feature(enable = "neon")]
fn block<const WIDE: bool, const LEFT: bool>(
    (rows, stride, sc, width, packed, c, stage, out_row): BlockArgs<'_, '_, '_>,
) {
    if width == 0 {
        return;
    }
    let lanes = if WIDE { BLOCK } else { BLOCK / 2 };
    // Every byte a load below touches: the last window's last column, channels c..c + lanes.
    let last = ((width - 1) * stride + 2) * sc + c + lanes;
    assert!(rows.iter().all(|r| r.len() >= last));
    assert!(c + lanes <= sc && sc <= packed.padded && out_row.len() >= width * sc);
    // Plain pointer arithmetic from here on (a block of a 7x7 plane has only 7 pixels a row
    // to spread its set-up over): everything is within the slices, as asserted.
    let taps: [*const u8; TAPS] =
        core::array::from_fn(|t| rows[t / 3].as_ptr().wrapping_add(t % 3 * sc + c));
    let out_row = out_row.as_mut_ptr().wrapping_add(c);
    let weights = packed.weights.as_ptr().wrapping_add(c);
    let w = |t: usize| weights.wrapping_add(t * packed.padded);
    let bias = &packed.flipped_biases()[c..c + lanes];
    let quads = &packed.quads()[c / QUAD * QUAD_LEN..(c + lanes) / QUAD * QUAD_LEN];
    let step = stride * sc;
    // SAFETY: bias vector i of the block: `bias` holds `lanes` i32.
    let load_bias = |i: usize| unsafe { vld1q_s32(bias.as_ptr().add(4 * i)) };
    let requant = |i: usize, acc: int32x4_t| {
        // SAFETY: group i of the block: `quads` holds `lanes / 4` groups.
        let q = unsafe { vld1q_s32_x3(quads.as_ptr().add(QUAD_LEN * i)) };
        let left = if LEFT { q.2 } else { vdupq_n_s32(0) };
        clamp(apply(acc, q.0, left, q.1), stage.lo, stage.hi, stage.zp)
    };
    if WIDE {
        // SAFETY: tap t's weights of channels c..c + 16, within the packed weights (`padded`
        // per tap, c + 16 <= sc <= padded).
        let w: [int8x16_t; TAPS] = core::array::from_fn(|t| unsafe { vld1q_s8(w(t)) });
        for ox in 0..width {
            let off = opaque(ox * step);
            let x: [int8x16_t; TAPS] = core::array::from_fn(|t| {
                // SAFETY: tap t of pixel ox reads 16 bytes from its row at (ox stride + t % 3)
                // sc + c, which end within `last` (asserted above).
                unsafe { vreinterpretq_s8_u8(vld1q_u8(taps[t].add(off))) }
            });
            let mut acc = [0, 1, 2, 3].map(load_bias);
            for pair in 0..4 {
                let (a, b) = (2 * pair, 2 * pair + 1);
                let low = vmlal_s8(
                    vmull_s8(vget_low_s8(x[a]), vget_low_s8(w[a])),
                    vget_low_s8(x[b]),
                    vget_low_s8(w[b]),
                );
                let high = mlal_high(mull_high(x[a], w[a]), x[b], w[b]);
                widen_add(&mut acc[..2], low);
                widen_add(&mut acc[2..], high);
            }
            widen_add(
                &mut acc[..2],
                vmull_s8(vget_low_s8(x[8]), vget_low_s8(w[8])),
            );
            widen_add(&mut acc[2..], mull_high(x[8], w[8]));
            let bytes = narrow(
                requant(0, acc[0]),
                requant(1, acc[1]),
                requant(2, acc[2]),
                requant(3, acc[3]),
            );
            // SAFETY: the row holds pixel ox's channels c..c + 16 (asserted above).
            unsafe { vst1q_u8(out_row.add(ox * sc), bytes) };
        }
    } else {
        // SAFETY: tap t's weights of channels c..c + 8, within the packed weights (`padded`
        // per tap, c + 8 <= sc <= padded).
        let w: [int8x8_t; TAPS] = core::array::from_fn(|t| unsafe { vld1_s8(w(t)) });
        for ox in 0..width {
            let off = opaque(ox * step);
            let x: [int8x8_t; TAPS] = core::array::from_fn(|t| {
                // SAFETY: tap t of pixel ox reads 8 bytes from its row at (ox stride + t % 3)
                // sc + c, which end within `last` (asserted above).
                unsafe { vreinterpret_s8_u8(vld1_u8(taps[t].add(off))) }
            });
            let mut acc = [0, 1].map(load_bias);
            for pair in 0..4 {
                let (a, b) = (2 * pair, 2 * pair + 1);
                widen_add(&mut acc, vmlal_s8(vmull_s8(x[a], w[a]), x[b], w[b]));
            }
            widen_add(&mut acc, vmull_s8(x[8], w[8]));
            let (a, b) = (requant(0, acc[0]), requant(1, acc[1]));
            let bytes = vget_low_u8(narrow(a, b, a, b));
            // SAFETY: the row holds pixel ox's channels c..c + 8 (asserted above).
            unsafe { vst1_u8(out_row.add(ox * sc), bytes) };
        }
    }
}

/// `dst[i] = src[i] ^ FLIP` over the whole 64-byte steps of `src` (64 bytes a load, which LLVM's
/// own loop does 32 at a time); returns how many bytes it wrote. `dst` is at least as long.
#[target_feature(enable = "neon")]
pub(super) fn flip_copy(dst: &mut [u8], src: &[u8]) -> usize {
    let flip = vdupq_n_u8(FLIP);
    let n = src.len() / 64 * 64;
    assert!(dst.len() >= n);
    for i in (0..n).step_by(64) {
        // SAFETY: i + 64 <= n, within both slices.
        unsafe {
            let v = vld1q_u8_x4(src.as_ptr().add(i));
            let v = uint8x16x4_t(
                veorq_u8(v.0, flip),
                veorq_u8(v.1, flip),
                veorq_u8(v.2, flip),
                veorq_u8(v.3, flip),
            );
            vst1q_u8_x4(dst.as_mut_ptr().add(i), v);
        }
    }
    n
}

/// `data[i] ^= FLIP` over the whole 64-byte steps of `data`, as [`flip_copy`] does them;
/// returns how many bytes it flipped.
#[target_feature(enable = "neon")]
pub(super) fn flip_in_place(data: &mut [u8]) -> usize {
    let flip = vdupq_n_u8(FLIP);
    let n = data.len() / 64 * 64;
    for i in (0..n).step_by(64) {
        // SAFETY: i + 64 <= n, within the slice.
        unsafe {
            let p = data.as_mut_ptr().add(i);
            let v = vld1q_u8_x4(p);
            let v = uint8x16x4_t(
                veorq_u8(v.0, flip),
                veorq_u8(v.1, flip),
                veorq_u8(v.2, flip),
                veorq_u8(v.3, flip),
            );
            vst1q_u8_x4(p, v);
        }
    }
    n
}
