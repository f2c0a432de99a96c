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

/// The largest logit; NaN when any logit is NaN, so a broken head cannot hide.
fn max_logit(logits: &[f32]) -> Option<f32> {
    let (&first, rest) = logits.split_first()?;
    Some(rest.iter().fold(first, |m, &x| {
        if x.is_nan() || m.is_nan() {
            f32::NAN
        } else {
            m.max(x)
        }
    }))
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
