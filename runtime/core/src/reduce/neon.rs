//! aarch64 Advanced SIMD reductions (NEON is part of the aarch64 baseline).
//!
//! Each function carries `target_feature(enable = "neon")`, so intrinsics are safe calls inside.
//!
//! Same structure as the x86 paths: u8 channel-major planes accumulate pairwise-widened sums
//! (`uadalp`) in u32 lanes, and the last partial vector ends at the plane's end with its
//! already-counted bytes masked out of the sum. Interleaved layouts keep one lane per channel,
//! u8 sums in u16 lanes flushed to u32 every [`U16_ROWS`] rows; the last partial block of
//! channels overlaps the previous one and writes the same values again.

use super::{U16_ROWS, channel_blocks, scalar, tail_mask};
use core::arch::aarch64::*;

/// `TAIL_MASK[r..][..16]` keeps the last `r` bytes of a 16-byte vector.
const TAIL_MASK: [u8; 32] = tail_mask();

/// See [`scalar::u8_nchw`].
#[target_feature(enable = "neon")]
pub fn u8_nchw(activation: &[u8], plane: usize, max: &mut [u8], sum: &mut [u32]) {
    if plane < 16 {
        return scalar::u8_nchw(activation, plane, max, sum);
    }
    let (full, tail) = (plane / 16, plane % 16);
    // SAFETY: the slice holds exactly 16 bytes.
    let mask = unsafe { vld1q_u8(TAIL_MASK[tail..16 + tail].as_ptr()) };
    for ((channel, m), s) in activation.chunks_exact(plane).zip(max).zip(sum) {
        let p = channel.as_ptr();
        let (mut vmax, mut vsum) = (vdupq_n_u8(0), vdupq_n_u32(0));
        for i in 0..full {
            // SAFETY: 16 * (i + 1) <= plane = channel.len().
            let v = unsafe { vld1q_u8(p.add(16 * i)) };
            vmax = vmaxq_u8(vmax, v);
            vsum = vpadalq_u16(vsum, vpaddlq_u8(v));
        }
        if tail != 0 {
            // SAFETY: plane >= 16, so the last 16 bytes of the channel are inside it.
            let v = unsafe { vld1q_u8(p.add(plane - 16)) };
            vmax = vmaxq_u8(vmax, v);
            vsum = vpadalq_u16(vsum, vpaddlq_u8(vandq_u8(v, mask)));
        }
        *m = vmaxvq_u8(vmax);
        *s = vaddvq_u32(vsum);
    }
}

/// See [`scalar::u8_nhwc`].
///
/// # Safety
/// `max` and `sum` hold at least `channels` entries: whole vectors are stored into them.
#[target_feature(enable = "neon")]
pub unsafe fn u8_nhwc(activation: &[u8], channels: usize, max: &mut [u8], sum: &mut [u32]) {
    if channels < 16 {
        return scalar::u8_nhwc(activation, channels, max, sum);
    }
    let rows = activation.len() / channels;
    for c in channel_blocks(channels, 16) {
        let mut vmax = vdupq_n_u8(0);
        let mut acc = [vdupq_n_u32(0); 4];
        for start in (0..rows).step_by(U16_ROWS) {
            let (mut lo, mut hi) = (vdupq_n_u16(0), vdupq_n_u16(0));
            for row in start..rows.min(start + U16_ROWS) {
                // SAFETY: row < rows and c + 16 <= channels, so the 16 bytes are inside.
                let v = unsafe { vld1q_u8(activation.as_ptr().add(row * channels + c)) };
                vmax = vmaxq_u8(vmax, v);
                lo = vaddw_u8(lo, vget_low_u8(v));
                hi = vaddw_high_u8(hi, v);
            }
            acc[0] = vaddw_u16(acc[0], vget_low_u16(lo));
            acc[1] = vaddw_high_u16(acc[1], lo);
            acc[2] = vaddw_u16(acc[2], vget_low_u16(hi));
            acc[3] = vaddw_high_u16(acc[3], hi);
        }
        // SAFETY: c + 16 <= channels <= max.len(), sum.len() (the caller's promise).
        unsafe {
            vst1q_u8(max.as_mut_ptr().add(c), vmax);
            for (k, a) in acc.into_iter().enumerate() {
                vst1q_u32(sum.as_mut_ptr().add(c + 4 * k), a);
            }
        }
    }
}

/// See [`scalar::f32_nchw`].
#[target_feature(enable = "neon")]
pub fn f32_nchw(activation: &[f32], plane: usize, max: &mut [f32], sum: &mut [f32]) {
    let full = plane / 4;
    for ((channel, m), s) in activation.chunks_exact(plane).zip(max).zip(sum) {
        let p = channel.as_ptr();
        let (mut vmax, mut vsum) = (vdupq_n_f32(f32::NEG_INFINITY), vdupq_n_f32(0.0));
        for i in 0..full {
            // SAFETY: 4 * (i + 1) <= plane = channel.len().
            let v = unsafe { vld1q_f32(p.add(4 * i)) };
            // fmaxnm ignores a NaN operand, as the scalar reference does.
            vmax = vmaxnmq_f32(vmax, v);
            vsum = vaddq_f32(vsum, v);
        }
        let (mut cm, mut cs) = (vmaxnmvq_f32(vmax), vaddvq_f32(vsum));
        for &x in &channel[4 * full..] {
            cm = if x > cm { x } else { cm };
            cs += x;
        }
        (*m, *s) = (cm, cs);
    }
}

/// Independent accumulator vectors per row in the interleaved f32 path: a single max/sum chain
/// per block of channels would wait out the add latency on every row.
const CHAINS: usize = 4;

/// See [`scalar::f32_nhwc`].
///
/// # Safety
/// `max` and `sum` hold at least `channels` entries: whole vectors are stored into them.
#[target_feature(enable = "neon")]
pub unsafe fn f32_nhwc(activation: &[f32], channels: usize, max: &mut [f32], sum: &mut [f32]) {
    if channels >= 4 * CHAINS {
        // SAFETY: forwarded from the caller; channels >= 4 * CHAINS.
        unsafe { f32_nhwc_chains::<CHAINS>(activation, channels, max, sum) };
    } else if channels >= 4 {
        // SAFETY: forwarded from the caller; channels >= 4.
        unsafe { f32_nhwc_chains::<1>(activation, channels, max, sum) };
    } else {
        scalar::f32_nhwc(activation, channels, max, sum);
    }
}

/// Blocks of `4 * N` channels (`channels >= 4 * N`), `N` independent vectors each.
///
/// # Safety
/// `max` and `sum` hold at least `channels` entries: whole vectors are stored into them.
#[target_feature(enable = "neon")]
unsafe fn f32_nhwc_chains<const N: usize>(
    activation: &[f32],
    channels: usize,
    max: &mut [f32],
    sum: &mut [f32],
) {
    let rows = activation.len() / channels;
    for c in channel_blocks(channels, 4 * N) {
        let (mut vmax, mut vsum) = ([vdupq_n_f32(f32::NEG_INFINITY); N], [vdupq_n_f32(0.0); N]);
        for row in 0..rows {
            for k in 0..N {
                // SAFETY: row < rows and c + 4 * N <= channels.
                let v = unsafe { vld1q_f32(activation.as_ptr().add(row * channels + c + 4 * k)) };
                // fmaxnm ignores a NaN operand, as the scalar reference does.
                vmax[k] = vmaxnmq_f32(vmax[k], v);
                vsum[k] = vaddq_f32(vsum[k], v);
            }
        }
        for k in 0..N {
            // SAFETY: c + 4 * N <= channels <= max.len(), sum.len() (the caller's promise).
            unsafe {
                vst1q_f32(max.as_mut_ptr().add(c + 4 * k), vmax[k]);
                vst1q_f32(sum.as_mut_ptr().add(c + 4 * k), vsum[k]);
            }
        }
    }
}
