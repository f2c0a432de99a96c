//! Heads with more than one layer after global pooling: torchvision's MobileNetV3-Large,
//! ConvNeXt-Tiny, ResNet-50 and EfficientNet-B0 heads, built in code with random weights, split
//! into bundles whose detector logits must equal tract running the whole original graph; methods
//! that shape the pooled feature rerun the head graph, DICE masks its last dense layer; and each
//! head napctl cannot cut is refused naming the node, exit 1.

use nap_core::score::Method;
use nap_runtime::bundle::{Bundle, DiceSpec, HeadForm, HeadStorage};
use nap_runtime::detector::Detector;
use nap_test_support::cli::{Scratch, assert_fails_with, assert_ok, run, stdout, workspace_binary};
use nap_test_support::heads::{self, frame_input, run_whole};
use nap_test_support::onnx::{float_bundle, two_candidates};
use nap_test_support::reference::{gemv, max_rel_diff};
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

/// `log(sum(exp(x)))`, in f64.
fn logsumexp(x: &[f32]) -> f32 {
    let max = x.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
    (max + x.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln()) as f32
}

/// The bundle's head graph run by tract on its own, straight from the bundle's bytes.
fn run_neck(bundle: &Bundle, pooled: &[f32]) -> Vec<f32> {
    let spec = bundle.manifest.neck.as_ref().expect("a head graph");
    let c = pooled.len();
    let shape: Vec<usize> = if spec.keeps_dims {
        vec![1, c, 1, 1]
    } else {
        vec![1, c]
    };
    let input = tract_ndarray::ArrayD::from_shape_vec(shape.clone(), pooled.to_vec()).unwrap();
    let out = tract_onnx::onnx()
        .model_for_read(&mut &bundle.neck[..])
        .unwrap()
        .with_input_fact(0, f32::fact(&shape).into())
        .unwrap()
        .into_runnable()
        .unwrap()
        .run(tvec!(Tensor::from(input).into()))
        .unwrap();
    out[0]
        .try_as_plain_ram()
        .unwrap()
        .as_slice::<f32>()
        .unwrap()
        .to_vec()
}

struct Structure {
    name: &'static str,
    model: fn() -> ModelProto,
    /// The head graph's ops, `None` for one dense layer after the pooling.
    head_graph: Option<&'static [&'static str]>,
    form: HeadForm,
    /// Pooled channels C and the dense layer's input D.
    pooled: u32,
    features: u32,
}

const STRUCTURES: [Structure; 5] = [
    Structure {
        name: "mobilenet_v3_large",
        model: heads::mobilenet_v3_large,
        head_graph: Some(&["Flatten", "Gemm", "HardSwish", "Dropout"]),
        form: HeadForm::Gemm,
        pooled: 960,
        features: 1280,
    },
    Structure {
        name: "convnext_tiny",
        model: heads::convnext_tiny,
        head_graph: Some(&["Transpose", "LayerNormalization", "Transpose", "Flatten"]),
        form: HeadForm::Gemm,
        pooled: 768,
        features: 768,
    },
    Structure {
        name: "convnext_tiny_decomposed",
        model: heads::convnext_tiny_decomposed,
        head_graph: Some(&[
            "Transpose",
            "ReduceMean",
            "Sub",
            "Pow",
            "ReduceMean",
            "Add",
            "Sqrt",
            "Div",
            "Mul",
            "Add",
            "Transpose",
            "Flatten",
        ]),
        form: HeadForm::Gemm,
        pooled: 768,
        features: 768,
    },
    Structure {
        name: "resnet50",
        model: heads::resnet50,
        head_graph: None,
        form: HeadForm::Gemm,
        pooled: 2048,
        features: 2048,
    },
    Structure {
        name: "efficientnet_b0",
        model: heads::efficientnet_b0,
        head_graph: None,
        form: HeadForm::Gemm,
        pooled: 1280,
        features: 1280,
    },
];

#[test]
fn torchvision_heads_split_and_match_tract_on_the_whole_graph() {
    for s in &STRUCTURES {
        let model = (s.model)();
        let bundle = float_bundle(&model, s.name);
        let m = &bundle.manifest;
        let ops = m.neck.as_ref().map(|n| n.ops.clone());
        assert_eq!(
            ops.as_deref(),
            s.head_graph
                .map(|o| o.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .as_deref(),
            "{}: {}",
            s.name,
            m.head_summary()
        );
        assert_eq!(m.head.form, s.form, "{}", s.name);
        assert_eq!(
            (m.pre_pool.channels, m.head.features, m.head.classes),
            (s.pooled, s.features, 1000),
            "{}",
            s.name
        );
        assert_eq!(m.neck.is_some(), !bundle.neck.is_empty());
        let read = Bundle::from_bytes(&bundle.to_bytes().unwrap()).unwrap();
        assert_eq!(read, bundle, "{}: the bundle round-trips", s.name);

        let detector = Detector::new(&read).unwrap();
        let mut worker = detector.worker().unwrap();
        let mut worst = 0f32;
        for seed in 1..=3 {
            let input = frame_input(seed);
            let want = run_whole(&model, &input);
            detector.analyze(&mut worker, input).unwrap();
            worst = worst.max(max_rel_diff(worker.logits(), &want));
        }
        eprintln!(
            "{}: {} | worst relative difference {worst:.2e}",
            s.name,
            m.head_summary()
        );
        assert!(worst <= 1e-5, "{}: {worst}", s.name);
    }
}

/// Quantizing stores a head graph's dense layers as int8 rows, in each form an exporter writes
/// (1x1 Conv, MatMul and Gemm with `[in, out]` weights), and the runtime computes them from the
/// rows: its head graph equals tract running the stored graph (to the i16 coding of each layer's
/// input), and stays close to the float one.
#[test]
fn quantized_head_graph_dense_layers_run_from_int8_rows() {
    use nap_runtime::neck::Neck;
    use napctl::bundle::quantize::{Options, RangeMethod, Target, quantize};
    let float = float_bundle(&heads::dense_forms(), "dense_forms");
    let options = Options {
        target: Target::Int8Weights,
        ranges: RangeMethod::Minmax,
        per_channel: true,
    };
    let quantized = quantize(&float, &[], options, || ()).unwrap().bundle;
    assert!(
        quantized.neck.len() * 2 < float.neck.len(),
        "int8 rows shrink the head graph: {} -> {} bytes",
        float.neck.len(),
        quantized.neck.len()
    );
    let quantized = Bundle::from_bytes(&quantized.to_bytes().unwrap()).unwrap();
    let float_neck = Neck::load(&float).unwrap().unwrap();
    let neck = Neck::load(&quantized).unwrap().unwrap();
    assert_eq!(float_neck.int8_layers(), 0, "f32 weights stay with tract");
    assert_eq!(neck.int8_layers(), 3, "the Conv, the MatMul and the Gemm");

    for seed in 1..=3 {
        let pooled: Vec<f32> =
            nap_test_support::onnx::values(seed, heads::DENSE_FORMS_FEATURES, 1.0)
                .iter()
                .map(|v| v.abs())
                .collect();
        let mut out = vec![0.0; neck.width()];
        neck.run(&pooled, &mut out).unwrap();
        let stored = run_neck(&quantized, &pooled);
        // Each int8-row layer takes its input as i16 codes, as the last dense layer does.
        let diff = max_rel_diff(&out, &stored);
        assert!(diff <= 1e-4, "seed {seed}: {diff:e} from the stored graph");
        let float_out = run_neck(&float, &pooled);
        let diff = max_rel_diff(&out, &float_out);
        assert!(
            (1e-5..0.05).contains(&diff),
            "seed {seed}: int8 rows are {diff:e} from float"
        );
    }
}

/// ReAct clips the pooled feature and runs the whole head again: with a head graph, the graph
/// takes the clipped feature.
#[test]
fn shaping_methods_feed_the_head_graph_and_dice_masks_its_last_dense_layer() {
    let model = heads::mobilenet_v3_large();
    let mut bundle = float_bundle(&model, "mobilenet_v3_large");
    let detector = Detector::new(&bundle).unwrap();
    let mut worker = detector.worker().unwrap();
    detector.analyze(&mut worker, frame_input(7)).unwrap();
    let pooled = worker.pooled().to_vec();
    let dense_input = worker.dense_input().to_vec();
    assert_eq!((pooled.len(), dense_input.len()), (960, 1280));
    assert_eq!(run_neck(&bundle, &pooled), dense_input);

    let mut sorted = pooled.clone();
    sorted.sort_by(f32::total_cmp);
    let clip = sorted[sorted.len() / 2];
    bundle.manifest.scorer.params.react_clip = Some(clip);
    // DICE's mean is over the dense layer's input: 1280 values here, not the 960 pooled ones.
    bundle.manifest.dice = Some(DiceSpec {
        mean: dense_input.iter().map(|x| x.abs() + 0.1).collect(),
        sparsity: 70.0,
    });
    bundle.manifest.scorer.method = Method::Dice;
    let detector = Detector::new(&bundle).unwrap();
    let mut worker = detector.worker().unwrap();
    let analysis = detector.analyze(&mut worker, frame_input(7)).unwrap();

    let clipped: Vec<f32> = pooled.iter().map(|&x| x.min(clip)).collect();
    let react_logits = gemv(
        &bundle.head_weights,
        &bundle.head_bias,
        &run_neck(&bundle, &clipped),
    );
    let react = detector
        .score(&mut worker, analysis.nap, Method::React)
        .unwrap();
    let want = logsumexp(&react_logits);
    assert!(
        (react.value - want).abs() <= 1e-5 * want.abs(),
        "{} vs {want}",
        react.value
    );
    assert!(
        max_rel_diff(&react_logits, worker.logits()) > 1e-3,
        "clipping at the median changes the logits"
    );

    let sparse = bundle.dice_weights().unwrap();
    let want = logsumexp(&gemv(&sparse, &bundle.head_bias, &dense_input));
    assert!(
        (analysis.score - want).abs() <= 1e-5 * want.abs(),
        "DICE {} vs {want}",
        analysis.score
    );
    // A mean of the pooled feature's length does not fit this head.
    bundle.manifest.dice.as_mut().unwrap().mean = pooled;
    assert!(bundle.validate().is_err());
}

fn napctl(args: &[&str]) -> std::process::Output {
    run(workspace_binary("napctl", "napctl"), args)
}

#[test]
fn inspect_and_split_name_the_head_graph() {
    let dir = Scratch::new("heads-cli");
    let path = dir.write(
        "mnv3.onnx",
        &prost::Message::encode_to_vec(&heads::mobilenet_v3_large()),
    );
    let out = napctl(&["inspect", &path]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("head graph: Flatten -> Gemm -> HardSwish -> Dropout (960 -> 1280"),
        "{text}"
    );
    let out = napctl(&["inspect", "--json", &path]);
    assert_ok(&out);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let head = &json["candidates"][0]["head"];
    assert_eq!(head["head_graph"][2], "HardSwish", "{head}");
    assert_eq!(
        (head["pooled"].as_u64(), head["features"].as_u64()),
        (Some(960), Some(1280))
    );

    let bundle = dir.path("mnv3.nap");
    let out = napctl(&["split", &path, "-o", &bundle]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("head graph Flatten -> Gemm -> HardSwish -> Dropout (960 -> 1280, run by tract), then head Gemm 1280 -> 1000 classes"),
        "{}",
        stdout(&out)
    );
    let out = napctl(&["inspect", &bundle]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("head graph Flatten -> Gemm"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn heads_napctl_cannot_cut_are_refused_naming_the_node() {
    let dir = Scratch::new("heads-refused");
    let cases: [(&str, ModelProto, &str); 4] = [
        (
            "unknown-op",
            heads::head_with_unknown_op(),
            "\"mystery_act\" is NapUnknownActivation of domain \"com.example\", an op tract cannot run",
        ),
        (
            "no-output",
            heads::head_not_reaching_output(),
            "reach no graph output",
        ),
        (
            "not-flat",
            heads::pooled_not_flat(),
            "\"bad_reshape\" makes the pooled feature [1, 8, 2], expected [N, 16]",
        ),
        (
            "two-poolings",
            two_candidates(&Default::default()),
            "pass --layer NAME",
        ),
    ];
    for (name, model, needle) in cases {
        let path = dir.write(
            &format!("{name}.onnx"),
            &prost::Message::encode_to_vec(&model),
        );
        let out = napctl(&["split", &path, "-o", &dir.path(&format!("{name}.nap"))]);
        assert_fails_with(&out, 1, needle);
        eprintln!("{name}: {}", nap_test_support::cli::stderr(&out).trim());
    }
}

/// `n` PNG frames in `dir`: smooth colour gradients, or (`noisy`) pixel noise.
fn write_frames(dir: &std::path::Path, n: u32, noisy: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let mut state = 0x9e37_79b9_u32.wrapping_mul(i + 1) | u32::from(noisy);
        let img = image::RgbImage::from_fn(32, 32, |x, y| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (state >> 24) as u8;
            if noisy {
                image::Rgb([noise, noise.wrapping_mul(3), noise.wrapping_add(90)])
            } else {
                let (x, y) = (x as u8 * 6, y as u8 * 6);
                image::Rgb([x.wrapping_add(i as u8 * 17), y, 128u8.wrapping_sub(x / 2)])
            }
        });
        img.save(dir.join(format!("frame{i:02}.png"))).unwrap();
    }
}

/// quantize, calibrate and eval on a bundle with a head graph: quantizing keeps the head graph
/// (and makes its dense layer and the last one int8 rows), DICE's mean and ViM's subspace are taken over the
/// last dense layer's input (1280 values, the head graph's output), and every method scores.
#[test]
fn calibrate_and_eval_run_a_head_graph_bundle() {
    let dir = Scratch::new("heads-calibrate");
    let model = dir.write(
        "mnv3.onnx",
        &prost::Message::encode_to_vec(&heads::mobilenet_v3_large()),
    );
    let (id, ood) = (dir.dir().join("id"), dir.dir().join("ood"));
    write_frames(&id, 12, false);
    write_frames(&ood, 12, true);
    let (id, ood) = (id.to_string_lossy(), ood.to_string_lossy());
    let (float, bundle) = (dir.path("f.nap"), dir.path("q.nap"));
    let (calibrated, json) = (dir.path("cal.nap"), dir.path("e.json"));
    assert_ok(&napctl(&["split", &model, "-o", &float]));
    let out = napctl(&[
        "quantize",
        &float,
        "--calib",
        &id,
        "--precision",
        "int8",
        "-o",
        &bundle,
    ]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("head graph             1 dense layer(s) as int8 rows"),
        "{}",
        stdout(&out)
    );
    let quantized = Bundle::read(&bundle).unwrap();
    let int8_layers = nap_runtime::neck::Neck::load(&quantized)
        .unwrap()
        .map(|n| n.int8_layers());
    assert_eq!(int8_layers, Some(1), "the head graph's Gemm as int8 rows");
    assert_eq!(quantized.manifest.head.storage, HeadStorage::I8);
    let calibrate = [
        "calibrate",
        &bundle,
        "--id",
        &id,
        "--ood",
        &ood,
        "-o",
        &calibrated,
        "--no-cache",
    ];
    assert_ok(&napctl(&calibrate));
    let cal = Bundle::read(&calibrated).unwrap();
    let dice = cal.manifest.dice.as_ref().expect("DICE's statistics");
    assert_eq!(
        dice.mean.len(),
        1280,
        "the head graph's output, not the 960 pooled"
    );
    assert!(cal.manifest.scorer.threshold.is_some());
    assert_eq!(
        cal.neck,
        Bundle::read(&bundle).unwrap().neck,
        "calibration keeps the head graph"
    );

    let eval = [
        "eval",
        &calibrated,
        "--id",
        &id,
        "--ood",
        &ood,
        "--no-cache",
        "--json",
        &json,
    ];
    assert_ok(&napctl(&eval));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let methods = report["ood"][0]["methods"].as_object().unwrap();
    assert_eq!(methods.len(), 16, "{methods:?}");
    for (name, m) in methods {
        let auroc = m["auroc"].as_f64();
        assert!(
            auroc.is_some_and(|a| (0.0..=100.0).contains(&a)),
            "{name}: {m}"
        );
    }

    // ViM deciding: the bundle stores its subspace of the head graph's output, its dimension
    // (1 or 2 for 12 ID frames) chosen against the OOD set, and the detector scores with it on
    // that output.
    let vim_bundle = dir.path("vim.nap");
    let mut vim_calibrate = calibrate.to_vec();
    vim_calibrate[7] = &vim_bundle;
    vim_calibrate.extend(["--method", "ViM"]);
    let out = napctl(&vim_calibrate);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("ViM by dimension, FPR / AUROC: 1: "),
        "{}",
        stdout(&out)
    );
    let b = Bundle::read(&vim_bundle).unwrap();
    assert_eq!(b.manifest.scorer.method, Method::Vim);
    let vim = b.manifest.vim.as_ref().expect("ViM's statistics");
    assert_eq!(vim.origin.len(), 1280);
    assert!((1..=2).contains(&vim.dims()), "{}", vim.dims());
    assert_eq!(cal.manifest.vim, None, "stored only when ViM decides");
    let detector = Detector::new(&b).unwrap();
    let mut worker = detector.worker().unwrap();
    let analysis = detector.analyze(&mut worker, frame_input(3)).unwrap();
    let offset = vim.offset();
    let virtual_logit = vim
        .view(&offset)
        .virtual_logit(worker.dense_input(), &mut vec![0.0; vim.dims()]);
    assert!(virtual_logit > 0.0);
    let energy = nap_core::score::logits::neg_energy(worker.logits());
    assert_eq!(analysis.score, energy - virtual_logit);
}
