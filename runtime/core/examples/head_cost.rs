//! MobileNetV2's int8 head (1000 classes x 1280 features) on one pooled feature, `N` times: the
//! workload for counting ARM instructions per frame under qemu (`shared/tools/arm-cost/per-run.sh`,
//! N and N + K repetitions differenced).
//!
//! ```text
//! head_cost N [--f32-vector]
//! ```
//!
//! Without options the whole `Int8Head` runs (the pooled feature made i16 codes, integer
//! products); `--f32-vector` runs only the row products on the f32 feature instead, the codes
//! widened to f32. The data are deterministic pseudo-random; the work does not depend on them.

#[path = "../benches/common/mod.rs"]
mod common;

use common::XorShift64;
use nap_core::gemv::Int8Gemv;
use nap_core::score::{Head, Int8Head};
use std::hint::black_box;

const CLASSES: usize = 1000;
const FEATURES: usize = 1280;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: head_cost N [--f32-vector]");
    let f32_vector = args.next().as_deref() == Some("--f32-vector");
    let mut rng = XorShift64::new(0x9e37_79b9_7f4a_7c15);
    let codes = rng.codes(CLASSES * FEATURES);
    let pooled = rng.uniform(FEATURES, 0.0, 6.0);
    let scales = vec![1.0 / 127.0; CLASSES];
    let bias = vec![0.0; CLASSES];
    let head = Int8Head::new(&codes, &scales, &bias, FEATURES).expect("a valid head");
    let gemv = Int8Gemv::new();
    let mut out = vec![0.0; CLASSES];
    for _ in 0..n {
        if f32_vector {
            gemv.dots(black_box(&codes), black_box(&pooled), &mut out);
        } else {
            head.logits(black_box(&pooled), &mut out);
        }
        black_box(&out);
    }
}
