//! Small ONNX classifiers whose heads (everything after global average pooling) have the exact
//! structure of torchvision's ONNX exports, with random deterministic weights: test inputs for
//! head detection and splitting on real-world head shapes, without the real multi-MB models.
//!
//! Every model shares one backbone: input `input` `[1, 3, 8, 8]` -> Conv 3->C 3x3 (pad 1) ->
//! Relu -> `features` `[1, C, 8, 8]` -> GlobalAveragePool -> `pooled` `[1, C, 1, 1]`, followed
//! by the head each function names, ending in the graph output `logits` `[1, K]`. Head nodes
//! carry the module names torch gives them (`classifier.0`, `fc`, ...).

use crate::onnx::{Builder, value_info, values};
use napctl::onnx::proto::{attr_float, attr_int, attr_ints, i64_tensor_typed, tensor};
use tract_onnx::pb::{ModelProto, OperatorSetIdProto};
use tract_onnx::prelude::*;

/// Input channels of every model here.
pub const IN_CHANNELS: usize = 3;
/// Height and width of the input and of `features`.
pub const SIZE: usize = 8;
/// Classes of the torchvision-shaped models (ImageNet's K).
pub const CLASSES: usize = 1000;
/// Channels of `features` in the bad-input models.
pub const BAD_FEATURES: usize = 16;
/// Classes of the bad-input models.
pub const BAD_CLASSES: usize = 10;
/// The op type of the node [`head_with_unknown_op`] puts in its head.
pub const UNKNOWN_OP: &str = "NapUnknownActivation";
/// The domain of that node.
pub const UNKNOWN_DOMAIN: &str = "com.example";

/// The shared backbone up to `features` `[1, c, 8, 8]`: input -> Conv 3x3 -> Relu, with the
/// stem weights drawn from `seed`.
fn backbone(opset: i64, c: usize, seed: u64) -> Builder {
    let (ci, s, c64) = (IN_CHANNELS as i64, SIZE as i64, c as i64);
    Builder::new(opset)
        .input("input", &[1, ci, s, s])
        .init(tensor(
            "features.0.weight",
            &[c64, ci, 3, 3],
            &values(seed, c * IN_CHANNELS * 9, 0.5),
        ))
        .init(tensor("features.0.bias", &[c64], &values(seed + 1, c, 0.1)))
        .node(
            "Conv",
            "features.0",
            &["input", "features.0.weight", "features.0.bias"],
            &["stem"],
            vec![
                attr_ints("dilations", &[1, 1]),
                attr_int("group", 1),
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("pads", &[1, 1, 1, 1]),
                attr_ints("strides", &[1, 1]),
            ],
        )
        .node("Relu", "features.1", &["stem"], &["features"], vec![])
}

/// The backbone followed by the global average pool `avgpool`: `features` -> `pooled`.
fn pooled(opset: i64, c: usize, seed: u64) -> Builder {
    backbone(opset, c, seed).node(
        "GlobalAveragePool",
        "avgpool",
        &["features"],
        &["pooled"],
        vec![],
    )
}

/// Adds `name.weight` `[out, inp]` (scaled 1/sqrt(inp), so logits stay near unit size) and
/// `name.bias` `[out]`, and a Gemm (transB = 1) named `name` from `x` to `y`, as torch exports an
/// `nn.Linear`.
fn linear(b: Builder, name: &str, x: &str, y: &str, [out, inp]: [usize; 2], seed: u64) -> Builder {
    let (w, bias) = (format!("{name}.weight"), format!("{name}.bias"));
    let scale = 1.0 / (inp as f32).sqrt();
    b.init(tensor(
        &w,
        &[out as i64, inp as i64],
        &values(seed, out * inp, scale),
    ))
    .init(tensor(&bias, &[out as i64], &values(seed + 1, out, 0.1)))
    .node(
        "Gemm",
        name,
        &[x, &w, &bias],
        &[y],
        vec![
            attr_float("alpha", 1.0),
            attr_float("beta", 1.0),
            attr_int("transB", 1),
        ],
    )
}

/// `Flatten` (axis 1) named `name` from `x` to `y`, as torch exports `torch.flatten(x, 1)`.
fn flatten(b: Builder, name: &str, x: &str, y: &str) -> Builder {
    b.node("Flatten", name, &[x], &[y], vec![attr_int("axis", 1)])
}

/// `Dropout` named `name` from `x` to `y` with its ratio `p` as the constant input `name.ratio`
/// (from opset 12 the ratio is an input, not an attribute) and no `training_mode` input, so it
/// is the identity at inference: the node a training-unaware export keeps.
fn dropout(b: Builder, name: &str, x: &str, y: &str, p: f32) -> Builder {
    let ratio = format!("{name}.ratio");
    b.init(tensor(&ratio, &[], &[p]))
        .node("Dropout", name, &[x, &ratio], &[y], vec![])
}

/// Ends the model: graph output `logits` `[1, k]` and value info for `features` `[1, c, 8, 8]`
/// and `pooled` `[1, c, 1, 1]`, as shape inference after export leaves them.
fn finish(b: Builder, c: usize, k: usize) -> ModelProto {
    let (s, c) = (SIZE as i64, c as i64);
    let mut m = b.output("logits", &[1, k as i64]).build();
    let g = m.graph.as_mut().expect("the builder makes a graph");
    g.value_info.push(value_info("features", &[1, c, s, s]));
    g.value_info.push(value_info("pooled", &[1, c, 1, 1]));
    m
}

/// MobileNetV3-Large (C = 960): `pooled` -> Flatten `flatten` -> Gemm `classifier.0` (960->1280)
/// -> HardSwish `classifier.1` -> Dropout `classifier.2` (ratio 0.2) -> Gemm `classifier.3`
/// (1280->1000) -> `logits`. Opset 17.
pub fn mobilenet_v3_large() -> ModelProto {
    let (c, hidden) = (960, 1280);
    let b = flatten(pooled(17, c, 100), "flatten", "pooled", "flat");
    let b = linear(b, "classifier.0", "flat", "fc1", [hidden, c], 102);
    let b = b.node("HardSwish", "classifier.1", &["fc1"], &["act"], vec![]);
    let b = dropout(b, "classifier.2", "act", "dropped", 0.2);
    let b = linear(
        b,
        "classifier.3",
        "dropped",
        "logits",
        [CLASSES, hidden],
        104,
    );
    finish(b, c, CLASSES)
}

/// Channels of ConvNeXt-Tiny's `features`.
const CONVNEXT_FEATURES: usize = 768;

/// ConvNeXt-Tiny's LayerNorm2d scale and bias (`classifier.0.weight`, `classifier.0.bias`),
/// shared by both export forms.
fn convnext_norm(b: Builder) -> Builder {
    let c = CONVNEXT_FEATURES;
    let scale: Vec<f32> = values(202, c, 0.2).iter().map(|v| 1.0 + v).collect();
    b.init(tensor("classifier.0.weight", &[c as i64], &scale))
        .init(tensor(
            "classifier.0.bias",
            &[c as i64],
            &values(203, c, 0.1),
        ))
}

/// ConvNeXt-Tiny's head around the normalisation `norm` (from `nhwc` to `normed`, both
/// `[1, 1, 1, 768]`): `pooled` -> Transpose `norm_transpose_in` (perm `[0, 2, 3, 1]`) -> norm ->
/// Transpose `norm_transpose_out` (perm `[0, 3, 1, 2]`) -> Flatten `classifier.1` -> Gemm
/// `classifier.2` (768->1000) -> `logits`.
fn convnext_head(opset: i64, norm: impl FnOnce(Builder) -> Builder) -> ModelProto {
    let c = CONVNEXT_FEATURES;
    let b = pooled(opset, c, 200).node(
        "Transpose",
        "norm_transpose_in",
        &["pooled"],
        &["nhwc"],
        vec![attr_ints("perm", &[0, 2, 3, 1])],
    );
    let b = norm(convnext_norm(b)).node(
        "Transpose",
        "norm_transpose_out",
        &["normed"],
        &["nchw"],
        vec![attr_ints("perm", &[0, 3, 1, 2])],
    );
    let b = flatten(b, "classifier.1", "nchw", "flat");
    let b = linear(b, "classifier.2", "flat", "logits", [CLASSES, c], 204);
    finish(b, c, CLASSES)
}

/// ConvNeXt-Tiny (C = 768) as exported at opset 17: `pooled` -> Transpose `norm_transpose_in`
/// (perm `[0, 2, 3, 1]`) -> LayerNormalization `classifier.0` (axis -1, epsilon 1e-6) ->
/// Transpose `norm_transpose_out` (perm `[0, 3, 1, 2]`) -> Flatten `classifier.1` -> Gemm
/// `classifier.2` (768->1000) -> `logits`. Same weights as [`convnext_tiny_decomposed`].
pub fn convnext_tiny() -> ModelProto {
    convnext_head(17, |b| {
        b.node(
            "LayerNormalization",
            "classifier.0",
            &["nhwc", "classifier.0.weight", "classifier.0.bias"],
            &["normed"],
            vec![attr_int("axis", -1), attr_float("epsilon", 1e-6)],
        )
    })
}

/// ConvNeXt-Tiny (C = 768) as older exporters write it at opset 13: LayerNorm2d spelled out as
/// ReduceMean -> Sub -> Pow 2 -> ReduceMean -> Add 1e-6 -> Sqrt -> Div -> Mul scale -> Add bias
/// (nodes `classifier.0.*`), between the same Transposes. Same weights as [`convnext_tiny`].
pub fn convnext_tiny_decomposed() -> ModelProto {
    convnext_head(13, |b| {
        let mean = || vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)];
        b.init(tensor("classifier.0.two", &[], &[2.0f32]))
            .init(tensor("classifier.0.eps", &[], &[1e-6f32]))
            .node(
                "ReduceMean",
                "classifier.0.mean",
                &["nhwc"],
                &["mu"],
                mean(),
            )
            .node(
                "Sub",
                "classifier.0.sub",
                &["nhwc", "mu"],
                &["centered"],
                vec![],
            )
            .node(
                "Pow",
                "classifier.0.pow",
                &["centered", "classifier.0.two"],
                &["squared"],
                vec![],
            )
            .node(
                "ReduceMean",
                "classifier.0.var",
                &["squared"],
                &["var"],
                mean(),
            )
            .node(
                "Add",
                "classifier.0.add_eps",
                &["var", "classifier.0.eps"],
                &["var_eps"],
                vec![],
            )
            .node("Sqrt", "classifier.0.sqrt", &["var_eps"], &["std"], vec![])
            .node(
                "Div",
                "classifier.0.div",
                &["centered", "std"],
                &["normalized"],
                vec![],
            )
            .node(
                "Mul",
                "classifier.0.mul",
                &["normalized", "classifier.0.weight"],
                &["scaled"],
                vec![],
            )
            .node(
                "Add",
                "classifier.0.add",
                &["scaled", "classifier.0.bias"],
                &["normed"],
                vec![],
            )
    })
}

/// ResNet-50 (C = 2048): `pooled` -> Flatten `flatten` -> Gemm `fc` (2048->1000, weight
/// `fc.weight`, bias `fc.bias`) -> `logits`. Opset 17.
pub fn resnet50() -> ModelProto {
    let c = 2048;
    let b = flatten(pooled(17, c, 300), "flatten", "pooled", "flat");
    let b = linear(b, "fc", "flat", "logits", [CLASSES, c], 302);
    finish(b, c, CLASSES)
}

/// EfficientNet-B0 (C = 1280): `pooled` -> Flatten `flatten` -> Dropout `classifier.0` (ratio
/// 0.2) -> Gemm `classifier.1` (1280->1000) -> `logits`. Opset 17.
pub fn efficientnet_b0() -> ModelProto {
    let c = 1280;
    let b = flatten(pooled(17, c, 400), "flatten", "pooled", "flat");
    let b = dropout(b, "classifier.0", "flat", "dropped", 0.2);
    let b = linear(b, "classifier.1", "dropped", "logits", [CLASSES, c], 402);
    finish(b, c, CLASSES)
}

/// Pooled channels of [`dense_forms`].
pub const DENSE_FORMS_FEATURES: usize = 64;

/// A head graph with a dense layer in each form exporters write (C = 64, K = 10): `pooled` ->
/// 1x1 Conv `proj` (64->128, weights `[out, in, 1, 1]`) -> Relu -> Flatten -> MatMul `mlp.0`
/// (128->96, weights `[in, out]`) -> Add bias -> HardSwish -> Gemm `mlp.2` (96->80, transB = 0,
/// weights `[in, out]`) -> Relu -> Gemm `fc` (80->10) -> `logits`. Opset 17.
pub fn dense_forms() -> ModelProto {
    let (c, k) = (DENSE_FORMS_FEATURES, 10);
    let b = pooled(17, c, 600)
        .init(tensor(
            "proj.weight",
            &[128, 64, 1, 1],
            &values(601, 128 * 64, 0.125),
        ))
        .init(tensor("proj.bias", &[128], &values(602, 128, 0.1)))
        .node(
            "Conv",
            "proj",
            &["pooled", "proj.weight", "proj.bias"],
            &["projected"],
            vec![attr_ints("kernel_shape", &[1, 1])],
        )
        .node("Relu", "proj.act", &["projected"], &["proj.out"], vec![]);
    let b = flatten(b, "flatten", "proj.out", "flat")
        .init(tensor(
            "mlp.0.weight",
            &[128, 96],
            &values(603, 128 * 96, 0.09),
        ))
        .init(tensor("mlp.0.bias", &[96], &values(604, 96, 0.1)))
        .node(
            "MatMul",
            "mlp.0",
            &["flat", "mlp.0.weight"],
            &["mm"],
            vec![],
        )
        .node("Add", "mlp.0.add", &["mm", "mlp.0.bias"], &["h1"], vec![])
        .node("HardSwish", "mlp.1", &["h1"], &["a1"], vec![])
        .init(tensor(
            "mlp.2.weight",
            &[96, 80],
            &values(605, 96 * 80, 0.1),
        ))
        .init(tensor("mlp.2.bias", &[80], &values(606, 80, 0.1)))
        .node(
            "Gemm",
            "mlp.2",
            &["a1", "mlp.2.weight", "mlp.2.bias"],
            &["h2"],
            vec![attr_int("transB", 0)],
        )
        .node("Relu", "mlp.3", &["h2"], &["a2"], vec![]);
    let b = linear(b, "fc", "a2", "logits", [k, 80], 607);
    finish(b, c, k)
}

/// The start of every bad-input head (C = 16): `pooled` -> Flatten `flatten` -> Gemm `fc1`
/// (16->32) -> `hidden`.
fn bad_head_start(seed: u64) -> Builder {
    let b = flatten(pooled(17, BAD_FEATURES, seed), "flatten", "pooled", "flat");
    linear(b, "fc1", "flat", "hidden", [32, BAD_FEATURES], seed + 2)
}

/// A head with an op no runtime knows: `pooled` -> Flatten -> Gemm `fc1` (16->32) ->
/// `NapUnknownActivation` `mystery_act` (domain `com.example`, imported at version 1) -> Gemm
/// `fc2` (32->10) -> `logits`. Tract refuses to run it.
pub fn head_with_unknown_op() -> ModelProto {
    let b = bad_head_start(500).node(UNKNOWN_OP, "mystery_act", &["hidden"], &["act"], vec![]);
    let b = linear(b, "fc2", "act", "logits", [BAD_CLASSES, 32], 504);
    let mut m = finish(b, BAD_FEATURES, BAD_CLASSES);
    let g = m.graph.as_mut().expect("the builder makes a graph");
    let act = g
        .node
        .iter_mut()
        .find(|n| n.name == "mystery_act")
        .expect("the node was just added");
    act.domain = UNKNOWN_DOMAIN.into();
    m.opset_import.push(OperatorSetIdProto {
        domain: UNKNOWN_DOMAIN.into(),
        version: 1,
    });
    m
}

/// A head whose end is no graph output: `pooled` -> Flatten -> Gemm `fc1` (16->32) -> Relu
/// `relu` -> Gemm `fc2` (32->10) -> `dangling`, consumed by nothing; the graph's only output is
/// the pre-pool `features` `[1, 16, 8, 8]`.
pub fn head_not_reaching_output() -> ModelProto {
    let b = bad_head_start(600).node("Relu", "relu", &["hidden"], &["hidden_relu"], vec![]);
    let b = linear(b, "fc2", "hidden_relu", "dangling", [BAD_CLASSES, 32], 604);
    let (s, c) = (SIZE as i64, BAD_FEATURES as i64);
    let mut m = b.output("features", &[1, c, s, s]).build();
    let g = m.graph.as_mut().expect("the builder makes a graph");
    g.value_info.push(value_info("pooled", &[1, c, 1, 1]));
    g.value_info
        .push(value_info("dangling", &[1, BAD_CLASSES as i64]));
    m
}

/// A pooled vector that is never flattened to `[1, C]`: `pooled` -> Reshape `bad_reshape` to
/// `[1, 8, 2]` -> MatMul `matmul` with a `[2, 10]` weight -> `[1, 8, 10]` -> ReduceMean
/// `reduce` (axes `[1]`, keepdims 0) -> `logits` `[1, 10]`. A valid graph tract runs whole.
pub fn pooled_not_flat() -> ModelProto {
    let k = BAD_CLASSES as i64;
    let half = (BAD_FEATURES / 2) as i64;
    let b = pooled(17, BAD_FEATURES, 700)
        .init(i64_tensor_typed("bad_reshape.shape", &[3], &[1, half, 2]))
        .node(
            "Reshape",
            "bad_reshape",
            &["pooled", "bad_reshape.shape"],
            &["pairs"],
            vec![],
        )
        .init(tensor(
            "matmul.weight",
            &[2, k],
            &values(702, 2 * BAD_CLASSES, 0.7),
        ))
        .node(
            "MatMul",
            "matmul",
            &["pairs", "matmul.weight"],
            &["projected"],
            vec![],
        )
        .node(
            "ReduceMean",
            "reduce",
            &["projected"],
            &["logits"],
            vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)],
        );
    finish(b, BAD_FEATURES, BAD_CLASSES)
}

/// A deterministic input frame: `3 * 8 * 8` values in `[-1, 1)` from `seed`, laid out as
/// `[1, 3, 8, 8]`.
pub fn frame_input(seed: u64) -> Vec<f32> {
    values(seed, IN_CHANNELS * SIZE * SIZE, 1.0)
}

/// Runs `model` whole in tract (optimized) on one `[1, 3, 8, 8]` frame and returns every graph
/// output's values, in output order; the error tract gives when it cannot.
pub fn try_run_all(model: &ModelProto, input: &[f32]) -> TractResult<Vec<Vec<f32>>> {
    let shape = [1, IN_CHANNELS, SIZE, SIZE];
    let plan = tract_onnx::onnx()
        .model_for_proto_model(model)?
        .with_input_fact(0, f32::fact(shape).into())?
        .into_optimized()?
        .into_runnable()?;
    let input = Tensor::from_shape(&shape, input)?;
    plan.run(tvec!(input.into()))?
        .iter()
        .map(|t| Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect()))
        .collect()
}

/// Runs `model` whole in tract on one `[1, 3, 8, 8]` frame and returns its first output's
/// values; panics when tract cannot run it.
pub fn run_whole(model: &ModelProto, input: &[f32]) -> Vec<f32> {
    try_run_all(model, input)
        .unwrap_or_else(|e| panic!("tract runs the model: {e:#}"))
        .into_iter()
        .next()
        .expect("the model has an output")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The op types of `model`'s nodes, in graph order.
    fn ops(model: &ModelProto) -> Vec<&str> {
        let g = model.graph.as_ref().expect("graph");
        g.node.iter().map(|n| n.op_type.as_str()).collect()
    }

    /// Runs `model` whole and checks it gives `k` finite logits of a sane size.
    fn finite_logits(model: &ModelProto, k: usize) -> Vec<f32> {
        let logits = run_whole(model, &frame_input(9));
        assert_eq!(logits.len(), k);
        assert!(logits.iter().all(|v| v.is_finite()), "{logits:?}");
        assert!(logits.iter().all(|v| v.abs() < 100.0), "{logits:?}");
        assert!(logits.iter().any(|&v| v != logits[0]), "constant logits");
        logits
    }

    #[test]
    fn mobilenet_v3_large_runs_with_hardswish() {
        let m = mobilenet_v3_large();
        assert_eq!(
            &ops(&m)[3..],
            ["Flatten", "Gemm", "HardSwish", "Dropout", "Gemm"]
        );
        finite_logits(&m, CLASSES);
    }

    #[test]
    fn convnext_tiny_runs_and_both_layer_norm_forms_agree() {
        let m = convnext_tiny();
        assert!(ops(&m).contains(&"LayerNormalization"));
        let d = convnext_tiny_decomposed();
        assert!(!ops(&d).contains(&"LayerNormalization"));
        let a = finite_logits(&m, CLASSES);
        let b = finite_logits(&d, CLASSES);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn resnet50_matches_independent_arithmetic() {
        let mut m = resnet50();
        let g = m.graph.as_mut().expect("graph");
        let (s, c) = (SIZE as i64, 2048i64);
        g.output.push(value_info("features", &[1, c, s, s]));
        let out = try_run_all(&m, &frame_input(3)).expect("tract runs resnet50");
        let (logits, features) = (&out[0], &out[1]);
        assert_eq!(logits.len(), CLASSES);
        let hw = SIZE * SIZE;
        let pooled: Vec<f64> = features
            .chunks(hw)
            .map(|ch| ch.iter().map(|&v| v as f64).sum::<f64>() / hw as f64)
            .collect();
        assert_eq!(pooled.len(), 2048);
        let w = values(302, CLASSES * 2048, 1.0 / 2048f32.sqrt());
        let bias = values(303, CLASSES, 0.1);
        // Relative to the size of the terms summed (|bias| + sum |w p|): a logit near zero is
        // the difference of large terms, and f32 accumulation is only that exact.
        for (k, &got) in logits.iter().enumerate() {
            let row = &w[k * 2048..(k + 1) * 2048];
            let terms = row.iter().zip(&pooled).map(|(&w, &p)| w as f64 * p);
            let want = bias[k] as f64 + terms.clone().sum::<f64>();
            let size = (bias[k] as f64).abs() + terms.map(f64::abs).sum::<f64>();
            let rel = (got as f64 - want).abs() / size;
            assert!(rel <= 1e-5, "class {k}: {got} vs {want} (relative {rel:e})");
        }
        assert_eq!(run_whole(&resnet50(), &frame_input(3)), *logits);
    }

    #[test]
    fn efficientnet_b0_runs() {
        let m = efficientnet_b0();
        assert_eq!(&ops(&m)[3..], ["Flatten", "Dropout", "Gemm"]);
        finite_logits(&m, CLASSES);
    }

    #[test]
    fn pooled_not_flat_runs() {
        finite_logits(&pooled_not_flat(), BAD_CLASSES);
    }

    #[test]
    fn unknown_op_fails_in_tract() {
        let err = try_run_all(&head_with_unknown_op(), &frame_input(1))
            .expect_err("tract has no NapUnknownActivation");
        assert!(format!("{err:#}").contains(UNKNOWN_OP), "{err:#}");
    }

    #[test]
    fn head_not_reaching_output_gives_features() {
        let out = run_whole(&head_not_reaching_output(), &frame_input(2));
        assert_eq!(out.len(), BAD_FEATURES * SIZE * SIZE);
        assert!(out.iter().all(|v| v.is_finite() && *v >= 0.0));
    }

    #[test]
    fn frame_input_is_deterministic() {
        assert_eq!(frame_input(4), frame_input(4));
        assert_ne!(frame_input(4), frame_input(5));
        assert_eq!(frame_input(4).len(), IN_CHANNELS * SIZE * SIZE);
    }
}
