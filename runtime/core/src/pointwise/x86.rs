//! AVX2 + FMA: six output channels by sixteen pixels per tile, in twelve accumulators. The last
//! tile of a row of pixels may be narrower: its loads and stores are masked.

use core::arch::x86_64::*;

use super::{Clip, PANEL, Shape, Tile};

/// Pixels per tile.
pub(super) const WIDTH: usize = 16;

/// One tile: pixels `n..n + cols` of the panel's channels.
///
/// # Safety
/// The CPU must have AVX2 and FMA; the buffers must match `shape`, `1 <= cols <= 16` and
/// `n + cols <= plane`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile(
    shape: &Shape,
    panel: &[f32],
    tile: &Tile,
    clip: Clip,
    input: &[f32],
    n: usize,
    cols: usize,
    output: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if cols == WIDTH {
            tile_of::<false>(shape, panel, tile, clip, input, n, cols, output)
        } else {
            tile_of::<true>(shape, panel, tile, clip, input, n, cols, output)
        }
    }
}

/// [`tile`], with masked loads and stores when `MASKED`.
///
/// # Safety
/// As for [`tile`].
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_of<const MASKED: bool>(
    shape: &Shape,
    panel: &[f32],
    tile: &Tile,
    clip: Clip,
    input: &[f32],
    n: usize,
    cols: usize,
    output: &mut [f32],
) {
    let plane = shape.plane;
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let masks = [0, 8]
        .map(|first| _mm256_cmpgt_epi32(_mm256_set1_epi32((cols - first.min(cols)) as i32), lane));
    let mut acc = [[_mm256_setzero_ps(); 2]; PANEL];
    for (a, &b) in acc.iter_mut().zip(&tile.bias) {
        *a = [_mm256_set1_ps(b); 2];
    }
    let x = input[n..].as_ptr();
    for (k, w) in panel.chunks_exact(PANEL).enumerate() {
        // Wrapping: a masked second half may start past the end of `input`; nothing is read
        // there.
        let p = x.wrapping_add(k * plane);
        // SAFETY: k < in_channels and n + cols <= plane: every unmasked lane lies in `input`.
        let (x0, x1) = unsafe {
            if MASKED {
                (
                    _mm256_maskload_ps(p, masks[0]),
                    _mm256_maskload_ps(p.wrapping_add(8), masks[1]),
                )
            } else {
                (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
            }
        };
        for (a, &w) in acc.iter_mut().zip(w) {
            let w = _mm256_set1_ps(w);
            a[0] = _mm256_fmadd_ps(w, x0, a[0]);
            a[1] = _mm256_fmadd_ps(w, x1, a[1]);
        }
    }
    let (lo, hi) = (_mm256_set1_ps(clip.min), _mm256_set1_ps(clip.max));
    for (r, a) in acc.iter().enumerate().take(tile.rows) {
        let out = output[(tile.first + r) * plane + n..][..cols].as_mut_ptr();
        for (half, v) in a.iter().enumerate() {
            // Bound first: a NaN sum stays NaN, as in the reference.
            let v = _mm256_min_ps(hi, _mm256_max_ps(lo, *v));
            let p = out.wrapping_add(8 * half);
            // SAFETY: the unmasked lanes are pixels n .. n + cols of this channel's row.
            unsafe {
                if MASKED {
                    _mm256_maskstore_ps(p, masks[half], v);
                } else {
                    _mm256_storeu_ps(p, v);
                }
            }
        }
    }
}
