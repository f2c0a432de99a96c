//! Writes the seed bundles of the `bundle_onnx` fuzz target: tiny classifiers whose backbones
//! tract loads (float, int8-weights, f16-weights, int8 for tract), small enough for the fuzzer
//! to mutate quickly, with the ops MobileNet-style backbones hand to tract (convolutions,
//! depthwise convolution, ReLU6 clips, residual add, squeeze-excite), a head graph before the
//! dense layer, one whose dense layers are int8 rows, and ViM deciding with its subspace.
//!
//! `cargo run -p nap-tests --example bundle_seeds -- runtime/fuzz/corpus/bundle_onnx`

use nap_core::score::Method;
use nap_runtime::bundle::{Bundle, VimSpec};
use nap_test_support::heads;
use nap_test_support::onnx::{self, SIZE, TinyCnn, values};
use napctl::bundle::quantize::{Options, RangeMethod, Target, quantize};

fn main() {
    let out = std::env::args()
        .nth(1)
        .expect("usage: bundle_seeds OUT_DIR (e.g. runtime/fuzz/corpus/bundle_onnx)");
    std::fs::create_dir_all(&out).expect("create the output folder");
    let p = TinyCnn::default();
    let models = [
        ("torchvision", onnx::torchvision(&p)),
        ("conv_head", onnx::conv_head(&p)),
        ("squeeze_excite", onnx::squeeze_excite(&p)),
        ("inverted_residual", onnx::inverted_residual(&p)),
        ("head_graph", onnx::relu_after_pooling(&p)),
    ];
    let frames: Vec<Vec<f32>> = (0..4)
        .map(|i| values(100 + i, 3 * SIZE * SIZE, 2.0))
        .collect();
    let int8_weights = Options {
        target: Target::Int8Weights,
        ranges: RangeMethod::Minmax,
        per_channel: true,
    };
    let dense_forms = onnx::float_bundle(&heads::dense_forms(), "dense_forms");
    let rows = quantize(&dense_forms, &[], int8_weights, || {}).expect("the fixture quantizes");
    write(&out, "dense_forms-int8-weights", &rows.bundle);
    for (name, model) in models {
        let float = onnx::float_bundle(&model, name);
        write(&out, &format!("{name}-f32"), &float);
        if name == "conv_head" {
            let mut vim = float.clone();
            let features = vim.manifest.head.features as usize;
            let mut basis = vec![0.0; features];
            basis[0] = 1.0;
            vim.manifest.vim = Some(VimSpec {
                origin: vec![0.0; features],
                basis,
                alpha: 0.5,
            });
            vim.manifest.scorer.method = Method::Vim;
            write(&out, &format!("{name}-vim"), &vim);
        }
        if name != "inverted_residual" {
            continue;
        }
        for (target, tag) in [
            (Target::Int8Tract, "int8-tract"),
            (Target::Int8Weights, "int8-weights"),
            (Target::F16Weights, "f16-weights"),
        ] {
            let options = Options {
                target,
                ranges: RangeMethod::Minmax,
                per_channel: true,
            };
            let quantized =
                quantize(&float, &frames, options, || {}).expect("the fixture quantizes");
            write(&out, &format!("{name}-{tag}"), &quantized.bundle);
        }
    }
}

fn write(dir: &str, name: &str, bundle: &Bundle) {
    let bytes = bundle.to_bytes().expect("a built bundle writes");
    let path = format!("{dir}/{name}.nap");
    std::fs::write(&path, &bytes).expect("write the seed");
    println!("{path}: {} bytes", bytes.len());
}
