//! Tiny ONNX classifiers built in code, as test inputs for inspect, split and the bundle
//! tools that depend on no exporter and no shared data. Their protos come from napctl's own
//! builder ([`napctl::onnx::proto`]), the one the quantizer writes graphs with.
//!
//! Every model here shares one backbone: input `input` `[N, 3, 8, 8]` -> Conv 3->8 3x3 (pad 1)
//! -> Relu -> `features` `[N, 8, 8, 8]`, with the weights of [`TinyCnn`], followed by the head
//! each function names.

use nap_runtime::bundle::{Bundle, InputSpec};
use napctl::bundle::{BuildOptions, build_bundle};
use napctl::onnx::proto::{
    attr_float, attr_floats, attr_int, attr_ints, attr_tensor, dim, dim_param, f32_tensor_typed,
    i64_tensor_typed, node, tensor,
};
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, OperatorSetIdProto, TensorProto, ValueInfoProto,
};

/// Input channels of the fixture backbone.
pub const IN_CHANNELS: usize = 3;
/// Channels of the pre-pool tensor `features` (the head's C).
pub const FEATURES: usize = 8;
/// Classes of every fixture head (K).
pub const CLASSES: usize = 5;
/// Height and width of the input and of `features`.
pub const SIZE: usize = 8;

/// The weights of the fixture models, generated deterministically.
#[derive(Clone, Debug, PartialEq)]
pub struct TinyCnn {
    /// Conv weight `[FEATURES, IN_CHANNELS, 3, 3]`.
    pub conv_w: Vec<f32>,
    /// Conv bias `[FEATURES]`.
    pub conv_b: Vec<f32>,
    /// Head weight, row-major `[CLASSES][FEATURES]` (the dense map `split` must give back).
    pub fc_w: Vec<f32>,
    /// Head bias `[CLASSES]`.
    pub fc_b: Vec<f32>,
}

impl Default for TinyCnn {
    fn default() -> Self {
        TinyCnn {
            conv_w: values(1, FEATURES * IN_CHANNELS * 9, 0.5),
            conv_b: values(2, FEATURES, 0.2),
            fc_w: values(3, CLASSES * FEATURES, 1.0),
            fc_b: values(4, CLASSES, 0.5),
        }
    }
}

impl TinyCnn {
    /// The head weight as the initializer `fc.weight` `[5, 8]` (Gemm with transB = 1).
    pub fn fc_weight(&self) -> TensorProto {
        tensor("fc.weight", &[K, C], &self.fc_w)
    }

    /// The head bias as the initializer `fc.bias` `[5]`.
    pub fn fc_bias(&self) -> TensorProto {
        tensor("fc.bias", &[K], &self.fc_b)
    }

    /// The head weight transposed: row-major `[FEATURES][CLASSES]` (MatMul / Gemm without transB).
    pub fn fc_w_t(&self) -> Vec<f32> {
        let mut t = vec![0.0; FEATURES * CLASSES];
        for k in 0..CLASSES {
            for c in 0..FEATURES {
                t[c * CLASSES + k] = self.fc_w[k * FEATURES + c];
            }
        }
        t
    }
}

/// `model` split into a float bundle for its `SIZE x SIZE` input (TF-slim preprocessing), as
/// `napctl split --input-size 8` makes it.
pub fn float_bundle(model: &ModelProto, source: &str) -> Bundle {
    let input = InputSpec {
        size: SIZE as u32,
        ..InputSpec::TF
    };
    let options = BuildOptions {
        layer: None,
        input: input.into(),
    };
    build_bundle(model, source, options)
        .expect("the fixture splits")
        .bundle
}

/// `n` deterministic values in `[-scale, scale)` from `seed` (a small LCG).
pub fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let unit = (s >> 40) as f32 / (1u64 << 24) as f32;
            (unit * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A float32 value info; dimension `-1` becomes the symbolic batch `N`.
pub fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dims = dims
        .iter()
        .map(|&d| if d < 0 { dim_param("N") } else { dim(d) })
        .collect();
    napctl::onnx::proto::value_info(name, DataType::Float as i32, Some(dims))
}

/// Assembles a model graph piece by piece.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    graph: GraphProto,
    opset: i64,
}

impl Builder {
    /// An empty graph for the given default-domain opset.
    pub fn new(opset: i64) -> Self {
        Builder {
            graph: GraphProto {
                name: "fixture".into(),
                ..Default::default()
            },
            opset,
        }
    }

    /// Adds a graph input (float32; `-1` is the batch `N`).
    pub fn input(mut self, name: &str, dims: &[i64]) -> Self {
        self.graph.input.push(value_info(name, dims));
        self
    }

    /// Adds a graph output (float32; `-1` is the batch `N`).
    pub fn output(mut self, name: &str, dims: &[i64]) -> Self {
        self.graph.output.push(value_info(name, dims));
        self
    }

    /// Adds an initializer.
    pub fn init(mut self, t: TensorProto) -> Self {
        self.graph.initializer.push(t);
        self
    }

    /// Adds a node.
    pub fn node(
        mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> Self {
        self.graph.node.push(node(op, name, inputs, outputs, attrs));
        self
    }

    /// Adds a `Constant` node producing `t` under `t.name`.
    pub fn constant(self, t: TensorProto) -> Self {
        let out = t.name.clone();
        self.node(
            "Constant",
            &format!("{out}_const"),
            &[],
            &[&out],
            vec![attr_tensor("value", t)],
        )
    }

    /// Ends the model with the classifier most fixtures share: `x` -> Gemm (transB = 1) with
    /// these weight and bias initializers -> graph output `logits` `[N, 5]`.
    fn gemm_logits(self, x: &str, weight: TensorProto, bias: Option<TensorProto>) -> ModelProto {
        let mut inputs = vec![x.to_string(), weight.name.clone()];
        let mut b = self.init(weight);
        if let Some(bias) = bias {
            inputs.push(bias.name.clone());
            b = b.init(bias);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        b.node(
            "Gemm",
            "fc",
            &inputs,
            &["logits"],
            vec![attr_int("transB", 1)],
        )
        .output("logits", &[-1, K])
        .build()
    }

    /// The model.
    pub fn build(self) -> ModelProto {
        ModelProto {
            ir_version: 8,
            producer_name: "napctl-fixture".into(),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

/// The shared backbone: `input` -> Conv 3x3 -> `conv` -> Relu -> `features` `[N, 8, 8, 8]`.
pub fn backbone(opset: i64, p: &TinyCnn) -> Builder {
    let (c, i, s) = (FEATURES as i64, IN_CHANNELS as i64, SIZE as i64);
    Builder::new(opset)
        .input("input", &[-1, i, s, s])
        .init(tensor("conv.weight", &[c, i, 3, 3], &p.conv_w))
        .init(tensor("conv.bias", &[c], &p.conv_b))
        .node(
            "Conv",
            "conv1",
            &["input", "conv.weight", "conv.bias"],
            &["conv"],
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("pads", &[1, 1, 1, 1]),
                attr_ints("strides", &[1, 1]),
            ],
        )
        .node("Relu", "relu1", &["conv"], &["features"], vec![])
}

const K: i64 = CLASSES as i64;
const C: i64 = FEATURES as i64;

/// torchvision style: `features` -> GlobalAveragePool -> Flatten -> Gemm (transB = 1, weight
/// `[5, 8]` in `float_data`) -> `logits`.
pub fn torchvision(p: &TinyCnn) -> ModelProto {
    gap_flatten(backbone(13, p), "features", "avgpool", "pooled", "flat")
        .init(f32_tensor_typed("fc.weight", &[K, C], &p.fc_w))
        .init(p.fc_bias())
        .node(
            "Gemm",
            "fc",
            &["flat", "fc.weight", "fc.bias"],
            &["logits"],
            vec![
                attr_float("alpha", 1.0),
                attr_float("beta", 1.0),
                attr_int("transB", 1),
            ],
        )
        .output("logits", &[-1, K])
        .build()
}

/// An older torch export: `features` -> GlobalAveragePool -> `x.view(x.size(0), -1)` (Shape ->
/// Gather -> Unsqueeze -> Concat with -1 -> Reshape) -> Gemm (transB = 1) -> `logits`.
pub fn view_flatten(p: &TinyCnn) -> ModelProto {
    backbone(11, p)
        .node(
            "GlobalAveragePool",
            "avgpool",
            &["features"],
            &["pooled"],
            vec![],
        )
        .node("Shape", "shape", &["pooled"], &["pooled_shape"], vec![])
        .init(i64_tensor_typed("zero", &[], &[0]))
        .node(
            "Gather",
            "batch",
            &["pooled_shape", "zero"],
            &["n"],
            vec![attr_int("axis", 0)],
        )
        .node(
            "Unsqueeze",
            "batch_1d",
            &["n"],
            &["n_1d"],
            vec![attr_ints("axes", &[0])],
        )
        .init(i64_tensor_typed("minus_one", &[1], &[-1]))
        .node(
            "Concat",
            "view_shape",
            &["n_1d", "minus_one"],
            &["target_shape"],
            vec![attr_int("axis", 0)],
        )
        .node(
            "Reshape",
            "view",
            &["pooled", "target_shape"],
            &["flat"],
            vec![],
        )
        .gemm_logits("flat", p.fc_weight(), Some(p.fc_bias()))
}

fn gap_flatten(b: Builder, x: &str, pool: &str, pooled: &str, flat: &str) -> Builder {
    b.node("GlobalAveragePool", pool, &[x], &[pooled], vec![])
        .node(
            "Flatten",
            &format!("{pool}_flatten"),
            &[pooled],
            &[flat],
            vec![attr_int("axis", 1)],
        )
}

/// TF-slim style: `features` -> GlobalAveragePool -> 1x1 Conv (weight `[5, 8, 1, 1]`, bias) ->
/// Squeeze (axes input) -> `logits` -> Softmax -> `probs`.
pub fn conv_head(p: &TinyCnn) -> ModelProto {
    backbone(13, p)
        .node(
            "GlobalAveragePool",
            "avgpool",
            &["features"],
            &["pooled"],
            vec![],
        )
        .init(tensor("head.weight", &[K, C, 1, 1], &p.fc_w))
        .init(tensor("head.bias", &[K], &p.fc_b))
        .node(
            "Conv",
            "head",
            &["pooled", "head.weight", "head.bias"],
            &["head_out"],
            vec![attr_ints("kernel_shape", &[1, 1])],
        )
        .init(i64_tensor_typed("squeeze_axes", &[2], &[2, 3]))
        .node(
            "Squeeze",
            "squeeze",
            &["head_out", "squeeze_axes"],
            &["logits"],
            vec![],
        )
        .node(
            "Softmax",
            "softmax",
            &["logits"],
            &["probs"],
            vec![attr_int("axis", 1)],
        )
        .output("logits", &[-1, K])
        .output("probs", &[-1, K])
        .build()
}

/// MatMul + Add: `features` -> GlobalAveragePool -> Reshape `[0, -1]` -> MatMul (weight `[8, 5]`
/// from a Constant node) -> Add (bias from a `value_floats` Constant node) -> `logits` -> Softmax.
pub fn matmul_add(p: &TinyCnn) -> ModelProto {
    backbone(13, p)
        .node(
            "GlobalAveragePool",
            "avgpool",
            &["features"],
            &["pooled"],
            vec![],
        )
        .init(i64_tensor_typed("flat_shape", &[2], &[0, -1]))
        .node(
            "Reshape",
            "reshape",
            &["pooled", "flat_shape"],
            &["flat"],
            vec![],
        )
        .constant(tensor("fc_w", &[C, K], &p.fc_w_t()))
        .node("MatMul", "fc_matmul", &["flat", "fc_w"], &["mm"], vec![])
        .node(
            "Constant",
            "fc_b_const",
            &[],
            &["fc_b"],
            vec![attr_floats("value_floats", &p.fc_b)],
        )
        .node("Add", "fc_add", &["fc_b", "mm"], &["logits"], vec![])
        .node(
            "Softmax",
            "softmax",
            &["logits"],
            &["probs"],
            vec![attr_int("axis", 1)],
        )
        .output("probs", &[-1, K])
        .build()
}

/// ReduceMean, opset 13: axes attribute `[-1, -2]`, keepdims 1 -> Flatten -> Gemm with
/// transB = 0 (weight `[8, 5]`), alpha 0.5, beta 2 and a `[1, 5]` bias; the model's logits are
/// `0.5 * W x + 2 * c`, so the fixture stores `2 * fc_w` and `fc_b / 2`.
pub fn reduce_mean_attr(p: &TinyCnn) -> ModelProto {
    let w2: Vec<f32> = p.fc_w_t().iter().map(|v| v * 2.0).collect();
    let b_half: Vec<f32> = p.fc_b.iter().map(|v| v / 2.0).collect();
    backbone(13, p)
        .node(
            "ReduceMean",
            "mean",
            &["features"],
            &["pooled"],
            vec![attr_ints("axes", &[-1, -2]), attr_int("keepdims", 1)],
        )
        .node("Flatten", "flatten", &["pooled"], &["flat"], vec![])
        .init(tensor("fc.weight", &[C, K], &w2))
        .init(tensor("fc.bias", &[1, K], &b_half))
        .node(
            "Gemm",
            "fc",
            &["flat", "fc.weight", "fc.bias"],
            &["logits"],
            vec![attr_float("alpha", 0.5), attr_float("beta", 2.0)],
        )
        .output("logits", &[-1, K])
        .build()
}

/// ReduceMean, opset 18: axes as a constant second input `[2, 3]`, keepdims 0 -> Gemm (transB = 1)
/// straight on the `[N, 8]` mean.
pub fn reduce_mean_input(p: &TinyCnn) -> ModelProto {
    backbone(18, p)
        .init(i64_tensor_typed("axes", &[2], &[2, 3]))
        .node(
            "ReduceMean",
            "mean",
            &["features", "axes"],
            &["pooled"],
            vec![attr_int("keepdims", 0)],
        )
        .gemm_logits("pooled", p.fc_weight(), Some(p.fc_bias()))
}

/// Keras / TF style: an `AveragePool` whose 8x8 window covers all of `features` -> Flatten ->
/// Gemm (transB = 1).
pub fn average_pool(p: &TinyCnn) -> ModelProto {
    let s = SIZE as i64;
    backbone(13, p)
        .node(
            "AveragePool",
            "avgpool",
            &["features"],
            &["pooled"],
            vec![attr_ints("kernel_shape", &[s, s])],
        )
        .node("Flatten", "flatten", &["pooled"], &["flat"], vec![])
        .gemm_logits("flat", p.fc_weight(), Some(p.fc_bias()))
}

/// No global pooling: `features` -> Flatten -> Gemm over all 512 values.
pub fn no_pooling(p: &TinyCnn) -> ModelProto {
    let n = C * (SIZE * SIZE) as i64;
    backbone(13, p)
        .node("Flatten", "flatten", &["features"], &["flat"], vec![])
        .gemm_logits(
            "flat",
            tensor("fc.weight", &[K, n], &values(5, (K * n) as usize, 0.1)),
            None,
        )
}

/// Two classifier branches, each GlobalAveragePool -> Flatten -> Gemm -> a graph output:
/// `features` (pool `pool_a`) and `features_b` (after a second 1x1 Conv + Relu, pool `pool_b`).
pub fn two_candidates(p: &TinyCnn) -> ModelProto {
    let b = backbone(13, p)
        .init(tensor(
            "conv2.weight",
            &[C, C, 1, 1],
            &values(6, (C * C) as usize, 0.5),
        ))
        .node(
            "Conv",
            "conv2",
            &["features", "conv2.weight"],
            &["conv_b"],
            vec![],
        )
        .node("Relu", "relu2", &["conv_b"], &["features_b"], vec![])
        .init(p.fc_weight())
        .init(p.fc_bias());
    let b = gap_flatten(b, "features", "pool_a", "pooled_a", "flat_a");
    let b = gap_flatten(b, "features_b", "pool_b", "pooled_b", "flat_b");
    let gemm = vec![attr_int("transB", 1)];
    b.node(
        "Gemm",
        "fc_a",
        &["flat_a", "fc.weight", "fc.bias"],
        &["logits_a"],
        gemm.clone(),
    )
    .node(
        "Gemm",
        "fc_b",
        &["flat_b", "fc.weight", "fc.bias"],
        &["logits_b"],
        gemm,
    )
    .output("logits_a", &[-1, K])
    .output("logits_b", &[-1, K])
    .build()
}

/// A squeeze-excite block (GlobalAveragePool -> 1x1 Conv -> Relu -> 1x1 Conv -> Sigmoid -> Mul)
/// before the torchvision-style classifier: two poolings, only the last one feeds the logits.
pub fn squeeze_excite(p: &TinyCnn) -> ModelProto {
    let r = 2;
    backbone(13, p)
        .node(
            "GlobalAveragePool",
            "se_pool",
            &["features"],
            &["se_pooled"],
            vec![],
        )
        .init(tensor(
            "se1.weight",
            &[r, C, 1, 1],
            &values(7, (r * C) as usize, 0.5),
        ))
        .node(
            "Conv",
            "se_reduce",
            &["se_pooled", "se1.weight"],
            &["se1"],
            vec![],
        )
        .node("Relu", "se_relu", &["se1"], &["se1r"], vec![])
        .init(tensor(
            "se2.weight",
            &[C, r, 1, 1],
            &values(8, (r * C) as usize, 0.5),
        ))
        .node(
            "Conv",
            "se_expand",
            &["se1r", "se2.weight"],
            &["se2"],
            vec![],
        )
        .node("Sigmoid", "se_gate", &["se2"], &["gate"], vec![])
        .node(
            "Mul",
            "se_scale",
            &["features", "gate"],
            &["excited"],
            vec![],
        )
        .node(
            "GlobalAveragePool",
            "avgpool",
            &["excited"],
            &["pooled"],
            vec![],
        )
        .node("Flatten", "flatten", &["pooled"], &["flat"], vec![])
        .gemm_logits("flat", p.fc_weight(), Some(p.fc_bias()))
}

/// The shared backbone followed by one MobileNetV2 inverted residual block (1x1 expand 8->16,
/// ReLU6, depthwise 3x3, ReLU6, 1x1 project 16->8, residual add), then the torchvision-style
/// classifier: the ops a MobileNet backbone hands tract, in a model small enough to fuzz.
pub fn inverted_residual(p: &TinyCnn) -> ModelProto {
    let e = 2 * C;
    let pointwise = |b: Builder, name: &str, x: &str, y: &str, [out, inp]: [i64; 2], seed| {
        let (w, bias) = (format!("{name}.weight"), format!("{name}.bias"));
        b.init(tensor(
            &w,
            &[out, inp, 1, 1],
            &values(seed, (out * inp) as usize, 0.5),
        ))
        .init(tensor(&bias, &[out], &values(seed + 1, out as usize, 0.1)))
        .node("Conv", name, &[x, &w, &bias], &[y], vec![])
    };
    let relu6 = |b: Builder, x: &str, y: &str| {
        b.node(
            "Clip",
            &format!("{x}_relu6"),
            &[x, "lo", "hi"],
            &[y],
            vec![],
        )
    };
    let b = backbone(13, p)
        .init(tensor("lo", &[], &[0.0f32]))
        .init(tensor("hi", &[], &[6.0f32]));
    let b = pointwise(b, "expand", "features", "expanded", [e, C], 11);
    let b = relu6(b, "expanded", "expanded6")
        .init(tensor(
            "dw.weight",
            &[e, 1, 3, 3],
            &values(13, (e * 9) as usize, 0.5),
        ))
        .init(tensor("dw.bias", &[e], &values(14, e as usize, 0.1)))
        .node(
            "Conv",
            "depthwise",
            &["expanded6", "dw.weight", "dw.bias"],
            &["dw"],
            vec![
                attr_int("group", e),
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("pads", &[1, 1, 1, 1]),
            ],
        );
    let b = pointwise(
        relu6(b, "dw", "dw6"),
        "project",
        "dw6",
        "projected",
        [C, e],
        15,
    )
    .node(
        "Add",
        "residual",
        &["features", "projected"],
        &["block"],
        vec![],
    );
    gap_flatten(b, "block", "avgpool", "pooled", "flat").gemm_logits(
        "flat",
        p.fc_weight(),
        Some(p.fc_bias()),
    )
}

/// A head with an activation before its dense layer: GlobalAveragePool -> Relu -> Flatten -> Gemm.
pub fn relu_after_pooling(p: &TinyCnn) -> ModelProto {
    backbone(13, p)
        .node(
            "GlobalAveragePool",
            "avgpool",
            &["features"],
            &["pooled"],
            vec![],
        )
        .node("Relu", "pooled_relu", &["pooled"], &["pooled_r"], vec![])
        .node("Flatten", "flatten", &["pooled_r"], &["flat"], vec![])
        .gemm_logits("flat", p.fc_weight(), None)
}

/// The torchvision form with an int8 head weight (a quantized export).
pub fn int8_head(p: &TinyCnn) -> ModelProto {
    let q: Vec<i8> = p.fc_w.iter().map(|v| (v * 100.0) as i8).collect();
    gap_flatten(backbone(13, p), "features", "avgpool", "pooled", "flat").gemm_logits(
        "flat",
        tensor("fc.weight", &[K, C], &q),
        None,
    )
}

/// The torchvision form with a head weight of the wrong width: `[5, 7]` against 8 channels.
pub fn bad_head_shape(p: &TinyCnn) -> ModelProto {
    gap_flatten(backbone(13, p), "features", "avgpool", "pooled", "flat").gemm_logits(
        "flat",
        tensor("fc.weight", &[K, C - 1], &p.fc_w[..(K * (C - 1)) as usize]),
        None,
    )
}

/// A rank-3 input `[N, 3, 64]` reshaped to `[N, 3, 8, 8]` before the torchvision-style network.
pub fn rank3_input(p: &TinyCnn) -> ModelProto {
    let mut m = torchvision(p);
    let g = m.graph.as_mut().expect("fixture graph");
    g.input[0] = value_info(
        "input_flat",
        &[-1, IN_CHANNELS as i64, (SIZE * SIZE) as i64],
    );
    let s = SIZE as i64;
    g.initializer.push(i64_tensor_typed(
        "image_shape",
        &[4],
        &[0, IN_CHANNELS as i64, s, s],
    ));
    g.node.insert(
        0,
        node(
            "Reshape",
            "to_image",
            &["input_flat", "image_shape"],
            &["input"],
            vec![],
        ),
    );
    m
}
