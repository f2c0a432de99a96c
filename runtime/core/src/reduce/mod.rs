//! Per-channel max and sum over the pre-pool activation, in one pass.
//!
//! Global average pooling leaves the backbone graph and happens here: the sum gives the pooled
//! feature for the classifier head, and max with sum give S_NAP. For u8 activations both are exact
//! integer reductions (u8 max, widening sums), so every implementation returns identical results;
//! for f32 the max is exact and the sum differs from the scalar reference only by summation order.
//!
//! [`scalar`] is the reference. The fast paths ([`Isa::Sse2`], [`Isa::Avx2`], [`Isa::Neon`]) must
//! agree with it; a [`Reducer`] only ever runs a path the CPU supports.

pub mod scalar;

pub use crate::isa::Isa;

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Rows a u16 lane can accumulate without overflow: 257 * 255 = 65535. The interleaved u8 fast
/// paths flush their u16 sums to u32 this often.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const U16_ROWS: usize = 257;

/// `N / 2` zero bytes, then `N / 2` bytes 0xFF: a vector read from it ending `r` bytes into the
/// second half keeps only its last `r` bytes, the ones a plane's overlapping last vector has not
/// counted yet.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const fn tail_mask<const N: usize>() -> [u8; N] {
    let mut m = [0u8; N];
    let mut i = N / 2;
    while i < N {
        m[i] = 0xFF;
        i += 1;
    }
    m
}

/// Channel starts for blocks of `width` channels (`width <= channels`), the last one moved back
/// to end at `channels`: the interleaved fast paths then only ever handle whole blocks.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn channel_blocks(channels: usize, width: usize) -> impl Iterator<Item = usize> {
    (0..channels)
        .step_by(width)
        .map(move |c| c.min(channels - width))
}

/// Memory order of one frame's pre-pool activation (batch dimension already removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Layout {
    /// Channel-major: each channel is a contiguous H*W plane (ONNX and PyTorch exports).
    Nchw,
    /// Channels interleaved: the C values of one pixel are contiguous (TFLite-style exports).
    Nhwc,
}

/// Shape of one frame's pre-pool activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Number of channels C.
    pub channels: usize,
    /// Spatial size H*W of each channel.
    pub plane: usize,
    /// Memory order.
    pub layout: Layout,
}

impl Shape {
    /// Largest plane whose u8 sum always fits a u32, and an i32 (255 * plane <= i32::MAX), so
    /// sums convert to floats with the fast signed conversion.
    pub const MAX_PLANE: usize = (i32::MAX / 255) as usize;

    /// A channel-major (NCHW) shape.
    pub const fn nchw(channels: usize, plane: usize) -> Self {
        Shape {
            channels,
            plane,
            layout: Layout::Nchw,
        }
    }

    /// A channels-interleaved (NHWC) shape.
    pub const fn nhwc(channels: usize, plane: usize) -> Self {
        Shape {
            channels,
            plane,
            layout: Layout::Nhwc,
        }
    }

    /// Number of elements C*H*W, or an error when the shape is empty or too large.
    pub fn elements(&self) -> Result<usize, ShapeError> {
        if self.channels == 0 || self.plane == 0 {
            return Err(ShapeError::Empty);
        }
        if self.plane > Self::MAX_PLANE {
            return Err(ShapeError::PlaneTooLarge { plane: self.plane });
        }
        self.channels
            .checked_mul(self.plane)
            .ok_or(ShapeError::Overflow)
    }

    /// Checks that the activation and output buffers match this shape.
    fn check(&self, activation: usize, max: usize, sum: usize) -> Result<(), ShapeError> {
        let expected = self.elements()?;
        if activation != expected {
            return Err(ShapeError::Activation {
                expected,
                got: activation,
            });
        }
        for got in [max, sum] {
            if got != self.channels {
                return Err(ShapeError::Output {
                    expected: self.channels,
                    got,
                });
            }
        }
        Ok(())
    }
}

/// Why a reduction was refused: the buffers do not match the declared shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeError {
    /// Zero channels or an empty plane: there is no max to take.
    Empty,
    /// The plane is larger than [`Shape::MAX_PLANE`]: a u8 sum could overflow u32.
    PlaneTooLarge {
        /// The declared H*W.
        plane: usize,
    },
    /// C*H*W does not fit in `usize`.
    Overflow,
    /// The activation buffer does not hold C*H*W elements.
    Activation {
        /// C*H*W.
        expected: usize,
        /// The buffer's length.
        got: usize,
    },
    /// An output buffer does not hold one entry per channel.
    Output {
        /// C.
        expected: usize,
        /// The buffer's length.
        got: usize,
    },
}

impl core::error::Error for ShapeError {}

impl core::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ShapeError::Empty => write!(f, "pre-pool activation has no channels or an empty plane"),
            ShapeError::PlaneTooLarge { plane } => write!(
                f,
                "plane of {plane} values is larger than {} (u8 sums would overflow)",
                Shape::MAX_PLANE
            ),
            ShapeError::Overflow => write!(f, "channels * plane overflows"),
            ShapeError::Activation { expected, got } => write!(
                f,
                "pre-pool activation has {got} values, its shape needs {expected}"
            ),
            ShapeError::Output { expected, got } => {
                write!(
                    f,
                    "output buffer has {got} entries, one per channel needs {expected}"
                )
            }
        }
    }
}

/// The fast paths, fastest first.
const PATHS: [Isa; 3] = [Isa::Avx2, Isa::Neon, Isa::Sse2];

/// Runs the per-channel reductions with one implementation this CPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reducer {
    isa: Isa,
}

impl Default for Reducer {
    fn default() -> Self {
        Self::new()
    }
}

impl Reducer {
    /// The fastest implementation this CPU supports.
    pub fn new() -> Self {
        let isa = Isa::fastest_of(&PATHS);
        Reducer { isa }
    }

    /// A specific implementation, or `None` when this kernel has no such path or this CPU
    /// cannot run it.
    pub fn with_isa(isa: Isa) -> Option<Self> {
        isa.among(&PATHS).map(|isa| Reducer { isa })
    }

    /// The implementation this reducer runs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Per-channel max and sum of a u8 activation; exact.
    pub fn reduce_u8(
        &self,
        shape: Shape,
        activation: &[u8],
        max: &mut [u8],
        sum: &mut [u32],
    ) -> Result<(), ShapeError> {
        shape.check(activation.len(), max.len(), sum.len())?;
        let (c, p) = (shape.channels, shape.plane);
        match (self.isa, shape.layout) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE2 is in the x86_64 baseline; `shape.check` matched the buffers.
            (Isa::Sse2, Layout::Nchw) => unsafe { x86::u8_nchw_sse2(activation, p, max, sum) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE2 is in the x86_64 baseline; `shape.check` matched the buffers.
            (Isa::Sse2, Layout::Nhwc) => unsafe { x86::u8_nhwc_sse2(activation, c, max, sum) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx2 only on a CPU that has it; `shape.check` matched the buffers.
            (Isa::Avx2, Layout::Nchw) => unsafe { x86::u8_nchw_avx2(activation, p, max, sum) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx2 only on a CPU that has it; `shape.check` matched the buffers.
            (Isa::Avx2, Layout::Nhwc) => unsafe { x86::u8_nhwc_avx2(activation, c, max, sum) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON is in the aarch64 baseline; `shape.check` matched the buffers.
            (Isa::Neon, Layout::Nchw) => unsafe { neon::u8_nchw(activation, p, max, sum) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON is in the aarch64 baseline; `shape.check` matched the buffers.
            (Isa::Neon, Layout::Nhwc) => unsafe { neon::u8_nhwc(activation, c, max, sum) },
            (_, Layout::Nchw) => scalar::u8_nchw(activation, p, max, sum),
            (_, Layout::Nhwc) => scalar::u8_nhwc(activation, c, max, sum),
        }
        Ok(())
    }

    /// Per-channel max and sum of an f32 activation. The max is exact; the sum may differ from
    /// [`scalar`] by summation order only (at most `plane * f32::EPSILON * sum(|x|)`).
    pub fn reduce_f32(
        &self,
        shape: Shape,
        activation: &[f32],
        max: &mut [f32],
        sum: &mut [f32],
    ) -> Result<(), ShapeError> {
        shape.check(activation.len(), max.len(), sum.len())?;
        let (c, p) = (shape.channels, shape.plane);
        match (self.isa, shape.layout) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE2 is in the x86_64 baseline; `shape.check` matched the buffers.
            (Isa::Sse2, Layout::Nchw) => unsafe { x86::f32_nchw_sse2(activation, p, max, sum) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE2 is in the x86_64 baseline; `shape.check` matched the buffers.
            (Isa::Sse2, Layout::Nhwc) => unsafe { x86::f32_nhwc_sse2(activation, c, max, sum) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx2 only on a CPU that has it; `shape.check` matched the buffers.
            (Isa::Avx2, Layout::Nchw) => unsafe { x86::f32_nchw_avx2(activation, p, max, sum) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx2 only on a CPU that has it; `shape.check` matched the buffers.
            (Isa::Avx2, Layout::Nhwc) => unsafe { x86::f32_nhwc_avx2(activation, c, max, sum) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON is in the aarch64 baseline; `shape.check` matched the buffers.
            (Isa::Neon, Layout::Nchw) => unsafe { neon::f32_nchw(activation, p, max, sum) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: NEON is in the aarch64 baseline; `shape.check` matched the buffers.
            (Isa::Neon, Layout::Nhwc) => unsafe { neon::f32_nhwc(activation, c, max, sum) },
            (_, Layout::Nchw) => scalar::f32_nchw(activation, p, max, sum),
            (_, Layout::Nhwc) => scalar::f32_nhwc(activation, c, max, sum),
        }
        Ok(())
    }
}
