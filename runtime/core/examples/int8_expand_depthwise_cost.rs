//! MobileNetV2 1.0 / 224's sixteen expansion + depthwise pairs of one frame in integers, `N`
//! times, fused or as two layers: the workload for counting ARM instructions per frame under
//! qemu (`shared/tools/arm-cost/per-run.sh`, N and N + K repetitions differenced).
//!
//! ```text
//! int8_expand_depthwise_cost N [--separate | --fuse-min-width W] [--scalar] [--block I]
//! ```
//!
//! - `--separate`: the expansion writes its whole tensor, then the depthwise convolution reads
//!   it (without it: fused, row by row);
//! - `--fuse-min-width W`: fused where the input rows are at least W pixels wide, separate
//!   elsewhere (the integer backbone's rule);
//! - `--scalar`: the reference paths instead of the fastest this CPU runs;
//! - `--block I`: only pair I (0..16) of the list, N times.
//!
//! The data are deterministic pseudo-random codes; the work does not depend on them.

#[path = "../benches/common/mod.rs"]
mod common;

use common::XorShift64;
use common::expand_depthwise::{BLOCKS, Block};
use nap_core::int8::depthwise::Depthwise;
use nap_core::int8::expand_depthwise::ExpandDepthwise;
use nap_core::int8::pointwise::{Isa, Pointwise};
use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .expect("usage: int8_expand_depthwise_cost N [--separate | --fuse-min-width W] [--scalar] [--block I]");
    let block = args
        .iter()
        .position(|a| a == "--block")
        .map(|i| args[i + 1].parse::<usize>().expect("a pair index"));
    let min_width = match args.iter().position(|a| a == "--fuse-min-width") {
        Some(i) => args[i + 1].parse::<usize>().expect("a width"),
        None if args.iter().any(|a| a == "--separate") => usize::MAX,
        None => 0,
    };
    let kernels = if args.iter().any(|a| a == "--scalar") {
        ExpandDepthwise {
            pointwise: Pointwise::with_isa(Isa::Scalar).unwrap(),
            depthwise: Depthwise::with_isa(Isa::Scalar).unwrap(),
        }
    } else {
        ExpandDepthwise {
            pointwise: Pointwise::new(),
            depthwise: Depthwise::new(),
        }
    };
    let mut rng = XorShift64::new(0x9e37_79b9_7f4a_7c15);
    let mut blocks: Vec<Block> = BLOCKS
        .iter()
        .enumerate()
        .filter(|&(i, _)| block.is_none_or(|b| b == i))
        .map(|(_, &spec)| Block::new(spec, &kernels.pointwise, &mut rng))
        .collect();
    eprintln!(
        "{n} runs of {} expansion + depthwise pairs ({}+{}), {} fused",
        blocks.len(),
        kernels.pointwise.isa().name(),
        kernels.depthwise.isa().name(),
        blocks.iter().filter(|b| b.g.in_width >= min_width).count()
    );
    for _ in 0..n {
        for block in &mut blocks {
            black_box(&block.input);
            if block.g.in_width >= min_width {
                block.fused(&kernels);
            } else {
                block.separate(&kernels.pointwise, &kernels.depthwise);
            }
            black_box(&block.output);
        }
    }
    let sum: u64 = blocks
        .iter()
        .flat_map(|b| b.output.iter())
        .map(|&b| u64::from(b))
        .sum();
    println!("checksum {sum}");
}
