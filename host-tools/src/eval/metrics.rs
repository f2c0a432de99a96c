//! OOD evaluation metrics for one in-distribution (ID) set against one OOD set.
//!
//! Scores follow the runtime's convention: higher = more in-distribution. Everything is computed
//! in `f64` after one `O(n log n)` sort per set; ties are handled explicitly everywhere.
//!
//! Two FPR conventions exist in the literature and give different numbers on the same data, so
//! both are provided, named, and never mixed (DESIGN.md section 1):
//!
//! * **ID-positive** (the NAP paper's): the threshold keeps the share `tpr` of ID frames
//!   ([`threshold_at_tpr`], numpy's linear percentile); FPR = share of OOD scores at or above it.
//!   See [`fpr_at_tpr_id_positive`].
//! * **OOD-positive** (OpenOOD's `auc_and_fpr_recall`): the ROC of OOD detection with score
//!   `-conf`; FPR = share of ID frames flagged at the first threshold catching the share `tpr` of
//!   OOD. See [`fpr_at_tpr_ood_positive`].
//!
//! AUROC ([`auroc`]) is the same in both conventions. AUPR-In ([`aupr_in`]) and AUPR-Out
//! ([`aupr_out`]) follow OpenOOD. [`OodMetrics::compute`] gathers everything for one pair.

use std::cmp::Ordering;
use std::fmt;

/// TPR at which [`OodMetrics`] reports FPR (the "FPR95" of the papers).
pub const DEFAULT_TPR: f64 = 0.95;

/// Which score set an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreSet {
    /// The in-distribution scores.
    Id,
    /// The out-of-distribution scores.
    Ood,
    /// The values given to [`percentile`].
    Values,
}

impl fmt::Display for ScoreSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScoreSet::Id => "ID scores",
            ScoreSet::Ood => "OOD scores",
            ScoreSet::Values => "values",
        })
    }
}

/// Why a metric could not be computed. Metrics never panic on bad input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MetricsError {
    /// A score set has no element.
    Empty(ScoreSet),
    /// A score is NaN or infinite; `index` is its position in the given slice.
    NonFinite {
        /// The set holding the bad score.
        set: ScoreSet,
        /// Position of the first bad score.
        index: usize,
        /// The bad score itself.
        value: f64,
    },
    /// The target TPR is not in (0, 1].
    InvalidTpr(f64),
    /// The percentile is not in [0, 100].
    InvalidPercentile(f64),
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MetricsError::Empty(set) => write!(f, "no {set} given"),
            MetricsError::NonFinite { set, index, value } => {
                write!(
                    f,
                    "{set}: element {index} is {value}, scores must be finite"
                )
            }
            MetricsError::InvalidTpr(t) => write!(f, "target TPR {t} is not in (0, 1]"),
            MetricsError::InvalidPercentile(q) => write!(f, "percentile {q} is not in [0, 100]"),
        }
    }
}

impl std::error::Error for MetricsError {}

/// Checks a set and returns a sorted (ascending) copy.
fn sorted(values: &[f64], set: ScoreSet) -> Result<Vec<f64>, MetricsError> {
    if values.is_empty() {
        return Err(MetricsError::Empty(set));
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MetricsError::NonFinite { set, index, value });
    }
    // `+ 0.0` turns -0.0 into 0.0 so that the total order below groups them as one tie.
    let mut v: Vec<f64> = values.iter().map(|x| x + 0.0).collect();
    v.sort_unstable_by(f64::total_cmp);
    Ok(v)
}

fn check_tpr(tpr: f64) -> Result<(), MetricsError> {
    if tpr > 0.0 && tpr <= 1.0 {
        Ok(())
    } else {
        Err(MetricsError::InvalidTpr(tpr))
    }
}

/// The `q`-th percentile (`q` in percent, 0..=100) of `values`, exactly as numpy's default
/// `np.percentile(values, q)` (method `'linear'`).
///
/// With `x` sorted and `h = (n - 1) * (q / 100)`, the result is
/// `x[⌊h⌋] + (h - ⌊h⌋) * (x[⌊h⌋ + 1] - x[⌊h⌋])`, written as numpy's `_lerp` does (from the upper
/// neighbour when the fraction is >= 0.5) so results match numpy to the last bit.
pub fn percentile(values: &[f64], q: f64) -> Result<f64, MetricsError> {
    if !(0.0..=100.0).contains(&q) {
        return Err(MetricsError::InvalidPercentile(q));
    }
    Ok(percentile_sorted(&sorted(values, ScoreSet::Values)?, q))
}

/// [`percentile`] on ascending, finite, non-empty `x` and a checked `q`.
fn percentile_sorted(x: &[f64], q: f64) -> f64 {
    let n = x.len();
    let h = (n - 1) as f64 * (q / 100.0);
    if h >= (n - 1) as f64 {
        return x[n - 1];
    }
    let lo = h.floor();
    let t = h - lo;
    let i = lo as usize;
    let (a, b) = (x[i], x[i + 1]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Percent form of `1 - tpr`, computed as `100 - 100 * tpr` so that e.g. `tpr = 0.95` gives
/// exactly `5.0`: the threshold then equals `np.percentile(id, 5)` to the bit, also when
/// `(n - 1) * q` lands on an order statistic (plain `1.0 - 0.95` is `0.05000000000000004`).
fn reject_percent(tpr: f64) -> f64 {
    (100.0 - 100.0 * tpr).max(0.0)
}

/// The ID score `tau` that keeps the share `tpr` of ID frames: the `1 - tpr` percentile of the ID
/// scores (numpy's linear interpolation, see [`percentile`]). Frames with score `>= tau` are
/// accepted as ID. `tpr` must be in (0, 1]; `tpr = 0.95` gives `np.percentile(id, 5)`.
pub fn threshold_at_tpr(id_scores: &[f64], tpr: f64) -> Result<f64, MetricsError> {
    check_tpr(tpr)?;
    let id = sorted(id_scores, ScoreSet::Id)?;
    Ok(percentile_sorted(&id, reject_percent(tpr)))
}

/// Share of ascending `x` at or above `tau`.
fn share_at_or_above(x: &[f64], tau: f64) -> f64 {
    let below = x.partition_point(|&v| v < tau);
    (x.len() - below) as f64 / x.len() as f64
}

/// FPR at the given TPR, **ID-positive** (the NAP paper's convention): share of OOD scores
/// `>= threshold_at_tpr(id, tpr)`.
pub fn fpr_at_tpr_id_positive(
    id_scores: &[f64],
    ood_scores: &[f64],
    tpr: f64,
) -> Result<f64, MetricsError> {
    Ok(Pair::new(id_scores, ood_scores)?.id_positive(tpr)?.fpr)
}

/// FPR at the given TPR, **OOD-positive** (OpenOOD's `auc_and_fpr_recall`): with score `-conf`,
/// the share of ID frames flagged as OOD at the first ROC threshold where the share of OOD frames
/// caught is `>= tpr`.
///
/// The ROC follows sklearn's `roc_curve` semantics: one threshold per distinct score, predicted OOD
/// iff `-conf >= t`, plus the starting point (0, 0). Unlike OpenOOD it keeps every threshold
/// (`drop_intermediate=False`): sklearn's default drops collinear points, which can skip the first
/// qualifying point when several consecutive thresholds are ties of the same ID/OOD mix; on data
/// without such runs (all our reference sets) both give the same number.
pub fn fpr_at_tpr_ood_positive(
    id_scores: &[f64],
    ood_scores: &[f64],
    tpr: f64,
) -> Result<f64, MetricsError> {
    Pair::new(id_scores, ood_scores)?.fpr_ood_positive(tpr)
}

/// AUROC with ID as positive class: the probability that a random ID score exceeds a random OOD
/// score, ties counting one half (Mann-Whitney U with midranks; equals sklearn's `roc_auc_score`
/// and OpenOOD's AUROC, which is the same number with OOD positive and score `-conf`).
pub fn auroc(id_scores: &[f64], ood_scores: &[f64]) -> Result<f64, MetricsError> {
    Ok(Pair::new(id_scores, ood_scores)?.auroc())
}

/// AUPR-In: area under the precision-recall curve with ID positive and score `conf`, as OpenOOD
/// computes it: sklearn's `auc` (trapezoids) over `precision_recall_curve`.
///
/// The curve follows current sklearn: one point per distinct threshold (all of them; older sklearn
/// stopped at the first full-recall point, which leaves the area unchanged) plus the point
/// (recall 0, precision 1). The area joins the points by straight lines (trapezoids), as OpenOOD
/// does; it is not sklearn's `average_precision_score` (step-wise), which is a different number.
pub fn aupr_in(id_scores: &[f64], ood_scores: &[f64]) -> Result<f64, MetricsError> {
    Ok(Pair::new(id_scores, ood_scores)?.aupr_in())
}

/// AUPR-Out: as [`aupr_in`] with OOD positive and score `-conf`.
pub fn aupr_out(id_scores: &[f64], ood_scores: &[f64]) -> Result<f64, MetricsError> {
    Ok(Pair::new(id_scores, ood_scores)?.aupr_out())
}

/// One distinct score value and how many ID and OOD frames have it.
#[derive(Clone, Copy, Debug)]
struct Tie {
    value: f64,
    id: u64,
    ood: u64,
}

/// Both sets, checked and sorted once; every metric reads from here.
struct Pair {
    id: Vec<f64>,
    ood: Vec<f64>,
    /// Distinct values of the union, ascending, with their ID/OOD counts.
    ties: Vec<Tie>,
}

/// Result of the ID-positive threshold rule.
struct IdPositive {
    threshold: f64,
    id_accepted: f64,
    fpr: f64,
}

impl Pair {
    fn new(id_scores: &[f64], ood_scores: &[f64]) -> Result<Self, MetricsError> {
        let id = sorted(id_scores, ScoreSet::Id)?;
        let ood = sorted(ood_scores, ScoreSet::Ood)?;
        let ties = merge_ties(&id, &ood);
        Ok(Pair { id, ood, ties })
    }

    fn n_id(&self) -> u64 {
        self.id.len() as u64
    }

    fn n_ood(&self) -> u64 {
        self.ood.len() as u64
    }

    fn id_positive(&self, tpr: f64) -> Result<IdPositive, MetricsError> {
        check_tpr(tpr)?;
        let threshold = percentile_sorted(&self.id, reject_percent(tpr));
        Ok(IdPositive {
            threshold,
            id_accepted: share_at_or_above(&self.id, threshold),
            fpr: share_at_or_above(&self.ood, threshold),
        })
    }

    fn fpr_ood_positive(&self, tpr: f64) -> Result<f64, MetricsError> {
        check_tpr(tpr)?;
        // Thresholds on -conf in decreasing order = conf values in increasing order.
        let (mut caught, mut flagged) = (0u64, 0u64);
        for t in &self.ties {
            caught += t.ood;
            flagged += t.id;
            // Same float comparison as OpenOOD's `tpr_list >= tpr_th`.
            if caught as f64 / self.n_ood() as f64 >= tpr {
                break;
            }
        }
        // Unreachable fall-through keeps the last point (1, 1), as sklearn would.
        Ok(flagged as f64 / self.n_id() as f64)
    }

    fn auroc(&self) -> f64 {
        // 2U = sum over ID frames of 2 * (#OOD below) + (#OOD tied); exact in integers.
        let (mut ood_below, mut twice_u) = (0u128, 0u128);
        for t in &self.ties {
            twice_u += t.id as u128 * (2 * ood_below + t.ood as u128);
            ood_below += t.ood as u128;
        }
        let pairs = self.n_id() as u128 * self.n_ood() as u128;
        twice_u as f64 / (2 * pairs) as f64
    }

    fn aupr_in(&self) -> f64 {
        // ID positive, conf: thresholds from the highest conf down.
        pr_area(self.ties.iter().rev().map(|t| (t.id, t.ood)), self.n_id())
    }

    fn aupr_out(&self) -> f64 {
        // OOD positive, -conf: thresholds from the lowest conf up.
        pr_area(self.ties.iter().map(|t| (t.ood, t.id)), self.n_ood())
    }
}

/// Merges two ascending sets into distinct values with per-set counts.
fn merge_ties(id: &[f64], ood: &[f64]) -> Vec<Tie> {
    let mut ties: Vec<Tie> = Vec::with_capacity(id.len() + ood.len());
    let (mut i, mut j) = (0, 0);
    while i < id.len() || j < ood.len() {
        let take_id = match (id.get(i), ood.get(j)) {
            (Some(a), Some(b)) => a.total_cmp(b) != Ordering::Greater,
            (Some(_), None) => true,
            _ => false,
        };
        let value = if take_id { id[i] } else { ood[j] };
        match ties.last_mut() {
            Some(last) if last.value == value => {}
            _ => ties.push(Tie {
                value,
                id: 0,
                ood: 0,
            }),
        }
        if let Some(last) = ties.last_mut() {
            if take_id {
                last.id += 1;
                i += 1;
            } else {
                last.ood += 1;
                j += 1;
            }
        }
    }
    ties
}

/// Trapezoidal area under sklearn's precision-recall curve. `groups` yields (positives,
/// negatives) per distinct threshold, from the most positive score down; `n_pos > 0`.
fn pr_area(groups: impl Iterator<Item = (u64, u64)>, n_pos: u64) -> f64 {
    // sklearn's curve, read from recall 0 up: (0, 1), then one point per threshold.
    let (mut tp, mut fp) = (0u64, 0u64);
    let (mut recall, mut precision) = (0.0f64, 1.0f64);
    let mut area = 0.0;
    for (pos, neg) in groups {
        tp += pos;
        fp += neg;
        let r = tp as f64 / n_pos as f64;
        let p = tp as f64 / (tp + fp) as f64;
        area += (r - recall) * (p + precision) / 2.0;
        (recall, precision) = (r, p);
    }
    area
}

/// All metrics for one (ID, OOD) pair, as fractions in [0, 1] (see [`OodMetrics::percent`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OodMetrics {
    /// Number of ID scores.
    pub n_id: usize,
    /// Number of OOD scores.
    pub n_ood: usize,
    /// Target TPR of both FPR values (0.95 for FPR95).
    pub tpr: f64,
    /// ID-positive threshold [`threshold_at_tpr`]: frames scoring `>= threshold` are ID.
    pub threshold: f64,
    /// Share of ID frames actually accepted at `threshold` (close to `tpr`, not equal with ties
    /// or few frames).
    pub id_accepted: f64,
    /// FPR at `tpr`, ID-positive (NAP paper): share of OOD accepted at `threshold`.
    pub fpr_id_positive: f64,
    /// FPR at `tpr`, OOD-positive (OpenOOD): share of ID flagged when `tpr` of OOD is caught.
    pub fpr_ood_positive: f64,
    /// AUROC, ties counting one half (same in both conventions).
    pub auroc: f64,
    /// Area under the PR curve, ID positive (OpenOOD's AUPR-In).
    pub aupr_in: f64,
    /// Area under the PR curve, OOD positive (OpenOOD's AUPR-Out).
    pub aupr_out: f64,
}

impl OodMetrics {
    /// Computes every metric for one pair, FPR at TPR `tpr` (use [`DEFAULT_TPR`] for FPR95).
    pub fn compute(id_scores: &[f64], ood_scores: &[f64], tpr: f64) -> Result<Self, MetricsError> {
        let pair = Pair::new(id_scores, ood_scores)?;
        let idp = pair.id_positive(tpr)?;
        Ok(OodMetrics {
            n_id: pair.id.len(),
            n_ood: pair.ood.len(),
            tpr,
            threshold: idp.threshold,
            id_accepted: idp.id_accepted,
            fpr_id_positive: idp.fpr,
            fpr_ood_positive: pair.fpr_ood_positive(tpr)?,
            auroc: pair.auroc(),
            aupr_in: pair.aupr_in(),
            aupr_out: pair.aupr_out(),
        })
    }

    /// The shares as percentages (x100), the way papers and tables print them.
    pub fn percent(&self) -> OodMetricsPercent {
        OodMetricsPercent {
            tpr: 100.0 * self.tpr,
            id_accepted: 100.0 * self.id_accepted,
            fpr_id_positive: 100.0 * self.fpr_id_positive,
            fpr_ood_positive: 100.0 * self.fpr_ood_positive,
            auroc: 100.0 * self.auroc,
            aupr_in: 100.0 * self.aupr_in,
            aupr_out: 100.0 * self.aupr_out,
        }
    }
}

/// The shares of [`OodMetrics`] in percent (0..=100).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OodMetricsPercent {
    /// Target TPR, percent.
    pub tpr: f64,
    /// Share of ID accepted at the ID-positive threshold, percent.
    pub id_accepted: f64,
    /// FPR at `tpr`, ID-positive (NAP paper), percent.
    pub fpr_id_positive: f64,
    /// FPR at `tpr`, OOD-positive (OpenOOD), percent.
    pub fpr_ood_positive: f64,
    /// AUROC, percent.
    pub auroc: f64,
    /// AUPR-In, percent.
    pub aupr_in: f64,
    /// AUPR-Out, percent.
    pub aupr_out: f64,
}

impl OodMetricsPercent {
    /// Column header matching the [`fmt::Display`] row.
    pub const HEADER: &'static str = "FPR(ID+)  FPR(OOD+)   AUROC  AUPR-In  AUPR-Out  ID-kept";
}

impl fmt::Display for OodMetricsPercent {
    /// One table row: FPR ID-positive, FPR OOD-positive, AUROC, AUPR-In, AUPR-Out, ID kept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:8.2}  {:9.2}  {:6.2}  {:7.2}  {:8.2}  {:7.2}",
            self.fpr_id_positive,
            self.fpr_ood_positive,
            self.auroc,
            self.aupr_in,
            self.aupr_out,
            self.id_accepted
        )
    }
}

#[cfg(test)]
mod tests;
