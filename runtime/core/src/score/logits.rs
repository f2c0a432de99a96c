//! Scores computed from classifier logits.

/// Negative energy at temperature 1, `logsumexp_k logits_k`, computed stably: the largest logit
/// is taken out before exponentiating, so logits in the thousands neither overflow nor vanish.
/// Empty logits give negative infinity.
pub fn neg_energy(logits: &[f32]) -> f32 {
    let Some(m) = max_logit(logits) else {
        return f32::NEG_INFINITY;
    };
    if !m.is_finite() {
        return m;
    }
    (f64::from(m) + libm::log(sum_exp_shifted(logits, m))) as f32
}

/// Maximum softmax probability, `exp(max - logsumexp)`, in (0, 1]. Empty logits give 0.
pub fn max_softmax(logits: &[f32]) -> f32 {
    let Some(m) = max_logit(logits) else {
        return 0.0;
    };
    if !m.is_finite() {
        return f32::NAN;
    }
    (1.0 / sum_exp_shifted(logits, m)) as f32
}

/// The largest logit (MaxLogit, Hendrycks et al. 2022); NaN when any logit is NaN, so a broken
/// head cannot hide. `None` for empty logits.
pub fn max_logit(logits: &[f32]) -> Option<f32> {
    let (&first, rest) = logits.split_first()?;
    Some(rest.iter().fold(first, |m, &x| {
        if x.is_nan() || m.is_nan() {
            f32::NAN
        } else {
            m.max(x)
        }
    }))
}

/// GEN's exponent `gamma` (Liu et al. 2023, ImageNet setting).
pub const GEN_GAMMA: f64 = 0.1;

/// GEN's number of top probabilities `M` (ImageNet setting); fewer classes use them all.
pub const GEN_TOP: usize = 100;

/// GEN, the negative generalized entropy of the softmax's `M` largest probabilities:
/// `-sum p^gamma (1 - p)^gamma`, in `[-M * 0.5^(2 gamma), 0]`, higher for a confident frame.
/// `scratch` (at least as long as `logits`) holds the probabilities, so nothing is allocated.
/// Empty logits give 0; a NaN logit gives NaN.
pub fn generalized_entropy(logits: &[f32], scratch: &mut [f32]) -> f32 {
    let Some(m) = max_logit(logits) else {
        return 0.0;
    };
    if !m.is_finite() {
        return f32::NAN;
    }
    let sum = sum_exp_shifted(logits, m);
    let probs = &mut scratch[..logits.len()];
    for (p, &x) in probs.iter_mut().zip(logits) {
        *p = (libm::exp(f64::from(x) - f64::from(m)) / sum) as f32;
    }
    let top = GEN_TOP.min(probs.len());
    let first = probs.len() - top;
    if first > 0 {
        probs.select_nth_unstable_by(first, f32::total_cmp);
    }
    let entropy: f64 = probs[first..]
        .iter()
        .map(|&p| {
            let p = f64::from(p);
            libm::pow(p, GEN_GAMMA) * libm::pow(1.0 - p, GEN_GAMMA)
        })
        .sum();
    -entropy as f32
}

fn sum_exp_shifted(logits: &[f32], m: f32) -> f64 {
    logits
        .iter()
        .map(|&x| libm::exp(f64::from(x) - f64::from(m)))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_and_msp_by_hand() {
        // exp(0) + exp(ln 3) = 4: lse = ln 4, msp = 3 / 4.
        let logits = [0.0, 3.0f32.ln()];
        assert!((neg_energy(&logits) - 4.0f32.ln()).abs() < 1e-6);
        assert!((max_softmax(&logits) - 0.75).abs() < 1e-6);
    }

    #[test]
    fn max_logit_and_gen_by_hand() {
        let logits = [0.0, 3.0f32.ln()];
        assert_eq!(max_logit(&logits), Some(3.0f32.ln()));
        // p = [1/4, 3/4]: -2 (1/4 * 3/4)^0.1 = -2 * 0.1875^0.1 = -1.691_726.
        let mut scratch = [0.0; 2];
        let gen_score = generalized_entropy(&logits, &mut scratch);
        assert!((gen_score - -1.691_726).abs() < 1e-5, "{gen_score}");
        // A sure prediction is the most in-distribution GEN can say.
        assert!(generalized_entropy(&[100.0, 0.0], &mut scratch) > gen_score);
    }

    #[test]
    fn gen_takes_only_the_largest_probabilities() {
        // 150 classes: the 50 smallest probabilities are left out.
        let logits: [f32; 150] = core::array::from_fn(|i| i as f32 / 30.0);
        let mut scratch = [0.0; 150];
        let total: f64 = logits.iter().map(|&x| libm::exp(f64::from(x))).sum();
        let want: f64 = logits[50..]
            .iter()
            .map(|&x| {
                let p = libm::exp(f64::from(x)) / total;
                libm::pow(p, 0.1) * libm::pow(1.0 - p, 0.1)
            })
            .sum();
        let got = generalized_entropy(&logits, &mut scratch);
        assert!(
            (f64::from(got) + want).abs() < 1e-4 * want,
            "{got} vs {}",
            -want
        );
        assert_eq!(generalized_entropy(&[], &mut scratch), 0.0);
        assert!(generalized_entropy(&[1.0, f32::NAN], &mut scratch).is_nan());
    }

    #[test]
    fn large_logits_are_stable() {
        assert!((neg_energy(&[1000.0, 1000.0]) - (1000.0 + 2.0f32.ln())).abs() < 1e-3);
        assert!((neg_energy(&[-1000.0, -1000.0]) - (-1000.0 + 2.0f32.ln())).abs() < 1e-3);
        assert!((max_softmax(&[1000.0, 1000.0]) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn degenerate_logits_do_not_hide() {
        assert_eq!(neg_energy(&[]), f32::NEG_INFINITY);
        assert!(neg_energy(&[1.0, f32::NAN]).is_nan());
        assert!(neg_energy(&[f32::NAN, 1.0]).is_nan());
        assert!(max_softmax(&[1.0, f32::NAN]).is_nan());
        assert_eq!(neg_energy(&[f32::INFINITY, 1.0]), f32::INFINITY);
    }
}
