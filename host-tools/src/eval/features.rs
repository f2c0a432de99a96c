//! What one frame gives every scoring method: the per-channel mean and max of its pre-pool
//! activation. They are all `eval` and `calibrate` keep of a frame (and cache).

/// What one frame gives every method: the per-channel mean (the pooled feature) and max of the
/// pre-pool activation. S_NAP for any `eps` and the logits of any shaping follow from them.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// Per-channel mean of the pre-pool activation (the classifier head's input).
    pub pooled: Vec<f32>,
    /// Per-channel max of the pre-pool activation.
    pub max: Vec<f32>,
}

impl Features {
    /// S_NAP with this `eps`, bit-identical to the runtime's (same per-channel formula and
    /// accumulation, with the mean already divided).
    pub fn nap(&self, eps: f32) -> f32 {
        let mut scratch = vec![0.0; self.pooled.len()];
        nap_core::nap::nap_f32(&self.max, &self.pooled, 1, eps, &mut scratch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nap_from_features_by_hand() {
        // Channel 0: (3 / 1.5)^2 = 4; channel 1: 0; channel 2: (6 / 3)^2 = 4. Mean 8 / 3.
        let nap = Features {
            pooled: vec![0.5, 0.0, 2.0],
            max: vec![3.0, 0.0, 6.0],
        }
        .nap(1.0);
        assert!((nap - 8.0 / 3.0).abs() < 1e-6, "{nap}");
    }
}
