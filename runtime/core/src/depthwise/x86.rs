//! AVX2 + FMA: eight output pixels of a row per step.
//!
//! Stride 1 reads each tap as an unaligned vector shifted by its column. Stride 2 loads sixteen
//! consecutive inputs and splits them into even and odd columns.

use core::arch::x86_64::*;

use super::{Clip, TAPS, Window};

const LANES: usize = 8;

/// Even (`ODD = false`) or odd elements of the sixteen floats at `p`, in order.
///
/// # Safety
/// `p..p + 16` must be readable, and the CPU must have AVX2. Always inlined, so that it compiles
/// with the AVX2 features of its caller.
#[inline(always)]
unsafe fn deinterleave<const ODD: bool>(p: *const f32) -> __m256 {
    // SAFETY: the caller guarantees the sixteen floats and AVX2.
    unsafe {
        let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(LANES)));
        // Per 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6] (or the odd ones) ...
        let mixed = if ODD {
            _mm256_shuffle_ps::<0b11_01_11_01>(a, b)
        } else {
            _mm256_shuffle_ps::<0b10_00_10_00>(a, b)
        };
        // ... then 64-bit pairs in the order 0, 2, 1, 3: [a0 a2 a4 a6 b0 b2 b4 b6].
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
            mixed,
        )))
    }
}

/// One output row; see `Depthwise::row`. Each scratch row holds the floats a last, partial
/// vector reads (`Geometry::scratch_width`).
#[target_feature(enable = "avx2,fma")]
pub(super) fn row_avx2(
    stride: usize,
    window: Window<'_>,
    w: &[f32; TAPS],
    bias: f32,
    clip: Clip,
    out_row: &mut [f32],
) {
    let (lo, hi) = (_mm256_set1_ps(clip.min), _mm256_set1_ps(clip.max));
    let taps = w.map(|v| _mm256_set1_ps(v));
    let reach = stride * LANES + 2;
    for ox in (0..out_row.len()).step_by(LANES) {
        let mut acc = _mm256_set1_ps(bias);
        for (ky, row) in window.iter().enumerate() {
            let p = row[stride * ox..stride * ox + reach].as_ptr();
            let [w0, w1, w2] = [taps[3 * ky], taps[3 * ky + 1], taps[3 * ky + 2]];
            // SAFETY: the slice above holds every float read: ox .. ox + 10 for stride 1,
            // 2 ox .. 2 ox + 18 for stride 2; this function only runs on a CPU with AVX2.
            unsafe {
                let (x0, x1, x2) = if stride == 1 {
                    (
                        _mm256_loadu_ps(p),
                        _mm256_loadu_ps(p.add(1)),
                        _mm256_loadu_ps(p.add(2)),
                    )
                } else {
                    (
                        deinterleave::<false>(p),
                        deinterleave::<true>(p),
                        deinterleave::<false>(p.add(2)),
                    )
                };
                acc = _mm256_fmadd_ps(x0, w0, acc);
                acc = _mm256_fmadd_ps(x1, w1, acc);
                acc = _mm256_fmadd_ps(x2, w2, acc);
            }
        }
        // Bound first: a NaN sum stays NaN, as in the reference.
        let v = _mm256_min_ps(hi, _mm256_max_ps(lo, acc));
        let n = (out_row.len() - ox).min(LANES);
        if n == LANES {
            // SAFETY: ox + 8 <= out_row.len().
            unsafe { _mm256_storeu_ps(out_row[ox..ox + LANES].as_mut_ptr(), v) };
        } else {
            let mut lanes = [0.0f32; LANES];
            // SAFETY: `lanes` holds eight floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
            out_row[ox..ox + n].copy_from_slice(&lanes[..n]);
        }
    }
}
