//! NAP fusion: the weighted geometric mean of a logit score and S_NAP, taken in log space.

/// Floor applied to both factors before taking logarithms.
///
/// A black frame gives S_NAP = 0 and a logit score can be <= 0 (negative energy of small logits);
/// the product form would then give 0, a negative base or NaN. Clamping to `FUSION_FLOOR` keeps the
/// score finite and ranks exactly like `lse^w * nap^(1-w)` whenever both factors exceed the floor.
pub const FUSION_FLOOR: f32 = 1e-6;

/// A fused score and whether either factor had to be raised to [`FUSION_FLOOR`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fused {
    /// `w * ln(max(logit_score, floor)) + (1 - w) * ln(max(nap, floor))`.
    pub score: f32,
    /// True when a factor was at or below the floor: the runtime counts these frames.
    pub clamped: bool,
}

/// Fuses a logit score (negative energy, or max softmax for NAP-M) with S_NAP using weight `w`
/// on the logit score. `w = 1` ranks like the logit score alone, `w = 0` like S_NAP alone.
pub fn fuse(logit_score: f32, nap: f32, w: f32) -> Fused {
    let clamped = at_floor(logit_score) || at_floor(nap);
    let l = libm::logf(floor(logit_score));
    let n = libm::logf(floor(nap));
    Fused {
        score: w * l + (1.0 - w) * n,
        clamped,
    }
}

/// True for values the floor replaces, NaN included.
fn at_floor(x: f32) -> bool {
    x.is_nan() || x <= FUSION_FLOOR
}

fn floor(x: f32) -> f32 {
    if at_floor(x) { FUSION_FLOOR } else { x }
}
