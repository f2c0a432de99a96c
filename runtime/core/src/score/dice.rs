//! DICE (Sun & Li, ECCV 2022): the head with its weights sparsified by their contribution on
//! in-distribution data, so that energy reads only the connections ID frames rely on.

use super::shaping::{TopK, ash_kept};

/// DICE's default sparsity: the share of weights dropped, in percent (the paper's ImageNet
/// setting).
pub const DEFAULT_SPARSITY: f32 = 70.0;

/// Zeroes the weights of a row-major `[classes][features]` head whose contribution on ID data,
/// `w_kj * mean_j`, is not among the top `100 - sparsity` percent (`n - round(n * p / 100)` of
/// the `n` weights kept; among equal contributions at the cut, lower indices first). `mean` is
/// the ID frames' mean pooled feature; `scratch` holds `weights.len()` floats.
pub fn sparsify(weights: &mut [f32], mean: &[f32], sparsity: f32, scratch: &mut [f32]) {
    let n = weights.len();
    let features = mean.len();
    if n == 0 || features == 0 {
        return;
    }
    let kept = ash_kept(n, sparsity);
    if kept == 0 {
        weights.fill(0.0);
        return;
    }
    let scratch = &mut scratch[..n];
    for (c, (w, m)) in scratch
        .iter_mut()
        .zip(weights.iter().zip(mean.iter().cycle()))
    {
        *c = w * m;
    }
    // Selecting reorders the contributions: the pass below computes each one again.
    let mut top = TopK::in_place(scratch, kept);
    for (w, m) in weights.iter_mut().zip(mean.iter().cycle()) {
        if !top.keeps(*w * m) {
            *w = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_weights_id_frames_rely_on() {
        // Two classes over three features; mean [1, 0, 2]: contributions
        // [3, 0, -2, 1, 0, 4]. Sparsity 50: round(3) dropped, the top 3 (4, 3, 1) kept.
        let mut weights = [3.0, 5.0, -1.0, 1.0, -7.0, 2.0];
        let mut scratch = [0.0; 6];
        sparsify(&mut weights, &[1.0, 0.0, 2.0], 50.0, &mut scratch);
        assert_eq!(weights, [3.0, 0.0, 0.0, 1.0, 0.0, 2.0]);
    }

    #[test]
    fn ties_at_the_cut_keep_lower_indices_and_the_ends_are_exact() {
        // All contributions equal: the first two of four are kept at 50%.
        let mut weights = [1.0; 4];
        let mut scratch = [0.0; 4];
        sparsify(&mut weights, &[1.0, 1.0], 50.0, &mut scratch);
        assert_eq!(weights, [1.0, 1.0, 0.0, 0.0]);
        let mut all = [1.0, -2.0, 3.0, 4.0];
        sparsify(&mut all, &[1.0, 1.0], 0.0, &mut scratch);
        assert_eq!(all, [1.0, -2.0, 3.0, 4.0]);
        let mut none = [1.0, 2.0];
        sparsify(&mut none, &[1.0, 1.0], 99.0, &mut scratch);
        assert_eq!(none, [0.0, 0.0]);
    }
}
