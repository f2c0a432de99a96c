//! The post-hoc methods that need nothing but the forward pass (MSP, MaxLogit, Energy, GEN,
//! ASH-S, SCALE), as nap-core computes them, against an independent numpy implementation
//! (`tests/python/ood_methods.py`) on the shared MobileNetV2's pooled features of real photos.

use nap_core::score::{Evidence, LinearHead, Method, Params, Workspace};
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;
use nap_test_support::cli::Scratch;
use nap_test_support::data::{shared_data_file, workspace_root};
use nap_test_support::mobilenet::float_bundle;
use nap_test_support::tools::require_python_module;
use std::process::Command;

/// Every n-th image of the ID and the DTD set.
const STRIDE: usize = 12;

/// The methods the helper computes, in its column order.
const METHODS: [Method; 6] = [
    Method::Msp,
    Method::MaxLogit,
    Method::Energy,
    Method::Gen,
    Method::AshS,
    Method::Scale,
];

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn methods_agree_with_an_independent_numpy_implementation_on_real_photos() {
    let Some(python) = require_python_module("numpy") else {
        return;
    };
    let (Some(bundle), Some(images)) = (float_bundle(), shared_data_file("images")) else {
        return;
    };
    let detector = Detector::new(&bundle).unwrap();
    let preprocessor = Preprocessor::new(bundle.manifest.input).unwrap();
    let mut worker = detector.worker().unwrap();
    let (features, classes) = (
        bundle.manifest.head.features as usize,
        bundle.manifest.head.classes as usize,
    );
    let head = LinearHead::new(&bundle.head_weights, &bundle.head_bias, features).unwrap();
    let params = Params::default();
    let mut buffer = vec![0.0; Workspace::required(features, classes)];

    let (mut pooled, mut ours) = (Vec::new(), Vec::new());
    for set in ["id-imagenet", "ood-dtd"] {
        let files = napctl::images::collect(&[images.join(set)]).unwrap();
        for file in files.iter().step_by(STRIDE) {
            let input = preprocessor
                .tensor_vec_from_encoded(&std::fs::read(&file.path).unwrap())
                .unwrap();
            detector.analyze(&mut worker, input).unwrap();
            let evidence = Evidence {
                nap: 1.0,
                pooled: worker.pooled(),
                logits: worker.logits(),
            };
            let row: Vec<f32> = METHODS
                .iter()
                .map(|m| {
                    let mut workspace = Workspace::new(&mut buffer);
                    m.score(&params, &evidence, &head, &mut workspace)
                        .unwrap()
                        .value
                })
                .collect();
            pooled.extend_from_slice(worker.pooled());
            ours.push((format!("{set}/{}", file.name), row));
        }
    }

    let scratch = Scratch::new("nap-methods-reference");
    let out = Command::new(python)
        .arg(workspace_root().join("tests/python/ood_methods.py"))
        .args([
            features.to_string(),
            classes.to_string(),
            params.ash_percentile.to_string(),
            scratch.write("pooled.f32", &f32_bytes(&pooled)),
            scratch.write("weights.f32", &f32_bytes(&bundle.head_weights)),
            scratch.write("bias.f32", &f32_bytes(&bundle.head_bias)),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    let names: Vec<&str> = METHODS.iter().map(|m| m.name()).collect();
    assert_eq!(lines.next().map(|h| h.split('\t').collect()), Some(names));

    let mut worst = vec![0.0f64; METHODS.len()];
    let mut rows = 0;
    for ((frame, row), line) in ours.iter().zip(lines) {
        rows += 1;
        for (j, (value, reference)) in row.iter().zip(line.split('\t')).enumerate() {
            let reference: f64 = reference.parse().unwrap();
            let diff = (f64::from(*value) - reference).abs() / reference.abs().max(1.0);
            worst[j] = worst[j].max(diff);
            // f32 head products against float64 ones over 1280 features: measured at most 6e-7.
            assert!(
                diff < 1e-5,
                "{frame}: {} {value} vs numpy {reference}",
                METHODS[j]
            );
        }
    }
    assert_eq!(rows, ours.len(), "numpy scored every frame");
    assert!(rows >= 80, "subset too small: {rows}");
    for (method, worst) in METHODS.iter().zip(worst) {
        eprintln!("{method}: worst relative difference {worst:.2e} over {rows} frames");
    }
}
