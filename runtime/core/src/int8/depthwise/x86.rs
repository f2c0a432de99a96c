//! AVX2: 8 channels of one output pixel per step, the channel block's weights held in
//! registers while it sweeps the row.
//!
//! The scratch rows hold flipped codes (`x - 128` as i8). Two taps' bytes are interleaved per
//! channel and sign-extended to i16 lanes, and VPMADDWD with the two taps' weights (interleaved
//! the same way once per block) gives each channel's sum of the two products in its i32 lane,
//! exactly (products within ±16256). The ninth tap pairs with zeros. Then the requantization's
//! lane forms and an 8-byte store.

use core::arch::x86_64::*;

use super::{LEFT, MULTIPLIER, NEG_RIGHT, Packed, QUAD, QUAD_LEN, row_width};
use crate::int8::OutputStage;
use crate::int8::requant::x86::{apply, stage as clamp};

/// Channels per step.
const LANES: usize = 8;

/// Eight bytes at `p`, in the low half.
///
/// # Safety
/// `p..p + 8` must be readable.
#[inline(always)]
unsafe fn load8(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees the eight bytes; the load has no alignment requirement.
    unsafe { _mm_loadl_epi64(p.cast()) }
}

/// Eight i32 from two places, four each: `low` gives lanes 0..4, `high` lanes 4..8.
#[inline]
#[target_feature(enable = "avx2")]
fn load_halves(low: &[i32; 4], high: &[i32; 4]) -> __m256i {
    // SAFETY: each array holds four i32; the loads have no alignment requirement.
    unsafe {
        _mm256_set_m128i(
            _mm_loadu_si128(high.as_ptr().cast()),
            _mm_loadu_si128(low.as_ptr().cast()),
        )
    }
}

/// One requantization field (`MULTIPLIER`, `NEG_RIGHT`, `LEFT`) of eight channels, from their
/// two groups.
#[inline]
#[target_feature(enable = "avx2")]
fn field(groups: &[i32], field: usize) -> __m256i {
    let four = |g: usize| -> &[i32; 4] {
        groups[g * QUAD_LEN + field..g * QUAD_LEN + field + QUAD]
            .try_into()
            .expect("four lanes")
    };
    load_halves(four(0), four(1))
}

/// The bytes of `a` and `b` (eight each, low halves) interleaved per channel and
/// sign-extended: sixteen i16 lanes `a0 b0 a1 b1 ...`.
#[inline]
#[target_feature(enable = "avx2")]
fn pairs(a: __m128i, b: __m128i) -> __m256i {
    _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(a, b))
}

/// Eight staged lanes (each in 0..=255) as the low eight bytes.
#[inline]
#[target_feature(enable = "avx2")]
fn narrow(v: __m256i) -> __m128i {
    // Per 128-bit half: [v0..v3 repeated] | [v4..v7 repeated], as bytes.
    let bytes = _mm256_packus_epi16(_mm256_packus_epi32(v, v), _mm256_setzero_si256());
    _mm_unpacklo_epi32(
        _mm256_castsi256_si128(bytes),
        _mm256_extracti128_si256::<1>(bytes),
    )
}

/// One output row; see `Depthwise::run` (`RowFn`).
#[target_feature(enable = "avx2")]
pub(super) fn row(
    rows: [&[u8]; 3],
    stride: usize,
    sc: usize,
    packed: &Packed<'_>,
    stage: OutputStage,
    out_row: &mut [u8],
) {
    let width = row_width(&rows, stride, sc, LANES, packed, out_row);
    if width == 0 {
        return;
    }
    let (lo, hi) = stage.bounds();
    let (lo, hi, zp) = (
        _mm256_set1_epi32(lo),
        _mm256_set1_epi32(hi),
        _mm256_set1_epi32(i32::from(stage.zero_point)),
    );
    let zero = _mm_setzero_si128();
    for c in (0..sc).step_by(LANES) {
        let tap = |t: usize| {
            // SAFETY: every tap's weights hold `padded >= sc` entries (`row_width` asserts
            // it), and c + 8 <= sc.
            unsafe { load8(packed.tap(t).as_ptr().add(c).cast()) }
        };
        let w = [
            pairs(tap(0), tap(1)),
            pairs(tap(2), tap(3)),
            pairs(tap(4), tap(5)),
            pairs(tap(6), tap(7)),
            pairs(tap(8), zero),
        ];
        let bias = &packed.flipped_biases()[c..c + LANES];
        let bias = load_halves(bias[..4].try_into().unwrap(), bias[4..].try_into().unwrap());
        let groups = &packed.quads()[c / QUAD * QUAD_LEN..(c + LANES) / QUAD * QUAD_LEN];
        let (mult, left) = (field(groups, MULTIPLIER), field(groups, LEFT));
        let right = _mm256_sub_epi32(_mm256_setzero_si256(), field(groups, NEG_RIGHT));
        for ox in 0..width {
            let base = ox * stride * sc + c;
            let x = |t: usize| {
                // SAFETY: tap t reads 8 bytes from base + (t % 3) sc of row t / 3, which end
                // within the rows (`row_width` asserts it): base + 2 sc + 8 <= ((width - 1)
                // stride + 2) sc + sc.
                unsafe { load8(rows[t / 3].as_ptr().add(base + t % 3 * sc)) }
            };
            let mut acc = bias;
            for (j, &w) in w.iter().enumerate().take(4) {
                let xs = pairs(x(2 * j), x(2 * j + 1));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xs, w));
            }
            let xs = pairs(x(8), zero);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xs, w[4]));
            let v = clamp(apply(acc, mult, left, right), lo, hi, zp);
            // SAFETY: ox * sc + c + 8 <= (ox + 1) * sc <= out_row.len().
            unsafe { _mm_storel_epi64(out_row.as_mut_ptr().add(ox * sc + c).cast(), narrow(v)) };
        }
    }
}
