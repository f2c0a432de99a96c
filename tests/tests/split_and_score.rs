//! The product's spine on real data: the shared ImageNet MobileNetV2 is cut into a bundle, the
//! bundle survives its file format, and the runtime scores real photos as the independent
//! reference implementation did (onnxruntime + PIL, `reference/dev_scores.tsv`).

use nap_core::score::{Head, LinearHead};
use nap_runtime::bundle::{Bundle, HeadForm};
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;
use nap_test_support::data::{REFERENCE_SCORES, read_reference_scores, shared_data_file};
use napctl::images;

/// Every n-th image of each set: a representative subset that runs in seconds.
const STRIDE: usize = 9;

fn shared_bundle() -> Option<Bundle> {
    let bundle = nap_test_support::mobilenet::float_bundle()?;
    Some(Bundle::from_bytes(&bundle.to_bytes().unwrap()).expect("a written bundle reads back"))
}

#[test]
fn split_finds_the_pre_pool_tensor_and_the_conv_head() {
    let Some(bundle) = shared_bundle() else {
        return;
    };
    let m = &bundle.manifest;
    assert_eq!(m.backbone.output_name, "MobilenetV2/Conv_1/Relu6");
    assert_eq!(m.head.form, HeadForm::Conv1x1);
    assert_eq!(
        (m.pre_pool.channels, m.pre_pool.height, m.pre_pool.width),
        (1280, 7, 7)
    );
    assert_eq!(m.head.features, 1280);
}

/// Relative difference of our value from the reference's.
fn rel(ours: f32, reference: f64) -> f64 {
    (f64::from(ours) - reference).abs() / reference.abs().max(1e-6)
}

#[test]
fn scores_agree_with_the_reference_implementation() {
    let Some(bundle) = shared_bundle() else {
        return;
    };
    let reference =
        read_reference_scores(&shared_data_file(REFERENCE_SCORES).expect("reference scores"))
            .unwrap();
    let detector = Detector::new(&bundle).unwrap();
    let preprocessor = Preprocessor::new(bundle.manifest.input).unwrap();
    let mut worker = detector.worker().unwrap();
    let images_root = shared_data_file("images").expect("images folder");

    let (mut jpegs, mut top1_same, mut lse_close, mut nap_close, mut worst) = (0, 0, 0, 0, 0.0f64);
    for set in ["id-imagenet", "ood-dtd", "ood-patterns"] {
        let files = images::collect(&[images_root.join(set)]).unwrap();
        for file in files.iter().step_by(STRIDE) {
            let want = reference
                .iter()
                .find(|r| r.set == set && r.file == file.name)
                .unwrap_or_else(|| panic!("{set}/{} has no reference score", file.name));
            let input = preprocessor
                .tensor_vec_from_encoded(&std::fs::read(&file.path).unwrap())
                .unwrap();
            let got = detector.analyze(&mut worker, input).unwrap();
            let (lse, nap) = (rel(got.lse, want.lse), rel(got.nap, want.nap));
            if set == "ood-patterns" {
                // PNG decodes bit-exactly as in the reference: only float summation order differs.
                assert_eq!(got.top1 as u32, want.top1, "{set}/{}", file.name);
                assert!(
                    lse < 1e-4 && nap < 1e-4,
                    "{set}/{}: lse {lse:e} nap {nap:e}",
                    file.name
                );
                continue;
            }
            jpegs += 1;
            top1_same += usize::from(got.top1 as u32 == want.top1);
            lse_close += usize::from(lse <= 0.01);
            nap_close += usize::from(nap <= 0.01);
            worst = worst.max(lse).max(nap);
        }
    }
    eprintln!(
        "{jpegs} JPEGs: top-1 same {top1_same}, lse within 1% {lse_close}, nap within 1% {nap_close}, worst {worst:.4}"
    );
    assert!(jpegs >= 100, "subset too small: {jpegs}");
    // Top-1 on at least 99% of the subset.
    assert!(
        top1_same >= jpegs - jpegs / 100,
        "top-1 agrees on {top1_same} of {jpegs}"
    );
    // Decoding equals PIL's (both libjpeg-turbo); only the resize's fixed-point rounding (at
    // most 2/127.5 on 0.4% of input values) and tract's float order differ. Measured over all
    // 1077 shared JPEGs: every lse within 0.4%, every nap within 0.7%. The bar is 1% on
    // at least 99% of images; on the subset we ask for 1% on every image, and a worst case that
    // would catch a decoder or resize regression.
    assert_eq!(lse_close, jpegs, "lse within 1% on {lse_close} of {jpegs}");
    assert_eq!(nap_close, jpegs, "nap within 1% on {nap_close} of {jpegs}");
    assert!(worst < 0.01, "worst relative difference {worst}");
}

#[test]
fn an_int8_head_computes_the_logits_of_its_dequantized_weights() {
    let Some(mut bundle) = shared_bundle() else {
        return;
    };
    bundle.quantize_head();
    // The bundle keeps the dequantized weights; the detector computes with the int8 codes.
    let float_head = LinearHead::new(
        &bundle.head_weights,
        &bundle.head_bias,
        bundle.manifest.head.features as usize,
    )
    .unwrap();
    let detector = Detector::new(&bundle).unwrap();
    let preprocessor = Preprocessor::new(bundle.manifest.input).unwrap();
    let mut worker = detector.worker().unwrap();
    let images_root = shared_data_file("images").expect("images folder");
    let files = images::collect(&[images_root.join("id-imagenet")]).unwrap();
    let mut want = vec![0.0; bundle.manifest.head.classes as usize];
    for file in files.iter().step_by(50) {
        let input = preprocessor
            .tensor_vec_from_encoded(&std::fs::read(&file.path).unwrap())
            .unwrap();
        let got = detector.analyze(&mut worker, input).unwrap();
        float_head.logits(worker.pooled(), &mut want);
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (k, (w, g)) in want.iter().zip(worker.logits()).enumerate() {
            assert!(
                (w - g).abs() <= 1e-4 * scale,
                "{}: class {k}: {g} from the codes, {w} from the dequantized weights",
                file.name
            );
        }
        let top1 = want
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        assert_eq!(Some(got.top1), top1, "{}", file.name);
    }
}
