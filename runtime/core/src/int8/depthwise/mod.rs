//! Depthwise 3x3 convolution in integers: u8 NHWC activations in and out, one i8 3x3 kernel,
//! an i32 bias and a [`Requant`] per channel, one [`OutputStage`] (zero point and fused clamp)
//! for the output tensor.
//!
//! Output channel `c` of pixel `(oy, ox)` is, exactly,
//!
//! ```text
//! acc = bias[c] + sum_{ky,kx} w[c][ky][kx] * x[oy*s + ky - pad_top][ox*s + kx - pad_left][c]
//! out = requantize(acc, requant[c], stage)
//! ```
//!
//! in wrapping i32 arithmetic (a realistic bias is far from overflowing; wrapping only makes
//! every path agree on the absurd ones), where a tap outside the input reads the input's zero
//! point code. With the zero point folded into the bias over all nine taps
//! ([`fold_zero_point`](super::fold_zero_point)`(bias, weights, 9, zp)`), a padded tap then adds
//! exactly nothing, as in the float convolution. [`Geometry`] is the float kernel's, with its
//! validation; activations follow the [`int8`](super) layout (`stride(C)` bytes per pixel).
//!
//! [`pack`] lays the weights out once when a model loads, tap-major (`[9][P]` with `P` the
//! channels rounded up to [`BLOCK`]) so a vector of channels loads contiguously, the biases as
//! arrays of `P` i32, and the requantizations in groups of four channels (one NEON load each).
//!
//! # Paths
//!
//! [`scalar`] is the reference. The fast paths ([`Isa::Neon`]: 16 channels per step,
//! [`Isa::Avx2`]: 8, [`Isa::Avx512Vnni`]: 32) equal it byte for byte on the real channels. All
//! first copy the three input rows an output row reads into a scratch row ring with the borders
//! filled with the zero point code, so every output pixel, edges included, runs the same vector
//! code. For NEON and AVX2 the copy also flips each code's top bit (`x ^ 0x80`, which is
//! `x - 128` as an i8), so that the products are i8 x i8. The packed bias has the flip folded
//! back in (`bias + 128 * sum w`), and weights of -128 are refused at pack time: then every
//! product lies within ±16256 and two of them add up within i16, which lets NEON form two taps'
//! products with one SMULL and one SMLAL into 16-bit lanes before widening them into the i32
//! accumulator (and AVX2 pair two taps in one VPMADDWD). VNNI's `VPDPBUSD` multiplies unsigned
//! codes by signed weights, four taps at once, so that path reads the codes unflipped after
//! regrouping each channel's taps into adjacent bytes.
//!
//! No dot-product (SDOT) path on aarch64 yet: SDOT sums four adjacent bytes too, so it would
//! need the same regrouping, which NEON's `ZIP1`/`ZIP2` could do.
//! Instructions per frame: `BENCHMARKS.md`, "int8 kernels".

pub mod scalar;

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod vnni;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use crate::depthwise::{Geometry, GeometryError, TAPS};
pub use crate::isa::Isa;

use super::{CHANNEL_ALIGN, OutputStage, Requant, stride};

/// Channels per packed block: the packed arrays are padded to a multiple of it, so the widest
/// vector of channels a fast path loads (16 on NEON) never leaves them.
pub const BLOCK: usize = 16;

/// What the scratch copy does to every code: `x ^ FLIP` is `x - 128` read as an i8.
const FLIP: u8 = 0x80;

/// The packed parameters, `P` the channels rounded up to [`BLOCK`]: the bias (`P` i32), the
/// bias for flipped inputs (`P`), then per group of [`QUAD`] channels (one NEON vector) their
/// multipliers, negated right shifts and left shifts, four of each, so one load gives a vector's
/// requantization (`3 P`).
const PARAMS_PER_CHANNEL: usize = 5;
/// Channels per group of the requantization numbers.
const QUAD: usize = 4;
/// Offsets of the multipliers, negated right shifts and left shifts in a group's twelve i32.
const MULTIPLIER: usize = 0;
const NEG_RIGHT: usize = QUAD;
const LEFT: usize = 2 * QUAD;
/// i32 of one group.
const QUAD_LEN: usize = 3 * QUAD;

/// Why a depthwise convolution, or the packing of its parameters, was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepthwiseError {
    /// The geometry itself (see [`GeometryError`]).
    Geometry(GeometryError),
    /// A buffer the geometry needs would not fit in memory.
    Size,
    /// The input is not `stride(C) * in_height * in_width` bytes.
    Input,
    /// The output is not `stride(C) * out_height * out_width` bytes.
    Output,
    /// The scratch is shorter than [`scratch_len`].
    Scratch,
    /// The weights are not nine per bias.
    Weights,
    /// There is not one [`Requant`] per bias.
    Requant,
    /// A packed buffer's length does not match its channels ([`Packed::weights_len`],
    /// [`Packed::params_len`]), or the packed layer has other channels than the geometry.
    Packed,
    /// A weight is -128 (a symmetric quantizer keeps them in -127..=127; the fast paths rely
    /// on it).
    WeightRange,
    /// A [`Requant`] is outside the ranges the kernels assume ([`Requant::is_valid`]), or a
    /// packed buffer holds numbers [`pack`] would not have written.
    InvalidParams,
    /// The output stage's `min` exceeds its `max`.
    Stage,
}

impl core::fmt::Display for DepthwiseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DepthwiseError::Geometry(e) => write!(f, "int8 depthwise: {e}"),
            DepthwiseError::Size => f.write_str("int8 depthwise: a buffer would not fit in memory"),
            DepthwiseError::Input => {
                f.write_str("int8 depthwise: the input's length does not match the geometry")
            }
            DepthwiseError::Output => {
                f.write_str("int8 depthwise: the output's length does not match the geometry")
            }
            DepthwiseError::Scratch => f.write_str("int8 depthwise: the scratch is too short"),
            DepthwiseError::Weights => {
                f.write_str("int8 depthwise: the weights are not nine per channel")
            }
            DepthwiseError::Requant => {
                f.write_str("int8 depthwise: not one requantization per channel")
            }
            DepthwiseError::Packed => {
                f.write_str("int8 depthwise: a packed buffer does not match the channels")
            }
            DepthwiseError::WeightRange => {
                f.write_str("int8 depthwise: a weight is -128 (outside -127..=127)")
            }
            DepthwiseError::InvalidParams => {
                f.write_str("int8 depthwise: a requantization or packed parameter is out of range")
            }
            DepthwiseError::Stage => {
                f.write_str("int8 depthwise: the output stage's min exceeds its max")
            }
        }
    }
}

impl core::error::Error for DepthwiseError {}

/// A layer's weights and per-channel numbers as the kernels read them, borrowed from the
/// caller's buffers; only [`pack`] and [`Packed::new`] make one, so its contents are always
/// consistent (which the fast paths' exactness relies on).
#[derive(Clone, Copy, Debug)]
pub struct Packed<'a> {
    channels: usize,
    padded: usize,
    /// Whether some channel's requantization shifts left (a factor of 1 or more): the fast
    /// paths skip that step when none does.
    shifts_left: bool,
    weights: &'a [i8],
    params: &'a [i32],
}

/// What [`Packed::new`] or [`pack`] established about a layer's buffers, kept so a model that
/// makes its view on every frame need not check the same buffers again ([`Packed::again`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    channels: usize,
    padded: usize,
    shifts_left: bool,
}

/// `channels` rounded up to [`BLOCK`]; `None` on overflow.
fn padded(channels: usize) -> Option<usize> {
    channels.checked_next_multiple_of(BLOCK)
}

/// `bias + 128 * sum(w)`, wrapping: the bias for inputs read as `x - 128`.
fn flipped_bias(bias: i32, w: impl Iterator<Item = i8>) -> i32 {
    let sum: i32 = w.map(i32::from).sum();
    bias.wrapping_add(sum.wrapping_mul(i32::from(FLIP)))
}

impl<'a> Packed<'a> {
    /// Length of the packed weight buffer for `channels` channels: nine taps of `P` i8, `P`
    /// the channels rounded up to [`BLOCK`]. `None` on overflow.
    pub fn weights_len(channels: usize) -> Option<usize> {
        padded(channels)?.checked_mul(TAPS)
    }

    /// Length of the packed parameter buffer: five i32 per channel, `P` the channels rounded
    /// up to [`BLOCK`] (bias, bias for flipped inputs, multiplier, right and left shift).
    /// `None` on overflow.
    pub fn params_len(channels: usize) -> Option<usize> {
        padded(channels)?.checked_mul(PARAMS_PER_CHANNEL)
    }

    /// A view of buffers [`pack`] filled earlier (a model keeps the buffers and makes the view
    /// when it runs), checked again in full: lengths, weight range, requantizations and the
    /// flipped bias. O(channels).
    pub fn new(
        channels: usize,
        weights: &'a [i8],
        params: &'a [i32],
    ) -> Result<Packed<'a>, DepthwiseError> {
        let (Some(p), Some(wl), Some(pl)) = (
            padded(channels),
            Self::weights_len(channels),
            Self::params_len(channels),
        ) else {
            return Err(DepthwiseError::Packed);
        };
        if channels == 0 || weights.len() != wl || params.len() != pl {
            return Err(DepthwiseError::Packed);
        }
        let mut packed = Packed {
            channels,
            padded: p,
            shifts_left: false,
            weights,
            params,
        };
        for c in 0..channels {
            if (0..TAPS).any(|t| packed.weight(c, t) == i8::MIN) {
                return Err(DepthwiseError::WeightRange);
            }
            let (left, neg_right) = (packed.field(LEFT, c), packed.field(NEG_RIGHT, c));
            let shift = match (left, neg_right) {
                (0..=30, 0) => left,
                (0, -31..=0) => neg_right,
                _ => return Err(DepthwiseError::InvalidParams),
            };
            let requant = Requant {
                multiplier: packed.field(MULTIPLIER, c),
                shift: shift as i8,
            };
            let flipped = flipped_bias(packed.bias(c), (0..TAPS).map(|t| packed.weight(c, t)));
            if !requant.is_valid() || flipped != packed.flipped_biases()[c] {
                return Err(DepthwiseError::InvalidParams);
            }
            packed.shifts_left |= left > 0;
        }
        Ok(packed)
    }

    /// What this view's check established, to view the same buffers again with
    /// [`again`](Self::again).
    pub fn checked(&self) -> Checked {
        Checked {
            channels: self.channels,
            padded: self.padded,
            shifts_left: self.shifts_left,
        }
    }

    /// A view of the buffers `checked` came from, checking only their lengths (O(1)). The
    /// caller keeps those buffers unchanged: other contents would give wrong codes (never
    /// unsafety, which rests on the lengths alone).
    pub fn again(
        checked: Checked,
        weights: &'a [i8],
        params: &'a [i32],
    ) -> Result<Packed<'a>, DepthwiseError> {
        let c = checked.channels;
        if Some(weights.len()) != Self::weights_len(c) || Some(params.len()) != Self::params_len(c)
        {
            return Err(DepthwiseError::Packed);
        }
        Ok(Packed {
            channels: c,
            padded: checked.padded,
            shifts_left: checked.shifts_left,
            weights,
            params,
        })
    }

    /// Channels of the layer.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Weight of tap `t` (row-major, `3 * ky + kx`) of channel `c`.
    pub fn weight(&self, c: usize, t: usize) -> i8 {
        self.weights[t * self.padded + c]
    }

    /// Bias of channel `c`, with the input's zero point folded in.
    pub fn bias(&self, c: usize) -> i32 {
        self.params[c]
    }

    /// Requantization of channel `c`.
    pub fn requant(&self, c: usize) -> Requant {
        let shift = self.field(LEFT, c) + self.field(NEG_RIGHT, c);
        Requant {
            multiplier: self.field(MULTIPLIER, c),
            shift: shift as i8,
        }
    }

    /// Tap `t`'s weights of every channel, `P` long (zero past the channels).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn tap(&self, t: usize) -> &'a [i8] {
        &self.weights[t * self.padded..(t + 1) * self.padded]
    }

    /// The biases, `P` long.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn biases(&self) -> &'a [i32] {
        &self.params[..self.padded]
    }

    /// The biases for flipped inputs, `P` long.
    fn flipped_biases(&self) -> &'a [i32] {
        &self.params[self.padded..2 * self.padded]
    }

    /// The requantization groups: [`QUAD_LEN`] i32 per [`QUAD`] channels, `3 P` long.
    fn quads(&self) -> &'a [i32] {
        &self.params[2 * self.padded..]
    }

    /// Channel `c`'s entry of one requantization field (`MULTIPLIER`, `NEG_RIGHT`, `LEFT`).
    fn field(&self, field: usize, c: usize) -> i32 {
        self.quads()[c / QUAD * QUAD_LEN + field + c % QUAD]
    }
}

/// Packs one layer: `weights` in ONNX order `[C][1][3][3]`, `bias` (`C` of them, the input's
/// zero point folded in) and one `requant` per channel, into `packed_weights`
/// ([`Packed::weights_len`]) and `packed_params` ([`Packed::params_len`]). Refuses a weight of
/// -128 and an invalid [`Requant`].
pub fn pack<'a>(
    weights: &[i8],
    bias: &[i32],
    requant: &[Requant],
    packed_weights: &'a mut [i8],
    packed_params: &'a mut [i32],
) -> Result<Packed<'a>, DepthwiseError> {
    let channels = bias.len();
    if channels == 0 || Some(weights.len()) != channels.checked_mul(TAPS) {
        return Err(DepthwiseError::Weights);
    }
    if requant.len() != channels {
        return Err(DepthwiseError::Requant);
    }
    let (Some(p), Some(wl), Some(pl)) = (
        padded(channels),
        Packed::weights_len(channels),
        Packed::params_len(channels),
    ) else {
        return Err(DepthwiseError::Packed);
    };
    if packed_weights.len() != wl || packed_params.len() != pl {
        return Err(DepthwiseError::Packed);
    }
    if weights.contains(&i8::MIN) {
        return Err(DepthwiseError::WeightRange);
    }
    if !requant.iter().all(Requant::is_valid) {
        return Err(DepthwiseError::InvalidParams);
    }
    packed_weights.fill(0);
    packed_params.fill(0);
    for (c, w) in weights.chunks_exact(TAPS).enumerate() {
        for (t, &w) in w.iter().enumerate() {
            packed_weights[t * p + c] = w;
        }
    }
    let (bias_array, rest) = packed_params.split_at_mut(p);
    let (flipped_array, quads) = rest.split_at_mut(p);
    let mut shifts_left = false;
    for (c, (w, (&b, r))) in weights
        .chunks_exact(TAPS)
        .zip(bias.iter().zip(requant))
        .enumerate()
    {
        bias_array[c] = b;
        flipped_array[c] = flipped_bias(b, w.iter().copied());
        let quad = &mut quads[c / QUAD * QUAD_LEN + c % QUAD..];
        quad[MULTIPLIER] = r.multiplier;
        quad[NEG_RIGHT] = -(r.right() as i32);
        quad[LEFT] = r.left() as i32;
        shifts_left |= r.left() > 0;
    }
    Ok(Packed {
        channels,
        padded: p,
        shifts_left,
        weights: packed_weights,
        params: packed_params,
    })
}

/// Scratch pixels per row: the columns the windows of one output row read, from input column
/// `-pad_left` on.
fn scratch_width(g: &Geometry) -> usize {
    (g.out_width - 1) * g.stride + 3
}

/// Bytes of scratch [`Depthwise::run`] needs for `g` (every path, the reference included, asks
/// for it): three rows of the pixels one output row's windows read, `stride(C)` bytes each. `None` on overflow.
/// Meaningful for a geometry that passes [`Geometry::check`].
pub fn scratch_len(g: &Geometry) -> Option<usize> {
    let width = g
        .out_width
        .checked_sub(1)?
        .checked_mul(g.stride)?
        .checked_add(3)?;
    width
        .checked_mul(channel_stride(g.channels)?)?
        .checked_mul(3)
}

/// [`stride`] without overflow.
fn channel_stride(channels: usize) -> Option<usize> {
    channels.checked_next_multiple_of(CHANNEL_ALIGN)
}

/// Byte lengths of the input and output tensors of `g`; `None` on overflow.
fn tensor_lengths(g: &Geometry) -> Option<(usize, usize)> {
    let sc = channel_stride(g.channels)?;
    Some((
        sc.checked_mul(g.in_height)?.checked_mul(g.in_width)?,
        sc.checked_mul(g.out_height)?.checked_mul(g.out_width)?,
    ))
}

/// The fast paths, fastest first.
const PATHS: [Isa; 3] = [Isa::Avx512Vnni, Isa::Avx2, Isa::Neon];

/// The output pixels of a fast path's row, after checking what its vector loads rely on: each
/// scratch row holds every byte up to the last window's last column, `sc` is a multiple of
/// `lanes` (the narrowest step the path takes), the packed arrays cover `sc` channels, and the
/// row is whole pixels.
#[cfg(target_arch = "x86_64")]
fn row_width(
    rows: &[&[u8]; 3],
    stride: usize,
    sc: usize,
    lanes: usize,
    packed: &Packed<'_>,
    out_row: &[u8],
) -> usize {
    let width = out_row.len() / sc;
    if width > 0 {
        let reach = ((width - 1) * stride + 3) * sc;
        assert!(rows.iter().all(|r| r.len() >= reach));
        assert!(sc.is_multiple_of(lanes) && packed.padded >= sc);
        assert_eq!(out_row.len(), width * sc);
    }
    width
}

/// One output row of a fast path: the three scratch rows its windows read (each
/// `((out_width - 1) * stride + 3) * stride(C)` bytes), the stride,
/// `stride(C)`, the layer, the stage, and the row (`out_width * stride(C)` bytes).
pub(crate) type RowFn = unsafe fn([&[u8]; 3], usize, usize, &Packed<'_>, OutputStage, &mut [u8]);

/// Runs int8 depthwise 3x3 convolutions with one implementation this CPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Depthwise {
    isa: Isa,
}

impl Default for Depthwise {
    fn default() -> Self {
        Self::new()
    }
}

impl Depthwise {
    /// The fastest implementation this CPU supports.
    pub fn new() -> Self {
        Depthwise {
            isa: Isa::fastest_of(&PATHS),
        }
    }

    /// A specific implementation, or `None` when this kernel has no such path or this CPU
    /// cannot run it.
    pub fn with_isa(isa: Isa) -> Option<Self> {
        isa.among(&PATHS).map(|isa| Depthwise { isa })
    }

    /// The implementation this runs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Checks every buffer against `g` without touching one.
    pub(crate) fn check(
        g: &Geometry,
        packed: &Packed<'_>,
        stage: OutputStage,
        input: usize,
        scratch: usize,
        output: usize,
    ) -> Result<(), DepthwiseError> {
        let c = g.channels;
        let floats = (|| {
            Some((
                c.checked_mul(g.in_height)?.checked_mul(g.in_width)?,
                c.checked_mul(TAPS)?,
                c.checked_mul(g.out_height)?.checked_mul(g.out_width)?,
            ))
        })();
        let Some((fin, fw, fout)) = floats else {
            return Err(DepthwiseError::Size);
        };
        g.check(fin, fw, c, fout)
            .map_err(DepthwiseError::Geometry)?;
        let (Some((in_len, out_len)), Some(scratch_len)) = (tensor_lengths(g), scratch_len(g))
        else {
            return Err(DepthwiseError::Size);
        };
        if packed.channels != c {
            return Err(DepthwiseError::Packed);
        }
        if input != in_len {
            return Err(DepthwiseError::Input);
        }
        if output != out_len {
            return Err(DepthwiseError::Output);
        }
        if scratch < scratch_len {
            return Err(DepthwiseError::Scratch);
        }
        if stage.min > stage.max {
            return Err(DepthwiseError::Stage);
        }
        Ok(())
    }

    /// `output = requantize(bias + depthwise3x3(input), requant, stage)` for every channel, as
    /// the module documentation defines it; taps outside the input read `input_zero_point`.
    /// `input` and `output` are NHWC with `stride(C)` bytes per pixel; `scratch` holds at least
    /// [`scratch_len`] bytes. Output bytes past the channels of a pixel get anything.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        g: &Geometry,
        packed: &Packed<'_>,
        input_zero_point: u8,
        stage: OutputStage,
        input: &[u8],
        scratch: &mut [u8],
        output: &mut [u8],
    ) -> Result<(), DepthwiseError> {
        Self::check(g, packed, stage, input.len(), scratch.len(), output.len())?;
        let Some(row) = self.row_fn() else {
            scalar::run(g, packed, input_zero_point, stage, input, output);
            return Ok(());
        };
        let sc = stride(g.channels);
        self.run_ring(
            g,
            row,
            packed,
            input_zero_point,
            stage,
            scratch,
            output,
            |iy, flip, data| {
                let src = &input[iy * g.in_width * sc..][..data.len()];
                if flip == 0 {
                    data.copy_from_slice(src);
                } else {
                    flip_copy(data, src);
                }
            },
        );
        Ok(())
    }

    /// This path's row over the scratch ring; `None` for the reference, which reads the input
    /// directly.
    pub(crate) fn row_fn(&self) -> Option<RowFn> {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some(x86::row),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => Some(vnni::row),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Some(neon::row),
            _ => None,
        }
    }

    /// What the scratch copy XORs every code with: signed products want `x - 128`; VNNI
    /// multiplies the codes as they are, and so does the reference's row.
    fn flip(&self) -> u8 {
        match self.isa {
            Isa::Neon | Isa::Avx2 => FLIP,
            _ => 0,
        }
    }

    /// Runs `row` over every output row of `g` from a ring of three scratch rows, which `fill`
    /// fills: `fill(iy, flip, data)` writes input row `iy`'s columns the windows read
    /// (`data.len() / stride(C)` of them, from column 0), each code XORed with `flip`. The
    /// buffers passed [`check`](Self::check) (for the input's length, its geometry's).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_ring(
        &self,
        g: &Geometry,
        row: RowFn,
        packed: &Packed<'_>,
        zero_point: u8,
        stage: OutputStage,
        scratch: &mut [u8],
        output: &mut [u8],
        mut fill: impl FnMut(usize, u8, &mut [u8]),
    ) {
        let flip = self.flip();
        let sc = stride(g.channels);
        let pitch = scratch_width(g) * sc;
        let scratch = &mut scratch[..3 * pitch];
        let mut filled = 0;
        for (oy, out_row) in output.chunks_exact_mut(g.out_width * sc).enumerate() {
            // Scratch row `r` is input row `r - pad_top`, in ring slot `r % 3`.
            while filled <= oy * g.stride + 2 {
                let slot = &mut scratch[filled % 3 * pitch..][..pitch];
                fill_row(g, zero_point, flip, filled, slot, &mut fill);
                filled += 1;
            }
            let slots: &[u8] = scratch;
            let rows = [0, 1, 2].map(|ky| &slots[(oy * g.stride + ky) % 3 * pitch..][..pitch]);
            // SAFETY: a Depthwise holds Avx2 or Avx512Vnni only when the CPU reported it
            // (`Isa::is_supported`), and NEON is part of the aarch64 baseline; the reference's
            // row is safe.
            unsafe { row(rows, g.stride, sc, packed, stage, out_row) };
        }
    }
}

/// Writes scratch row `r` (input row `r - pad_top`, or all zero point outside the input) into
/// `slot`: `pad_left` pixels of the zero point, the input columns the windows read (from
/// `fill`, as [`Depthwise::run_ring`] says), and the zero point again up to
/// [`scratch_width`]; every code XORed with `flip` ([`FLIP`] or 0).
fn fill_row(
    g: &Geometry,
    zero_point: u8,
    flip: u8,
    r: usize,
    slot: &mut [u8],
    fill: &mut impl FnMut(usize, u8, &mut [u8]),
) {
    let zero_point = zero_point ^ flip;
    let sc = stride(g.channels);
    let Some(iy) = r.checked_sub(g.pad_top).filter(|&iy| iy < g.in_height) else {
        slot.fill(zero_point);
        return;
    };
    let (left, rest) = slot.split_at_mut(g.pad_left * sc);
    left.fill(zero_point);
    let columns = g.in_width.min(scratch_width(g) - g.pad_left);
    let (data, right) = rest.split_at_mut(columns * sc);
    fill(iy, flip, data);
    right.fill(zero_point);
}

/// `data[i] ^= FLIP`: a row written by another kernel, made what the fast paths' rows read.
pub(crate) fn flip_in_place(data: &mut [u8]) {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: NEON is part of the aarch64 baseline.
    let done = unsafe { neon::flip_in_place(data) };
    #[cfg(not(target_arch = "aarch64"))]
    let done = 0;
    for code in &mut data[done..] {
        *code ^= FLIP;
    }
}

/// `dst[i] = src[i] ^ FLIP`; the slices have one length.
fn flip_copy(dst: &mut [u8], src: &[u8]) {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: NEON is part of the aarch64 baseline.
    let done = unsafe { neon::flip_copy(dst, src) };
    #[cfg(not(target_arch = "aarch64"))]
    let done = 0;
    for (d, &s) in dst[done..].iter_mut().zip(&src[done..]) {
        *d = s ^ FLIP;
    }
}
