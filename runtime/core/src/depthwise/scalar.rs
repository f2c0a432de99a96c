//! The reference: each output pixel as [`Geometry`] defines it, taps in row-major order, each a
//! multiply then an add.

use super::{Clip, Geometry, TAPS};

/// Output pixel `(oy, ox)` of one channel before the clip: its bias plus the taps that land
/// inside `plane` (the channel's input, `in_height * in_width`).
pub fn pixel(g: &Geometry, plane: &[f32], w: &[f32; TAPS], bias: f32, oy: usize, ox: usize) -> f32 {
    let mut acc = bias;
    for ky in 0..3 {
        let Some(iy) = g.input_row(oy, ky) else {
            continue;
        };
        for kx in 0..3 {
            let Some(ix) = (ox * g.stride + kx)
                .checked_sub(g.pad_left)
                .filter(|&ix| ix < g.in_width)
            else {
                continue;
            };
            acc += w[3 * ky + kx] * plane[iy * g.in_width + ix];
        }
    }
    acc
}

/// One channel's output plane, every pixel by [`pixel`], then clipped.
pub fn channel(
    g: &Geometry,
    plane: &[f32],
    w: &[f32; TAPS],
    bias: f32,
    clip: Clip,
    out: &mut [f32],
) {
    for (oy, row) in out.chunks_exact_mut(g.out_width).enumerate() {
        for (ox, o) in row.iter_mut().enumerate() {
            *o = clip.apply(pixel(g, plane, w, bias, oy, ox));
        }
    }
}
