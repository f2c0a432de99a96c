//! The integer backbone's kernels: u8 activations, i8 weights, i32 accumulators, and a
//! fixed-point rescale back to u8 ([`requant`]) after every layer, so a quantized backbone runs
//! from its first convolution to the pre-pool activation without a float between layers.
//!
//! Conventions every kernel here shares:
//!
//! - A tensor's real value is `scale * (code - zero_point)`: activations are u8 codes with a
//!   per-tensor scale and zero point ([`Quant`]); weights are i8 with a per-output-channel scale
//!   and zero point 0 (symmetric), so a layer's bias and the input's zero point fold into one i32
//!   per output channel when the model loads.
//! - Activations are NHWC (channels last), one frame: pixel `p` of a `C`-channel tensor starts
//!   at byte `p * stride(C)`, where [`stride`] rounds `C` up to [`CHANNEL_ALIGN`]. The bytes past
//!   `C` are padding: kernels may write anything there and never let it reach a real channel, so
//!   a vector never needs a scalar tail over channels.
//! - Each kernel has a `scalar` reference that defines its arithmetic exactly; every fast path
//!   ([`Isa`](crate::isa::Isa)) must give the same bytes.

pub mod requant;

pub use requant::{OutputStage, Requant};

/// Channels of a pixel are padded to a multiple of this many bytes.
pub const CHANNEL_ALIGN: usize = 8;

/// Bytes from one pixel to the next in a tensor of `channels` channels.
pub const fn stride(channels: usize) -> usize {
    channels.div_ceil(CHANNEL_ALIGN) * CHANNEL_ALIGN
}

/// How a u8 tensor's codes map to real values: `real = scale * (code - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quant {
    /// Real value of one code step; finite and positive.
    pub scale: f32,
    /// The code that stands for real zero.
    pub zero_point: u8,
}

impl Quant {
    /// The parameters that cover `[min, max]` (widened to include 0, so zero padding is exact)
    /// with the 256 codes; `None` when a bound is not finite.
    pub fn covering(min: f32, max: f32) -> Option<Quant> {
        if !min.is_finite() || !max.is_finite() {
            return None;
        }
        let (min, max) = (min.min(0.0), max.max(0.0));
        let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
        let zero_point = libm::roundf(-min / scale).clamp(0.0, 255.0) as u8;
        Some(Quant { scale, zero_point })
    }

    /// The code nearest to `value`, saturated to 0..=255.
    pub fn quantize(&self, value: f32) -> u8 {
        let code = libm::roundf(value / self.scale) + f32::from(self.zero_point);
        // NaN saturates to 0 through `as`.
        code.clamp(0.0, 255.0) as u8
    }

    /// The real value a code stands for.
    pub fn dequantize(&self, code: u8) -> f32 {
        self.scale * (i32::from(code) - i32::from(self.zero_point)) as f32
    }
}
