//! Pointwise (1x1) convolution over NCHW planes (one frame), with its bias and a clip (ReLU6)
//! fused: `out[m][p] = clip(bias[m] + sum_k w[m][k] * in[k][p])`.
//!
//! MobileNet-style backbones spend most of their float time here. A generic engine packs the
//! activation into its matrix layout on every frame and applies bias and clip in passes of their
//! own; here the activation planes are read where they lie (a plane's row of pixels is already
//! what a vector wants), the weights are packed once when the model loads ([`pack`]), and
//! bias and clip are applied before a tile leaves the registers.
//!
//! [`scalar`] is the reference. The fast paths ([`Isa::Avx2`], [`Isa::Neon`]) fuse multiply and
//! add, so they agree with it to float rounding; a [`Pointwise`] only ever runs a path the CPU
//! supports.

pub mod scalar;

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use crate::depthwise::Clip;
pub use crate::isa::Isa;

/// Output channels per packed weight panel: the rows a fast path computes together.
pub const PANEL: usize = 6;

/// The sizes of one pointwise convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Output channels M.
    pub out_channels: usize,
    /// Input channels K.
    pub in_channels: usize,
    /// Pixels per channel plane, H*W.
    pub plane: usize,
}

/// Why a pointwise convolution was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointwiseError {
    /// A size is zero, or a buffer's length differs from what the shape needs.
    BufferLength,
    /// The clip's bounds are NaN or reversed.
    Clip,
}

impl core::fmt::Display for PointwiseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PointwiseError::BufferLength => {
                "a pointwise convolution's size is zero or a buffer does not match it"
            }
            PointwiseError::Clip => "clip bounds are NaN or reversed",
        })
    }
}

impl core::error::Error for PointwiseError {}

impl Shape {
    /// Panels of [`PANEL`] output channels, the last one zero-padded.
    fn panels(&self) -> usize {
        self.out_channels.div_ceil(PANEL)
    }

    /// Floats of the packed weights ([`pack`]); `None` on overflow.
    pub fn packed_len(&self) -> Option<usize> {
        self.panels()
            .checked_mul(PANEL)?
            .checked_mul(self.in_channels)
    }

    /// Checks the sizes against the buffers.
    fn check(
        &self,
        packed: usize,
        bias: usize,
        input: usize,
        output: usize,
    ) -> Result<(), PointwiseError> {
        let lengths = (|| {
            Some((
                self.packed_len()?,
                self.in_channels.checked_mul(self.plane)?,
                self.out_channels.checked_mul(self.plane)?,
            ))
        })();
        match lengths {
            Some(expected)
                if self.out_channels > 0
                    && self.in_channels > 0
                    && self.plane > 0
                    && expected == (packed, input, output)
                    && bias == self.out_channels =>
            {
                Ok(())
            }
            _ => Err(PointwiseError::BufferLength),
        }
    }
}

/// Lays out `weights` (`[M][K]` row-major, ONNX `[M, K, 1, 1]`) for the kernels: panels of
/// [`PANEL`] output channels, each holding for every input channel `k` the panel's six weights
/// of `k`. Rows past M are zero.
pub fn pack(shape: &Shape, weights: &[f32], packed: &mut [f32]) -> Result<(), PointwiseError> {
    let k = shape.in_channels;
    if Some(weights.len()) != shape.out_channels.checked_mul(k)
        || Some(packed.len()) != shape.packed_len()
    {
        return Err(PointwiseError::BufferLength);
    }
    for (p, panel) in packed.chunks_exact_mut(PANEL * k.max(1)).enumerate() {
        for (i, column) in panel.chunks_exact_mut(PANEL).enumerate() {
            for (r, w) in column.iter_mut().enumerate() {
                let m = p * PANEL + r;
                *w = if m < shape.out_channels {
                    weights[m * k + i]
                } else {
                    0.0
                };
            }
        }
    }
    Ok(())
}

/// The fast paths, fastest first.
const PATHS: [Isa; 2] = [Isa::Avx2, Isa::Neon];

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
        let isa = Isa::fastest_of(&PATHS);
        Pointwise { isa }
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

    /// Whether this path should take a plane of `plane` pixels: only a vectorized path (the
    /// reference is for checking, far slower than any engine), and only a plane that fills its
    /// strips well, in whole strips or at least ten of them. A partial last strip costs as much
    /// as a full one, which on a 7x7 plane (49 pixels: three strips of 16 and one of a single
    /// pixel) wastes a quarter of the work; there an engine's own kernel is faster.
    pub fn suits(&self, plane: usize) -> bool {
        let width = match self.isa {
            Isa::Avx2 => 16,
            Isa::Neon => 8,
            _ => return false,
        };
        plane.is_multiple_of(width) || plane >= 10 * width
    }

    /// `output[m][p] = clip(bias[m] + sum_k w[m][k] * input[k][p])`, the weights as [`pack`]
    /// laid them out, input `[K][H*W]` and output `[M][H*W]`.
    pub fn run(
        &self,
        shape: &Shape,
        packed: &[f32],
        bias: &[f32],
        clip: Clip,
        input: &[f32],
        output: &mut [f32],
    ) -> Result<(), PointwiseError> {
        shape.check(packed.len(), bias.len(), input.len(), output.len())?;
        if clip.min.is_nan() || clip.max.is_nan() || clip.min > clip.max {
            return Err(PointwiseError::Clip);
        }
        let panels = packed.chunks_exact(PANEL * shape.in_channels);
        let plane = shape.plane;
        let fast: Option<(TileFn, usize)> = match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some((x86::tile, x86::WIDTH)),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Some((neon::tile, neon::WIDTH)),
            _ => None,
        };
        // NEON's last strip overlaps the one before: the plane must hold a whole strip.
        let fast = fast.filter(|&(_, width)| self.isa != Isa::Neon || plane >= width);
        let Some((tile, width)) = fast else {
            for (p, panel) in panels.enumerate() {
                let tile = Tile::new(shape, p, bias);
                scalar::panel(shape, panel, &tile, clip, input, 0..plane, output);
            }
            return Ok(());
        };
        // Strips of `width` pixels. AVX2 masks a narrower last strip; NEON ends the last one at
        // the plane's end, overlapping the one before, whose pixels it computes again to the
        // same values.
        let strips = (0..plane).step_by(width).map(|n| {
            if self.isa == Isa::Neon {
                (n.min(plane - width), width)
            } else {
                (n, width.min(plane - n))
            }
        });
        // What `tile` needs (both loops): its instructions on this CPU (a Pointwise holds Avx2
        // only when the CPU reported AVX2 and FMA, NEON is part of the aarch64 baseline),
        // buffers matching the shape (checked above), and a strip within the plane.
        if packed.len() > input.len() {
            // Weights larger than the input (the deep, small-plane layers): each panel of
            // weights is read once and stays in the nearest cache while it sweeps the input.
            for (p, panel) in panels.enumerate() {
                let t = Tile::new(shape, p, bias);
                for (n, cols) in strips.clone() {
                    // SAFETY: as said above the branch.
                    unsafe { tile(shape, panel, &t, clip, input, n, cols, output) };
                }
            }
        } else {
            // The input larger (the early, large-plane layers): one strip of it (K x width
            // floats) stays in the nearest cache while every panel of weights passes over it.
            for (n, cols) in strips {
                for (p, panel) in panels.clone().enumerate() {
                    let t = Tile::new(shape, p, bias);
                    // SAFETY: as said above the branch.
                    unsafe { tile(shape, panel, &t, clip, input, n, cols, output) };
                }
            }
        }
        Ok(())
    }
}

/// A fast path's tile: pixels `n..n + cols` of one panel's channels.
type TileFn = unsafe fn(&Shape, &[f32], &Tile, Clip, &[f32], usize, usize, &mut [f32]);

/// The output channels one panel writes: its first channel, how many are real (the last panel
/// may be short), and their biases (zero past the end).
struct Tile {
    first: usize,
    rows: usize,
    bias: [f32; PANEL],
}

impl Tile {
    fn new(shape: &Shape, panel: usize, bias: &[f32]) -> Tile {
        let first = panel * PANEL;
        let rows = (shape.out_channels - first).min(PANEL);
        let mut b = [0.0; PANEL];
        b[..rows].copy_from_slice(&bias[first..first + rows]);
        Tile {
            first,
            rows,
            bias: b,
        }
    }
}
