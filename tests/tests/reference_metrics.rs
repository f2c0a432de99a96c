//! The metrics on the reference scores of the shared real data must reproduce the reference
//! numbers of DESIGN.md section 5 (FPR95 ID-positive and AUROC, within 0.1 point).
//!
//! ID = `id-imagenet`; OOD = `ood-dtd` and `ood-patterns`. Skips (with a message) when the shared
//! data is absent; set `NAP_SHARED_DATA` to run it.

use nap_core::score::fuse;
use nap_test_support::data::{
    REFERENCE_SCORES, ReferenceScore, read_reference_scores, rows_of, shared_data_file,
};
use napctl::eval::metrics::{DEFAULT_TPR, OodMetrics, OodMetricsPercent};

/// NAP-E weight of the paper for ImageNet MobileNetV2.
const NAP_E_W: f32 = 0.6;

/// Allowed distance to a reference number, in percentage points.
const TOL: f64 = 0.1;

type ScoreFn = fn(&ReferenceScore) -> f64;

fn energy(r: &ReferenceScore) -> f64 {
    r.lse
}

fn nap(r: &ReferenceScore) -> f64 {
    r.nap
}

/// NAP-E through the runtime's own fusion (f32, log space), as the device computes it.
fn nap_e(r: &ReferenceScore) -> f64 {
    f64::from(fuse(r.lse as f32, r.nap as f32, NAP_E_W).score)
}

fn msp(r: &ReferenceScore) -> f64 {
    r.msp
}

const METHODS: [(&str, ScoreFn); 4] = [
    ("Energy", energy),
    ("NAP", nap),
    ("NAP-E", nap_e),
    ("MSP", msp),
];

/// Reference numbers, percent: (OOD set, method, FPR95 ID-positive, AUROC). DESIGN.md section 5.
const REFERENCE: [(&str, &str, f64, f64); 5] = [
    ("ood-dtd", "Energy", 42.3, 88.5),
    ("ood-dtd", "NAP", 38.8, 86.4),
    ("ood-dtd", "NAP-E", 18.4, 95.9),
    ("ood-patterns", "Energy", 27.4, 94.2),
    ("ood-patterns", "NAP", 2.7, 98.4),
];

/// The OpenOOD-convention numbers, percent, from numpy 2.4 / scikit-learn 1.9 on the same file
/// (OpenOOD's `auc_and_fpr_recall`): (OOD set, method, FPR95 OOD-positive, AUPR-In, AUPR-Out).
/// They pin the second convention and the AUPR definition on real data.
const OPENOOD: [(&str, &str, f64, f64, f64); 8] = [
    ("ood-dtd", "Energy", 59.825328, 83.164124, 91.924409),
    ("ood-dtd", "NAP", 64.410480, 80.192435, 90.969955),
    ("ood-dtd", "NAP-E", 21.179039, 94.377421, 97.039423),
    ("ood-dtd", "MSP", 65.502183, 78.913702, 87.241297),
    ("ood-patterns", "Energy", 26.855895, 98.875496, 81.902411),
    ("ood-patterns", "NAP", 3.711790, 99.687386, 95.747205),
    ("ood-patterns", "NAP-E", 2.838428, 99.937587, 97.934544),
    ("ood-patterns", "MSP", 37.772926, 98.422625, 65.136667),
];

#[test]
fn reference_metrics_match() {
    let Some(path) = shared_data_file(REFERENCE_SCORES) else {
        return;
    };
    let rows = read_reference_scores(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let id_rows = rows_of(&rows, "id-imagenet");
    assert!(
        !id_rows.is_empty(),
        "no id-imagenet rows in {}",
        path.display()
    );

    let mut table: Vec<(&str, &str, OodMetricsPercent)> = Vec::new();
    eprintln!(
        "\nOOD metrics on {} (ID = id-imagenet, n = {}; TPR {}%; ID+ = NAP paper, OOD+ = OpenOOD)",
        path.display(),
        id_rows.len(),
        100.0 * DEFAULT_TPR
    );
    eprintln!(
        "{:<13} {:<7} {:>5}  {}",
        "OOD set",
        "method",
        "n_ood",
        OodMetricsPercent::HEADER
    );
    for ood_set in ["ood-dtd", "ood-patterns"] {
        let ood_rows = rows_of(&rows, ood_set);
        assert!(
            !ood_rows.is_empty(),
            "no {ood_set} rows in {}",
            path.display()
        );
        for (method, score) in METHODS {
            let id: Vec<f64> = id_rows.iter().map(|r| score(r)).collect();
            let ood: Vec<f64> = ood_rows.iter().map(|r| score(r)).collect();
            let m = OodMetrics::compute(&id, &ood, DEFAULT_TPR)
                .unwrap_or_else(|e| panic!("{method} on {ood_set}: {e}"));
            let p = m.percent();
            eprintln!("{ood_set:<13} {method:<7} {:>5}  {p}", m.n_ood);
            table.push((ood_set, method, p));
        }
    }

    let find = |set: &str, method: &str| {
        table
            .iter()
            .find(|(s, m, _)| *s == set && *m == method)
            .map(|t| t.2)
            .expect("computed above")
    };
    let mut failures = Vec::new();
    let mut check = |what: String, got: f64, want: f64| {
        if (got - want).abs() > TOL {
            failures.push(format!("{what}: got {got:.3}, reference {want}"));
        }
    };
    for (set, method, fpr, auroc) in REFERENCE {
        let p = find(set, method);
        check(
            format!("{set} {method} FPR95 (ID+)"),
            p.fpr_id_positive,
            fpr,
        );
        check(format!("{set} {method} AUROC"), p.auroc, auroc);
    }
    for (set, method, fpr, aupr_in, aupr_out) in OPENOOD {
        let p = find(set, method);
        check(
            format!("{set} {method} FPR95 (OOD+)"),
            p.fpr_ood_positive,
            fpr,
        );
        check(format!("{set} {method} AUPR-In"), p.aupr_in, aupr_in);
        check(format!("{set} {method} AUPR-Out"), p.aupr_out, aupr_out);
    }
    assert!(
        failures.is_empty(),
        "metrics off the reference by more than {TOL} point:\n{}",
        failures.join("\n")
    );
}
