//! AVX2: 32 output channels x 2 pixels per tile, in 8 accumulators whose lanes are output
//! channels.
//!
//! The weights are packed as i16, each row's weights of two adjacent input channels in one
//! 32-bit lane. Per four input channels of a pixel, one 32-bit broadcast and two byte shuffles
//! give the pairs `(x[k], x[k+1])` and `(x[k+2], x[k+3])` zero-extended to i16 in every lane,
//! and `VPMADDWD` multiplies a pair by eight rows' weight pairs and adds each lane's two
//! products into i32: exact, since `|255 * 127| * 2` is far from saturating anything. The last
//! panel may have 8, 16 or 24 channels; a pixel tail runs a one-pixel tile.

use core::arch::x86_64::*;

use super::{ARRAYS, BIAS_AT, Header, LEFT_AT, MULTIPLIER_AT, RIGHT_AT, Shape, pixel_block};
use crate::int8::requant::x86::{apply, stage};
use crate::int8::stride;

/// Pixels per tile.
const PIXELS: usize = 2;

/// Runs the whole layer.
///
/// # Safety
/// The CPU must have AVX2; the buffers must match `shape` and the Avx2 layout of
/// [`super::Pointwise::pack`]: `weights` `2 * stride(M) * stride(K)` bytes, `body` the params
/// after the header.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn run(
    shape: &Shape,
    weights: &[i8],
    body: &[i32],
    header: Header,
    input: &[u8],
    output: &mut [u8],
) {
    let (kk, mm) = (stride(shape.in_channels), stride(shape.out_channels));
    let (lo, hi) = header.stage.bounds();
    let st = Stage {
        lo: _mm256_set1_epi32(lo),
        hi: _mm256_set1_epi32(hi),
        zp: _mm256_set1_epi32(i32::from(header.stage.zero_point)),
    };
    let block = pixel_block(kk, PIXELS);
    let out = output.as_mut_ptr();
    let mut start = 0;
    while start < shape.pixels {
        let end = (start + block).min(shape.pixels);
        let mut first = 0;
        while first < mm {
            let rows = 32.min(mm - first);
            let w = weights[2 * first * kk..][..2 * rows * kk].as_ptr();
            let p = body[first * ARRAYS..][..rows * ARRAYS].as_ptr();
            let mut q = start;
            while q < end {
                let c = PIXELS.min(end - q);
                let x = |i: usize| input[(q + i.min(c - 1)) * kk..][..kk].as_ptr();
                let o = |i: usize| out.wrapping_add((q + i.min(c - 1)) * mm + first);
                // SAFETY: `w` and `p` are this panel's packed weights and params; pixels q and
                // q + c - 1 lie in the frame, so their kk input bytes and the `rows` output
                // bytes from `first` lie within the buffers.
                unsafe {
                    match (rows / 8, c) {
                        (4, 2) => tile::<4, 2>(w, kk, p, &st, [x(0), x(1)], [o(0), o(1)]),
                        (4, _) => tile::<4, 1>(w, kk, p, &st, [x(0)], [o(0)]),
                        (3, 2) => tile::<3, 2>(w, kk, p, &st, [x(0), x(1)], [o(0), o(1)]),
                        (3, _) => tile::<3, 1>(w, kk, p, &st, [x(0)], [o(0)]),
                        (2, 2) => tile::<2, 2>(w, kk, p, &st, [x(0), x(1)], [o(0), o(1)]),
                        (2, _) => tile::<2, 1>(w, kk, p, &st, [x(0)], [o(0)]),
                        (_, 2) => tile::<1, 2>(w, kk, p, &st, [x(0), x(1)], [o(0), o(1)]),
                        (_, _) => tile::<1, 1>(w, kk, p, &st, [x(0)], [o(0)]),
                    }
                }
                q += c;
            }
            first += rows;
        }
        start = end;
    }
}

/// The output stage's bounds and zero point, splat.
struct Stage {
    lo: __m256i,
    hi: __m256i,
    zp: __m256i,
}

/// One tile: the panel's `8 * G` output channels of the `C` pixels at `x`, written to `out`.
///
/// # Safety
/// The CPU must have AVX2; `w` holds the panel's `2 * 8G * kk` packed weight bytes, `p` its
/// `8G * ARRAYS` params; each `x[c]` points at `kk` input bytes and each `out[c]` at `8G`
/// writable output bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn tile<const G: usize, const C: usize>(
    w: *const i8,
    kk: usize,
    p: *const i32,
    st: &Stage,
    x: [*const u8; C],
    out: [*mut u8; C],
) {
    let rows = 8 * G;
    let first_pair = _mm256_setr_epi8(
        0, -1, 1, -1, 0, -1, 1, -1, 0, -1, 1, -1, 0, -1, 1, -1, 0, -1, 1, -1, 0, -1, 1, -1, 0, -1,
        1, -1, 0, -1, 1, -1,
    );
    let second_pair = _mm256_setr_epi8(
        2, -1, 3, -1, 2, -1, 3, -1, 2, -1, 3, -1, 2, -1, 3, -1, 2, -1, 3, -1, 2, -1, 3, -1, 2, -1,
        3, -1, 2, -1, 3, -1,
    );
    let mut acc = [[_mm256_setzero_si256(); C]; G];
    for (g, a) in acc.iter_mut().enumerate() {
        // SAFETY: the panel's bias array holds `rows` i32.
        let b = unsafe { _mm256_loadu_si256(p.add(BIAS_AT * rows + 8 * g).cast()) };
        *a = [b; C];
    }
    for step in 0..kk / 4 {
        let mut xa = [_mm256_setzero_si256(); C];
        let mut xb = [_mm256_setzero_si256(); C];
        for c in 0..C {
            // SAFETY: 4 * step + 4 <= kk: the four bytes lie in the pixel.
            let four = unsafe { x[c].add(4 * step).cast::<i32>().read_unaligned() };
            let b = _mm256_set1_epi32(four);
            xa[c] = _mm256_shuffle_epi8(b, first_pair);
            xb[c] = _mm256_shuffle_epi8(b, second_pair);
        }
        // Two pairs of input channels: `rows` lanes of 4 bytes each.
        let ws = w.wrapping_add(step * 2 * rows * 4);
        for (g, acc) in acc.iter_mut().enumerate() {
            // SAFETY: the two pairs' weights of this step lie in the panel's weights.
            let (wa, wb) = unsafe {
                (
                    _mm256_loadu_si256(ws.add(32 * g).cast()),
                    _mm256_loadu_si256(ws.add(4 * rows + 32 * g).cast()),
                )
            };
            for c in 0..C {
                let a = _mm256_add_epi32(acc[c], _mm256_madd_epi16(xa[c], wa));
                acc[c] = _mm256_add_epi32(a, _mm256_madd_epi16(xb[c], wb));
            }
        }
    }
    for (g, acc) in acc.iter().enumerate() {
        // SAFETY: the panel's params are ARRAYS arrays of `rows` i32.
        let [mult, left, right] = unsafe {
            [MULTIPLIER_AT, LEFT_AT, RIGHT_AT]
                .map(|a| _mm256_loadu_si256(p.add(a * rows + 8 * g).cast()))
        };
        for (c, &acc) in acc.iter().enumerate() {
            let v = stage(apply(acc, mult, left, right), st.lo, st.hi, st.zp);
            // Lanes 0-3 and 4-7 as i16 in the low 128 bits, then as bytes (all in 0..=255).
            let v = _mm256_packs_epi32(v, v);
            let v = _mm256_permute4x64_epi64::<0b1000>(v);
            let v = _mm256_castsi256_si128(v);
            let v = _mm_packus_epi16(v, v);
            // SAFETY: out[c] has 8G writable bytes.
            unsafe { _mm_storel_epi64(out[c].add(8 * g).cast(), v) };
        }
    }
}
