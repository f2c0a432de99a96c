//! The backbone's depthwise 3x3 convolutions on `nap-core`'s kernel compute what tract computes:
//! on small ONNX graphs made here (strides, paddings, with and without the ReLU6 clip and the
//! bias, and convolutions the kernel must leave alone), and on the shared MobileNetV2, whose
//! pointwise convolutions run on `nap-core`'s kernel too.

use nap_core::pointwise::Pointwise;
use nap_runtime::backbone::{
    BackboneOptions, optimized_model, own_depthwise_count, own_pointwise_count,
};
use nap_runtime::preprocess::Preprocessor;
use nap_test_support::data::shared_data_file;
use nap_test_support::onnx::{Builder, values};
use napctl::onnx::proto::{attr_int, attr_ints, tensor};
use tract_onnx::prelude::*;

const OWN: BackboneOptions = BackboneOptions {
    own_depthwise: true,
    own_pointwise: true,
    integer: false,
    fuse_expansions: false,
};
const TRACT: BackboneOptions = BackboneOptions {
    own_depthwise: false,
    own_pointwise: false,
    integer: false,
    fuse_expansions: false,
};

/// One depthwise conv over the 3 input channels, optionally followed by Clip(0, 6).
struct DepthwiseGraph {
    size: i64,
    kernel: i64,
    stride: i64,
    pads: [i64; 4],
    dilation: i64,
    clip: bool,
    bias: bool,
}

impl DepthwiseGraph {
    fn onnx(&self) -> Vec<u8> {
        let k = self.kernel;
        let mut b = Builder::new(13)
            .input("input", &[1, 3, self.size, self.size])
            .init(tensor(
                "w",
                &[3, 1, k, k],
                &values(7, (3 * k * k) as usize, 1.0),
            ))
            .init(tensor("bias", &[3], &[0.5f32, -0.25, 2.0]))
            .init(tensor("lo", &[], &[0.0f32]))
            .init(tensor("hi", &[], &[6.0f32]));
        let inputs: &[&str] = if self.bias {
            &["input", "w", "bias"]
        } else {
            &["input", "w"]
        };
        let conv_out = if self.clip { "conv" } else { "output" };
        b = b.node(
            "Conv",
            "dw",
            inputs,
            &[conv_out],
            vec![
                attr_int("group", 3),
                attr_ints("kernel_shape", &[k, k]),
                attr_ints("strides", &[self.stride, self.stride]),
                attr_ints("pads", &self.pads),
                attr_ints("dilations", &[self.dilation, self.dilation]),
            ],
        );
        if self.clip {
            b = b.node("Clip", "relu6", &["conv", "lo", "hi"], &["output"], vec![]);
        }
        prost::Message::encode_to_vec(&b.output("output", &[]).build())
    }
}

fn run(model: TypedModel, input: &Tensor) -> Vec<f32> {
    let out = model
        .into_runnable()
        .unwrap()
        .run(tvec!(input.clone().into()))
        .unwrap()
        .remove(0);
    out.try_as_plain_ram()
        .unwrap()
        .as_slice::<f32>()
        .unwrap()
        .to_vec()
}

/// Runs the graph both ways; returns how many convs went to our kernel and the largest
/// difference relative to the output's largest magnitude.
fn compare(graph: &DepthwiseGraph) -> (usize, f32) {
    let onnx = graph.onnx();
    let size = graph.size as usize;
    let data = values(11, 3 * size * size, 4.0);
    let input = Tensor::from_shape(&[1, 3, size, size], &data).unwrap();
    let own = optimized_model(&onnx, size, OWN).unwrap();
    let replaced = own_depthwise_count(&own);
    let (a, b) = (
        run(own, &input),
        run(optimized_model(&onnx, size, TRACT).unwrap(), &input),
    );
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    (replaced, worst / scale)
}

#[test]
fn depthwise_3x3_runs_on_our_kernel_and_agrees_with_tract() {
    for size in [5, 16, 33] {
        for stride in [1, 2] {
            for pads in [[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [2, 1, 0, 2]] {
                for (clip, bias) in [(true, true), (false, true), (true, false)] {
                    let graph = DepthwiseGraph {
                        size,
                        kernel: 3,
                        stride,
                        pads,
                        dilation: 1,
                        clip,
                        bias,
                    };
                    let (replaced, diff) = compare(&graph);
                    let case = format!(
                        "size {size} stride {stride} pads {pads:?} clip {clip} bias {bias}"
                    );
                    assert_eq!(replaced, 1, "{case}");
                    assert!(diff < 1e-5, "{case}: relative difference {diff}");
                }
            }
        }
    }
}

#[test]
fn other_convolutions_stay_with_tract() {
    let base = DepthwiseGraph {
        size: 16,
        kernel: 3,
        stride: 1,
        pads: [1, 1, 1, 1],
        dilation: 1,
        clip: true,
        bias: true,
    };
    for graph in [
        DepthwiseGraph {
            kernel: 5,
            pads: [2, 2, 2, 2],
            ..base
        },
        DepthwiseGraph {
            dilation: 2,
            pads: [2, 2, 2, 2],
            ..base
        },
        DepthwiseGraph { stride: 3, ..base },
    ] {
        let (replaced, diff) = compare(&graph);
        assert_eq!(replaced, 0);
        assert_eq!(diff, 0.0);
    }
}

#[test]
fn shared_mobilenet_v2_pre_pool_agrees_with_tract() {
    let Some(bundle) = nap_test_support::mobilenet::float_bundle() else {
        return;
    };
    let own = optimized_model(&bundle.backbone, 224, OWN).unwrap();
    // All 17 depthwise convolutions of MobileNetV2, each with its ReLU6.
    assert_eq!(own_depthwise_count(&own), 17);
    // Its 34 pointwise convolutions but the 8 on 7x7 planes, where a vectorized path exists.
    let pointwise = Pointwise::new();
    let expected = if pointwise.suits(16) { 26 } else { 0 };
    assert_eq!(own_pointwise_count(&own), expected, "{:?}", pointwise.isa());
    // Of those, the 13 expansions that feed a depthwise convolution run fused with it.
    let fused = own
        .nodes()
        .iter()
        .filter(|n| n.op.name() == "NapExpandDepthwise")
        .count();
    assert_eq!(fused, expected / 2);
    let own = own.into_runnable().unwrap();
    let tract = optimized_model(&bundle.backbone, 224, TRACT)
        .unwrap()
        .into_runnable()
        .unwrap();
    let pre = Preprocessor::new(bundle.manifest.input).unwrap();
    for file in [
        "id-imagenet/n01484850_great_white_shark.JPEG",
        "ood-dtd/banded_0004.jpg",
        "ood-patterns/3dgreen.png",
    ] {
        let Some(path) = shared_data_file(format!("images/{file}")) else {
            return;
        };
        let x = pre
            .tensor_vec_from_encoded(&std::fs::read(path).unwrap())
            .unwrap();
        let input = Tensor::from_shape(&[1, 3, 224, 224], &x).unwrap();
        let get = |plan: &std::sync::Arc<TypedSimplePlan>| {
            let t = plan.run(tvec!(input.clone().into())).unwrap().remove(0);
            t.try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec()
        };
        let (a, b) = (get(&own), get(&tract));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        // Values lie in 0..6 (ReLU6); float reassociation over 17 layers moves them by ~5e-5.
        assert!(worst < 5e-4, "{file}: max |own - tract| {worst}");
    }
}
