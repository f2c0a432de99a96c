//! The post-hoc methods that need nothing but the forward pass (MSP, MaxLogit, Energy, GEN,
//! ASH-S, SCALE) or ID statistics (DICE's mean pooled feature, ViM's principal subspace), as
//! nap-core computes them and napctl calibrates them, against an independent numpy
//! implementation (`tests/python/ood_methods.py`) on the shared MobileNetV2's pooled features
//! of real photos; and the runtime's DICE head and ViM, made as a bundle loads, against the
//! host's.

use nap_core::score::dice::{DEFAULT_SPARSITY, sparsify};
use nap_core::score::{Evidence, Head, LinearHead, Method, Params, Workspace};
use nap_runtime::bundle::DiceSpec;
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;
use nap_test_support::cli::Scratch;
use nap_test_support::data::{shared_data_file, workspace_root};
use nap_test_support::mobilenet::float_bundle;
use nap_test_support::tools::require_python_module;
use napctl::bundle::vim;
use napctl::eval::HostHead;
use napctl::eval::features::Features;
use std::process::Command;

/// Every n-th image of the ID and the DTD set.
const STRIDE: usize = 12;

/// The methods the helper computes, in its column order.
const METHODS: [Method; 8] = [
    Method::Msp,
    Method::MaxLogit,
    Method::Energy,
    Method::Gen,
    Method::AshS,
    Method::Scale,
    Method::Dice,
    Method::Vim,
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

    let mut frames = Vec::new();
    for set in ["id-imagenet", "ood-dtd"] {
        let files = napctl::images::collect(&[images.join(set)]).unwrap();
        for file in files.iter().step_by(STRIDE) {
            let input = preprocessor
                .tensor_vec_from_encoded(&std::fs::read(&file.path).unwrap())
                .unwrap();
            detector.analyze(&mut worker, input).unwrap();
            frames.push((set, file.clone(), worker.pooled().to_vec()));
        }
    }
    // DICE's ID statistic: the ID frames' mean pooled feature.
    let id: Vec<&[f32]> = frames
        .iter()
        .filter(|f| f.0 == "id-imagenet")
        .map(|f| &f.2[..])
        .collect();
    let id_mean: Vec<f32> = (0..features)
        .map(|j| (id.iter().map(|p| f64::from(p[j])).sum::<f64>() / id.len() as f64) as f32)
        .collect();
    let mut sparse = bundle.head_weights.clone();
    sparsify(
        &mut sparse,
        &id_mean,
        DEFAULT_SPARSITY,
        &mut vec![0.0; features * classes],
    );
    let dice = LinearHead::new(&sparse, &bundle.head_bias, features).unwrap();
    // ViM's statistics as napctl calibrate fits them to the ID frames.
    let id_features: Vec<Features> = id
        .iter()
        .map(|p| Features {
            pooled: p.to_vec(),
            max: p.to_vec(),
        })
        .collect();
    let fit = vim::fit(&HostHead::dense(head), &id_features, id.len() / 2).unwrap();
    let vim_offset = fit.spec.offset();
    let vim = fit.spec.view(&vim_offset);

    let (mut pooled, mut ours) = (Vec::new(), Vec::new());
    for (set, file, frame) in &frames {
        let mut logits = vec![0.0; classes];
        head.logits(frame, &mut logits);
        let mut dice_logits = vec![0.0; classes];
        dice.logits(frame, &mut dice_logits);
        {
            let evidence = Evidence {
                nap: 1.0,
                pooled: frame,
                logits: &logits,
                dice_logits: Some(&dice_logits),
                vim_logit: Some(vim.virtual_logit(frame, &mut vec![0.0; vim.dims()])),
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
            pooled.extend_from_slice(frame);
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
            DEFAULT_SPARSITY.to_string(),
            scratch.write("pooled.f32", &f32_bytes(&pooled)),
            scratch.write("weights.f32", &f32_bytes(&bundle.head_weights)),
            scratch.write("bias.f32", &f32_bytes(&bundle.head_bias)),
            scratch.write("id_mean.f32", &f32_bytes(&id_mean)),
            vim.dims().to_string(),
            id.len().to_string(),
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
            // f32 head products against float64 ones over 1280 features: measured at most 6e-7;
            // ViM's residual, the difference of two squared norms in f32, at most TODO.
            let tolerance = if METHODS[j] == Method::Vim {
                1e-4
            } else {
                1e-5
            };
            assert!(
                diff < tolerance,
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
    eprintln!(
        "ViM: {} dimensions fit to {} ID frames",
        vim.dims(),
        id.len()
    );

    // The runtime's own DICE head, made from the bundle's statistics as it loads when DICE
    // decides, f32 and int8 rows, equals the sparsified head's energy.
    let mut f32_bundle = bundle.clone();
    f32_bundle.manifest.dice = Some(DiceSpec {
        mean: id_mean.clone(),
        sparsity: DEFAULT_SPARSITY,
    });
    // With the statistics but another deciding method, no second head is made.
    let not_deciding = Detector::new(&f32_bundle).unwrap();
    f32_bundle.manifest.scorer.method = Method::Dice;
    let mut w = not_deciding.worker().unwrap();
    assert!(matches!(
        not_deciding.score(&mut w, 1.0, Method::Dice),
        Err(nap_runtime::detector::DetectorError::Score(
            nap_core::score::ScoreError::DiceUncalibrated
        ))
    ));
    let mut int8_bundle = f32_bundle.clone();
    int8_bundle.quantize_head();
    for (b, tolerance) in [(&f32_bundle, 0.0), (&int8_bundle, 1e-5)] {
        let sparse = b.dice_weights().unwrap();
        let want_head = LinearHead::new(&sparse, &b.head_bias, features).unwrap();
        let detector = Detector::new(b).unwrap();
        let mut worker = detector.worker().unwrap();
        for (_, file, _) in frames.iter().step_by(9) {
            let input = preprocessor
                .tensor_vec_from_encoded(&std::fs::read(&file.path).unwrap())
                .unwrap();
            let nap = detector.analyze(&mut worker, input).unwrap().nap;
            let got = detector
                .score(&mut worker, nap, Method::Dice)
                .unwrap()
                .value;
            let mut logits = vec![0.0; classes];
            want_head.logits(worker.pooled(), &mut logits);
            let want = nap_core::score::logits::neg_energy(&logits);
            let fused = detector
                .score(&mut worker, nap, Method::NapD)
                .unwrap()
                .value;
            assert!(
                (got - want).abs() <= tolerance * want.abs(),
                "{:?} {}: DICE {got} vs {want}",
                b.manifest.head.storage,
                file.name
            );
            let w = b.manifest.scorer.params.weights.nap_d;
            assert_eq!(fused, nap_core::score::fuse(got, nap, w).score);
        }
    }

    // The runtime's ViM, from the bundle's statistics (through the file) as it loads when ViM
    // decides, equals the host's; with another deciding method nothing is loaded.
    let mut vim_bundle = bundle.clone();
    vim_bundle.manifest.vim = Some(fit.spec.clone());
    let not_deciding = Detector::new(&vim_bundle).unwrap();
    let mut w = not_deciding.worker().unwrap();
    assert!(matches!(
        not_deciding.score(&mut w, 1.0, Method::Vim),
        Err(nap_runtime::detector::DetectorError::Score(
            nap_core::score::ScoreError::VimUncalibrated
        ))
    ));
    vim_bundle.manifest.scorer.method = Method::Vim;
    // ViM deciding without its statistics is refused as the detector is made.
    let mut missing = vim_bundle.clone();
    missing.manifest.vim = None;
    assert!(matches!(
        Detector::new(&missing),
        Err(nap_runtime::detector::DetectorError::Score(
            nap_core::score::ScoreError::VimUncalibrated
        ))
    ));
    let read = nap_runtime::bundle::Bundle::from_bytes(&vim_bundle.to_bytes().unwrap()).unwrap();
    let detector = Detector::from_bundle(read, Default::default()).unwrap();
    let mut worker = detector.worker().unwrap();
    for (_, file, _) in frames.iter().step_by(9) {
        let input = preprocessor
            .tensor_vec_from_encoded(&std::fs::read(&file.path).unwrap())
            .unwrap();
        let analysis = detector.analyze(&mut worker, input).unwrap();
        let mut logits = vec![0.0; classes];
        head.logits(worker.pooled(), &mut logits);
        let virtual_logit = vim.virtual_logit(worker.pooled(), &mut vec![0.0; vim.dims()]);
        let want = nap_core::score::logits::neg_energy(&logits) - virtual_logit;
        assert_eq!(analysis.score, want, "{}", file.name);
    }
}
