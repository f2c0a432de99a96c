//! Residual add of two u8 tensors, each with its own scale and zero point, into a third
//! ([`Quant`]s), with an optional clamp: TFLite's quantized add, exactly.
//!
//! Both inputs are brought to a common fixed-point scale before they are added, with
//! [`LEFT`] bits of headroom, and the sum is rescaled to the output. With `twice_max =
//! 2 * max(s_a, s_b)`:
//!
//! ```text
//! ra  = Requant(s_a / twice_max).apply((a - z_a) << LEFT)
//! rb  = Requant(s_b / twice_max).apply((b - z_b) << LEFT)
//! out = stage.apply(Requant(twice_max / (2^LEFT * s_out)).apply(ra + rb))
//! ```
//!
//! The inputs' factors are at most 1/2, so they only shift right, and `ra + rb` stays within
//! ±2^28: nothing overflows.
//!
//! Against the float computation `quantize(dequantize(a) + dequantize(b))`: each input's
//! rescale is off by at most one unit of `twice_max / 2^LEFT` (real), so the sum reaches the
//! output's last rounding less than `2 * twice_max / (2^LEFT * s_out)` codes (plus the
//! multipliers' 2^-31 relative error) away from the exact value; while that is under one code
//! (`twice_max / s_out < 2^18`, any realistic residual) the two results differ by at most one
//! code (the float one rounds halves away from zero, this one up). The tests check it for
//! scales from 1e-3 to 1, ratios up to 1000.
//!
//! The buffers are whole stride-padded tensors of equal length: padding bytes are computed
//! like the rest (each byte on its own). [`scalar`] is the reference; the fast paths
//! ([`Isa::Neon`]: 16 bytes per step, [`Isa::Avx2`]: 8) equal it byte for byte, using the
//! requantization's lane forms, with the reference for a last partial step.

pub mod scalar;

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use crate::isa::Isa;

use super::{OutputStage, Quant, Requant};

/// Headroom bits the inputs are shifted up by before they are rescaled (TFLite's `left_shift`).
pub const LEFT: u32 = 20;

/// Why an add was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    /// A scale is not finite and positive, or the output's factor is too large to represent
    /// (`twice_max / s_out >= 2^50`).
    Scale,
    /// The output stage's zero point is not the output's, or its `min` exceeds its `max`.
    Stage,
    /// The three buffers do not have the same length.
    Length,
}

impl core::fmt::Display for AddError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AddError::Scale => "int8 add: a scale is not finite and positive, or out of range",
            AddError::Stage => {
                "int8 add: the output stage does not match the output's zero point, or min > max"
            }
            AddError::Length => "int8 add: the buffers' lengths differ",
        })
    }
}

impl core::error::Error for AddError {}

/// The fixed-point parameters of one residual add, built once from the three [`Quant`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddParams {
    /// Zero point of `a`.
    pub a_zero_point: u8,
    /// Zero point of `b`.
    pub b_zero_point: u8,
    /// `s_a / twice_max`: `a`'s factor to the common scale (never shifts left).
    pub a: Requant,
    /// `s_b / twice_max`.
    pub b: Requant,
    /// `twice_max / (2^LEFT * s_out)`: the sum's factor to the output.
    pub out: Requant,
    /// The output's zero point and clamp.
    pub stage: OutputStage,
}

impl AddParams {
    /// The parameters for `a + b -> out`; `stage` is the output's zero point with the clamp a
    /// fused activation asks for ([`OutputStage::unclamped`] for none).
    pub fn new(a: Quant, b: Quant, out: Quant, stage: OutputStage) -> Result<AddParams, AddError> {
        let ok = |s: f32| s.is_finite() && s > 0.0;
        if !(ok(a.scale) && ok(b.scale) && ok(out.scale)) {
            return Err(AddError::Scale);
        }
        if stage.zero_point != out.zero_point || stage.min > stage.max {
            return Err(AddError::Stage);
        }
        let (sa, sb, so) = (f64::from(a.scale), f64::from(b.scale), f64::from(out.scale));
        let twice_max = 2.0 * sa.max(sb);
        let factor = |s: f64| Requant::from_scale(s).ok_or(AddError::Scale);
        let params = AddParams {
            a_zero_point: a.zero_point,
            b_zero_point: b.zero_point,
            a: factor(sa / twice_max)?,
            b: factor(sb / twice_max)?,
            out: factor(twice_max / (f64::from(1u32 << LEFT) * so))?,
            stage,
        };
        debug_assert!(params.a.left() == 0 && params.b.left() == 0);
        Ok(params)
    }

    /// The output code of `a + b`: the definition every path follows.
    pub fn apply(&self, a: u8, b: u8) -> u8 {
        let ra = self
            .a
            .apply((i32::from(a) - i32::from(self.a_zero_point)) << LEFT);
        let rb = self
            .b
            .apply((i32::from(b) - i32::from(self.b_zero_point)) << LEFT);
        self.stage.apply(self.out.apply(ra + rb))
    }
}

/// The fast paths, fastest first.
const PATHS: [Isa; 2] = [Isa::Avx2, Isa::Neon];

/// Runs residual adds with one implementation this CPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Add {
    isa: Isa,
}

impl Default for Add {
    fn default() -> Self {
        Self::new()
    }
}

impl Add {
    /// The fastest implementation this CPU supports.
    pub fn new() -> Self {
        Add {
            isa: Isa::fastest_of(&PATHS),
        }
    }

    /// A specific implementation, or `None` when this kernel has no such path or this CPU
    /// cannot run it.
    pub fn with_isa(isa: Isa) -> Option<Self> {
        isa.among(&PATHS).map(|isa| Add { isa })
    }

    /// The implementation this runs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// `out[i] = params.apply(a[i], b[i])` for every byte; the three buffers have one length.
    pub fn run(
        &self,
        params: &AddParams,
        a: &[u8],
        b: &[u8],
        out: &mut [u8],
    ) -> Result<(), AddError> {
        if a.len() != out.len() || b.len() != out.len() {
            return Err(AddError::Length);
        }
        let done = match self.isa {
            // SAFETY: an Add holds Avx2 only when the CPU reported it (`Isa::is_supported`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::run(params, a, b, out) },
            // SAFETY: NEON is part of the aarch64 baseline.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => unsafe { neon::run(params, a, b, out) },
            _ => 0,
        };
        scalar::run(params, &a[done..], &b[done..], &mut out[done..]);
        Ok(())
    }
}
