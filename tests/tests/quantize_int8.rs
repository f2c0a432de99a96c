//! `napctl quantize` on the shared MobileNetV2: the int8 bundle is small, loads in tract, hands
//! the device a u8 pre-pool tensor, and agrees with the float bundle on images it was not
//! calibrated on.

use nap_runtime::backbone::{self, BackboneOptions};
use nap_runtime::bundle::{ActivationStorage, Bundle, InputSpec, Precision};
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;
use nap_test_support::data::shared_data_file;
use napctl::bundle::quantize::{self, Options, QuantizeError, RangeMethod, Target};
use napctl::bundle::{BuildOptions, build_bundle};
use napctl::images;

const MODEL: &str = "mobilenetv2/mobilenet_v2_1.0_224.onnx";

fn float_bundle() -> Option<Bundle> {
    let model = shared_data_file(MODEL)?;
    let proto = napctl::onnx::read_model(&model).unwrap();
    let options = BuildOptions {
        layer: None,
        input: InputSpec::TF,
    };
    Some(build_bundle(&proto, "mobilenet_v2_1.0_224.onnx", options).unwrap())
}

/// The ID images whose index in the sorted folder `pick` accepts, preprocessed.
fn frames(bundle: &Bundle, pick: impl Fn(usize) -> bool) -> Vec<Vec<f32>> {
    let dir = shared_data_file("images/id-imagenet").unwrap();
    let files = images::collect(&[dir]).unwrap();
    let pre = Preprocessor::new(bundle.manifest.input).unwrap();
    files
        .iter()
        .enumerate()
        .filter(|(i, _)| pick(*i))
        .map(|(_, f)| {
            pre.tensor_vec_from_encoded(&std::fs::read(&f.path).unwrap())
                .unwrap()
        })
        .collect()
}

/// Calibration frames: every 25th image.
fn calibration(i: usize) -> bool {
    i.is_multiple_of(25)
}

fn size(b: &Bundle) -> usize {
    b.to_bytes().unwrap().len()
}

#[test]
fn int8_follows_the_float_bundle_on_images_it_was_not_calibrated_on() {
    let Some(float) = float_bundle() else {
        return;
    };
    // Calibration and comparison images interleave but never overlap.
    let calib = frames(&float, calibration);
    let val = frames(&float, |i| i % 7 == 3 && !calibration(i));
    let options = Options {
        target: Target::Int8,
        ranges: RangeMethod::Percentile,
        per_channel: true,
    };
    let int8 = quantize::quantize(&float, &calib, options, || {}).unwrap();
    let int8 = Bundle::from_bytes(&int8.to_bytes().unwrap()).expect("the int8 bundle reads back");

    let m = &int8.manifest;
    assert_eq!(m.backbone.precision, Precision::Int8);
    // ReLU6 bounds the pre-pool tensor: its codes cover exactly [0, 6].
    let ActivationStorage::U8(q) = m.pre_pool.storage else {
        panic!("the int8 pre-pool tensor must be u8");
    };
    assert_eq!((q.zero_point, q.scale), (0, 6.0 / 255.0));
    let ratio = size(&int8) as f64 / size(&float) as f64;
    assert!(
        ratio <= 0.30,
        "int8 bundle is {:.1}% of the float one",
        100.0 * ratio
    );

    let f = Detector::new(&float).unwrap();
    let d = Detector::new(&int8).unwrap();
    let a = quantize::compare(&f, &d, &val, || {}).unwrap();
    assert_eq!(a.frames, val.len());
    // About 60 frames: at most two top-1 changes (on the whole folder: 97-98%).
    assert!(a.top1_agreement >= 96.0, "{a}");
    assert!(a.pre_pool_cosine >= 0.985, "{a}");
    assert!(a.nap_correlation >= 0.98, "{a}");
    assert!(a.lse_correlation >= 0.98, "{a}");

    // The depthwise convolutions still run on our kernel, and nothing int8 falls back to
    // im2col: the pointwise products are the only integer matrix products.
    let model = backbone::optimized_model(&int8.backbone, 224, BackboneOptions::default()).unwrap();
    assert_eq!(backbone::own_depthwise_count(&model), 17);

    // Already quantized: a clear refusal.
    let again = quantize::quantize(&int8, &calib, options, || {}).unwrap_err();
    assert!(matches!(
        again,
        QuantizeError::AlreadyQuantized(Precision::Int8)
    ));
}

#[test]
fn weights_only_bundles_are_small_and_close_to_float() {
    let Some(float) = float_bundle() else {
        return;
    };
    let val = frames(&float, |i| i % 7 == 3);
    let detector = Detector::new(&float).unwrap();
    // target, precision, largest size share, least top-1 agreement, least pre-pool cosine
    let cases = [
        (
            Target::Int8Weights,
            Precision::Int8Weights,
            0.30,
            96.0,
            0.99,
        ),
        (
            Target::F16Weights,
            Precision::F16Weights,
            0.45,
            100.0,
            0.9999,
        ),
    ];
    for (target, precision, share, top1, cosine) in cases {
        let options = Options {
            target,
            ranges: RangeMethod::Percentile,
            per_channel: true,
        };
        let small = quantize::quantize(&float, &[], options, || {}).unwrap();
        assert_eq!(small.manifest.backbone.precision, precision);
        assert_eq!(small.manifest.pre_pool.storage, ActivationStorage::F32);
        let ratio = size(&small) as f64 / size(&float) as f64;
        assert!(
            ratio <= share,
            "{precision} bundle is {:.1}% of the float one",
            100.0 * ratio
        );
        // tract folds the dequantization into constants: the depthwise weights are constants
        // again by the time our kernel takes the convolutions over.
        let model =
            backbone::optimized_model(&small.backbone, 224, BackboneOptions::default()).unwrap();
        assert_eq!(backbone::own_depthwise_count(&model), 17);

        let a = quantize::compare(&detector, &Detector::new(&small).unwrap(), &val, || {}).unwrap();
        assert!(a.top1_agreement >= top1, "{precision}: {a}");
        assert!(a.pre_pool_cosine >= cosine, "{precision}: {a}");
    }
}
