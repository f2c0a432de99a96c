//! `napctl::onnx` inspect and split: on the shared MobileNetV2 (when the shared data is there) and
//! on tiny models built in code, with every result checked by running tract and by independent
//! arithmetic, and every error case named.

use nap_runtime::bundle::HeadForm;
use nap_runtime::detector::Detector;
use nap_test_support::data::shared_data_file;
use nap_test_support::onnx::{self as fixture, CLASSES, FEATURES, IN_CHANNELS, SIZE, TinyCnn};
use nap_test_support::reference::{gemv, max_rel_diff};
use napctl::onnx::{
    Dim, HeadStatus, OnnxError, PoolKind, SplitModel, decode, inspect, read_model, split,
};
use proptest::prelude::*;
use std::time::Instant;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

const MOBILENET: &str = "mobilenetv2/mobilenet_v2_1.0_224.onnx";

/// Runs `model` in tract on one input of shape `shape`, returning the named outputs (all outputs
/// of the graph when `outputs` is empty).
fn run_tract(model: &ModelProto, shape: &[usize], input: &[f32], outputs: &[&str]) -> TVec<Tensor> {
    let mut m = tract_onnx::onnx()
        .model_for_proto_model(model)
        .expect("tract parses the model")
        .with_input_fact(0, f32::fact(shape).into())
        .expect("input fact");
    if !outputs.is_empty() {
        m.select_outputs_by_name(outputs).expect("outputs exist");
    }
    let input = tract_ndarray::ArrayD::from_shape_vec(shape, input.to_vec()).unwrap();
    m.into_optimized()
        .expect("optimizes")
        .into_runnable()
        .expect("runnable")
        .run(tvec!(Tensor::from(input).into()))
        .expect("runs")
        .into_iter()
        .map(|t| t.into_tensor())
        .collect()
}

/// The values of an f32 tensor.
fn f32s(t: &Tensor) -> &[f32] {
    t.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap()
}

/// Per-channel mean over H and W of a `[1, C, H, W]` tensor.
fn mean_pool(a: &Tensor) -> Vec<f32> {
    let shape = a.shape();
    assert_eq!(shape.len(), 4);
    let (c, hw) = (shape[1], shape[2] * shape[3]);
    let data = f32s(a);
    (0..c)
        .map(|ch| {
            data[ch * hw..(ch + 1) * hw]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                / hw as f64
        })
        .map(|m| m as f32)
        .collect()
}

/// The head applied to the mean-pooled backbone output.
fn head_logits(s: &SplitModel, pre_pool: &Tensor) -> Vec<f32> {
    gemv(&s.head.weights, &s.head.bias, &mean_pool(pre_pool))
}

fn ops(model: &ModelProto) -> Vec<&str> {
    model
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type.as_str())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The shared MobileNetV2.

#[test]
fn mobilenet_v2_splits_at_conv_1_with_its_conv_head() {
    let Some(path) = shared_data_file(MOBILENET) else {
        return;
    };
    let t = Instant::now();
    let model = read_model(&path).expect("the shared model decodes");
    let info = inspect(&model).expect("inspect");
    let s = split(&model, None).expect("split finds the cut on its own");
    eprintln!("read + inspect + split: {:?}", t.elapsed());
    eprintln!("{info}");

    assert_eq!(info.selected, Some(0));
    assert_eq!(s.pre_pool, "MobilenetV2/Conv_1/Relu6");
    assert_eq!(s.pool_kind, PoolKind::GlobalAveragePool);
    assert_eq!(s.head.form, HeadForm::Conv1x1);
    assert_eq!(s.input_name, "input");
    // K and C as the head weights in the model say: 1000 x 1280 (the TF-slim background class is
    // not in this model: its head weight is [1000, 1280, 1, 1]).
    assert_eq!((s.head.classes, s.head.features), (1000, 1280));
    assert_eq!(s.head.weights.len(), 1000 * 1280);
    assert_eq!(s.head.bias.len(), 1000);
    assert_eq!(
        s.pre_pool_shape.as_ref().map(|d| d[1..].to_vec()),
        Some(vec![Dim::Fixed(1280), Dim::Fixed(7), Dim::Fixed(7)])
    );

    // The backbone ends at the pre-pool tensor: no pooling, no head, nothing unused.
    let backbone = decode(&s.backbone_bytes()).expect("backbone bytes decode");
    let g = backbone.graph.as_ref().unwrap();
    assert_eq!(g.output.len(), 1);
    assert_eq!(g.output[0].name, s.pre_pool);
    assert!(!ops(&backbone).contains(&"GlobalAveragePool"));
    assert!(g.node.len() < model.graph.as_ref().unwrap().node.len());
    let used: std::collections::HashSet<&str> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    assert!(g.initializer.iter().all(|i| used.contains(i.name.as_str())));

    // Run the backbone and the original on one fixed input.
    let shape = [1, 3, 224, 224];
    let input = fixture::values(42, shape.iter().product(), 1.0);
    let t = Instant::now();
    let out = run_tract(&backbone, &shape, &input, &[]);
    eprintln!(
        "backbone in tract (load + optimize + run): {:?}",
        t.elapsed()
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].shape(), &[1, 1280, 7, 7]);

    let t = Instant::now();
    let both = run_tract(&model, &shape, &input, &[&s.pre_pool, &s.head.logits]);
    eprintln!(
        "original in tract (load + optimize + run): {:?}",
        t.elapsed()
    );
    let reference = f32s(&both[1]);
    assert_eq!(
        reference.len(),
        1000,
        "the original's {} output",
        s.head.logits
    );
    assert_eq!(s.head.logits, "logits");

    let ours = head_logits(&s, &out[0]);
    let d = max_rel_diff(&ours, reference);
    eprintln!("head(mean(backbone)) vs original logits: max rel diff {d:e}");
    assert!(d < 1e-4, "relative difference {d}");
    // The backbone is the original's pre-pool tensor, bit for bit or nearly.
    let a = f32s(&out[0]);
    assert!(max_rel_diff(a, f32s(&both[0])) < 1e-6);
}

// ---------------------------------------------------------------------------------------------
// The fixtures.

const SHAPE: [usize; 4] = [1, IN_CHANNELS, SIZE, SIZE];

fn fixed_input() -> Vec<f32> {
    fixture::values(99, SHAPE.iter().product(), 1.0)
}

/// The torchvision fixture computed by plain loops: Conv 3x3 pad 1 -> Relu -> mean -> Gemm.
fn reference_logits(p: &TinyCnn, x: &[f32]) -> Vec<f32> {
    let n = SIZE as isize;
    let mut pooled = [0f64; FEATURES];
    for (o, pooled) in pooled.iter_mut().enumerate() {
        for y in 0..n {
            for xx in 0..n {
                let mut acc = p.conv_b[o] as f64;
                for i in 0..IN_CHANNELS {
                    for ky in 0..3isize {
                        for kx in 0..3isize {
                            let (sy, sx) = (y + ky - 1, xx + kx - 1);
                            if sy < 0 || sy >= n || sx < 0 || sx >= n {
                                continue;
                            }
                            let w = p.conv_w
                                [((o * IN_CHANNELS + i) * 3 + ky as usize) * 3 + kx as usize];
                            let v = x[(i * SIZE + sy as usize) * SIZE + sx as usize];
                            acc += w as f64 * v as f64;
                        }
                    }
                }
                *pooled += acc.max(0.0);
            }
        }
        *pooled /= (SIZE * SIZE) as f64;
    }
    (0..CLASSES)
        .map(|k| {
            let dot: f64 = (0..FEATURES)
                .map(|c| p.fc_w[k * FEATURES + c] as f64 * pooled[c])
                .sum();
            (dot + p.fc_b[k] as f64) as f32
        })
        .collect()
}

/// Splits `model`, checks the head against the fixture weights and the result against the
/// original model in tract; gives the split.
fn check_fixture(model: &ModelProto, form: HeadForm, pre_pool: &str, logits: &str) -> SplitModel {
    let p = TinyCnn::default();
    let s = split(model, None).expect("split");
    assert_eq!(s.pre_pool, pre_pool);
    assert_eq!(s.head.form, form);
    assert_eq!((s.head.features, s.head.classes), (FEATURES, CLASSES));
    assert_eq!(s.head.logits, logits);
    assert!(
        max_rel_diff(&s.head.weights, &p.fc_w) < 1e-6,
        "{:?}",
        s.head.weights
    );
    assert!(
        max_rel_diff(&s.head.bias, &p.fc_b) < 1e-6,
        "{:?}",
        s.head.bias
    );
    assert_eq!(s.input_name, "input");

    let x = fixed_input();
    let backbone = decode(&s.backbone_bytes()).expect("backbone decodes");
    let out = run_tract(&backbone, &SHAPE, &x, &[]);
    assert_eq!(out[0].shape(), &[1, FEATURES, SIZE, SIZE]);
    let ours = head_logits(&s, &out[0]);
    let original = run_tract(model, &SHAPE, &x, &[logits]);
    let d = max_rel_diff(&ours, f32s(&original[0]));
    assert!(
        d < 1e-5,
        "{form:?}: head(mean(backbone)) vs original logits differ by {d}"
    );
    s
}

#[test]
fn torchvision_fixture_matches_plain_loops() {
    let p = TinyCnn::default();
    let model = fixture::torchvision(&p);
    let s = check_fixture(&model, HeadForm::Gemm, "features", "logits");
    let out = run_tract(&s.backbone, &SHAPE, &fixed_input(), &[]);
    let ours = head_logits(&s, &out[0]);
    let independent = reference_logits(&p, &fixed_input());
    let d = ours
        .iter()
        .zip(&independent)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(d < 1e-5, "tract backbone + head vs plain loops: {d}");
}

#[test]
fn torchvision_backbone_is_pruned_to_conv_and_relu() {
    let s = split(&fixture::torchvision(&TinyCnn::default()), None).unwrap();
    let g = s.backbone.graph.as_ref().unwrap();
    assert_eq!(ops(&s.backbone), ["Conv", "Relu"]);
    let inits: Vec<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(inits, ["conv.weight", "conv.bias"]);
    assert_eq!(g.input.len(), 1);
    assert_eq!(g.output.len(), 1);
    assert_eq!(g.output[0].name, "features");
    let n = FEATURES as i64;
    let s8 = SIZE as i64;
    assert_eq!(
        s.pre_pool_shape,
        Some(vec![
            Dim::Symbol("N".into()),
            Dim::Fixed(n),
            Dim::Fixed(s8),
            Dim::Fixed(s8)
        ])
    );
    assert_eq!(s.pool_node, "avgpool");
    assert!(
        s.backbone
            .metadata_props
            .iter()
            .any(|e| e.key == "napctl.split")
    );
}

#[test]
fn conv1x1_head_fixture() {
    check_fixture(
        &fixture::conv_head(&TinyCnn::default()),
        HeadForm::Conv1x1,
        "features",
        "logits",
    );
}

#[test]
fn matmul_add_fixture_with_constant_nodes() {
    let model = fixture::matmul_add(&TinyCnn::default());
    check_fixture(&model, HeadForm::MatMulAdd, "features", "logits");
    let info = inspect(&model).unwrap();
    match &info.candidates[0].head {
        HeadStatus::Supported { output, .. } => assert_eq!(output.as_deref(), Some("probs")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reduce_mean_attribute_axes_opset13() {
    let model = fixture::reduce_mean_attr(&TinyCnn::default());
    let s = check_fixture(&model, HeadForm::Gemm, "features", "logits");
    assert_eq!(s.pool_kind, PoolKind::ReduceMean { keepdims: true });
}

#[test]
fn reduce_mean_input_axes_opset18() {
    let model = fixture::reduce_mean_input(&TinyCnn::default());
    let s = check_fixture(&model, HeadForm::Gemm, "features", "logits");
    assert_eq!(s.pool_kind, PoolKind::ReduceMean { keepdims: false });
}

#[test]
fn full_window_average_pool_counts_as_global() {
    let model = fixture::average_pool(&TinyCnn::default());
    let s = check_fixture(&model, HeadForm::Gemm, "features", "logits");
    assert_eq!(s.pool_kind, PoolKind::AveragePool);
}

#[test]
fn squeeze_excite_pooling_is_not_the_classifier() {
    let model = fixture::squeeze_excite(&TinyCnn::default());
    let info = inspect(&model).unwrap();
    assert_eq!(info.candidates.len(), 2);
    assert_eq!(info.selected, Some(1));
    let s = check_fixture(&model, HeadForm::Gemm, "excited", "logits");
    // The squeeze-excite pooling feeds the pre-pool tensor, so it stays in the backbone.
    assert_eq!(
        ops(&s.backbone)
            .iter()
            .filter(|o| **o == "GlobalAveragePool")
            .count(),
        1
    );
}

#[test]
fn layer_selects_by_tensor_or_pooling_node_name() {
    let model = fixture::two_candidates(&TinyCnn::default());
    let by_tensor = split(&model, Some("features_b")).unwrap();
    assert_eq!(by_tensor.pre_pool, "features_b");
    assert_eq!(by_tensor.head.logits, "logits_b");
    assert!(ops(&by_tensor.backbone).contains(&"Conv"));
    assert_eq!(by_tensor.backbone.graph.as_ref().unwrap().node.len(), 4);
    let by_node = split(&model, Some("pool_a")).unwrap();
    assert_eq!(by_node.pre_pool, "features");
    assert_eq!(ops(&by_node.backbone), ["Conv", "Relu"]);
}

#[test]
fn inspect_reports_inputs_outputs_and_candidates() {
    let model = fixture::conv_head(&TinyCnn::default());
    let info = inspect(&model).unwrap();
    assert_eq!(info.opset, 13);
    assert_eq!(info.inputs.len(), 1);
    assert_eq!(info.inputs[0].name, "input");
    assert_eq!(info.inputs[0].elem_type, "FLOAT");
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(
        json["inputs"][0]["shape"],
        serde_json::json!(["N", 3, 8, 8])
    );
    assert_eq!(json["outputs"][1]["name"], "probs");
    assert_eq!(json["candidates"][0]["pre_pool"], "features");
    assert_eq!(json["candidates"][0]["head"]["status"], "supported");
    assert_eq!(json["candidates"][0]["head"]["form"], "Conv1x1");
    assert_eq!(json["candidates"][0]["head"]["classes"], CLASSES);
    let text = info.to_string();
    assert!(
        text.contains("* pre-pool features [N, 8, 8, 8] -> GlobalAveragePool"),
        "{text}"
    );
    assert!(text.contains("Conv1x1, 8 features -> 5 classes"), "{text}");

    let ambiguous = inspect(&fixture::two_candidates(&TinyCnn::default())).unwrap();
    assert_eq!(ambiguous.selected, None);
    assert!(ambiguous.to_string().contains("--layer"));
}

// ---------------------------------------------------------------------------------------------
// Errors: each case its own variant, with a message naming the problem.

#[test]
fn not_onnx() {
    for (bytes, says) in [
        (&b"\xff\xff\xff\xff garbage"[..], "protobuf decoding failed"),
        (&b""[..], "no graph"),
    ] {
        let e = decode(bytes).unwrap_err();
        assert!(matches!(e, OnnxError::NotOnnx { .. }), "{e:?}");
        assert!(e.to_string().contains(says), "{e}");
    }
    let empty = ModelProto {
        graph: Some(Default::default()),
        ..Default::default()
    };
    let e = split(&empty, None).unwrap_err();
    assert!(matches!(e, OnnxError::NotOnnx { .. }), "{e:?}");
    assert!(e.to_string().contains("no nodes"), "{e}");
    let e = read_model("/nonexistent/model.onnx").unwrap_err();
    assert!(matches!(e, OnnxError::Io { .. }), "{e:?}");
}

#[test]
fn no_pooling() {
    let e = split(&fixture::no_pooling(&TinyCnn::default()), None).unwrap_err();
    assert!(matches!(e, OnnxError::NoPooling), "{e:?}");
    assert!(e.to_string().contains("no global pooling"), "{e}");
}

#[test]
fn several_candidates() {
    let e = split(&fixture::two_candidates(&TinyCnn::default()), None).unwrap_err();
    assert!(matches!(e, OnnxError::AmbiguousPooling { .. }), "{e:?}");
    let msg = e.to_string();
    for needle in [
        "\"features\"",
        "\"features_b\"",
        "pool_a",
        "pool_b",
        "--layer NAME",
    ] {
        assert!(msg.contains(needle), "{needle} not in: {msg}");
    }
}

#[test]
fn layer_names_no_candidate() {
    let e = split(&fixture::two_candidates(&TinyCnn::default()), Some("conv")).unwrap_err();
    assert!(matches!(e, OnnxError::UnknownLayer { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("\"conv\"") && msg.contains("features_b"),
        "{msg}"
    );
}

/// torch's `x.view(x.size(0), -1)` only reshapes: the dense layer follows the pooling.
#[test]
fn a_flatten_computed_from_the_shape_is_no_head_graph() {
    let s = check_fixture(
        &fixture::view_flatten(&TinyCnn::default()),
        HeadForm::Gemm,
        "features",
        "logits",
    );
    assert_eq!(s.head.neck, None);
}

#[test]
fn an_activation_after_pooling_makes_a_head_graph() {
    let s = split(&fixture::relu_after_pooling(&TinyCnn::default()), None).unwrap();
    let neck = s.head.neck.as_ref().expect("a head graph");
    assert_eq!(neck.spec.ops, ["Relu", "Flatten"]);
    assert_eq!(
        (neck.channels, s.head.features, s.head.classes),
        (FEATURES, FEATURES, CLASSES)
    );
    let info = inspect(&fixture::relu_after_pooling(&TinyCnn::default())).unwrap();
    assert!(
        matches!(&info.candidates[0].head, HeadStatus::Supported { head_graph: Some(ops), .. } if ops[0] == "Relu")
    );
}

#[test]
fn unsupported_head_names_the_node() {
    let model = nap_test_support::heads::head_with_unknown_op();
    let e = split(&model, None).unwrap_err();
    assert!(matches!(e, OnnxError::HeadOp { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("NapUnknownActivation") && msg.contains("mystery_act"),
        "{msg}"
    );
    // inspect still works and says the same.
    let info = inspect(&model).unwrap();
    assert!(
        matches!(&info.candidates[0].head, HeadStatus::Unsupported { reason } if reason.contains("mystery_act"))
    );
}

#[test]
fn non_float_head_weights() {
    let e = split(&fixture::int8_head(&TinyCnn::default()), None).unwrap_err();
    assert!(matches!(e, OnnxError::HeadData { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("fc.weight") && msg.contains("INT8"), "{msg}");
}

#[test]
fn head_weights_of_wrong_shape() {
    let e = split(&fixture::bad_head_shape(&TinyCnn::default()), None).unwrap_err();
    assert!(matches!(e, OnnxError::HeadShape { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("fc.weight") && msg.contains("[5, 7]") && msg.contains("C = 8"),
        "{msg}"
    );
}

#[test]
fn input_rank_not_4() {
    let e = split(&fixture::rank3_input(&TinyCnn::default()), None).unwrap_err();
    assert!(matches!(e, OnnxError::InputRank { rank: 3, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("input_flat") && msg.contains("rank 3"),
        "{msg}"
    );
}

/// Two damaged backbones the `bundle_onnx` fuzz target found: a graph output that names no
/// tensor (tract panics indexing its map of names while reading it) and a graph without
/// outputs (tract's `output_fact` panics on it). Loading either is an error that says why.
#[test]
fn damaged_backbones_are_load_errors_not_panics() {
    let bundle = fixture::float_bundle(&fixture::torchvision(&TinyCnn::default()), "fixture");
    assert!(Detector::new(&bundle).is_ok());
    let damaged = |damage: fn(&mut tract_onnx::pb::GraphProto)| {
        let mut backbone: ModelProto = prost::Message::decode(&bundle.backbone[..]).unwrap();
        damage(backbone.graph.as_mut().unwrap());
        let mut bundle = bundle.clone();
        bundle.backbone = prost::Message::encode_to_vec(&backbone);
        Detector::new(&bundle)
            .err()
            .expect("a damaged backbone loads")
            .to_string()
    };
    let e = damaged(|g| g.output[0].name = "missing".into());
    assert!(
        e.contains("tract failed while reading the backbone") && e.contains("no entry found"),
        "{e}"
    );
    let e = damaged(|g| g.output.clear());
    assert!(
        e.contains("one output, the pre-pool tensor") && e.contains("0 outputs"),
        "{e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Corrupted model bytes give a model or an error, never a panic, from decode, inspect and
    /// split alike.
    #[test]
    fn corrupted_models_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = prost::Message::encode_to_vec(&fixture::conv_head(&TinyCnn::default()));
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(model) = decode(&bytes) {
            let _ = inspect(&model);
            if let Ok(s) = split(&model, None) {
                prop_assert_eq!(s.head.weights.len(), s.head.features * s.head.classes);
                prop_assert_eq!(s.head.bias.len(), s.head.classes);
            }
        }
    }
}
