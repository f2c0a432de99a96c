//! A real backbone under MobileNetV3-Large's head, for measuring what a head graph costs after
//! it: the model's backbone, then GlobalAveragePool -> Flatten -> Gemm (C -> 1280) -> hardswish
//! -> Gemm (1280 -> 1000), with random weights. hardswish is written `x * HardSigmoid(x)` as
//! exporters do below opset 14, so the model keeps the backbone's opset.
//!
//! `cargo run -p napctl --example graft_head -- MODEL.onnx OUT.onnx`

use napctl::onnx::proto::{attr_float, attr_int, dim, node, tensor, value_info};
use napctl::onnx::{read_model, split};
use std::error::Error;
use tract_onnx::pb::tensor_proto::DataType;

/// MobileNetV3-Large's hidden width and ImageNet's classes.
const HIDDEN: usize = 1280;
const CLASSES: usize = 1000;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, out] = &args[..] else {
        eprintln!("usage: graft_head MODEL.onnx OUT.onnx");
        std::process::exit(2);
    };
    let split = split(&read_model(model)?, None)?;
    let channels = split.head.pooled_channels();
    let mut grafted = split.backbone;
    let graph = grafted.graph.as_mut().ok_or("the backbone has no graph")?;
    let pre_pool = split.pre_pool.as_str();
    let linear = |name: &str, x: &str, y: &str, [outs, ins]: [usize; 2], seed: u64| {
        let w = format!("{name}.weight");
        let b = format!("{name}.bias");
        let scale = 1.0 / (ins as f32).sqrt();
        (
            [
                tensor(
                    &w,
                    &[outs as i64, ins as i64],
                    &values(seed, outs * ins, scale),
                ),
                tensor(&b, &[outs as i64], &values(seed + 1, outs, 0.1)),
            ],
            node(
                "Gemm",
                name,
                &[x, &w, &b],
                &[y],
                vec![attr_int("transB", 1)],
            ),
        )
    };
    let (fc1_init, fc1) = linear("classifier.0", "flat", "fc1", [HIDDEN, channels], 1);
    let (fc2_init, fc2) = linear("classifier.3", "act", "logits", [CLASSES, HIDDEN], 3);
    graph.node.extend([
        node(
            "GlobalAveragePool",
            "avgpool",
            &[pre_pool],
            &["pooled"],
            vec![],
        ),
        node(
            "Flatten",
            "flatten",
            &["pooled"],
            &["flat"],
            vec![attr_int("axis", 1)],
        ),
        fc1,
        node(
            "HardSigmoid",
            "classifier.1.gate",
            &["fc1"],
            &["gate"],
            vec![attr_float("alpha", 1.0 / 6.0), attr_float("beta", 0.5)],
        ),
        node("Mul", "classifier.1", &["fc1", "gate"], &["act"], vec![]),
        fc2,
    ]);
    graph
        .initializer
        .extend(fc1_init.into_iter().chain(fc2_init));
    graph.output = vec![value_info(
        "logits",
        DataType::Float as i32,
        Some(vec![dim(1), dim(CLASSES as i64)]),
    )];
    grafted.metadata_props.clear();
    std::fs::write(out, prost::Message::encode_to_vec(&grafted))?;
    println!(
        "{out}: the backbone of {model} ({pre_pool}, {channels} channels) under MobileNetV3-Large's \
         head ({channels} -> {HIDDEN} -> hardswish -> {CLASSES})"
    );
    Ok(())
}

/// `n` deterministic values in `[-scale, scale)` from `seed` (a small LCG).
fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}
