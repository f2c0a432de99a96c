//! Where a bundle's backbone spends its time, by tract operator: the numbers behind the int8
//! graph-form table in BENCHMARKS.md.
//!
//! `cargo run --release -p napctl --example backbone_profile -- BUNDLE [FRAMES] [--by-node] [--tract]`
//!
//! Runs the backbone as the detector prepares it (depthwise and pointwise convolutions on
//! nap-core's kernels; all of them tract's with `--tract`) on a blank frame, FRAMES times
//! (default 30) after 5 warm-up runs, and prints the mean time per frame of each operator kind
//! with its output type (of each node with `--by-node`), slowest first.

use nap_runtime::backbone::{BackboneOptions, optimized_model};
use nap_runtime::bundle::Bundle;
use std::collections::HashMap;
use std::time::Instant;
use tract_onnx::prelude::*;

const WARM_UP: usize = 5;

fn main() -> TractResult<()> {
    let (flags, args): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    let (by_node, tract) = (
        flags.iter().any(|f| f == "--by-node"),
        flags.iter().any(|f| f == "--tract"),
    );
    let Some(path) = args.first() else {
        eprintln!("usage: backbone_profile BUNDLE [FRAMES] [--by-node] [--tract]");
        std::process::exit(2);
    };
    let frames: usize = args.get(1).map_or(Ok(30), |n| n.parse())?;
    let bundle = Bundle::read(path)?;
    let size = bundle.manifest.input.size as usize;
    let options = BackboneOptions {
        own_depthwise: !tract,
        own_pointwise: !tract,
        integer: false,
        fuse_expansions: false,
    };
    let plan = optimized_model(&bundle.backbone, size, options)?.into_runnable()?;
    let mut state = plan.spawn()?;
    let input = Tensor::zero::<f32>(&[1, 3, size, size])?;
    // operator kind -> (total microseconds, node evaluations)
    let mut times: HashMap<String, (f64, usize)> = HashMap::new();
    for round in 0..WARM_UP + frames {
        state.run_plan_with_eval(
            tvec!(input.clone().into()),
            |ctx, op_state, node, inputs| {
                let start = Instant::now();
                let result = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                if round >= WARM_UP {
                    let kind = format!(
                        "{}{} -> {:?}",
                        if by_node {
                            format!("{} ", node.name)
                        } else {
                            String::new()
                        },
                        node.op().name(),
                        node.outputs[0].fact.datum_type
                    );
                    let entry = times.entry(kind).or_default();
                    entry.0 += start.elapsed().as_secs_f64() * 1e6;
                    entry.1 += 1;
                }
                result
            },
        )?;
    }
    let mut kinds: Vec<_> = times.into_iter().collect();
    kinds.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    let total: f64 = kinds.iter().map(|k| k.1.0).sum::<f64>() / frames as f64;
    println!("{path}: {total:.0} us per frame over {frames} frames");
    println!(
        "{:>10} {:>6} {:>6}  operator -> output type",
        "us/frame", "share", "nodes"
    );
    for (kind, (us, n)) in &kinds {
        let us = us / frames as f64;
        println!(
            "{us:>10.0} {:>5.1}% {:>6}  {kind}",
            100.0 * us / total,
            n / frames
        );
    }
    Ok(())
}
