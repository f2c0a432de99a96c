//! The drift alarm: is the scene still as familiar as calibration promised?
//!
//! A calibrated bundle flags a share p0 = 1 - TPR of in-distribution frames. Over the last
//! `window` verdicts napd counts the flagged ones and, on every verdict once the window is full,
//! tests the hypothesis "the rate is still p0" with a one-sided exact binomial test: the alarm is
//! raised when the count reaches the smallest k with P(Binomial(window, p0) >= k) <= [`ALPHA`].
//! Each test on a familiar scene errs with probability at most `ALPHA`, so over T verdicts the
//! chance of any false alarm is at most T x `ALPHA` (one in a million verdicts: about 18 hours
//! at 15 fps). After a switch to a scene flagged at rate p1 the count climbs by about p1 - p0 per
//! verdict: the alarm comes about (k - window x p0) / (p1 - p0) verdicts later, and within one
//! window whenever p1 >= k / window. It clears when the count falls to the binomial's 99th
//! percentile or below: the rate is again what calibration implies.

use statrs::distribution::{Binomial, DiscreteCDF};

/// The false-alarm probability of one test on a familiar scene.
pub const ALPHA: f64 = 1e-6;

/// The quantile of the familiar count at or below which a raised alarm clears.
pub const CLEAR_QUANTILE: f64 = 0.99;

/// What a raised drift alarm does besides its log object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriftAction {
    /// The runtime status turns `Degraded` (code [`crate::status::code::DRIFT`]), so the
    /// controller goes safe, until the alarm clears.
    Degrade,
    /// Only the log and stderr say so.
    Warn,
}

impl std::str::FromStr for DriftAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "degrade" => Ok(DriftAction::Degrade),
            "warn" => Ok(DriftAction::Warn),
            _ => Err(format!("drift-action = {s:?}: expected degrade or warn")),
        }
    }
}

/// The drift alarm as a run uses it: the test and what it does when raised.
#[derive(Clone, Debug)]
pub struct DriftAlarm {
    /// The test.
    pub test: Drift,
    /// What a raised alarm does.
    pub action: DriftAction,
}

/// The rolling OOD-rate test over the last `window` verdicts.
#[derive(Clone, Debug)]
pub struct Drift {
    expected_rate: f64,
    /// The last verdicts, oldest overwritten first.
    recent: Vec<bool>,
    next: usize,
    filled: bool,
    count: usize,
    raise_at: usize,
    clear_at: usize,
    raised: bool,
}

/// What one verdict changed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DriftEvent {
    /// The OOD rate is too high for the calibration: `ood` of the last `window` verdicts.
    Raised {
        /// Flagged verdicts in the window.
        ood: usize,
    },
    /// The rate is back to what calibration implies.
    Cleared {
        /// Flagged verdicts in the window.
        ood: usize,
    },
}

impl Drift {
    /// An alarm over `window` verdicts expecting a share `expected_rate` of them flagged.
    pub fn new(window: usize, expected_rate: f64) -> Result<Self, String> {
        if !(expected_rate > 0.0 && expected_rate < 1.0) {
            return Err(format!(
                "drift-rate = {expected_rate} must be in (0, 1): the share of familiar frames the bundle flags"
            ));
        }
        if !(10..=1_000_000).contains(&window) {
            return Err(format!(
                "drift-window = {window} is out of range 10..=1000000 (0: off)"
            ));
        }
        let n = window as u64;
        let familiar = Binomial::new(expected_rate, n).map_err(|e| e.to_string())?;
        // P(X >= k) = sf(k - 1); the smallest k with P(X >= k) <= ALPHA.
        let raise_at = (1..=n)
            .find(|&k| familiar.sf(k - 1) <= ALPHA)
            .map_or(window + 1, |k| k as usize);
        let clear_at = familiar.inverse_cdf(CLEAR_QUANTILE) as usize;
        Ok(Drift {
            expected_rate,
            recent: vec![false; window],
            next: 0,
            filled: false,
            count: 0,
            raise_at,
            clear_at: clear_at.min(raise_at.saturating_sub(1)),
            raised: false,
        })
    }

    /// The verdicts the test looks at.
    pub fn window(&self) -> usize {
        self.recent.len()
    }

    /// The share of familiar frames the bundle flags.
    pub fn expected_rate(&self) -> f64 {
        self.expected_rate
    }

    /// Flagged verdicts in a full window that raise the alarm.
    pub fn raise_at(&self) -> usize {
        self.raise_at
    }

    /// Flagged verdicts in the window at or below which a raised alarm clears.
    pub fn clear_at(&self) -> usize {
        self.clear_at
    }

    /// Whether the alarm is raised.
    pub fn raised(&self) -> bool {
        self.raised
    }

    /// Takes one verdict; says when the alarm is raised or cleared by it.
    pub fn verdict(&mut self, ood: bool) -> Option<DriftEvent> {
        let old = std::mem::replace(&mut self.recent[self.next], ood);
        self.count = self.count + usize::from(ood) - usize::from(old);
        self.next += 1;
        if self.next == self.recent.len() {
            self.next = 0;
            self.filled = true;
        }
        if !self.filled {
            return None;
        }
        let ood = self.count;
        if !self.raised && ood >= self.raise_at {
            self.raised = true;
            return Some(DriftEvent::Raised { ood });
        }
        if self.raised && ood <= self.clear_at {
            self.raised = false;
            return Some(DriftEvent::Cleared { ood });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed-seed stream of verdicts flagged with probability `p` (xorshift: no test needs a
    /// better generator than this).
    struct Verdicts(u64);

    impl Verdicts {
        fn next(&mut self, p: f64) -> bool {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 11) as f64 / (1u64 << 53) as f64) < p
        }
    }

    #[test]
    fn the_thresholds_are_the_binomial_tails() {
        let d = Drift::new(600, 0.05).unwrap();
        let familiar = Binomial::new(0.05, 600).unwrap();
        let k = d.raise_at() as u64;
        assert!(familiar.sf(k - 1) <= ALPHA && familiar.sf(k - 2) > ALPHA);
        // Mean 30, sd 5.3: the alarm needs about five standard deviations.
        assert!((55..=62).contains(&k), "{k}");
        assert!(familiar.cdf(d.clear_at() as u64) >= CLEAR_QUANTILE);
        assert!(d.clear_at() > 30 && d.clear_at() < d.raise_at());
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Drift::new(600, 0.0).is_err());
        assert!(Drift::new(600, 1.0).is_err());
        assert!(Drift::new(600, f64::NAN).is_err());
        assert!(Drift::new(5, 0.05).is_err());
    }

    #[test]
    fn a_familiar_scene_raises_nothing_and_a_new_one_is_caught_then_cleared() {
        for seed in 1..=10u64 {
            let mut v = Verdicts(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut d = Drift::new(600, 0.05).unwrap();
            for i in 0..20_000 {
                assert_eq!(
                    d.verdict(v.next(0.05)),
                    None,
                    "seed {seed}: false alarm at {i}"
                );
            }
            // A scene flagged 80% of the time: caught within the documented delay.
            let expected_delay = (d.raise_at() as f64 - 30.0) / (0.8 - 0.05);
            let raised = (1..=600)
                .find(|_| matches!(d.verdict(v.next(0.8)), Some(DriftEvent::Raised { .. })))
                .expect("raised within a window");
            assert!(
                (raised as f64) < 2.0 * expected_delay,
                "seed {seed}: {raised} verdicts, expected about {expected_delay:.0}"
            );
            for _ in 0..300 {
                assert_eq!(d.verdict(v.next(0.8)), None, "raised once, stays raised");
            }
            assert!(d.raised());
            let cleared = (1..=1200)
                .find(|_| matches!(d.verdict(v.next(0.05)), Some(DriftEvent::Cleared { .. })))
                .expect("cleared once the familiar scene is back");
            assert!(
                cleared >= 300,
                "not before most of the window is familiar again"
            );
            assert!(!d.raised());
        }
    }

    #[test]
    fn nothing_is_tested_before_the_window_is_full() {
        let mut d = Drift::new(100, 0.05).unwrap();
        for _ in 0..99 {
            assert_eq!(d.verdict(true), None);
        }
        assert_eq!(d.verdict(true), Some(DriftEvent::Raised { ood: 100 }));
    }
}
