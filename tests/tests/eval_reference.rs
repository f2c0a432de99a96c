//! `napctl eval`'s pipeline on real data: features extracted from the shared MobileNetV2 bundle,
//! then Energy, NAP and NAP-E (w = 0.6) metrics on ood-dtd, must agree within 0.5 point with the
//! same metrics computed from the independent reference scores (`reference/dev_scores.tsv`) on
//! the same representative subset (every 9th image). The full-set numbers are a `napctl eval`
//! run (README, BENCHMARKS.md). Skips with a message when the shared data is absent.

use nap_core::score::{FusionWeights, LinearHead, Method, Params, fuse};
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;
use nap_test_support::data::{REFERENCE_SCORES, read_reference_scores, shared_data_file};
use napctl::bundle::calibrate::react_clip;
use napctl::eval::cache::FeatureCache;
use napctl::eval::extract::{Job, extract};
use napctl::eval::metrics::{DEFAULT_TPR, OodMetrics};
use napctl::eval::{Components, ScoredSet, evaluate};
use napctl::images;

/// Every n-th image of each set: a representative subset that runs in seconds.
const STRIDE: usize = 9;
/// Allowed distance to the reference implementation's metrics, in percentage points.
const TOL: f64 = 0.5;

#[test]
fn eval_matches_the_reference_scores_on_a_subset() {
    let (Some(bundle), Some(reference), Some(images_root)) = (
        nap_test_support::mobilenet::float_bundle(),
        shared_data_file(REFERENCE_SCORES),
        shared_data_file("images"),
    ) else {
        return;
    };
    let reference = read_reference_scores(&reference).unwrap();
    let detector = Detector::new(&bundle).unwrap();
    let preprocessor = Preprocessor::new(bundle.manifest.input).unwrap();

    let subset = |set: &str| -> Vec<Job> {
        images::collect(&[images_root.join(set)])
            .unwrap()
            .into_iter()
            .step_by(STRIDE)
            .map(|file| Job {
                file,
                corruption: None,
            })
            .collect()
    };
    let (id_jobs, ood_jobs) = (subset("id-imagenet"), subset("ood-dtd"));
    let features = |jobs: &[Job]| -> Vec<_> {
        extract(
            &detector,
            &preprocessor,
            &FeatureCache::disabled(),
            jobs,
            || {},
        )
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
    };
    let (id_f, ood_f) = (features(&id_jobs), features(&ood_jobs));
    let params = Params {
        react_clip: Some(react_clip(&id_f).unwrap()),
        ..bundle.manifest.scorer.params
    };
    assert_eq!(
        params.weights,
        FusionWeights::default(),
        "w = 0.6 for NAP-E"
    );
    let head = LinearHead::new(&bundle.head_weights, &bundle.head_bias, 1280).unwrap();
    // DICE and ViM are not compared here: the full head stands in for DICE's sparsified one,
    // and ViM's virtual logits are zero.
    let id = ScoredSet {
        name: "id-imagenet".into(),
        frames: Components::of_all(&id_f, &head, &head, &vec![0.0; id_f.len()], &params).unwrap(),
    };
    let ood = ScoredSet {
        name: "ood-dtd".into(),
        frames: Components::of_all(&ood_f, &head, &head, &vec![0.0; ood_f.len()], &params).unwrap(),
    };
    let methods = [Method::Energy, Method::Nap, Method::NapE];
    let ours = evaluate(&id, &[ood], &methods, &params.weights).unwrap();

    // The reference implementation's scores of exactly these files.
    let reference_scores = |set: &str, jobs: &[Job], m: Method| -> Vec<f64> {
        jobs.iter()
            .map(|j| {
                let r = reference
                    .iter()
                    .find(|r| r.set == set && r.file == j.file.name)
                    .unwrap_or_else(|| panic!("{set}/{} has no reference score", j.file.name));
                match m {
                    Method::Energy => r.lse,
                    Method::Nap => r.nap,
                    _ => f64::from(fuse(r.lse as f32, r.nap as f32, 0.6).score),
                }
            })
            .collect()
    };
    let mut failures = Vec::new();
    eprintln!(
        "subset: {} ID, {} ood-dtd images",
        id_jobs.len(),
        ood_jobs.len()
    );
    for m in methods {
        let want = OodMetrics::compute(
            &reference_scores("id-imagenet", &id_jobs, m),
            &reference_scores("ood-dtd", &ood_jobs, m),
            DEFAULT_TPR,
        )
        .unwrap()
        .percent();
        let got = ours.ood[0].methods[m.name()];
        eprintln!(
            "{m:<7} FPR95 {:.2} (reference {:.2})  AUROC {:.2} (reference {:.2})",
            got.fpr95, want.fpr_id_positive, got.auroc, want.auroc
        );
        for (what, g, w) in [
            ("FPR95", got.fpr95, want.fpr_id_positive),
            ("AUROC", got.auroc, want.auroc),
        ] {
            if (g - w).abs() > TOL {
                failures.push(format!("{m} {what}: {g:.2} vs reference {w:.2}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
