//! Hand-computed cases (each expected value derived in the comment beside it; all were also
//! cross-checked once against numpy 2.4 / scikit-learn 1.9, which the tests do not need), and
//! property tests of invariants against brute-force references.

use super::*;
use proptest::prelude::*;

const EPS: f64 = 1e-12;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= EPS
}

fn all(id: &[f64], ood: &[f64], tpr: f64) -> OodMetrics {
    OodMetrics::compute(id, ood, tpr).expect("valid input")
}

// ---------------------------------------------------------------- percentile (numpy 'linear')

#[test]
fn percentile_midpoint() {
    // sorted [1,2,3,4], q=50: h = 3 * 0.5 = 1.5 -> 2 + 0.5 * (3 - 2) = 2.5.
    assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 50.0), Ok(2.5));
}

#[test]
fn percentile_interpolates_like_numpy() {
    // sorted [0,10,20,30], q=10: h = 3 * 0.1 = 0.30000000000000004 -> 0 + h * 10.
    // np.percentile([10,0,20,30], 10) == 3.0000000000000004.
    assert_eq!(
        percentile(&[10.0, 0.0, 20.0, 30.0], 10.0),
        Ok(3.0000000000000004)
    );
}

#[test]
fn percentile_upper_half_uses_numpy_lerp() {
    // [0.1, 0.7], q=70: t = 0.7 >= 0.5, numpy computes b - (b - a) * (1 - t) = 0.5199999999999999,
    // while a + t * (b - a) would give 0.52. np.percentile([0.1, 0.7], 70) == 0.5199999999999999.
    assert_eq!(percentile(&[0.1, 0.7], 70.0), Ok(0.5199999999999999));
    // [0.1, 0.7], q=55: numpy gives 0.43 (a + t * (b - a) would give 0.43000000000000005).
    assert_eq!(percentile(&[0.7, 0.1], 55.0), Ok(0.43));
}

#[test]
fn percentile_ends_and_single_value() {
    let x = [5.0, -1.0, 2.0];
    assert_eq!(percentile(&x, 0.0), Ok(-1.0));
    assert_eq!(percentile(&x, 100.0), Ok(5.0));
    // n = 1: h = 0 for every q.
    assert_eq!(percentile(&[7.0], 37.0), Ok(7.0));
}

#[test]
fn percentile_with_ties() {
    // sorted [1,2,2,2,9], q=50: h = 4 * 0.5 = 2 -> x[2] = 2 exactly; q=80: h = 3.2 -> 2 + 0.2*7.
    let x = [2.0, 9.0, 2.0, 1.0, 2.0];
    assert_eq!(percentile(&x, 50.0), Ok(2.0));
    assert!(close(percentile(&x, 80.0).unwrap(), 3.4));
}

#[test]
fn threshold_hits_order_statistic_exactly() {
    // ID = 0, 1, ..., 20 (n = 21), tpr 0.95: q = 5 %, h = 20 * 0.05 = 1 -> tau = x[1] = 1.0 exactly,
    // as np.percentile(np.arange(21.), 5). Computing q as 1 - 0.95 = 0.05000000000000004 would give
    // 1.0000000000000009 and drop the ID frame (and any OOD frame) scoring exactly 1.0.
    let id: Vec<f64> = (0..=20).map(f64::from).collect();
    assert_eq!(threshold_at_tpr(&id, 0.95), Ok(1.0));
    // 20 of 21 ID frames are >= 1.0; the OOD frame at exactly tau is accepted (>=).
    let m = all(&id, &[1.0, 0.5], 0.95);
    assert_eq!(m.threshold, 1.0);
    assert!(close(m.id_accepted, 20.0 / 21.0));
    assert!(close(m.fpr_id_positive, 0.5));
}

// ---------------------------------------------------------------- full metric sets

#[test]
fn mixed_ties_and_conventions_differ() {
    // ID = [3,2,2,1], OOD = [2,1,0], TPR 0.95.
    //
    // ID-positive: sorted ID [1,2,2,3], q = 5 %, h = 3 * 0.05 = 0.15 -> tau = 1 + 0.15 * 1 = 1.15.
    //   ID kept: 2,2,3 -> 3/4. OOD >= 1.15: {2} -> FPR = 1/3.
    // OOD-positive: distinct conf ascending (= -conf thresholds descending), (ID, OOD) counts:
    //   0:(0,1) 1:(1,1) 2:(2,1) 3:(1,0). OOD caught 1/3, 2/3, 3/3 -> first >= 0.95 at conf 2,
    //   ID flagged there 0+1+2 = 3 -> FPR = 3/4. Same data, 1/3 vs 3/4.
    // AUROC: ID 3 beats all 3 OOD = 3; each ID 2 beats {1,0}, ties {2} = 2.5 (x2 = 5);
    //   ID 1 beats {0}, ties {1} = 1.5. (3 + 5 + 1.5) / 12 = 9.5/12 = 19/24.
    // AUPR-In (ID positive, conf descending), points (recall, precision) after (0,1):
    //   3: tp1 fp0 (1/4, 1); 2: tp3 fp1 (3/4, 3/4); 1: tp4 fp2 (1, 2/3); 0: tp4 fp3 (1, 4/7).
    //   Area = 1/4*1 + 1/2*(1+3/4)/2 + 1/4*(3/4+2/3)/2 + 0 = 24/96 + 42/96 + 17/96 = 83/96.
    // AUPR-Out (OOD positive, conf ascending):
    //   0: tp1 fp0 (1/3, 1); 1: tp2 fp1 (2/3, 2/3); 2: tp3 fp3 (1, 1/2); 3: (1, 3/7).
    //   Area = 1/3*1 + 1/3*(1+2/3)/2 + 1/3*(2/3+1/2)/2 = 12/36 + 10/36 + 7/36 = 29/36.
    let m = all(&[3.0, 2.0, 2.0, 1.0], &[2.0, 1.0, 0.0], 0.95);
    assert!(close(m.threshold, 1.15));
    assert!(close(m.id_accepted, 0.75));
    assert!(close(m.fpr_id_positive, 1.0 / 3.0));
    assert!(close(m.fpr_ood_positive, 0.75));
    assert!(close(m.auroc, 19.0 / 24.0));
    assert!(close(m.aupr_in, 83.0 / 96.0));
    assert!(close(m.aupr_out, 29.0 / 36.0));
    assert_eq!((m.n_id, m.n_ood), (4, 3));

    // TPR 0.75: h = 3 * 0.25 = 0.75 -> t >= 0.5: tau = 2 - 1 * 0.25 = 1.75; OOD >= 1.75: {2} -> 1/3.
    // OOD-positive: caught 2/3 < 0.75 at conf 1, 3/3 at conf 2 -> again 3/4.
    let m = all(&[3.0, 2.0, 2.0, 1.0], &[2.0, 1.0, 0.0], 0.75);
    assert!(close(m.threshold, 1.75));
    assert!(close(m.fpr_id_positive, 1.0 / 3.0));
    assert!(close(m.fpr_ood_positive, 0.75));
}

#[test]
fn all_ties() {
    // Every score 1.0. tau = 1.0, all OOD >= tau -> FPR(ID+) = 1; one ROC threshold catching all
    // OOD and flagging all ID -> FPR(OOD+) = 1; AUROC = 1/2 (all pairs tie).
    // AUPR-In: one point (recall 1, precision 3/5): area = 1 * (1 + 3/5) / 2 = 0.8.
    // AUPR-Out: (1, 2/5): area = (1 + 2/5) / 2 = 0.7.
    let m = all(&[1.0; 3], &[1.0; 2], 0.95);
    assert_eq!(m.threshold, 1.0);
    assert_eq!(m.id_accepted, 1.0);
    assert_eq!(m.fpr_id_positive, 1.0);
    assert_eq!(m.fpr_ood_positive, 1.0);
    assert_eq!(m.auroc, 0.5);
    assert!(close(m.aupr_in, 0.8));
    assert!(close(m.aupr_out, 0.7));
}

#[test]
fn perfect_separation() {
    // ID = [4,5,6], OOD = [1,2,3]. tau: h = 2 * 0.05 = 0.1 -> 4.1, so only 2/3 of ID is kept (few
    // frames: the interpolated threshold sits above the lowest ID score), no OOD -> FPR 0.
    // OOD-positive: all OOD caught (conf 1,2,3) before any ID -> 0. AUROC 1. AUPR-In: recall 1/3,
    // 2/3, 1 at precision 1, then zero-width points -> 1. AUPR-Out: same by symmetry -> 1.
    let m = all(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0], 0.95);
    assert!(close(m.threshold, 4.1));
    assert!(close(m.id_accepted, 2.0 / 3.0));
    assert_eq!(m.fpr_id_positive, 0.0);
    assert_eq!(m.fpr_ood_positive, 0.0);
    assert_eq!(m.auroc, 1.0);
    assert!(close(m.aupr_in, 1.0));
    assert!(close(m.aupr_out, 1.0));
}

#[test]
fn reversed_separation() {
    // ID = [1,2,3], OOD = [4,5,6]. tau = 1 + 0.1 = 1.1, every OOD above -> FPR(ID+) = 1.
    // OOD-positive: conf ascending flags all ID (1,2,3) before catching any OOD -> 1. AUROC 0.
    // AUPR-In (conf descending): 6,5,4 are negatives: points (0, 0); then 3: (1/3, 1/4),
    //   2: (2/3, 2/5), 1: (1, 1/2). Area = 0 + 1/3*(0+1/4)/2 + 1/3*(1/4+2/5)/2 + 1/3*(2/5+1/2)/2
    //   = 5/120 + 13/120 + 18/120 = 0.3. AUPR-Out: mirror image -> 0.3.
    let m = all(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], 0.95);
    assert!(close(m.threshold, 1.1));
    assert_eq!(m.fpr_id_positive, 1.0);
    assert_eq!(m.fpr_ood_positive, 1.0);
    assert_eq!(m.auroc, 0.0);
    assert!(close(m.aupr_in, 0.3));
    assert!(close(m.aupr_out, 0.3));
}

#[test]
fn one_id_one_ood() {
    // Separated: tau = the ID score 1 (n = 1), OOD 0 below -> both FPR 0, AUROC 1,
    // AUPR-In: (1, 1) then (1, 1/2) at zero width -> 1; AUPR-Out likewise 1.
    let m = all(&[1.0], &[0.0], 0.95);
    assert_eq!(
        (m.threshold, m.fpr_id_positive, m.fpr_ood_positive),
        (1.0, 0.0, 0.0)
    );
    assert_eq!(m.auroc, 1.0);
    assert!(close(m.aupr_in, 1.0) && close(m.aupr_out, 1.0));
    // Tied: both FPR 1, AUROC 1/2, AUPR-In = AUPR-Out = (1 + 1/2) / 2 = 0.75.
    let m = all(&[1.0], &[1.0], 0.95);
    assert_eq!(
        (m.fpr_id_positive, m.fpr_ood_positive, m.auroc),
        (1.0, 1.0, 0.5)
    );
    assert!(close(m.aupr_in, 0.75) && close(m.aupr_out, 0.75));
}

#[test]
fn ood_positive_keeps_intermediate_thresholds() {
    // ID = [3,4], OOD = [2,3,4], TPR 0.5. ROC points (FPR, TPR) on -conf: (0,0), conf 2: (0, 1/3),
    // conf 3: (1/2, 2/3), conf 4: (1, 1). First TPR >= 0.5 is (1/2, 2/3) -> FPR 1/2.
    // sklearn's default drop_intermediate=True drops (1/2, 2/3) (collinear) and OpenOOD would
    // report 1.0 here; we keep every threshold.
    assert_eq!(
        fpr_at_tpr_ood_positive(&[3.0, 4.0], &[2.0, 3.0, 4.0], 0.5),
        Ok(0.5)
    );
}

#[test]
fn tpr_one() {
    // ID-positive: tau = min ID = 2; OOD >= 2: {2, 5} -> 2/3.
    // OOD-positive: all OOD caught at conf 5; ID flagged there: {2, 3} -> 2/2 = 1.
    let (id, ood) = ([2.0, 3.0], [0.0, 2.0, 5.0]);
    assert_eq!(threshold_at_tpr(&id, 1.0), Ok(2.0));
    assert!(close(
        fpr_at_tpr_id_positive(&id, &ood, 1.0).unwrap(),
        2.0 / 3.0
    ));
    assert_eq!(fpr_at_tpr_ood_positive(&id, &ood, 1.0), Ok(1.0));
}

#[test]
fn signed_zeros_tie() {
    // -0.0 and 0.0 are one value: one ID vs one OOD tie -> AUROC 1/2.
    assert_eq!(auroc(&[-0.0], &[0.0]), Ok(0.5));
    assert_eq!(auroc(&[0.0, 1.0], &[-0.0]), Ok(0.75));
}

#[test]
fn free_functions_match_struct() {
    let (id, ood) = ([0.3, 0.9, 0.9, 0.1, 0.5], [0.2, 0.9, 0.05, 0.3]);
    let m = all(&id, &ood, 0.8);
    assert_eq!(
        fpr_at_tpr_id_positive(&id, &ood, 0.8),
        Ok(m.fpr_id_positive)
    );
    assert_eq!(
        fpr_at_tpr_ood_positive(&id, &ood, 0.8),
        Ok(m.fpr_ood_positive)
    );
    assert_eq!(threshold_at_tpr(&id, 0.8), Ok(m.threshold));
    assert_eq!(auroc(&id, &ood), Ok(m.auroc));
    assert_eq!(aupr_in(&id, &ood), Ok(m.aupr_in));
    assert_eq!(aupr_out(&id, &ood), Ok(m.aupr_out));
    let p = m.percent();
    assert!(close(p.auroc, 100.0 * m.auroc));
    assert!(close(p.fpr_ood_positive, 100.0 * m.fpr_ood_positive));
    assert!(!p.to_string().is_empty());
}

// ---------------------------------------------------------------- errors

#[test]
fn errors_not_panics() {
    use MetricsError::*;
    assert_eq!(
        OodMetrics::compute(&[], &[1.0], 0.95),
        Err(Empty(ScoreSet::Id))
    );
    assert_eq!(
        OodMetrics::compute(&[1.0], &[], 0.95),
        Err(Empty(ScoreSet::Ood))
    );
    assert_eq!(percentile(&[], 5.0), Err(Empty(ScoreSet::Values)));
    let nan = OodMetrics::compute(&[1.0], &[0.0, f64::NAN], 0.95);
    assert!(matches!(
        nan,
        Err(NonFinite { set: ScoreSet::Ood, index: 1, value }) if value.is_nan()
    ));
    assert_eq!(
        auroc(&[1.0, f64::INFINITY], &[0.0]),
        Err(NonFinite {
            set: ScoreSet::Id,
            index: 1,
            value: f64::INFINITY
        })
    );
    assert_eq!(
        threshold_at_tpr(&[f64::NEG_INFINITY], 0.5),
        Err(NonFinite {
            set: ScoreSet::Id,
            index: 0,
            value: f64::NEG_INFINITY
        })
    );
    for tpr in [0.0, -0.1, 1.0000001, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            OodMetrics::compute(&[1.0], &[0.0], tpr),
            Err(InvalidTpr(_))
        ));
        assert!(matches!(threshold_at_tpr(&[1.0], tpr), Err(InvalidTpr(_))));
        assert!(matches!(
            fpr_at_tpr_ood_positive(&[1.0], &[0.0], tpr),
            Err(InvalidTpr(_))
        ));
    }
    for q in [-1.0, 100.5, f64::NAN] {
        assert!(matches!(percentile(&[1.0], q), Err(InvalidPercentile(_))));
    }
    // Messages name the problem.
    assert_eq!(Empty(ScoreSet::Ood).to_string(), "no OOD scores given");
    assert!(InvalidTpr(1.5).to_string().contains("(0, 1]"));
}

// ---------------------------------------------------------------- brute-force references

/// AUROC by comparing every pair.
fn auroc_pairs(id: &[f64], ood: &[f64]) -> f64 {
    let mut s = 0.0;
    for &a in id {
        for &b in ood {
            s += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    s / (id.len() * ood.len()) as f64
}

/// Distinct thresholds, most positive first, with (tp, fp) counted by brute force: sklearn's
/// `_binary_clf_curve` written naively. `pos`/`neg` are scores where higher = more positive.
fn clf_curve(pos: &[f64], neg: &[f64]) -> Vec<(f64, f64)> {
    let mut t: Vec<f64> = pos.iter().chain(neg).copied().collect();
    t.sort_by(|a, b| b.total_cmp(a));
    t.dedup();
    t.iter()
        .map(|&th| {
            let tp = pos.iter().filter(|&&x| x >= th).count() as f64;
            let fp = neg.iter().filter(|&&x| x >= th).count() as f64;
            (tp, fp)
        })
        .collect()
}

fn fpr_ood_positive_ref(id: &[f64], ood: &[f64], tpr: f64) -> f64 {
    let neg = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<_>>();
    let curve = clf_curve(&neg(ood), &neg(id));
    let first = curve
        .iter()
        .find(|(tp, _)| tp / ood.len() as f64 >= tpr)
        .expect("last point has TPR 1");
    first.1 / id.len() as f64
}

fn aupr_ref(pos: &[f64], neg: &[f64]) -> f64 {
    let mut pts = vec![(0.0, 1.0)];
    pts.extend(
        clf_curve(pos, neg)
            .iter()
            .map(|&(tp, fp)| (tp / pos.len() as f64, tp / (tp + fp))),
    );
    pts.windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
        .sum()
}

/// Scores on a small integer grid, so that ties are frequent.
fn scores() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec((-12i32..12).prop_map(f64::from), 1..40)
}

/// Strictly increasing and exact on the grid above.
fn increasing(x: f64) -> f64 {
    x * x * x + 5.0 * x - 7.0
}

proptest! {
    #[test]
    fn auroc_antisymmetric(id in scores(), ood in scores()) {
        let sum = auroc(&id, &ood).unwrap() + auroc(&ood, &id).unwrap();
        prop_assert!(close(sum, 1.0), "sum {}", sum);
    }

    #[test]
    fn matches_brute_force(id in scores(), ood in scores(), tpr in 0.01f64..=1.0) {
        let m = OodMetrics::compute(&id, &ood, tpr).unwrap();
        prop_assert!(close(m.auroc, auroc_pairs(&id, &ood)));
        prop_assert_eq!(m.fpr_ood_positive, fpr_ood_positive_ref(&id, &ood, tpr));
        prop_assert!(close(m.aupr_in, aupr_ref(&id, &ood)));
        let neg = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<_>>();
        prop_assert!(close(m.aupr_out, aupr_ref(&neg(&ood), &neg(&id))));
        let tau = m.threshold;
        let fpr = ood.iter().filter(|&&x| x >= tau).count() as f64 / ood.len() as f64;
        prop_assert_eq!(m.fpr_id_positive, fpr);
    }

    #[test]
    fn rank_metrics_invariant_under_increasing_map(
        id in scores(), ood in scores(), tpr in 0.01f64..=1.0,
    ) {
        // Only the ranking matters for AUROC, the ROC/PR curves and so the OOD-positive FPR.
        // (The ID-positive threshold interpolates between scores, so that FPR may change.)
        let a = OodMetrics::compute(&id, &ood, tpr).unwrap();
        let map = |v: &[f64]| v.iter().map(|&x| increasing(x)).collect::<Vec<_>>();
        let b = OodMetrics::compute(&map(&id), &map(&ood), tpr).unwrap();
        prop_assert_eq!(a.auroc, b.auroc);
        prop_assert_eq!(a.fpr_ood_positive, b.fpr_ood_positive);
        prop_assert_eq!(a.aupr_in, b.aupr_in);
        prop_assert_eq!(a.aupr_out, b.aupr_out);
    }

    #[test]
    fn shares_in_unit_interval_and_monotone_in_tpr(
        id in scores(), ood in scores(), t1 in 0.01f64..=1.0, t2 in 0.01f64..=1.0,
    ) {
        let (lo, hi) = if t1 <= t2 { (t1, t2) } else { (t2, t1) };
        let a = OodMetrics::compute(&id, &ood, lo).unwrap();
        let b = OodMetrics::compute(&id, &ood, hi).unwrap();
        for v in [a.fpr_id_positive, a.fpr_ood_positive, a.auroc, a.aupr_in, a.aupr_out,
                  a.id_accepted] {
            prop_assert!((0.0..=1.0).contains(&v), "{:?}", a);
        }
        // Asking for more TPR can only lower the threshold / go further along the ROC.
        prop_assert!(a.threshold >= b.threshold);
        prop_assert!(a.fpr_id_positive <= b.fpr_id_positive);
        prop_assert!(a.fpr_ood_positive <= b.fpr_ood_positive);
    }
}
