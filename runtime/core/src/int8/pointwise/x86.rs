//! AVX2: 16 output channels x 4 pixels per tile, in 8 accumulators whose lanes are output
//! channels.
//!
//! The weights are packed as i16 in panels of 16 rows (the last may have 8): per group of
//! four input channels `k..k + 4`, each row's weights of channels `k` and `k + 2` in one
//! 32-bit lane, row by row, then each row's of `k + 1` and `k + 3`. Per group, a pixel's four
//! bytes are broadcast to every 32-bit lane (`VPBROADCASTD` from memory); masking the odd
//! bytes off gives the pair `(x[k], x[k + 2])` zero-extended to i16 in every lane, a 16-bit
//! logical shift right gives `(x[k + 1], x[k + 3])` (two plain ALU operations instead of two
//! byte shuffles), and `VPMADDWD` multiplies a pair by eight rows' weight pairs and adds each
//! lane's two products into i32: exact, since `|255 * 127| * 2` is far from saturating
//! anything.
//!
//! Per group a tile loads four weight vectors and feeds each to four `VPMADDWD`s, one per
//! pixel; the 8 accumulators, the four weight vectors, the mask and the activation pairs fill
//! the 16 registers without spilling (six pixels spill and run slower). A 16-row panel of a
//! 960-channel layer is 30 KiB, so it stays near while a block of pixels passes over it. The
//! multiplies bound the loop on a CPU with one vector-multiply pipe (Zen 1); `VPMADDUBSW`,
//! twice as dense, would need the activations split in two to be exact, so it would issue as
//! many multiplies. An 8-row panel runs 8-row tiles; a pixel tail runs a narrower tile.
//!
//! The requantization skips step 1 (the left shift and its saturation, an identity then)
//! when no channel of the layer shifts left, derives each channel's constants once per tile,
//! and a 16-row tile packs its two vectors of results into 16 bytes at once.

use core::arch::x86_64::*;

use super::{ARRAYS, BIAS_AT, Header, LEFT_AT, MULTIPLIER_AT, RIGHT_AT, Shape, pixel_block};
use crate::int8::requant::x86::{ByteStage, shift_left};
use crate::int8::stride;

/// Pixels per tile.
const PIXELS: usize = 4;

/// Runs the whole layer.
///
/// # Safety
/// The CPU must have AVX2; the buffers must match `shape` and the Avx2 layout of
/// [`super::Pointwise::pack`]: `weights` `2 * stride(M) * stride(K)` bytes, `body` the params
/// after the header.
#[target_feature(enable = "avx2")]
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
#[target_feature(enable = "avx2")]
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
            let w = weights[2 * first * kk..][..2 * rows * kk].as_ptr();
            let p = body[first * ARRAYS..][..rows * ARRAYS].as_ptr();
            let t = Tile { w, kk, rows, p };
            let mut q = start;
            while q < end {
                let c = PIXELS.min(end - q);
                let x = |i: usize| input[(q + i.min(c - 1)) * kk..][..kk].as_ptr();
                let o = |i: usize| out.wrapping_add((q + i.min(c - 1)) * mm + first);
                // SAFETY: `w` and `p` are this panel's packed weights and params; pixels q
                // and q + c - 1 lie in the frame, so their kk input bytes and the `rows`
                // output bytes from `first` lie within the buffers.
                unsafe {
                    match (rows / 8, c) {
                        (2, 4..) => t.run::<2, 4, LEFT>(&st, x, o),
                        (2, 3) => t.run::<2, 3, LEFT>(&st, x, o),
                        (2, 2) => t.run::<2, 2, LEFT>(&st, x, o),
                        (2, _) => t.run::<2, 1, LEFT>(&st, x, o),
                        (_, 4..) => t.run::<1, 4, LEFT>(&st, x, o),
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
    /// The tile's first row's weights in the panel's first group of input channels.
    w: *const i8,
    /// Input channels, padded.
    kk: usize,
    /// The panel's rows (the stride of its weight groups and param arrays).
    rows: usize,
    /// The tile's first row's bias in the panel's params.
    p: *const i32,
}

impl Tile {
    /// The tile's `8 * G` output channels of the `C` pixels at `x(0..C)`, written to
    /// `out(0..C)`.
    ///
    /// # Safety
    /// The CPU must have AVX2; `w` and `p` point into a panel of `rows` rows packed by
    /// [`super::Pointwise::pack`], with `8G` rows from there; each `x(c)` points at `kk` input
    /// bytes and each `out(c)` at `8G` writable output bytes. When `LEFT` is false, none of
    /// the rows shifts left.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn run<const G: usize, const C: usize, const LEFT: bool>(
        &self,
        st: &ByteStage,
        x: impl Fn(usize) -> *const u8,
        out: impl Fn(usize) -> *mut u8,
    ) {
        let (rows, kk, p) = (self.rows, self.kk, self.p);
        let x: [*const u8; C] = core::array::from_fn(x);
        let even = _mm256_set1_epi32(0x00ff_00ff);
        let mut acc = [[_mm256_setzero_si256(); C]; G];
        for (g, a) in acc.iter_mut().enumerate() {
            // SAFETY: the panel's bias array holds the tile's 8G i32.
            let b = unsafe { _mm256_loadu_si256(p.add(BIAS_AT * rows + 8 * g).cast()) };
            *a = [b; C];
        }
        for step in 0..kk / 4 {
            // Per row, 4 bytes: channels (k, k + 2) of the group, then (k + 1, k + 3).
            let ws = self.w.wrapping_add(step * 2 * rows * 4);
            // SAFETY: the group's weights of the tile's rows lie in the panel's weights.
            let (wa, wb): ([__m256i; G], [__m256i; G]) = unsafe {
                (
                    core::array::from_fn(|g| _mm256_loadu_si256(ws.add(32 * g).cast())),
                    core::array::from_fn(|g| _mm256_loadu_si256(ws.add(4 * rows + 32 * g).cast())),
                )
            };
            for c in 0..C {
                // SAFETY: 4 * step + 4 <= kk: the four bytes lie in the pixel.
                let four = unsafe { x[c].add(4 * step).cast::<i32>().read_unaligned() };
                let b = _mm256_set1_epi32(four);
                let xa = _mm256_and_si256(b, even);
                let xb = _mm256_srli_epi16::<8>(b);
                for g in 0..G {
                    let a = _mm256_add_epi32(acc[g][c], _mm256_madd_epi16(xa, wa[g]));
                    acc[g][c] = _mm256_add_epi32(a, _mm256_madd_epi16(xb, wb[g]));
                }
            }
        }
        // SAFETY: forwarded: the caller's contract.
        unsafe { finish::<G, C, LEFT>(acc, p, rows, st, out) }
    }
}

/// Requantizes a tile's accumulators (`acc[g][c]`: rows `8g..8g + 8` of pixel `c`) and writes
/// each pixel's `8 * G` bytes to `out(c)`.
///
/// # Safety
/// The CPU must have AVX2; `p` points at the tile's first row's bias in a panel of `rows`
/// rows packed by [`super::Pointwise::pack`] (with `right` as a positive count); each `out(c)`
/// points at `8G` writable bytes. When `LEFT` is false, none of the rows shifts left.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn finish<const G: usize, const C: usize, const LEFT: bool>(
    acc: [[__m256i; C]; G],
    p: *const i32,
    rows: usize,
    st: &ByteStage,
    out: impl Fn(usize) -> *mut u8,
) {
    let mut res = [[_mm256_setzero_si256(); G]; C];
    for g in 0..G {
        // SAFETY: the panel's params are ARRAYS arrays of `rows` i32.
        let [mult, left, right] = unsafe {
            [MULTIPLIER_AT, LEFT_AT, RIGHT_AT]
                .map(|a| _mm256_loadu_si256(p.add(a * rows + 8 * g).cast()))
        };
        let rq = Rescale::new(mult, left, right);
        for c in 0..C {
            res[c][g] = rq.apply::<LEFT>(acc[g][c]);
        }
    }
    // SAFETY: forwarded: the caller's contract.
    unsafe { store(res, st, out) }
}

/// Writes a tile's requantized rows (`res[c][g]`: rows `8g..8g + 8` of pixel `c`, before the
/// output stage) as bytes, `8 * G` to each `out(c)`.
///
/// Four vectors at a time become 32 bytes, `4 / G` pixels' rows: packing leaves each pixel's
/// groups of 4 rows in dwords 0, 4, 1, 5, ... of the result, which one permutation puts in
/// order. A last group of fewer pixels repeats its last one.
///
/// # Safety
/// The CPU must have AVX2; each `out(c)` points at `8G` writable bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn store<const G: usize, const C: usize>(
    res: [[__m256i; G]; C],
    st: &ByteStage,
    out: impl Fn(usize) -> *mut u8,
) {
    let per = 4 / G;
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for first in (0..C).step_by(per) {
        let v = st.apply(core::array::from_fn(|i| {
            res[(first + i / G).min(C - 1)][i % G]
        }));
        let mut bytes = [0u8; 32];
        // SAFETY: 32 writable bytes.
        unsafe {
            _mm256_storeu_si256(
                bytes.as_mut_ptr().cast(),
                _mm256_permutevar8x32_epi32(v, order),
            )
        };
        for (i, pixel) in bytes.chunks_exact(8 * G).take(C - first).enumerate() {
            // SAFETY: out(c) has 8G writable bytes.
            unsafe { core::ptr::copy_nonoverlapping(pixel.as_ptr(), out(first + i), 8 * G) };
        }
    }
}

/// Eight channels' requantization (steps 1-3 of [`crate::int8::Requant::apply`]) and output
/// stage, with the per-channel constants derived once.
struct Rescale {
    multiplier: __m256i,
    /// The odd lanes' multipliers in the even lanes.
    multiplier_odd: __m256i,
    left: __m256i,
    right: __m256i,
    /// `right - 1`.
    right_less: __m256i,
    /// 1 where `right > 0`, else 0.
    round_mask: __m256i,
}

impl Rescale {
    #[inline]
    #[target_feature(enable = "avx2")]
    fn new(multiplier: __m256i, left: __m256i, right: __m256i) -> Rescale {
        let one = _mm256_set1_epi32(1);
        Rescale {
            multiplier,
            multiplier_odd: _mm256_srli_epi64::<32>(multiplier),
            left,
            right,
            right_less: _mm256_sub_epi32(right, one),
            round_mask: _mm256_and_si256(one, _mm256_cmpgt_epi32(right, _mm256_setzero_si256())),
        }
    }

    /// Steps 1-3 for eight lanes; step 1 only when `LEFT` (it is an identity when every
    /// lane's left shift is 0).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn apply<const LEFT: bool>(&self, acc: __m256i) -> __m256i {
        let x = if LEFT {
            shift_left(acc, self.left)
        } else {
            acc
        };
        // Step 2: 64-bit products of the even and the odd lanes. The multiplier is never
        // negative, so the high half fits 32 bits and a logical shift gives its bits.
        let round = _mm256_set1_epi64x(1 << 30);
        let even = _mm256_srli_epi64::<31>(_mm256_add_epi64(
            _mm256_mul_epi32(x, self.multiplier),
            round,
        ));
        let odd = _mm256_add_epi64(
            _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), self.multiplier_odd),
            round,
        );
        let odd = _mm256_slli_epi64::<1>(odd);
        let x = _mm256_blend_epi32::<0b1010_1010>(even, odd);
        // Step 3: x >> right, plus the last bit shifted out (none when right is 0).
        let round_bit = _mm256_and_si256(_mm256_srav_epi32(x, self.right_less), self.round_mask);
        _mm256_add_epi32(_mm256_srav_epi32(x, self.right), round_bit)
    }
}
