//! The reference: each output byte as the module documentation defines it, straight from the
//! input (no scratch, no flip), taps in row-major order, in wrapping i32.

use super::{Geometry, Packed, TAPS};
use crate::int8::{OutputStage, requant::requantize, stride};

/// The i32 accumulator of channel `c` at output pixel `(oy, ox)`: its bias plus the nine
/// weighted taps, a tap outside the input reading `zero_point`.
pub fn accumulator(
    g: &Geometry,
    packed: &Packed<'_>,
    zero_point: u8,
    input: &[u8],
    (oy, ox): (usize, usize),
    c: usize,
) -> i32 {
    let sc = stride(g.channels);
    let inside = |o: usize, k: usize, pad: usize, len: usize| {
        (o * g.stride + k).checked_sub(pad).filter(|&i| i < len)
    };
    let mut acc = packed.bias(c);
    for t in 0..TAPS {
        let (ky, kx) = (t / 3, t % 3);
        let x = match (
            inside(oy, ky, g.pad_top, g.in_height),
            inside(ox, kx, g.pad_left, g.in_width),
        ) {
            (Some(iy), Some(ix)) => input[(iy * g.in_width + ix) * sc + c],
            _ => zero_point,
        };
        acc = acc.wrapping_add(i32::from(packed.weight(c, t)) * i32::from(x));
    }
    acc
}

/// The whole convolution; buffers as `Depthwise::run` checked them. Leaves the bytes past the
/// channels of each output pixel as they were.
pub fn run(
    g: &Geometry,
    packed: &Packed<'_>,
    zero_point: u8,
    stage: OutputStage,
    input: &[u8],
    output: &mut [u8],
) {
    let sc = stride(g.channels);
    for (p, pixel) in output.chunks_exact_mut(sc).enumerate() {
        let (oy, ox) = (p / g.out_width, p % g.out_width);
        for (c, out) in pixel[..g.channels].iter_mut().enumerate() {
            let acc = accumulator(g, packed, zero_point, input, (oy, ox), c);
            *out = requantize(acc, packed.requant(c), stage);
        }
    }
}

/// One output row from three scratch rows as [`Depthwise::run_ring`](super::Depthwise) fills
/// them (codes as they are, borders holding the zero point): the reference's row, for callers
/// that produce the input row by row.
pub(crate) fn row(
    rows: [&[u8]; 3],
    stride: usize,
    sc: usize,
    packed: &Packed<'_>,
    stage: OutputStage,
    out_row: &mut [u8],
) {
    for (ox, pixel) in out_row.chunks_exact_mut(sc).enumerate() {
        for (c, out) in pixel[..packed.channels()].iter_mut().enumerate() {
            let mut acc = packed.bias(c);
            for t in 0..TAPS {
                let x = rows[t / 3][(ox * stride + t % 3) * sc + c];
                acc = acc.wrapping_add(i32::from(packed.weight(c, t)) * i32::from(x));
            }
            *out = requantize(acc, packed.requant(c), stage);
        }
    }
}
