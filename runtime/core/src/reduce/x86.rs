//! x86_64 reductions: SSE2 (always present on x86_64) and AVX2 (chosen at run time).
//!
//! Every function carries its `target_feature`, so intrinsics are safe calls inside it; callers
//! outside must know the feature is there (SSE2 always is on x86_64).
//!
//! u8 channel-major planes use `psadbw` against zero, which sums 8 bytes into a u64 lane: exact,
//! and one instruction per vector. The last partial vector of a plane is loaded so that it ends at
//! the plane's end; its bytes already counted are masked out of the sum (the max does not care).
//! Interleaved layouts keep one lane per channel: u8 sums widen to u16 lanes, flushed to u32 every
//! [`U16_ROWS`] rows, before they could overflow. The last partial block of channels is processed
//! as a block overlapping the previous one; it writes the same values again.
#![allow(clippy::cast_ptr_alignment)] // every load and store here is an unaligned one

use super::{U16_ROWS, channel_blocks, scalar, tail_mask};
use core::arch::x86_64::*;

/// `TAIL_MASK[32 - width + r..][..width]` keeps the last `r` bytes of a `width`-byte vector.
const TAIL_MASK: [u8; 64] = tail_mask();

#[target_feature(enable = "sse2")]
fn tail_mask_128(tail: usize) -> __m128i {
    let bytes = &TAIL_MASK[16 + tail..32 + tail];
    // SAFETY: the slice holds exactly 16 bytes.
    unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
}

#[target_feature(enable = "sse2")]
fn hmax_u8_128(v: __m128i) -> u8 {
    let v = _mm_max_epu8(v, _mm_srli_si128::<8>(v));
    let v = _mm_max_epu8(v, _mm_srli_si128::<4>(v));
    let v = _mm_max_epu8(v, _mm_srli_si128::<2>(v));
    let v = _mm_max_epu8(v, _mm_srli_si128::<1>(v));
    (_mm_cvtsi128_si32(v) & 0xFF) as u8
}

#[target_feature(enable = "sse2")]
fn hsum_u64_128(v: __m128i) -> u64 {
    (_mm_cvtsi128_si64(v) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(v, v))) as u64
}

#[target_feature(enable = "sse2")]
fn hmax_f32_128(v: __m128) -> f32 {
    let v = _mm_max_ps(v, _mm_movehl_ps(v, v));
    let v = _mm_max_ps(v, _mm_shuffle_ps::<0b01>(v, v));
    _mm_cvtss_f32(v)
}

#[target_feature(enable = "sse2")]
fn hsum_f32_128(v: __m128) -> f32 {
    let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    let v = _mm_add_ss(v, _mm_shuffle_ps::<0b01>(v, v));
    _mm_cvtss_f32(v)
}

/// Channels whose horizontal reductions are done together by [`finish_block`].
const BLOCK: usize = 16;

/// The 16 byte-lane maxes and the two u64-lane sums of one u8 plane of at least 16 bytes.
///
/// # Safety
/// `channel.len() >= 16`: the last vector is read from the plane's last 16 bytes.
#[target_feature(enable = "sse2")]
#[inline]
unsafe fn plane_u8_sse2(channel: &[u8], tail_mask: __m128i) -> (__m128i, __m128i) {
    let plane = channel.len();
    let p = channel.as_ptr();
    let zero = _mm_setzero_si128();
    let (mut vmax, mut vsum) = (zero, zero);
    for i in 0..plane / 16 {
        // SAFETY: 16 * (i + 1) <= plane.
        let v = unsafe { _mm_loadu_si128(p.add(16 * i).cast()) };
        vmax = _mm_max_epu8(vmax, v);
        vsum = _mm_add_epi64(vsum, _mm_sad_epu8(v, zero));
    }
    if !plane.is_multiple_of(16) {
        // SAFETY: plane >= 16 (the caller's promise), so the last 16 bytes are inside it.
        let v = unsafe { _mm_loadu_si128(p.add(plane - 16).cast()) };
        vmax = _mm_max_epu8(vmax, v);
        vsum = _mm_add_epi64(vsum, _mm_sad_epu8(_mm_and_si128(v, tail_mask), zero));
    }
    (vmax, vsum)
}

/// As [`plane_u8_sse2`] for planes of at least 32 bytes, folded to the same 128-bit form.
///
/// # Safety
/// `channel.len() >= 32`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn plane_u8_avx2(channel: &[u8], tail_mask: __m256i) -> (__m128i, __m128i) {
    let plane = channel.len();
    let p = channel.as_ptr();
    let zero = _mm256_setzero_si256();
    let (mut vmax, mut vsum) = (zero, zero);
    for i in 0..plane / 32 {
        // SAFETY: 32 * (i + 1) <= plane.
        let v = unsafe { _mm256_loadu_si256(p.add(32 * i).cast()) };
        vmax = _mm256_max_epu8(vmax, v);
        vsum = _mm256_add_epi64(vsum, _mm256_sad_epu8(v, zero));
    }
    if !plane.is_multiple_of(32) {
        // SAFETY: plane >= 32 (the caller's promise), so the last 32 bytes are inside it.
        let v = unsafe { _mm256_loadu_si256(p.add(plane - 32).cast()) };
        vmax = _mm256_max_epu8(vmax, v);
        vsum = _mm256_add_epi64(vsum, _mm256_sad_epu8(_mm256_and_si256(v, tail_mask), zero));
    }
    let max = _mm_max_epu8(
        _mm256_castsi256_si128(vmax),
        _mm256_extracti128_si256::<1>(vmax),
    );
    let sum = _mm_add_epi64(
        _mm256_castsi256_si128(vsum),
        _mm256_extracti128_si256::<1>(vsum),
    );
    (max, sum)
}

/// Horizontal reductions of [`BLOCK`] channels at once, as a transpose: each level interleaves
/// pairs of vectors and takes the max (or sum) of the halves, so the 16 results end up in one
/// vector instead of costing a shuffle ladder each.
#[target_feature(enable = "sse2")]
#[inline]
fn finish_block(
    maxes: &[__m128i; BLOCK],
    sums: &[__m128i; BLOCK],
    max: &mut [u8],
    sum: &mut [u32],
) {
    let pairs8: [__m128i; 8] = core::array::from_fn(|i| {
        let (a, b) = (maxes[2 * i], maxes[2 * i + 1]);
        _mm_max_epu8(_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b))
    });
    let quads: [__m128i; 4] = core::array::from_fn(|i| {
        let (a, b) = (pairs8[2 * i], pairs8[2 * i + 1]);
        _mm_max_epu8(_mm_unpacklo_epi16(a, b), _mm_unpackhi_epi16(a, b))
    });
    let octets: [__m128i; 2] = core::array::from_fn(|i| {
        let (a, b) = (quads[2 * i], quads[2 * i + 1]);
        _mm_max_epu8(_mm_unpacklo_epi32(a, b), _mm_unpackhi_epi32(a, b))
    });
    let (a, b) = (octets[0], octets[1]);
    let all = _mm_max_epu8(_mm_unpacklo_epi64(a, b), _mm_unpackhi_epi64(a, b));

    // Each sum is below 2^32 (`Shape::MAX_PLANE`): keep the low 32 bits of each u64 lane.
    let pairs64: [__m128i; 8] = core::array::from_fn(|i| {
        let (a, b) = (sums[2 * i], sums[2 * i + 1]);
        _mm_add_epi64(_mm_unpacklo_epi64(a, b), _mm_unpackhi_epi64(a, b))
    });
    let sums32: [__m128i; 4] = core::array::from_fn(|i| {
        let (a, b) = (
            _mm_castsi128_ps(pairs64[2 * i]),
            _mm_castsi128_ps(pairs64[2 * i + 1]),
        );
        _mm_castps_si128(_mm_shuffle_ps::<0b10_00_10_00>(a, b))
    });
    assert!(max.len() >= BLOCK && sum.len() >= BLOCK);
    // SAFETY: both outputs hold at least BLOCK entries (asserted above).
    unsafe {
        _mm_storeu_si128(max.as_mut_ptr().cast(), all);
        for (k, s) in sums32.into_iter().enumerate() {
            _mm_storeu_si128(sum.as_mut_ptr().add(4 * k).cast(), s);
        }
    }
}

/// Channel-major u8 driver: per-plane partial reductions by `plane_fn`, horizontal reductions
/// a block of channels at a time, one by one for the last few channels.
///
/// Deliberately without `target_feature` and always inlined: it then compiles inside each
/// caller with the caller's features, so an AVX2 `plane_fn` inlines instead of being called.
#[inline(always)]
fn u8_nchw_blocked(
    activation: &[u8],
    plane: usize,
    max: &mut [u8],
    sum: &mut [u32],
    plane_fn: impl Fn(&[u8]) -> (__m128i, __m128i),
) {
    let mut planes = activation.chunks_exact(plane);
    for (max, sum) in max.chunks_exact_mut(BLOCK).zip(sum.chunks_exact_mut(BLOCK)) {
        // SAFETY: SSE2 is part of the x86_64 baseline.
        let zero = unsafe { _mm_setzero_si128() };
        let (mut maxes, mut sums) = ([zero; BLOCK], [zero; BLOCK]);
        for (k, channel) in planes.by_ref().take(BLOCK).enumerate() {
            (maxes[k], sums[k]) = plane_fn(channel);
        }
        // SAFETY: SSE2 is part of the x86_64 baseline.
        unsafe { finish_block(&maxes, &sums, max, sum) };
    }
    let done = max.len() / BLOCK * BLOCK;
    for ((channel, m), s) in planes.zip(&mut max[done..]).zip(&mut sum[done..]) {
        let (vmax, vsum) = plane_fn(channel);
        // SAFETY: SSE2 is part of the x86_64 baseline.
        unsafe { (*m, *s) = (hmax_u8_128(vmax), hsum_u64_128(vsum) as u32) };
    }
}

/// See [`scalar::u8_nchw`].
#[target_feature(enable = "sse2")]
pub fn u8_nchw_sse2(activation: &[u8], plane: usize, max: &mut [u8], sum: &mut [u32]) {
    if plane < 16 {
        return scalar::u8_nchw(activation, plane, max, sum);
    }
    let mask = tail_mask_128(plane % 16);
    u8_nchw_blocked(activation, plane, max, sum, |channel| {
        // SAFETY: the driver hands over planes of `plane` >= 16 bytes.
        unsafe { plane_u8_sse2(channel, mask) }
    });
}

/// See [`scalar::u8_nchw`].
#[target_feature(enable = "avx2")]
pub fn u8_nchw_avx2(activation: &[u8], plane: usize, max: &mut [u8], sum: &mut [u32]) {
    if plane < 32 {
        return u8_nchw_sse2(activation, plane, max, sum);
    }
    let tail = plane % 32;
    // SAFETY: the slice holds exactly 32 bytes.
    let mask = unsafe { _mm256_loadu_si256(TAIL_MASK[tail..32 + tail].as_ptr().cast()) };
    u8_nchw_blocked(activation, plane, max, sum, |channel| {
        // SAFETY: the driver hands over planes of `plane` >= 32 bytes.
        unsafe { plane_u8_avx2(channel, mask) }
    });
}

/// See [`scalar::u8_nhwc`].
///
/// # Safety
/// `max` and `sum` hold at least `channels` entries: whole vectors are stored into them.
#[target_feature(enable = "sse2")]
pub unsafe fn u8_nhwc_sse2(activation: &[u8], channels: usize, max: &mut [u8], sum: &mut [u32]) {
    if channels < 16 {
        return scalar::u8_nhwc(activation, channels, max, sum);
    }
    let rows = activation.len() / channels;
    let zero = _mm_setzero_si128();
    for c in channel_blocks(channels, 16) {
        let mut vmax = zero;
        let mut acc = [zero; 4];
        for start in (0..rows).step_by(U16_ROWS) {
            let (mut lo, mut hi) = (zero, zero);
            for row in start..rows.min(start + U16_ROWS) {
                // SAFETY: row < rows and c + 16 <= channels, so the 16 bytes are inside.
                let v =
                    unsafe { _mm_loadu_si128(activation.as_ptr().add(row * channels + c).cast()) };
                vmax = _mm_max_epu8(vmax, v);
                lo = _mm_add_epi16(lo, _mm_unpacklo_epi8(v, zero));
                hi = _mm_add_epi16(hi, _mm_unpackhi_epi8(v, zero));
            }
            acc[0] = _mm_add_epi32(acc[0], _mm_unpacklo_epi16(lo, zero));
            acc[1] = _mm_add_epi32(acc[1], _mm_unpackhi_epi16(lo, zero));
            acc[2] = _mm_add_epi32(acc[2], _mm_unpacklo_epi16(hi, zero));
            acc[3] = _mm_add_epi32(acc[3], _mm_unpackhi_epi16(hi, zero));
        }
        // SAFETY: c + 16 <= channels <= max.len(), sum.len() (the caller's promise).
        unsafe {
            _mm_storeu_si128(max.as_mut_ptr().add(c).cast(), vmax);
            for (k, a) in acc.into_iter().enumerate() {
                _mm_storeu_si128(sum.as_mut_ptr().add(c + 4 * k).cast(), a);
            }
        }
    }
}

/// See [`scalar::u8_nhwc`].
///
/// # Safety
/// `max` and `sum` hold at least `channels` entries: whole vectors are stored into them.
#[target_feature(enable = "avx2")]
pub unsafe fn u8_nhwc_avx2(activation: &[u8], channels: usize, max: &mut [u8], sum: &mut [u32]) {
    if channels < 32 {
        // SAFETY: forwarded from the caller.
        return unsafe { u8_nhwc_sse2(activation, channels, max, sum) };
    }
    let rows = activation.len() / channels;
    let zero = _mm256_setzero_si256();
    for c in channel_blocks(channels, 32) {
        let mut vmax = zero;
        let mut acc = [zero; 4];
        for start in (0..rows).step_by(U16_ROWS) {
            let (mut lo, mut hi) = (zero, zero);
            for row in start..rows.min(start + U16_ROWS) {
                // SAFETY: row < rows and c + 32 <= channels, so the 32 bytes are inside.
                let v = unsafe {
                    _mm256_loadu_si256(activation.as_ptr().add(row * channels + c).cast())
                };
                vmax = _mm256_max_epu8(vmax, v);
                // Widen each 128-bit half in order: lo holds channels c..c+16, hi c+16..c+32.
                lo = _mm256_add_epi16(lo, _mm256_cvtepu8_epi16(_mm256_castsi256_si128(v)));
                hi = _mm256_add_epi16(hi, _mm256_cvtepu8_epi16(_mm256_extracti128_si256::<1>(v)));
            }
            for (k, half) in [lo, hi].into_iter().enumerate() {
                let first = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(half));
                let second = _mm256_cvtepu16_epi32(_mm256_extracti128_si256::<1>(half));
                acc[2 * k] = _mm256_add_epi32(acc[2 * k], first);
                acc[2 * k + 1] = _mm256_add_epi32(acc[2 * k + 1], second);
            }
        }
        // SAFETY: c + 32 <= channels <= max.len(), sum.len() (the caller's promise).
        unsafe {
            _mm256_storeu_si256(max.as_mut_ptr().add(c).cast(), vmax);
            for (k, a) in acc.into_iter().enumerate() {
                _mm256_storeu_si256(sum.as_mut_ptr().add(c + 8 * k).cast(), a);
            }
        }
    }
}

/// See [`scalar::f32_nchw`].
#[target_feature(enable = "sse2")]
pub fn f32_nchw_sse2(activation: &[f32], plane: usize, max: &mut [f32], sum: &mut [f32]) {
    let full = plane / 4;
    for ((channel, m), s) in activation.chunks_exact(plane).zip(max).zip(sum) {
        let p = channel.as_ptr();
        let (mut vmax, mut vsum) = (_mm_set1_ps(f32::NEG_INFINITY), _mm_setzero_ps());
        for i in 0..full {
            // SAFETY: 4 * (i + 1) <= plane = channel.len().
            let v = unsafe { _mm_loadu_ps(p.add(4 * i)) };
            vmax = _mm_max_ps(v, vmax);
            vsum = _mm_add_ps(vsum, v);
        }
        let (mut cm, mut cs) = (hmax_f32_128(vmax), hsum_f32_128(vsum));
        for &x in &channel[4 * full..] {
            cm = if x > cm { x } else { cm };
            cs += x;
        }
        (*m, *s) = (cm, cs);
    }
}

/// See [`scalar::f32_nchw`].
#[target_feature(enable = "avx2")]
pub fn f32_nchw_avx2(activation: &[f32], plane: usize, max: &mut [f32], sum: &mut [f32]) {
    let full = plane / 8;
    for ((channel, m), s) in activation.chunks_exact(plane).zip(max).zip(sum) {
        let p = channel.as_ptr();
        let (mut vmax, mut vsum) = (_mm256_set1_ps(f32::NEG_INFINITY), _mm256_setzero_ps());
        for i in 0..full {
            // SAFETY: 8 * (i + 1) <= plane = channel.len().
            let v = unsafe { _mm256_loadu_ps(p.add(8 * i)) };
            vmax = _mm256_max_ps(v, vmax);
            vsum = _mm256_add_ps(vsum, v);
        }
        let (lo, hi) = (
            _mm256_castps256_ps128(vmax),
            _mm256_extractf128_ps::<1>(vmax),
        );
        let mut cm = hmax_f32_128(_mm_max_ps(lo, hi));
        let (lo, hi) = (
            _mm256_castps256_ps128(vsum),
            _mm256_extractf128_ps::<1>(vsum),
        );
        let mut cs = hsum_f32_128(_mm_add_ps(lo, hi));
        for &x in &channel[8 * full..] {
            cm = if x > cm { x } else { cm };
            cs += x;
        }
        (*m, *s) = (cm, cs);
    }
}

/// Independent accumulator vectors per row in the interleaved f32 paths: a single max/sum chain
/// per block of channels would wait out the add latency on every row.
const CHAINS: usize = 4;

/// See [`scalar::f32_nhwc`].
///
/// # Safety
/// `max` and `sum` hold at least `channels` entries: whole vectors are stored into them.
#[target_feature(enable = "sse2")]
pub unsafe fn f32_nhwc_sse2(activation: &[f32], channels: usize, max: &mut [f32], sum: &mut [f32]) {
    if channels >= 4 * CHAINS {
        // SAFETY: forwarded from the caller; channels >= 4 * CHAINS.
        unsafe { f32_nhwc_sse2_chains::<CHAINS>(activation, channels, max, sum) };
    } else if channels >= 4 {
        // SAFETY: forwarded from the caller; channels >= 4.
        unsafe { f32_nhwc_sse2_chains::<1>(activation, channels, max, sum) };
    } else {
        scalar::f32_nhwc(activation, channels, max, sum);
    }
}

/// Blocks of `4 * N` channels (`channels >= 4 * N`), `N` independent vectors each.
///
/// # Safety
/// `max` and `sum` hold at least `channels` entries: whole vectors are stored into them.
#[target_feature(enable = "sse2")]
unsafe fn f32_nhwc_sse2_chains<const N: usize>(
    activation: &[f32],
    channels: usize,
    max: &mut [f32],
    sum: &mut [f32],
) {
    let rows = activation.len() / channels;
    for c in channel_blocks(channels, 4 * N) {
        let (mut vmax, mut vsum) = ([_mm_set1_ps(f32::NEG_INFINITY); N], [_mm_setzero_ps(); N]);
        for row in 0..rows {
            for k in 0..N {
                // SAFETY: row < rows and c + 4 * N <= channels.
                let v =
                    unsafe { _mm_loadu_ps(activation.as_ptr().add(row * channels + c + 4 * k)) };
                vmax[k] = _mm_max_ps(v, vmax[k]);
                vsum[k] = _mm_add_ps(vsum[k], v);
            }
        }
        for k in 0..N {
            // SAFETY: c + 4 * N <= channels <= max.len(), sum.len() (the caller's promise).
            unsafe {
                _mm_storeu_ps(max.as_mut_ptr().add(c + 4 * k), vmax[k]);
                _mm_storeu_ps(sum.as_mut_ptr().add(c + 4 * k), vsum[k]);
            }
        }
    }
}

/// See [`scalar::f32_nhwc`].
///
/// # Safety
/// `max` and `sum` hold at least `channels` entries: whole vectors are stored into them.
#[target_feature(enable = "avx2")]
pub unsafe fn f32_nhwc_avx2(activation: &[f32], channels: usize, max: &mut [f32], sum: &mut [f32]) {
    if channels >= 8 * CHAINS {
        // SAFETY: forwarded from the caller; channels >= 8 * CHAINS.
        unsafe { f32_nhwc_avx2_chains::<CHAINS>(activation, channels, max, sum) };
    } else if channels >= 8 {
        // SAFETY: forwarded from the caller; channels >= 8.
        unsafe { f32_nhwc_avx2_chains::<1>(activation, channels, max, sum) };
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { f32_nhwc_sse2(activation, channels, max, sum) };
    }
}

/// Blocks of `8 * N` channels (`channels >= 8 * N`), `N` independent vectors each.
///
/// # Safety
/// `max` and `sum` hold at least `channels` entries: whole vectors are stored into them.
#[target_feature(enable = "avx2")]
unsafe fn f32_nhwc_avx2_chains<const N: usize>(
    activation: &[f32],
    channels: usize,
    max: &mut [f32],
    sum: &mut [f32],
) {
    let rows = activation.len() / channels;
    for c in channel_blocks(channels, 8 * N) {
        let (mut vmax, mut vsum) = (
            [_mm256_set1_ps(f32::NEG_INFINITY); N],
            [_mm256_setzero_ps(); N],
        );
        for row in 0..rows {
            for k in 0..N {
                // SAFETY: row < rows and c + 8 * N <= channels.
                let v =
                    unsafe { _mm256_loadu_ps(activation.as_ptr().add(row * channels + c + 8 * k)) };
                vmax[k] = _mm256_max_ps(v, vmax[k]);
                vsum[k] = _mm256_add_ps(vsum[k], v);
            }
        }
        for k in 0..N {
            // SAFETY: c + 8 * N <= channels <= max.len(), sum.len() (the caller's promise).
            unsafe {
                _mm256_storeu_ps(max.as_mut_ptr().add(c + 8 * k), vmax[k]);
                _mm256_storeu_ps(sum.as_mut_ptr().add(c + 8 * k), vsum[k]);
            }
        }
    }
}
