//! AVX-512 VNNI: 16 output channels x 8 pixels per tile, `VPDPBUSD` on 256-bit vectors.
//!
//! The weights use [`Isa::NeonDot`](super::Isa::NeonDot)'s layout: panels of 16 rows (the last
//! may have 8), per group of four input channels each row's four weights, row by row, so one
//! 32-byte load holds eight rows' group. A pixel's four bytes are broadcast to every 32-bit
//! lane and `VPDPBUSD` multiplies them, unsigned, by each lane's four signed weights and adds
//! the four products into the lane's i32: 32 multiply-adds per instruction against AVX2's 16
//! (`VPMADDWD`, plus an add), exact, since `4 * 255 * 127` is far from any limit and the sum
//! wraps as the reference's does. The activations need no flip and the bias no correction.
//!
//! The 256-bit form (AVX-512VL) runs as fast per multiply-add as the 512-bit one on CPUs that
//! split 512-bit operations in two (Zen 4); the 32 vector registers of AVX-512 hold a tile's 16
//! accumulators, two weight vectors and the broadcast without spilling. The requantization
//! rounds once ([`Rounding`]) and the bytes go out through the AVX2 path's store.

use core::arch::x86_64::*;

use super::x86::store;
use super::{ARRAYS, BIAS_AT, Header, LEFT_AT, MULTIPLIER_AT, RIGHT_AT, Shape, pixel_block};
use crate::int8::requant::x86::{ByteStage, Rounding};
use crate::int8::stride;

/// Pixels per tile.
const PIXELS: usize = 8;

/// Runs the whole layer.
///
/// # Safety
/// The CPU must have AVX-512 VNNI and VL; the buffers must match `shape` and the Avx512Vnni
/// layout of [`super::Pointwise::pack`]: `weights` `stride(M) * stride(K)` bytes, `body` the
/// params after the header.
#[target_feature(enable = "avx512vnni,avx512vl")]
pub(super) unsafe fn run(
    shape: &Shape,
    weights: &[i8],
    body: &[i32],
    header: Header,
    input: &[u8],
    output: &mut [u8],
) {
    // SAFETY: forwarded: the caller's contract.
    unsafe {
        if header.left {
            run_with::<true>(shape, weights, body, header, input, output)
        } else {
            run_with::<false>(shape, weights, body, header, input, output)
        }
    }
}

/// [`run`], with step 1 of the requantization done only when `LEFT`.
///
/// # Safety
/// As for [`run`]; when `LEFT` is false no channel may shift left.
#[target_feature(enable = "avx512vnni,avx512vl")]
unsafe fn run_with<const LEFT: bool>(
    shape: &Shape,
    weights: &[i8],
    body: &[i32],
    header: Header,
    input: &[u8],
    output: &mut [u8],
) {
    let (kk, mm) = (stride(shape.in_channels), stride(shape.out_channels));
    let st = ByteStage::new(header.stage);
    let block = pixel_block(kk, PIXELS);
    let out = output.as_mut_ptr();
    let mut start = 0;
    while start < shape.pixels {
        let end = (start + block).min(shape.pixels);
        let mut first = 0;
        while first < mm {
            let rows = 16.min(mm - first);
            let w = weights[first * kk..][..rows * kk].as_ptr();
            let p = body[first * ARRAYS..][..rows * ARRAYS].as_ptr();
            let t = Tile { w, kk, rows, p };
            let mut q = start;
            while q < end {
                let c = match end - q {
                    8.. => 8,
                    4..=7 => 4,
                    n => n,
                };
                let x = |i: usize| input[(q + i) * kk..][..kk].as_ptr();
                let o = |i: usize| out.wrapping_add((q + i) * mm + first);
                // SAFETY: `w` and `p` are this panel's packed weights and params; pixels q
                // to q + c - 1 lie in the frame, so their kk input bytes and the `rows`
                // output bytes from `first` lie within the buffers.
                unsafe {
                    match (rows / 8, c) {
                        (2, 8) => t.run::<2, 8, LEFT>(&st, x, o),
                        (2, 4) => t.run::<2, 4, LEFT>(&st, x, o),
                        (2, 3) => t.run::<2, 3, LEFT>(&st, x, o),
                        (2, 2) => t.run::<2, 2, LEFT>(&st, x, o),
                        (2, _) => t.run::<2, 1, LEFT>(&st, x, o),
                        (_, 8) => t.run::<1, 8, LEFT>(&st, x, o),
                        (_, 4) => t.run::<1, 4, LEFT>(&st, x, o),
                        (_, 3) => t.run::<1, 3, LEFT>(&st, x, o),
                        (_, 2) => t.run::<1, 2, LEFT>(&st, x, o),
                        (_, _) => t.run::<1, 1, LEFT>(&st, x, o),
                    }
                }
                q += c;
            }
            first += rows;
        }
        start = end;
    }
}

/// Where a tile's rows lie in their panel.
struct Tile {
    /// The panel's weights of its first group of input channels.
    w: *const i8,
    /// Input channels, padded.
    kk: usize,
    /// The panel's rows (the stride of its weight groups and param arrays).
    rows: usize,
    /// The panel's bias.
    p: *const i32,
}

impl Tile {
    /// The panel's `8 * G` output channels of the `C` pixels at `x(0..C)`, written to
    /// `out(0..C)`.
    ///
    /// # Safety
    /// The CPU must have AVX-512 VNNI and VL; `w` and `p` point at a panel of `rows = 8G` rows
    /// packed by [`super::Pointwise::pack`]; each `x(c)` points at `kk` input bytes and each
    /// `out(c)` at `8G` writable output bytes. When `LEFT` is false, none of the rows shifts
    /// left.
    #[inline]
    #[target_feature(enable = "avx512vnni,avx512vl")]
    unsafe fn run<const G: usize, const C: usize, const LEFT: bool>(
        &self,
        st: &ByteStage,
        x: impl Fn(usize) -> *const u8,
        out: impl Fn(usize) -> *mut u8,
    ) {
        let (rows, p) = (self.rows, self.p);
        let x: [*const u8; C] = core::array::from_fn(x);
        let mut acc = [[_mm256_setzero_si256(); C]; G];
        for (g, a) in acc.iter_mut().enumerate() {
            // SAFETY: the panel's bias array holds its 8G i32.
            let b = unsafe { _mm256_loadu_si256(p.add(BIAS_AT * rows + 8 * g).cast()) };
            *a = [b; C];
        }
        for step in 0..self.kk / 4 {
            let ws = self.w.wrapping_add(step * 4 * rows);
            // SAFETY: the group's weights of the panel's rows lie in its weights.
            let w: [__m256i; G] =
                core::array::from_fn(|g| unsafe { _mm256_loadu_si256(ws.add(32 * g).cast()) });
            for c in 0..C {
                // SAFETY: 4 * step + 4 <= kk: the four bytes lie in the pixel.
                let four = unsafe { x[c].add(4 * step).cast::<i32>().read_unaligned() };
                let b = _mm256_set1_epi32(four);
                for g in 0..G {
                    acc[g][c] = _mm256_dpbusd_epi32(acc[g][c], b, w[g]);
                }
            }
        }
        let mut res = [[_mm256_setzero_si256(); G]; C];
        for g in 0..G {
            // SAFETY: the panel's params are ARRAYS arrays of `rows` i32.
            let [mult, left, right] = unsafe {
                [MULTIPLIER_AT, LEFT_AT, RIGHT_AT]
                    .map(|a| _mm256_loadu_si256(p.add(a * rows + 8 * g).cast()))
            };
            let rounding = Rounding::new(mult, left, right);
            for c in 0..C {
                res[c][g] = rounding.apply::<LEFT>(acc[g][c]);
            }
        }
        // SAFETY: forwarded: the caller's contract.
        unsafe { store(res, st, out) }
    }
}
