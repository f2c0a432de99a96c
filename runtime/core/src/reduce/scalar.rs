//! The reference reductions: plain loops, obviously correct, the definition every fast path
//! is tested against.
//!
//! Callers guarantee `activation.len() == max.len() * plane` (NCHW) or `== max.len() * rows`
//! (NHWC) and `max.len() == sum.len()`; [`super::Reducer`] checks it.

/// u8, channel-major: each channel is one contiguous plane.
pub fn u8_nchw(activation: &[u8], plane: usize, max: &mut [u8], sum: &mut [u32]) {
    for ((channel, m), s) in activation.chunks_exact(plane).zip(max).zip(sum) {
        *m = channel.iter().copied().fold(0, u8::max);
        *s = channel.iter().map(|&x| u32::from(x)).sum();
    }
}

/// u8, channels interleaved: each pixel holds `channels` consecutive values.
pub fn u8_nhwc(activation: &[u8], channels: usize, max: &mut [u8], sum: &mut [u32]) {
    max.fill(0);
    sum.fill(0);
    for pixel in activation.chunks_exact(channels) {
        for ((&x, m), s) in pixel.iter().zip(max.iter_mut()).zip(sum.iter_mut()) {
            *m = (*m).max(x);
            *s += u32::from(x);
        }
    }
}

/// f32, channel-major. A NaN never becomes the max (it does poison the sum).
pub fn f32_nchw(activation: &[f32], plane: usize, max: &mut [f32], sum: &mut [f32]) {
    for ((channel, m), s) in activation.chunks_exact(plane).zip(max).zip(sum) {
        *m = channel
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, max_ignoring_nan);
        *s = channel.iter().sum();
    }
}

/// f32, channels interleaved. A NaN never becomes the max (it does poison the sum).
pub fn f32_nhwc(activation: &[f32], channels: usize, max: &mut [f32], sum: &mut [f32]) {
    max.fill(f32::NEG_INFINITY);
    sum.fill(0.0);
    for pixel in activation.chunks_exact(channels) {
        for ((&x, m), s) in pixel.iter().zip(max.iter_mut()).zip(sum.iter_mut()) {
            *m = max_ignoring_nan(*m, x);
            *s += x;
        }
    }
}

/// `x` if it is greater than `m`, else `m`: the semantics of the SIMD max instructions used by
/// the fast paths (SSE `maxps` with `x` first, NEON `fmaxnm`), so all paths agree on NaN.
#[inline]
fn max_ignoring_nan(m: f32, x: f32) -> f32 {
    if x > m { x } else { m }
}
