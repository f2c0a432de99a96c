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

pub mod add;
pub mod depthwise;
pub mod expand_depthwise;
pub mod pointwise;
pub mod requant;
pub mod stem;

pub use requant::{OutputStage, Requant};

/// Channels of a pixel are padded to a multiple of this many bytes.
pub const CHANNEL_ALIGN: usize = 8;

/// Bytes from one pixel to the next in a tensor of `channels` channels.
pub const fn stride(channels: usize) -> usize {
    channels.div_ceil(CHANNEL_ALIGN) * CHANNEL_ALIGN
}

/// How a u8 tensor's codes map to real values: `real = scale * (code - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Quant {
    /// Real value of one code step; finite and positive.
    pub scale: f32,
    /// The code that stands for real zero.
    pub zero_point: u8,
}

impl Quant {
    /// ReLU6 networks: a value in [0, 6], held with an error of at most 6/510.
    pub const RELU6: Quant = Quant {
        scale: 6.0 / 255.0,
        zero_point: 0,
    };

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

    /// The code nearest to `value` (halves away from zero), saturated to 0..=255; NaN gives 0.
    #[inline]
    pub fn quantize(&self, value: f32) -> u8 {
        // `max` sends NaN to -1024 (`clamp` would keep it); within ±1024 every conversion
        // below is exact.
        #[allow(clippy::manual_clamp)]
        let v = (value / self.scale).max(-1024.0).min(1024.0);
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is part of the aarch64 baseline. FRINTA rounds in one instruction.
        let rounded = unsafe {
            use core::arch::aarch64::{vdup_n_f32, vget_lane_f32, vrnda_f32};
            vget_lane_f32::<0>(vrnda_f32(vdup_n_f32(v))) as i32
        };
        // Elsewhere without a call: x86_64's baseline has no rounding instruction, and libm's
        // `roundf` per value was a sixth of the integer backbone's time. `v - t` is exact.
        #[cfg(not(target_arch = "aarch64"))]
        let rounded = {
            let t = v as i32;
            let fraction = v - t as f32;
            t + i32::from(fraction >= 0.5) - i32::from(fraction <= -0.5)
        };
        (rounded + i32::from(self.zero_point)).clamp(0, 255) as u8
    }

    /// The real value a code stands for.
    pub fn dequantize(&self, code: u8) -> f32 {
        self.scale * (i32::from(code) - i32::from(self.zero_point)) as f32
    }

    /// The real value of a code, or of a mean of codes.
    pub fn real(&self, code: f32) -> f32 {
        self.scale * (code - f32::from(self.zero_point))
    }
}

/// Why a layer's integer parameters were refused when they were prepared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoldError {
    /// The weights are not `bias.len()` rows of `taps` each.
    Shape,
    /// A folded bias does not fit an i32.
    Overflow,
}

impl core::fmt::Display for FoldError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FoldError::Shape => "the weights do not match the bias: one row per output channel",
            FoldError::Overflow => "a bias with the input's zero point folded in overflows i32",
        })
    }
}

impl core::error::Error for FoldError {}

/// Folds the input's zero point into each output channel's bias, so kernels multiply raw u8
/// codes: `sum_k w[k] * (x[k] - zp) + b = sum_k w[k] * x[k] + (b - zp * sum_k w[k])`.
/// `weights` holds one row of `taps` weights per entry of `bias`.
pub fn fold_zero_point(
    bias: &mut [i32],
    weights: &[i8],
    taps: usize,
    zero_point: u8,
) -> Result<(), FoldError> {
    if taps == 0 || Some(weights.len()) != bias.len().checked_mul(taps) {
        return Err(FoldError::Shape);
    }
    for (b, row) in bias.iter_mut().zip(weights.chunks_exact(taps)) {
        let sum: i64 = row.iter().map(|&w| i64::from(w)).sum();
        let folded = i64::from(*b) - i64::from(zero_point) * sum;
        *b = i32::try_from(folded).map_err(|_| FoldError::Overflow)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_the_zero_point_keeps_the_sum() {
        let weights = [3i8, -2, 5, -128, 127, 1];
        let x = [200u8, 7, 128, 0, 255, 31];
        let zp = 17u8;
        let mut bias = [1000, -5];
        let exact: [i32; 2] = core::array::from_fn(|m| {
            bias[m]
                + (0..3)
                    .map(|k| {
                        i32::from(weights[m * 3 + k]) * (i32::from(x[m * 3 + k]) - i32::from(zp))
                    })
                    .sum::<i32>()
        });
        fold_zero_point(&mut bias, &weights, 3, zp).unwrap();
        let folded: [i32; 2] = core::array::from_fn(|m| {
            bias[m]
                + (0..3)
                    .map(|k| i32::from(weights[m * 3 + k]) * i32::from(x[m * 3 + k]))
                    .sum::<i32>()
        });
        assert_eq!(folded, exact);
        assert_eq!(
            fold_zero_point(&mut bias, &weights, 4, zp),
            Err(FoldError::Shape)
        );
        assert_eq!(
            fold_zero_point(&mut [i32::MIN], &[1], 1, 1),
            Err(FoldError::Overflow)
        );
    }

    #[test]
    fn activation_ranges_always_hold_zero() {
        let covering = |min, max| Quant::covering(min, max).unwrap();
        assert_eq!(covering(0.0, 6.0), Quant::RELU6);
        let signed = covering(-1.0, 3.0);
        assert_eq!(signed.zero_point, 64);
        assert!((signed.scale - 4.0 / 255.0).abs() < 1e-9);
        assert_eq!(signed.quantize(0.0), 64);
        // A range above zero still codes zero exactly.
        assert_eq!(covering(2.0, 4.0).zero_point, 0);
        assert_eq!(covering(0.0, 0.0).scale, 1.0);
        assert_eq!(Quant::covering(0.0, f32::INFINITY), None);
    }

    #[test]
    fn quantize_rounds_halves_away_from_zero_as_libm_does() {
        let q = Quant {
            scale: 0.5,
            zero_point: 100,
        };
        // The same definition through libm's `roundf`.
        let by_libm = |q: &Quant, v: f32| {
            let code = libm::roundf(v / q.scale) + f32::from(q.zero_point);
            code.clamp(0.0, 255.0) as u8
        };
        let below_half = 0.5f32.next_down();
        let edges = [
            0.0,
            -0.0,
            0.25,
            0.5 * below_half,
            0.25 * 1.0f32.next_up(),
            1.25,
            -0.25,
            -0.75,
            -1.25,
            63.75,
            77.25,
            -50.25,
            -50.0,
            1e9,
            -1e9,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
        ];
        for v in edges {
            assert_eq!(q.quantize(v), by_libm(&q, v), "{v:e}");
        }
        assert_eq!(q.quantize(f32::NAN), 0);
        assert_eq!(
            q.quantize(0.5 * below_half),
            100,
            "just below a half rounds down"
        );
        assert_eq!(q.quantize(0.25), 101, "a half rounds up");
        assert_eq!(q.quantize(-0.25), 99, "and down below zero");
        // Every f32 bit pattern in a sweep, on scales of every kind.
        let mut x = 0x1234_5678u32;
        for scale in [2.0 / 255.0, 1.0 / 3.0, 0.02, 2.0, 1e-6] {
            let q = Quant {
                scale,
                zero_point: 128,
            };
            for _ in 0..200_000 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let v = f32::from_bits(x);
                let v = if v.is_nan() { 1.5 } else { v };
                assert_eq!(q.quantize(v), by_libm(&q, v), "{v:e} / {scale}");
                let near = (x % 70_000) as f32 / 100.0 - 350.0;
                assert_eq!(q.quantize(near * scale), by_libm(&q, near * scale));
            }
        }
    }

    #[test]
    fn strides_pad_to_the_alignment() {
        assert_eq!([1, 3, 8, 9, 24, 27].map(stride), [8, 8, 8, 16, 24, 32]);
    }
}
