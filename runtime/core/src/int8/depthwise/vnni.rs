//! AVX-512 VNNI: 32 channels of one output pixel per step, four taps per `VPDPBUSD`.
//!
//! The scratch rows hold the codes as they are (this path multiplies unsigned activations by
//! signed weights, so nothing is flipped and the plain bias applies). `VPDPBUSD` adds four
//! adjacent bytes' products into an i32 lane, so per group of four taps the four taps' bytes
//! are regrouped per channel: two rounds of in-lane unpacks (bytes, then 16-bit pairs) turn
//! four 32-channel loads into four vectors of channel quads. In-lane unpacks leave the
//! channels of accumulator `j` as `4j..4j + 4` and `16 + 4j..16 + 4j + 4`; the weights go
//! through the same unpacks, the per-channel numbers are loaded in that order, and the final
//! packs to bytes restore channel order. The ninth tap forms a group with three zeros. A
//! layer whose channel stride is not a multiple of 32 runs its last channels 8 at a time.

use core::arch::x86_64::*;

use super::{LEFT, MULTIPLIER, NEG_RIGHT, Packed, QUAD, QUAD_LEN, row_width};
use crate::int8::OutputStage;
use crate::int8::requant::x86::{ByteStage, Rounding};

/// Channels per step of the main loop.
const LANES: usize = 32;

/// Four taps' bytes (32 channels each) regrouped per channel, as in-lane unpacks leave them:
/// vector `j` holds channels `4j..4j + 4` in its low half and `16 + 4j..` in its high half,
/// each channel's four bytes in tap order.
#[inline]
#[target_feature(enable = "avx512vnni,avx512vl")]
fn quads(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> [__m256i; 4] {
    let (ab_lo, ab_hi) = (_mm256_unpacklo_epi8(a, b), _mm256_unpackhi_epi8(a, b));
    let (cd_lo, cd_hi) = (_mm256_unpacklo_epi8(c, d), _mm256_unpackhi_epi8(c, d));
    [
        _mm256_unpacklo_epi16(ab_lo, cd_lo),
        _mm256_unpackhi_epi16(ab_lo, cd_lo),
        _mm256_unpacklo_epi16(ab_hi, cd_hi),
        _mm256_unpackhi_epi16(ab_hi, cd_hi),
    ]
}

/// Eight channels' four taps (eight bytes each, low halves) regrouped per channel, in order.
#[inline]
#[target_feature(enable = "avx512vnni,avx512vl")]
fn quads8(a: __m128i, b: __m128i, c: __m128i, d: __m128i) -> __m256i {
    let (ab, cd) = (_mm_unpacklo_epi8(a, b), _mm_unpacklo_epi8(c, d));
    _mm256_set_m128i(_mm_unpackhi_epi16(ab, cd), _mm_unpacklo_epi16(ab, cd))
}

/// 32 bytes at `p`.
///
/// # Safety
/// `p..p + 32` must be readable.
#[inline(always)]
unsafe fn load32(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees the bytes; the load has no alignment requirement.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// Eight bytes at `p`, in the low half.
///
/// # Safety
/// `p..p + 8` must be readable.
#[inline(always)]
unsafe fn load8(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees the bytes; the load has no alignment requirement.
    unsafe { _mm_loadl_epi64(p.cast()) }
}

/// Eight i32: four from `low` in the low half, four from `high` in the high half.
#[inline]
#[target_feature(enable = "avx512vnni,avx512vl")]
fn halves(low: &[i32], high: &[i32]) -> __m256i {
    let four = |s: &[i32]| -> __m128i {
        let s: &[i32; 4] = s[..4].try_into().expect("four lanes");
        // SAFETY: four i32; the load has no alignment requirement.
        unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
    };
    _mm256_set_m128i(four(high), four(low))
}

/// A vector's channels' bias and requantization: the channels of groups `low` and `high`
/// (of [`QUAD`] channels each) in the two halves.
struct Numbers {
    bias: __m256i,
    rounding: Rounding,
}

impl Numbers {
    #[inline]
    #[target_feature(enable = "avx512vnni,avx512vl")]
    fn new(packed: &Packed<'_>, low: usize, high: usize) -> Numbers {
        let (bias, groups) = (packed.biases(), packed.quads());
        let field = |f: usize| {
            halves(
                &groups[low * QUAD_LEN + f..],
                &groups[high * QUAD_LEN + f..],
            )
        };
        Numbers {
            bias: halves(&bias[low * QUAD..], &bias[high * QUAD..]),
            rounding: Rounding::new(
                field(MULTIPLIER),
                field(LEFT),
                _mm256_sub_epi32(_mm256_setzero_si256(), field(NEG_RIGHT)),
            ),
        }
    }
}

/// One output row; see `Depthwise::run` (`RowFn`). The scratch rows hold unflipped codes.
#[target_feature(enable = "avx512vnni,avx512vl")]
pub(super) fn row(
    rows: [&[u8]; 3],
    stride: usize,
    sc: usize,
    packed: &Packed<'_>,
    stage: OutputStage,
    out_row: &mut [u8],
) {
    if packed.shifts_left {
        row_with::<true>(rows, stride, sc, packed, stage, out_row)
    } else {
        row_with::<false>(rows, stride, sc, packed, stage, out_row)
    }
}

/// [`row`], with step 1 of the requantization only when `LEFT` (some channel shifts left).
#[target_feature(enable = "avx512vnni,avx512vl")]
fn row_with<const LEFT: bool>(
    rows: [&[u8]; 3],
    stride: usize,
    sc: usize,
    packed: &Packed<'_>,
    stage: OutputStage,
    out_row: &mut [u8],
) {
    let width = row_width(&rows, stride, sc, 8, packed, out_row);
    if width == 0 {
        return;
    }
    let st = ByteStage::new(stage);
    let z = _mm256_setzero_si256();
    let main = sc / LANES * LANES;
    for c in (0..main).step_by(LANES) {
        // SAFETY: every tap's weights hold `padded >= sc >= c + 32` entries (`row_width`
        // asserts `padded >= sc`).
        let tap = |t: usize| unsafe { load32(packed.tap(t).as_ptr().add(c).cast()) };
        let w = [
            quads(tap(0), tap(1), tap(2), tap(3)),
            quads(tap(4), tap(5), tap(6), tap(7)),
            quads(tap(8), z, z, z),
        ];
        let numbers: [Numbers; 4] =
            core::array::from_fn(|j| Numbers::new(packed, c / QUAD + j, c / QUAD + 4 + j));
        for ox in 0..width {
            let base = ox * stride * sc + c;
            // SAFETY: tap t reads 32 bytes from base + (t % 3) sc of row t / 3, which end
            // within the rows (`row_width` asserts it): base + 2 sc + 32 <= ((width - 1)
            // stride + 2) sc + sc, as c + 32 <= sc.
            let x = |t: usize| unsafe { load32(rows[t / 3].as_ptr().add(base + t % 3 * sc)) };
            let mut acc: [__m256i; 4] = core::array::from_fn(|j| numbers[j].bias);
            for (g, x) in [
                quads(x(0), x(1), x(2), x(3)),
                quads(x(4), x(5), x(6), x(7)),
                quads(x(8), z, z, z),
            ]
            .into_iter()
            .enumerate()
            {
                for j in 0..4 {
                    acc[j] = _mm256_dpbusd_epi32(acc[j], x[j], w[g][j]);
                }
            }
            // Packing channels 0-7 | 16-23 and 8-15 | 24-31 as i16, then all 32 as bytes,
            // restores their order.
            let v = st.apply(core::array::from_fn(|j| {
                numbers[j].rounding.apply::<LEFT>(acc[j])
            }));
            // SAFETY: ox * sc + c + 32 <= (ox + 1) * sc <= out_row.len().
            unsafe { _mm256_storeu_si256(out_row.as_mut_ptr().add(ox * sc + c).cast(), v) };
        }
    }
    let z = _mm_setzero_si128();
    for c in (main..sc).step_by(8) {
        // SAFETY: as above, with c + 8 <= sc.
        let tap = |t: usize| unsafe { load8(packed.tap(t).as_ptr().add(c).cast()) };
        let w = [
            quads8(tap(0), tap(1), tap(2), tap(3)),
            quads8(tap(4), tap(5), tap(6), tap(7)),
            quads8(tap(8), z, z, z),
        ];
        let numbers = Numbers::new(packed, c / QUAD, c / QUAD + 1);
        for ox in 0..width {
            let base = ox * stride * sc + c;
            // SAFETY: as above, with 8 bytes and c + 8 <= sc.
            let x = |t: usize| unsafe { load8(rows[t / 3].as_ptr().add(base + t % 3 * sc)) };
            let mut acc = numbers.bias;
            acc = _mm256_dpbusd_epi32(acc, quads8(x(0), x(1), x(2), x(3)), w[0]);
            acc = _mm256_dpbusd_epi32(acc, quads8(x(4), x(5), x(6), x(7)), w[1]);
            acc = _mm256_dpbusd_epi32(acc, quads8(x(8), z, z, z), w[2]);
            let r = numbers.rounding.apply::<LEFT>(acc);
            let v = st.apply([r; 4]);
            // Bytes 0-3 and 16-19 hold the eight channels.
            let v = _mm_unpacklo_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            // SAFETY: ox * sc + c + 8 <= (ox + 1) * sc <= out_row.len().
            unsafe { _mm_storel_epi64(out_row.as_mut_ptr().add(ox * sc + c).cast(), v) };
        }
    }
}
