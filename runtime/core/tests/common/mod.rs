//! Helpers the depthwise tests (float and int8) share.

#![allow(dead_code)] // each test binary uses a different part

use nap_core::depthwise::Geometry;
use nap_core::int8::stride;

/// A small deterministic generator for the layers' numbers.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 16
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// `Geometry` for padding (top, bottom, left, right), deriving the output size.
pub fn geometry(
    channels: usize,
    (in_height, in_width): (usize, usize),
    stride: usize,
    (pad_top, pad_bottom, pad_left, pad_right): (usize, usize, usize, usize),
) -> Option<Geometry> {
    let out = |len: usize, before: usize, after: usize| {
        (len + before + after)
            .checked_sub(3)
            .map(|n| n / stride + 1)
    };
    Some(Geometry {
        channels,
        in_height,
        in_width,
        stride,
        pad_top,
        pad_left,
        out_height: out(in_height, pad_top, pad_bottom)?,
        out_width: out(in_width, pad_left, pad_right)?,
    })
}

/// The real channels of every pixel, so padding bytes (anything) do not count.
pub fn real(out: &[u8], channels: usize) -> Vec<u8> {
    out.chunks_exact(stride(channels))
        .flat_map(|p| p[..channels].iter().copied())
        .collect()
}
