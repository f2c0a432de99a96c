//! Pointwise (1x1) convolution in integers: u8 NHWC activations in and out, i8 weights, an i32
//! bias and a [`Requant`] per output channel, one [`OutputStage`] for the output tensor.
//!
//! Output channel `m` of pixel `p` is, exactly,
//!
//! ```text
//! acc = bias[m] + sum_k w[m][k] * x[p][k]
//! out = requantize(acc, requant[m], stage)
//! ```
//!
//! in wrapping i32 arithmetic (a real layer is far from overflowing; wrapping only makes every
//! path agree on absurd ones), with the input's zero point already folded into the bias
//! ([`fold_zero_point`](super::fold_zero_point)`(bias, weights, K, zp)`). Activations follow
//! the [`int8`](super) layout: pixel `p` at byte `p * stride(C)`; the output's padding channels
//! receive arbitrary bytes, the input's are never read into a real channel.
//!
//! # Packing
//!
//! [`Pointwise::pack`] lays a layer out once, when the model loads, for the path of that
//! [`Pointwise`] (the layouts differ): the weights into an i8 buffer
//! ([`PackedLen::weights`] bytes), the bias and requantization into an i32 buffer
//! ([`PackedLen::params`]) that starts with a header naming the path, the shape and the output
//! stage, so [`Pointwise::run`] refuses buffers packed for another path or shape. The weights
//! must lie in `[-127, 127]` (what a symmetric quantizer gives): -128 is refused
//! ([`PointwiseError::Weight`]), which keeps every product of a weight and a flipped activation
//! (below) within ±16256, so that two of them add up exactly in an i16.
//!
//! # Paths
//!
//! - [`Isa::Scalar`], the reference: the sum above, pixel by pixel, channel by channel.
//! - [`Isa::Neon`] (Cortex-A72 class, no dot product): 16 output channels x 4 pixels per tile,
//!   four input channels per step: `SMULL` + `SMLAL2` form two products per i16 lane, `SADALP`
//!   adds the pairs into the i32 lanes of four output channels; the activations enter as
//!   `x ^ 0x80` (`x - 128` as an i8) and the packed bias holds `bias + 128 * sum_k w` to make
//!   up for it.
//! - [`Isa::NeonDot`] (Cortex-A76 and later): 16 output channels x 4 pixels per tile, `SDOT` by
//!   element (16 multiply-adds per instruction), the same flip and bias.
//! - [`Isa::Avx2`]: 16 output channels x 4 pixels per tile, the weights packed as i16 pairs
//!   of input channels `(k, k + 2)` and `(k + 1, k + 3)`, the activations zero-extended to
//!   i16 by a mask and a shift, `VPMADDWD` (exact: no saturation can occur).
//! - [`Isa::Avx512Vnni`]: 16 output channels x 8 pixels per tile, the weights as for
//!   `NeonDot`, `VPDPBUSD` on the unsigned activations as they are (32 multiply-adds per
//!   instruction).
//!
//! Every fast path equals the reference byte for byte on every real output channel. Tiles
//! cover the padded output channels (`stride(M)`), so no path needs a tail over channels;
//! pixel tails run narrower tiles. Both NEON paths run their 4-pixel tiles as hand-written
//! `asm!` loops: compiled from intrinsics, the 16 accumulators, the weights and the products
//! spill.
//!
//! Instructions per frame: `BENCHMARKS.md`, "int8 kernels".

pub mod scalar;

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
mod neon_dot;
#[cfg(target_arch = "x86_64")]
mod vnni;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use crate::isa::Isa;

use super::{OutputStage, Requant, stride};

/// The most input or output channels a layer may have (MobileNetV2's widest has 1280).
pub const MAX_CHANNELS: usize = 1 << 16;

/// The sizes of one pointwise convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Pixels of the frame, H*W.
    pub pixels: usize,
    /// Input channels K.
    pub in_channels: usize,
    /// Output channels M.
    pub out_channels: usize,
}

impl Shape {
    /// Whether the sizes are usable: none zero, channels at most [`MAX_CHANNELS`], and the
    /// activation buffers' lengths within `usize`.
    fn valid(&self) -> bool {
        (1..=MAX_CHANNELS).contains(&self.in_channels)
            && (1..=MAX_CHANNELS).contains(&self.out_channels)
            && self.pixels > 0
            && self.input_len().is_some()
            && self.output_len().is_some()
    }

    /// Bytes of the input, `pixels * stride(K)`; `None` on overflow.
    pub fn input_len(&self) -> Option<usize> {
        self.pixels.checked_mul(stride(self.in_channels))
    }

    /// Bytes of the output, `pixels * stride(M)`; `None` on overflow.
    pub fn output_len(&self) -> Option<usize> {
        self.pixels.checked_mul(stride(self.out_channels))
    }

    /// Multiply-adds of one run, `pixels * K * M` (saturating).
    pub fn macs(&self) -> u64 {
        (self.pixels as u64)
            .saturating_mul(self.in_channels as u64)
            .saturating_mul(self.out_channels as u64)
    }
}

/// Why a pointwise convolution, or the packing of its parameters, was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointwiseError {
    /// A size is zero, a channel count exceeds [`MAX_CHANNELS`], or a length overflows.
    Shape,
    /// A buffer's length differs from what the shape needs.
    BufferLength,
    /// A weight is -128: the quantizer's weights are symmetric, in `[-127, 127]`, and the
    /// fast paths' exactness relies on it.
    Weight,
    /// A [`Requant`] is out of range ([`Requant::is_valid`]) or the output stage's `min`
    /// exceeds its `max`.
    Requant,
    /// The packed buffers were not packed by this path for this shape.
    Packing,
}

impl core::fmt::Display for PointwiseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PointwiseError::Shape => {
                "a pointwise convolution's size is zero, too many channels, or overflows"
            }
            PointwiseError::BufferLength => "a buffer does not match the pointwise shape",
            PointwiseError::Weight => "a pointwise weight is -128 (weights must be in -127..=127)",
            PointwiseError::Requant => {
                "a requantization is out of range or the output clamp is reversed"
            }
            PointwiseError::Packing => {
                "the packed parameters were packed for another path or shape"
            }
        })
    }
}

impl core::error::Error for PointwiseError {}

/// A layer's parameters as the model gives them (before [`Pointwise::pack`]).
#[derive(Clone, Copy, Debug)]
pub struct Layer<'a> {
    /// `[M][K]` row-major (ONNX `[M, K, 1, 1]`), each in `[-127, 127]`.
    pub weights: &'a [i8],
    /// `[M]`, with the input's zero point folded in.
    pub bias: &'a [i32],
    /// `[M]`: each output channel's rescale.
    pub requant: &'a [Requant],
    /// The output tensor's zero point and clamp.
    pub stage: OutputStage,
}

/// Lengths of the two packed buffers of a layer, for one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackedLen {
    /// Bytes of packed weights.
    pub weights: usize,
    /// i32s of packed bias, requantization and header.
    pub params: usize,
}

/// i32s of the params header: tag, K, M, flags, zero point, min, max, reserved.
pub(crate) const HEADER: usize = 8;
/// Header flag: some output channel's requant shifts left (step 1 cannot be skipped).
const FLAG_LEFT: i32 = 1;

/// The per-row arrays of a fast path's params panel, each `rows` i32 long, in this order.
const BIAS_AT: usize = 0;
const MULTIPLIER_AT: usize = 1;
const LEFT_AT: usize = 2;
/// `-right` on NEON (its signed shift count), `right` on x86_64.
const RIGHT_AT: usize = 3;
const ARRAYS: usize = 4;

/// The output stage and flags read back from a params header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub(crate) stage: OutputStage,
    /// Some channel shifts left.
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    pub(crate) left: bool,
}

/// The paths, fastest first.
const PATHS: [Isa; 4] = [Isa::Avx512Vnni, Isa::Avx2, Isa::NeonDot, Isa::Neon];

/// One implementation of the pointwise convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pointwise {
    isa: Isa,
}

impl Default for Pointwise {
    fn default() -> Self {
        Self::new()
    }
}

impl Pointwise {
    /// The fastest implementation this CPU supports.
    pub fn new() -> Self {
        Pointwise {
            isa: Isa::fastest_of(&PATHS),
        }
    }

    /// A specific implementation, or `None` when this kernel has no such path or this CPU
    /// cannot run it.
    pub fn with_isa(isa: Isa) -> Option<Self> {
        isa.among(&PATHS).map(|isa| Pointwise { isa })
    }

    /// The implementation this runs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Output channels a fast path's weight panel holds (the reference has none: 0).
    fn panel_rows(&self) -> usize {
        match self.isa {
            Isa::Neon | Isa::NeonDot | Isa::Avx2 | Isa::Avx512Vnni => 16,
            _ => 0,
        }
    }

    /// Whether this path feeds `x ^ 0x80` to signed multiplies (its bias holds `128 * sum w`).
    fn flips(&self) -> bool {
        matches!(self.isa, Isa::Neon | Isa::NeonDot)
    }

    /// The lengths [`pack`](Self::pack) needs for `shape` on this path.
    pub fn packed_len(&self, shape: &Shape) -> Result<PackedLen, PointwiseError> {
        if !shape.valid() {
            return Err(PointwiseError::Shape);
        }
        let (k, m) = (shape.in_channels, shape.out_channels);
        let (kk, mm) = (stride(k), stride(m));
        // Channels are at most 2^16, so none of these products overflow.
        Ok(match self.isa {
            Isa::Avx2 => PackedLen {
                weights: 2 * mm * kk,
                params: HEADER + ARRAYS * mm,
            },
            Isa::Neon | Isa::NeonDot | Isa::Avx512Vnni => PackedLen {
                weights: mm * kk,
                params: HEADER + ARRAYS * mm,
            },
            _ => PackedLen {
                weights: m * k,
                params: HEADER + 3 * m,
            },
        })
    }

    /// Lays `layer` out for this path into `weights` and `params`, whose lengths must be
    /// [`packed_len`](Self::packed_len)'s. Refuses weights of -128, invalid requants and a
    /// reversed output clamp.
    pub fn pack(
        &self,
        shape: &Shape,
        layer: &Layer<'_>,
        weights: &mut [i8],
        params: &mut [i32],
    ) -> Result<(), PointwiseError> {
        let k = shape.in_channels;
        self.pack_by(
            shape,
            layer,
            |o, i| layer.weights[o * k + i],
            weights,
            params,
        )
    }

    /// [`pack`](Self::pack) with weight `(o, i)` (output channel, input channel) given by
    /// `weight`: `layer.weights` (`M * K` of them, in any order) is only checked.
    pub(crate) fn pack_by(
        &self,
        shape: &Shape,
        layer: &Layer<'_>,
        weight: impl Fn(usize, usize) -> i8,
        weights: &mut [i8],
        params: &mut [i32],
    ) -> Result<(), PointwiseError> {
        let len = self.packed_len(shape)?;
        let (k, m) = (shape.in_channels, shape.out_channels);
        if Some(layer.weights.len()) != k.checked_mul(m)
            || layer.bias.len() != m
            || layer.requant.len() != m
            || weights.len() != len.weights
            || params.len() != len.params
        {
            return Err(PointwiseError::BufferLength);
        }
        if layer.weights.contains(&i8::MIN) {
            return Err(PointwiseError::Weight);
        }
        if !layer.requant.iter().all(Requant::is_valid) || layer.stage.min > layer.stage.max {
            return Err(PointwiseError::Requant);
        }
        let left = layer.requant.iter().any(|r| r.left() > 0);
        params[..HEADER].copy_from_slice(&[
            self.tag(),
            k as i32,
            m as i32,
            if left { FLAG_LEFT } else { 0 },
            i32::from(layer.stage.zero_point),
            i32::from(layer.stage.min),
            i32::from(layer.stage.max),
            0,
        ]);
        let body = &mut params[HEADER..];
        let rows = self.panel_rows();
        if rows == 0 {
            for (o, row) in weights.chunks_exact_mut(k).enumerate() {
                for (i, w) in row.iter_mut().enumerate() {
                    *w = weight(o, i);
                }
            }
            for (o, (&b, r)) in layer.bias.iter().zip(layer.requant).enumerate() {
                body[o] = b;
                body[m + o] = r.multiplier;
                body[2 * m + o] = i32::from(r.shift);
            }
            return Ok(());
        }
        let (kk, mm) = (stride(k), stride(m));
        weights.fill(0);
        for o in 0..mm {
            let first = o / rows * rows;
            let panel_rows = rows.min(mm - first);
            let at = |array: usize| ARRAYS * first + array * panel_rows + (o - first);
            let (bias, r) = if o < m {
                let mut sum = 0i32;
                for i in 0..k {
                    let w = weight(o, i);
                    sum += i32::from(w);
                    self.put_weight(weights, kk, mm, o, i, w);
                }
                let flip = if self.flips() {
                    sum.wrapping_mul(128)
                } else {
                    0
                };
                (layer.bias[o].wrapping_add(flip), layer.requant[o])
            } else {
                (0, Requant::ZERO)
            };
            body[at(BIAS_AT)] = bias;
            body[at(MULTIPLIER_AT)] = r.multiplier;
            body[at(LEFT_AT)] = r.left() as i32;
            body[at(RIGHT_AT)] = if matches!(self.isa, Isa::Avx2 | Isa::Avx512Vnni) {
                r.right() as i32
            } else {
                -(r.right() as i32)
            };
        }
        Ok(())
    }

    /// Writes weight `w` of output channel `o`, input channel `i` where this path reads it.
    fn put_weight(&self, weights: &mut [i8], kk: usize, mm: usize, o: usize, i: usize, w: i8) {
        match self.isa {
            Isa::Neon => {
                // Panels of 16 rows (the last may have 8); per group of 4 input channels, for
                // each 4 rows of the panel, a vector of their weights of channels 0 and 1 of
                // the group, row by row, then of channels 2 and 3.
                let first = o / 16 * 16;
                let rows = 16.min(mm - first);
                let r = o - first;
                let (group, q) = (r / 4, r % 4);
                let at =
                    first * kk + (i / 4) * 4 * rows + group * 16 + (i % 4 / 2) * 8 + q * 2 + i % 2;
                weights[at] = w;
            }
            Isa::NeonDot | Isa::Avx512Vnni => {
                // Panels of 16 rows (the last may have 8); per group of 4 input channels,
                // each row's 4 weights, row by row.
                let first = o / 16 * 16;
                let rows = 16.min(mm - first);
                let r = o - first;
                let at = first * kk + (i / 4) * 4 * rows + r * 4 + i % 4;
                weights[at] = w;
            }
            Isa::Avx2 => {
                // Panels of 16 rows (the last may have 8); per group of 4 input
                // channels, each row's weights of channels 0 and 2 of the group as two
                // little-endian i16s, row by row, then each row's of channels 1 and 3.
                let first = o / 16 * 16;
                let rows = 16.min(mm - first);
                let r = o - first;
                let pair = (i / 4) * 2 + i % 2;
                let at = 2 * (first * kk + pair * 2 * rows + r * 2 + i % 4 / 2);
                let [lo, hi] = i16::from(w).to_le_bytes();
                weights[at] = lo as i8;
                weights[at + 1] = hi as i8;
            }
            _ => unreachable!("the reference packs rows as given"),
        }
    }

    /// The header's first word: this path.
    fn tag(&self) -> i32 {
        0x4e50_5700
            + match self.isa {
                Isa::Scalar => 0,
                Isa::Neon => 1,
                Isa::NeonDot => 2,
                Isa::Avx2 => 3,
                Isa::Sse2 => 4,
                Isa::Avx512Vnni => 5,
            }
    }

    /// Checks the buffers against `shape` and the header against this path and shape.
    fn check(
        &self,
        shape: &Shape,
        weights: &[i8],
        params: &[i32],
        input: &[u8],
        output: &[u8],
    ) -> Result<Header, PointwiseError> {
        let header = self.header(shape, weights, params)?;
        if Some(input.len()) != shape.input_len() || Some(output.len()) != shape.output_len() {
            return Err(PointwiseError::BufferLength);
        }
        Ok(header)
    }

    /// Checks the packed buffers' lengths and header against this path and `shape` (whose
    /// pixel count does not matter), and reads the header.
    pub(crate) fn header(
        &self,
        shape: &Shape,
        weights: &[i8],
        params: &[i32],
    ) -> Result<Header, PointwiseError> {
        let len = self.packed_len(shape)?;
        if weights.len() != len.weights || params.len() != len.params {
            return Err(PointwiseError::Packing);
        }
        let h = &params[..HEADER];
        let byte = |v: i32| u8::try_from(v).map_err(|_| PointwiseError::Packing);
        let stage = OutputStage {
            zero_point: byte(h[4])?,
            min: byte(h[5])?,
            max: byte(h[6])?,
        };
        if h[0] != self.tag()
            || h[1] != shape.in_channels as i32
            || h[2] != shape.out_channels as i32
            || stage.min > stage.max
        {
            return Err(PointwiseError::Packing);
        }
        Ok(Header {
            stage,
            left: h[3] & FLAG_LEFT != 0,
        })
    }

    /// `output[p][m] = requantize(bias[m] + sum_k w[m][k] * input[p][k], requant[m], stage)`
    /// for every pixel `p` and real output channel `m`, with `weights` and `params` as
    /// [`pack`](Self::pack) made them on this path for this shape. The output's padding
    /// channels receive arbitrary bytes.
    pub fn run(
        &self,
        shape: &Shape,
        weights: &[i8],
        params: &[i32],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), PointwiseError> {
        let header = self.check(shape, weights, params, input, output)?;
        self.run_checked(shape, weights, params, header, input, output)
    }

    /// [`run`](Self::run) on buffers already checked: `header` read from `params` by
    /// [`header`](Self::header) for this shape (any pixel count), `input` and `output` of the
    /// shape's lengths.
    pub(crate) fn run_checked(
        &self,
        shape: &Shape,
        weights: &[i8],
        params: &[i32],
        header: Header,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), PointwiseError> {
        let body = &params[HEADER..];
        match self.isa {
            #[cfg(target_arch = "aarch64")]
            // SAFETY: a Pointwise holds Neon only on aarch64, where NEON is baseline; the
            // buffers match the shape and the path's layout (checked above).
            Isa::Neon => unsafe { neon::run::<false>(shape, weights, body, header, input, output) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: a Pointwise holds NeonDot only when the CPU reported the dot-product
            // extension; the buffers match the shape and the path's layout (checked above).
            Isa::NeonDot => unsafe {
                neon::run::<true>(shape, weights, body, header, input, output)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a Pointwise holds Avx2 only when the CPU reported AVX2 (and FMA); the
            // buffers match the shape and the path's layout (checked above).
            Isa::Avx2 => unsafe { x86::run(shape, weights, body, header, input, output) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a Pointwise holds Avx512Vnni only when the CPU reported AVX-512 VNNI and
            // VL; the buffers match the shape and the path's layout (checked above).
            Isa::Avx512Vnni => unsafe { vnni::run(shape, weights, body, header, input, output) },
            _ => scalar::run(shape, weights, body, header.stage, input, output)?,
        }
        Ok(())
    }
}

/// Pixels a fast path takes per pass over the weight panels: as many as fill about 16 KiB of
/// input (a multiple of `tile`, at least one tile), so a block of input stays in the nearest
/// cache while every panel of weights passes over it.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
fn pixel_block(kk: usize, tile: usize) -> usize {
    ((16 * 1024 / kk) / tile).max(1) * tile
}
