//! `napctl quantize` on the shared MobileNetV2: the int8 bundle (its integer program, or the
//! int8 model for tract) is small, hands the device a u8 pre-pool tensor, and agrees with the
//! float bundle on images it was not calibrated on.

use nap_core::reduce::Layout;
use nap_runtime::backbone::{self, BackboneOptions};
use nap_runtime::bundle::{ActivationStorage, Bundle, Precision};
use nap_runtime::detector::Detector;
use nap_runtime::integer::{self, IntegerBackbone};
use nap_runtime::preprocess::Preprocessor;
use nap_test_support::data::shared_data_file;
use nap_test_support::mobilenet::float_bundle;
use napctl::bundle::quantize::{self, LayerCounts, Options, QuantizeError, RangeMethod, Target};
use napctl::images;

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
    let f = Detector::new(&float).unwrap();
    // The integer program quantizes every tensor, the tract form only the pointwise inputs
    // (depthwise weights stay f16): the program follows float less closely, by about as much
    // as int8 runtimes do on MobileNetV2 (on the whole folder: 97% top-1 agreement).
    // target, least top-1 agreement, least pre-pool cosine
    for (target, top1, cosine) in [(Target::Int8, 95.0, 0.96), (Target::Int8Tract, 96.0, 0.985)] {
        let options = Options {
            target,
            ranges: RangeMethod::Percentile,
            per_channel: true,
        };
        let quantized = quantize::quantize(&float, &calib, options, || {}).unwrap();
        assert_eq!(quantized.no_program, None);
        let int8 = Bundle::from_bytes(&quantized.bundle.to_bytes().unwrap())
            .expect("the int8 bundle reads back");

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
            "{target:?}: int8 bundle is {:.1}% of the float one",
            100.0 * ratio
        );

        let d = Detector::new(&int8).unwrap();
        let a = quantize::compare(&f, &d, &val, || {}).unwrap();
        println!("{target:?} against float on {} photos:\n{a}", val.len());
        assert_eq!(a.frames, val.len());
        assert!(a.top1_agreement >= top1, "{target:?}: {a}");
        assert!(a.pre_pool_cosine >= cosine, "{target:?}: {a}");
        assert!(a.nap_correlation >= 0.98, "{target:?}: {a}");
        assert!(a.lse_correlation >= 0.98, "{target:?}: {a}");

        match target {
            Target::Int8 => integer_program_is_the_backbone(&int8, &d),
            _ => {
                // The depthwise convolutions still run on our kernel, and nothing int8 falls
                // back to im2col: the pointwise products are the only integer matrix products.
                assert!(int8.program.is_none());
                let model =
                    backbone::optimized_model(&int8.backbone, 224, BackboneOptions::default())
                        .unwrap();
                assert_eq!(backbone::own_depthwise_count(&model), 17);
            }
        }

        // Already quantized: a clear refusal.
        let again = quantize::quantize(&int8, &calib, options, || {}).unwrap_err();
        assert!(matches!(
            again,
            QuantizeError::AlreadyQuantized(Precision::Int8)
        ));
    }
}

/// The int8 bundle's backbone is its integer program alone: every MobileNetV2 layer on the
/// integer kernels, the frame coded from the preprocessing's exact range.
fn integer_program_is_the_backbone(int8: &Bundle, detector: &Detector) {
    let program = int8.program.as_ref().expect("an integer program");
    assert_eq!(
        LayerCounts::of(program),
        LayerCounts {
            stem: 1,
            depthwise: 17,
            pointwise: 34,
            add: 10,
        }
    );
    // InputSpec::TF maps pixels onto [-1, 1].
    let frame = program.input;
    assert!((frame.scale - 2.0 / 255.0).abs() < 1e-6);
    for v in [-1.0, 0.0, 1.0] {
        assert!((frame.dequantize(frame.quantize(v)) - v).abs() <= frame.scale);
    }
    assert!(
        int8.backbone.is_empty(),
        "no tract model beside the program"
    );
    assert!(detector.runs_integer_program());
    assert_eq!(detector.pre_pool_layout(), Layout::Nhwc);
    // By default the six expansions with rows of 28 pixels or more run fused with their
    // depthwise convolutions: the same codes as layer by layer, in less memory.
    let fused = IntegerBackbone::new(program).unwrap();
    let separate = integer::Options {
        fuse_min_width: None,
        ..integer::Options::default()
    };
    let separate = IntegerBackbone::with_options(program, separate).unwrap();
    assert_eq!(fused.fused_expansions(), 6);
    println!(
        "activation buffers per worker: {} bytes fused, {} layer by layer",
        fused.activation_bytes(),
        separate.activation_bytes()
    );
    assert!(fused.activation_bytes() < separate.activation_bytes());
    let (mut fa, mut sa) = (fused.activations(), separate.activations());
    for frame in frames(int8, |i| i % 100 == 7) {
        let codes = fused.run(&mut fa, &frame).unwrap();
        assert_eq!(Some(codes), separate.run(&mut sa, &frame));
    }
    let tract = BackboneOptions {
        integer: false,
        ..BackboneOptions::default()
    };
    let err = Detector::with_options(int8, tract)
        .err()
        .expect("no tract backbone");
    assert!(err.to_string().contains("--precision int8-tract"), "{err}");
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
        let small = quantize::quantize(&float, &[], options, || {})
            .unwrap()
            .bundle;
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
