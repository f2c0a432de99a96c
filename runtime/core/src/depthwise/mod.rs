//! Depthwise 3x3 convolution over NCHW planes (one frame), with its bias and a clip (ReLU6) fused.
//!
//! MobileNet-style backbones spend about a third of their float time in these convolutions when
//! a generic engine runs them: it walks each plane pixel by pixel. Here each output row is
//! computed a vector of pixels at a time, and the activation that follows is applied before the
//! row leaves the registers, saving a pass over the tensor.
//!
//! [`scalar`] is the reference. The fast paths ([`Isa::Avx2`], [`Isa::Neon`]) fuse multiply and
//! add, so they agree with it to float rounding, not bit for bit; a [`Depthwise`] only ever runs a
//! path the CPU supports. They first copy each channel into a zero-bordered scratch plane (see
//! [`Geometry::scratch_len`]), so every output pixel, borders and row ends included, is computed
//! the same vectorized way.

pub mod scalar;

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use crate::isa::Isa;

/// Number of weights of one channel's 3x3 kernel, row-major.
pub const TAPS: usize = 9;

/// Where one depthwise 3x3 convolution reads and writes.
///
/// Output pixel `(oy, ox)` of a channel is `bias + sum w[ky][kx] * x[oy*s + ky - pad_top][ox*s +
/// kx - pad_left]` over the taps that land inside the input; taps in the padding add nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Channels (input and output).
    pub channels: usize,
    /// Input plane height.
    pub in_height: usize,
    /// Input plane width.
    pub in_width: usize,
    /// Step between windows, the same along both axes: 1 or 2.
    pub stride: usize,
    /// Zero rows above the input (0..=2).
    pub pad_top: usize,
    /// Zero columns left of the input (0..=2).
    pub pad_left: usize,
    /// Output plane height.
    pub out_height: usize,
    /// Output plane width.
    pub out_width: usize,
}

/// A clip applied to every output: `min(max(x, min), max)`; ReLU6 is `0..6`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clip {
    /// Lower bound.
    pub min: f32,
    /// Upper bound.
    pub max: f32,
}

impl Clip {
    /// No clipping.
    pub const NONE: Clip = Clip {
        min: f32::NEG_INFINITY,
        max: f32::INFINITY,
    };

    /// Clamps one value; NaN stays NaN.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        if x < self.min {
            self.min
        } else if x > self.max {
            self.max
        } else {
            x
        }
    }
}

/// Why a convolution was refused before touching any buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// A dimension is zero, the stride is not 1 or 2, or a padding exceeds 2.
    Unsupported,
    /// The output size does not follow from input, stride and padding: some window would lie
    /// entirely in the padding or beyond it.
    OutputSize,
    /// A buffer's length differs from what the geometry needs (or that size overflows).
    BufferLength,
    /// The clip's bounds are NaN or reversed.
    Clip,
}

impl core::fmt::Display for GeometryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            GeometryError::Unsupported => {
                "unsupported depthwise geometry: zero size, stride other than 1 or 2, or padding over 2"
            }
            GeometryError::OutputSize => "output size does not follow from input, stride and padding",
            GeometryError::BufferLength => "a buffer's length does not match the geometry",
            GeometryError::Clip => "clip bounds are NaN or reversed",
        })
    }
}

impl Geometry {
    /// Bytes-free lengths of (input, output) in floats; `None` on overflow.
    fn lengths(&self) -> Option<(usize, usize)> {
        let input = self
            .channels
            .checked_mul(self.in_height)?
            .checked_mul(self.in_width)?;
        let output = self
            .channels
            .checked_mul(self.out_height)?
            .checked_mul(self.out_width)?;
        Some((input, output))
    }

    /// Checks that the geometry is one this kernel runs and that every buffer fits it.
    pub fn check(
        &self,
        input: usize,
        weights: usize,
        bias: usize,
        output: usize,
    ) -> Result<(), GeometryError> {
        let g = self;
        if g.channels == 0
            || g.in_height == 0
            || g.in_width == 0
            || g.out_height == 0
            || g.out_width == 0
            || !(g.stride == 1 || g.stride == 2)
            || g.pad_top > 2
            || g.pad_left > 2
        {
            return Err(GeometryError::Unsupported);
        }
        // The last window may hang at most two pixels past the input: every window then holds
        // at least one input pixel.
        let fits = |out: usize, pad: usize, len: usize| {
            (out - 1)
                .checked_mul(g.stride)
                .is_some_and(|last| last + 2 <= len + pad + 1)
        };
        if !fits(g.out_height, g.pad_top, g.in_height) || !fits(g.out_width, g.pad_left, g.in_width)
        {
            return Err(GeometryError::OutputSize);
        }
        let Some((in_len, out_len)) = g.lengths() else {
            return Err(GeometryError::BufferLength);
        };
        if input != in_len || output != out_len || bias != g.channels {
            return Err(GeometryError::BufferLength);
        }
        if g.channels.checked_mul(TAPS) != Some(weights) {
            return Err(GeometryError::BufferLength);
        }
        Ok(())
    }

    /// Input row read by kernel row `ky` for output row `oy`, if inside the input.
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.pad_top)
            .filter(|&iy| iy < self.in_height)
    }

    /// Width of a scratch row: the padding, the input, and room for a last vector of outputs
    /// that runs past the row's end (up to eight pixels per vector).
    fn scratch_width(&self) -> usize {
        (self.out_width.next_multiple_of(MAX_LANES) * self.stride + 2)
            .max(self.pad_left + self.in_width)
    }

    /// Rows of the scratch plane: every row a window reads.
    fn scratch_height(&self) -> usize {
        (self.out_height - 1) * self.stride + 3
    }

    /// Floats of scratch [`Depthwise::run`] needs: one zero-bordered channel plane. Meaningful
    /// for a geometry that passes [`Geometry::check`].
    pub fn scratch_len(&self) -> usize {
        self.scratch_height() * self.scratch_width()
    }

    /// Copies one channel's plane into `scratch` at (pad_top, pad_left), zeros around it.
    fn pad_into(&self, plane: &[f32], scratch: &mut [f32]) {
        let width = self.scratch_width();
        let mut src = plane.chunks_exact(self.in_width);
        for (r, dst) in scratch.chunks_exact_mut(width).enumerate() {
            let row = if r < self.pad_top { None } else { src.next() };
            match row {
                Some(row) => {
                    let (left, rest) = dst.split_at_mut(self.pad_left);
                    let (data, right) = rest.split_at_mut(self.in_width);
                    left.fill(0.0);
                    data.copy_from_slice(row);
                    right.fill(0.0);
                }
                None => dst.fill(0.0),
            }
        }
    }
}

/// Widest vector of output pixels any fast path computes at once.
const MAX_LANES: usize = 8;

/// The three scratch rows one output row reads, each at least `Geometry::scratch_width` long.
pub(crate) type Window<'a> = [&'a [f32]; 3];

/// The fast paths, fastest first.
const PATHS: [Isa; 2] = [Isa::Avx2, Isa::Neon];

/// Runs depthwise 3x3 convolutions with one implementation this CPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
        let isa = Isa::fastest_of(&PATHS);
        Depthwise { isa }
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

    /// `output = clip(depthwise3x3(input, weights) + bias)` for every channel. `weights` holds
    /// each channel's nine taps row-major (ONNX `[C, 1, 3, 3]`); `scratch` holds at least
    /// [`Geometry::scratch_len`] floats (the reference path does not touch it).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        geometry: &Geometry,
        input: &[f32],
        weights: &[f32],
        bias: &[f32],
        clip: Clip,
        scratch: &mut [f32],
        output: &mut [f32],
    ) -> Result<(), GeometryError> {
        geometry.check(input.len(), weights.len(), bias.len(), output.len())?;
        if clip.min.is_nan() || clip.max.is_nan() || clip.min > clip.max {
            return Err(GeometryError::Clip);
        }
        let g = geometry;
        let (in_plane, out_plane) = (g.in_height * g.in_width, g.out_height * g.out_width);
        let planes = input
            .chunks_exact(in_plane)
            .zip(output.chunks_exact_mut(out_plane))
            .zip(weights.chunks_exact(TAPS).zip(bias));
        if self.isa == Isa::Scalar || self.isa == Isa::Sse2 {
            for ((plane, out), (w, &b)) in planes {
                let w: &[f32; TAPS] = w.try_into().expect("chunks of TAPS");
                scalar::channel(g, plane, w, b, clip, out);
            }
            return Ok(());
        }
        let Some(scratch) = scratch.get_mut(..g.scratch_len()) else {
            return Err(GeometryError::BufferLength);
        };
        let width = g.scratch_width();
        for ((plane, out), (w, &b)) in planes {
            let w: &[f32; TAPS] = w.try_into().expect("chunks of TAPS");
            g.pad_into(plane, scratch);
            for (oy, out_row) in out.chunks_exact_mut(g.out_width).enumerate() {
                let top = oy * g.stride * width;
                let window: Window<'_> = [
                    &scratch[top..top + width],
                    &scratch[top + width..top + 2 * width],
                    &scratch[top + 2 * width..top + 3 * width],
                ];
                self.row(g.stride, window, w, b, clip, out_row);
            }
        }
        Ok(())
    }

    /// One output row from its three (zero-bordered) scratch rows.
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(unused_variables)
    )]
    fn row(
        &self,
        stride: usize,
        window: Window<'_>,
        w: &[f32; TAPS],
        bias: f32,
        clip: Clip,
        out_row: &mut [f32],
    ) {
        match self.isa {
            // SAFETY: a Depthwise holds Avx2 only when the CPU reported AVX2 and FMA
            // (`Isa::is_supported`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::row_avx2(stride, window, w, bias, clip, out_row) },
            // SAFETY: NEON is part of the aarch64 baseline.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => unsafe { neon::row(stride, window, w, bias, clip, out_row) },
            _ => unreachable!("the reference path never reaches row()"),
        }
    }
}
