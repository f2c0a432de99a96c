//! AVX2: eight bytes per step, as eight i32 lanes through the requantization's lane forms.

use core::arch::x86_64::*;

use super::{AddParams, LEFT};
use crate::int8::Requant;
use crate::int8::requant::x86::{apply, stage};

/// A [`Requant`]'s multiplier and shifts, splat, as `apply` takes them; `extra_left` more bits
/// to the left.
#[inline]
#[target_feature(enable = "avx2")]
fn splat(r: Requant, extra_left: u32) -> (__m256i, __m256i, __m256i) {
    (
        _mm256_set1_epi32(r.multiplier),
        _mm256_set1_epi32((r.left() + extra_left) as i32),
        _mm256_set1_epi32(r.right() as i32),
    )
}

/// The add over the whole eight-byte steps of the buffers (one length, checked by the caller);
/// returns how many bytes it wrote.
#[target_feature(enable = "avx2")]
pub(super) fn run(params: &AddParams, a: &[u8], b: &[u8], out: &mut [u8]) -> usize {
    // The inputs' factors never shift left (`AddParams::new`), so step 1 of `apply` with
    // LEFT more bits is exactly `Requant::apply` of `(x - z) << LEFT`: |x - z| << LEFT fits.
    let (ma, la, ra) = splat(params.a, LEFT);
    let (mb, lb, rb) = splat(params.b, LEFT);
    let (mo, lo_, ro) = splat(params.out, 0);
    let (lo, hi) = params.stage.bounds();
    let (lo, hi, zp) = (
        _mm256_set1_epi32(lo),
        _mm256_set1_epi32(hi),
        _mm256_set1_epi32(i32::from(params.stage.zero_point)),
    );
    let za = _mm256_set1_epi32(i32::from(params.a_zero_point));
    let zb = _mm256_set1_epi32(i32::from(params.b_zero_point));
    let steps = out.len() / 8;
    for i in 0..steps {
        let at = 8 * i;
        // SAFETY: at + 8 <= out.len() == a.len() == b.len().
        let (x, y) = unsafe {
            (
                _mm_loadl_epi64(a.as_ptr().add(at).cast()),
                _mm_loadl_epi64(b.as_ptr().add(at).cast()),
            )
        };
        let x = _mm256_sub_epi32(_mm256_cvtepu8_epi32(x), za);
        let y = _mm256_sub_epi32(_mm256_cvtepu8_epi32(y), zb);
        let sum = _mm256_add_epi32(apply(x, ma, la, ra), apply(y, mb, lb, rb));
        let v = stage(apply(sum, mo, lo_, ro), lo, hi, zp);
        // Eight lanes in 0..=255 to bytes: per 128-bit half [v0..v3 | v4..v7], then together.
        let bytes = _mm256_packus_epi16(_mm256_packus_epi32(v, v), _mm256_setzero_si256());
        let bytes = _mm_unpacklo_epi32(
            _mm256_castsi256_si128(bytes),
            _mm256_extracti128_si256::<1>(bytes),
        );
        // SAFETY: as for the loads.
        unsafe { _mm_storel_epi64(out.as_mut_ptr().add(at).cast(), bytes) };
    }
    8 * steps
}
