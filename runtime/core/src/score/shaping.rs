//! Feature shaping applied to the pooled feature before the classifier head: ReAct, ASH and
//! SCALE.

/// ReAct: clip every pooled activation at `clip` (the paper takes the 90th percentile of ID
/// pooled activations), damping the few abnormally large units that OOD inputs trigger.
pub fn react(pooled: &[f32], clip: f32, out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(pooled) {
        *o = x.min(clip);
    }
}

/// The ASH variants: all find the top `(100 - p)%` of the pooled feature, then differ in what
/// they keep. SCALE (Xu et al. 2024) is ASH-S without the pruning, so it lives here too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ash {
    /// Prune only.
    P,
    /// Kept entries all set to `s1 / k`, the pre-pruning sum spread evenly.
    B,
    /// Kept entries scaled by `exp(s1 / s2)`, `s1` and `s2` the sums before and after pruning.
    S,
    /// Nothing pruned: every entry scaled by ASH-S's `exp(s1 / s2)`.
    Scale,
}

/// Number of entries ASH keeps out of `n` at percentile `p`: `n - round(n * p / 100)`, rounding
/// half to even as the reference implementation (numpy) does.
pub fn ash_kept(n: usize, percentile: f32) -> usize {
    let pruned = libm::rint(n as f64 * f64::from(percentile) / 100.0);
    n.saturating_sub(pruned as usize)
}

/// ASH on `pooled` at percentile `p` in [0, 100), written to `out`; `scratch` (same length)
/// finds the k-th largest value without allocating. Among equal values at the cut, lower channel
/// indices are kept first.
pub fn ash(variant: Ash, pooled: &[f32], percentile: f32, out: &mut [f32], scratch: &mut [f32]) {
    let n = pooled.len();
    let k = ash_kept(n, percentile);
    out.fill(0.0);
    if k == 0 {
        // Nothing kept: nothing to scale by either.
        if variant == Ash::Scale {
            out.copy_from_slice(pooled);
        }
        return;
    }
    let keep = &mut scratch[..n];
    let mut top = TopK::new(pooled, k, keep);

    // Mark the kept entries in `keep` (1 kept, 0 pruned) and sum before and after pruning.
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for (mark, &x) in keep.iter_mut().zip(pooled) {
        let kept = top.keeps(x);
        s1 += f64::from(x);
        if kept {
            s2 += f64::from(x);
        }
        *mark = if kept { 1.0 } else { 0.0 };
    }

    // An all-zero kept set has nothing to rescale (and s1 / s2 would be 0 / 0).
    let scaled = |x: f32| -> f32 {
        if s2 > 0.0 {
            (f64::from(x) * libm::exp(s1 / s2)) as f32
        } else {
            x
        }
    };
    let kept_value = |x: f32| -> f32 {
        match variant {
            Ash::P => x,
            Ash::B => (s1 / k as f64) as f32,
            Ash::S | Ash::Scale => scaled(x),
        }
    };
    for ((o, &x), &mark) in out.iter_mut().zip(pooled).zip(keep.iter()) {
        if mark != 0.0 {
            *o = kept_value(x);
        } else if variant == Ash::Scale {
            *o = scaled(x);
        }
    }
}

/// The `k` largest of some values, told apart in one pass in index order: values above the
/// cut, and among those equal to it the first ones, until `k` are kept.
pub(crate) struct TopK {
    cut: f32,
    ties_to_keep: usize,
}

impl TopK {
    /// The cut for keeping `k` (1..=len) of `values`; `scratch` (same length) is overwritten.
    pub(crate) fn new(values: &[f32], k: usize, scratch: &mut [f32]) -> TopK {
        scratch.copy_from_slice(values);
        TopK::in_place(scratch, k)
    }

    /// The cut for keeping `k` (1..=len) of `values`, which are reordered.
    pub(crate) fn in_place(values: &mut [f32], k: usize) -> TopK {
        let (_, &mut cut, _) = values.select_nth_unstable_by(values.len() - k, f32::total_cmp);
        let above = values.iter().filter(|x| x.total_cmp(&cut).is_gt()).count();
        TopK {
            cut,
            ties_to_keep: k - above,
        }
    }

    /// Whether the next value, in index order, is kept.
    pub(crate) fn keeps(&mut self, x: f32) -> bool {
        match x.total_cmp(&self.cut) {
            core::cmp::Ordering::Greater => true,
            core::cmp::Ordering::Equal if self.ties_to_keep > 0 => {
                self.ties_to_keep -= 1;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn react_clips_at_c() {
        let mut out = [0.0; 3];
        react(&[0.5, 2.0, 3.0], 1.0, &mut out);
        assert_eq!(out, [0.5, 1.0, 1.0]);
    }

    #[test]
    fn kept_count_rounds_half_to_even() {
        assert_eq!(ash_kept(1280, 90.0), 128);
        assert_eq!(ash_kept(10, 70.0), 3);
        assert_eq!(ash_kept(10, 25.0), 8); // 2.5 rounds to 2
        assert_eq!(ash_kept(10, 35.0), 6); // 3.5 rounds to 4
        assert_eq!(ash_kept(10, 0.0), 10);
    }

    // n = 10, p = 70: k = 3, the top three are 10, 4, 3; s1 = 20, s2 = 17.
    const POOLED: [f32; 10] = [1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0];

    fn shaped(variant: Ash, pooled: &[f32], p: f32) -> [f32; 10] {
        let (mut out, mut scratch) = ([f32::NAN; 10], [0.0; 10]);
        ash(variant, pooled, p, &mut out[..pooled.len()], &mut scratch);
        out
    }

    #[test]
    fn ash_p_prunes_only() {
        assert_eq!(
            shaped(Ash::P, &POOLED, 70.0),
            [0.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0]
        );
    }

    #[test]
    fn ash_b_spreads_the_sum() {
        let f = 20.0 / 3.0;
        assert_eq!(
            shaped(Ash::B, &POOLED, 70.0),
            [0.0, 0.0, f, f, 0.0, 0.0, 0.0, 0.0, 0.0, f]
        );
    }

    #[test]
    fn ash_s_scales_by_exp_of_the_sum_ratio() {
        let s = 3.242_908_4_f32; // exp(20 / 17)
        let out = shaped(Ash::S, &POOLED, 70.0);
        let expected = [
            0.0,
            0.0,
            3.0 * s,
            4.0 * s,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            10.0 * s,
        ];
        for (o, e) in out.iter().zip(expected) {
            assert!((o - e).abs() <= 1e-5 * e.max(1.0), "{out:?}");
        }
    }

    #[test]
    fn scale_scales_every_entry_by_ash_s_factor() {
        let s = 3.242_908_4_f32; // exp(20 / 17), as ASH-S
        let out = shaped(Ash::Scale, &POOLED, 70.0);
        for (o, x) in out.iter().zip(POOLED) {
            assert!((o - x * s).abs() <= 1e-5 * (x * s).max(1.0), "{out:?}");
        }
        assert_eq!(shaped(Ash::Scale, &[0.0; 10], 90.0), [0.0; 10]);
    }

    #[test]
    fn ash_ties_keep_lower_indices() {
        // Four equal values, p = 50: k = 2, the first two are kept.
        let out = shaped(Ash::P, &[1.0; 4], 50.0);
        assert_eq!(out[..4], [1.0, 1.0, 0.0, 0.0]);
        // ASH-B keeps a zero entry at the cut as a kept entry: [0, 0, 6], p = 40: k = 2, fill 6 / 2.
        let out = shaped(Ash::B, &[0.0, 0.0, 6.0], 40.0);
        assert_eq!(out[..3], [3.0, 0.0, 3.0]);
    }

    #[test]
    fn ash_s_of_zeros_stays_zero() {
        assert_eq!(shaped(Ash::S, &[0.0; 10], 90.0), [0.0; 10]);
    }
}
