//! AVX2 + FMA: thirty-two codes of a row per step, in four independent sums.

use core::arch::x86_64::*;

use super::{I16_BLOCK, scalar};

const LANES: usize = 8;

#[target_feature(enable = "avx2")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s)))
}

/// See `Int8Gemv::dots`.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and `codes.len() == out.len() * x.len()`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dots_avx2(codes: &[i8], x: &[f32], out: &mut [f32]) {
    let features = x.len();
    let step = 4 * LANES;
    let body = features / step * step;
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(features.max(1))) {
        let mut acc = [_mm256_setzero_ps(); 4];
        for i in (0..body).step_by(step) {
            // SAFETY: i + 32 <= body <= features, the length of `x` and of the row.
            unsafe {
                let q = _mm256_loadu_si256(row.as_ptr().add(i).cast());
                let halves = [_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q)];
                for (j, a) in acc.iter_mut().enumerate() {
                    let h = halves[j / 2];
                    let h = if j % 2 == 0 {
                        h
                    } else {
                        _mm_unpackhi_epi64(h, h)
                    };
                    let w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(h));
                    let v = _mm256_loadu_ps(x.as_ptr().add(i + j * LANES));
                    *a = _mm256_fmadd_ps(w, v, *a);
                }
            }
        }
        let tail = scalar::dot(&row[body..], &x[body..]);
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        *o = hsum(sum) + tail;
    }
}

/// The sum of eight i32 lanes, in i64.
#[target_feature(enable = "avx2")]
fn hsum_i64(v: __m256i) -> i64 {
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` holds 32 bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
    lanes.iter().map(|&l| i64::from(l)).sum()
}

/// See `Int8Gemv::dots_i16`: thirty-two codes per step, widened to i16 and multiplied in pairs
/// (`vpmaddwd`) into two i32 sums, moved into i64 every [`I16_BLOCK`] steps.
///
/// # Safety
/// The CPU must have AVX2, `codes.len() == out.len() * x.len()`, and `x` must not hold
/// `i16::MIN`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn dots_i16_avx2(codes: &[i8], x: &[i16], out: &mut [f32]) {
    const STEP: usize = 32;
    let features = x.len();
    let body = features / STEP * STEP;
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(features.max(1))) {
        let mut sum = 0i64;
        for block in (0..body).step_by(STEP * I16_BLOCK) {
            let mut acc = [_mm256_setzero_si256(); 2];
            for i in (block..body.min(block + STEP * I16_BLOCK)).step_by(STEP) {
                // SAFETY: i + 32 <= body <= features, the length of `x` and of the row.
                unsafe {
                    let lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(row.as_ptr().add(i).cast()));
                    let hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(row.as_ptr().add(i + 16).cast()));
                    let v0 = _mm256_loadu_si256(x.as_ptr().add(i).cast());
                    let v1 = _mm256_loadu_si256(x.as_ptr().add(i + 16).cast());
                    acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(lo, v0));
                    acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(hi, v1));
                }
            }
            sum += hsum_i64(acc[0]) + hsum_i64(acc[1]);
        }
        *o = (sum + scalar::dot_i16(&row[body..], &x[body..])) as f32;
    }
}
