//! The classifier head on MobileNetV2's shape (1000 classes x 1280 features): the f32 head, the
//! int8 head, and its row products on every implementation this CPU runs (with the vector as f32
//! and as i16 codes), side by side in one run.
//!
//! `cargo bench -p nap-core --bench head`

mod common;

use common::XorShift64;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nap_core::gemv::Int8Gemv;
use nap_core::isa::Isa;
use nap_core::score::{Head, Int8Head, LinearHead};
use std::hint::black_box;

const CLASSES: usize = 1000;
const FEATURES: usize = 1280;

/// `n` values in `0..1`.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    XorShift64::new(seed).uniform(n, 0.0, 1.0)
}

fn heads(c: &mut Criterion) {
    let weights: Vec<f32> = noise(CLASSES * FEATURES, 1)
        .iter()
        .map(|w| w - 0.5)
        .collect();
    let codes: Vec<i8> = weights.iter().map(|w| (w * 254.0) as i8).collect();
    let scales = vec![1.0 / 254.0; CLASSES];
    let bias = noise(CLASSES, 2);
    let pooled: Vec<f32> = noise(FEATURES, 3).iter().map(|x| 6.0 * x).collect();
    let mut out = vec![0.0; CLASSES];

    let mut group = c.benchmark_group("head 1000x1280");
    group.throughput(Throughput::Elements((CLASSES * FEATURES) as u64));
    let float = LinearHead::new(&weights, &bias, FEATURES).unwrap();
    group.bench_function("f32", |b| {
        b.iter(|| float.logits(black_box(&pooled), black_box(&mut out)))
    });
    let int8 = Int8Head::new(&codes, &scales, &bias, FEATURES).unwrap();
    group.bench_function("int8 head (fastest path)", |b| {
        b.iter(|| int8.logits(black_box(&pooled), black_box(&mut out)))
    });
    let largest = pooled.iter().fold(0f32, |m, x| m.max(x.abs()));
    let pooled_i16: Vec<i16> = pooled
        .iter()
        .map(|x| (x * 32767.0 / largest).round() as i16)
        .collect();
    for path in Isa::ALL.into_iter().filter_map(Int8Gemv::with_isa) {
        group.bench_function(
            format!("int8 rows, f32 vector, {}", path.isa().name()),
            |b| b.iter(|| path.dots(black_box(&codes), black_box(&pooled), black_box(&mut out))),
        );
        group.bench_function(
            format!("int8 rows, i16 vector, {}", path.isa().name()),
            |b| {
                b.iter(|| {
                    path.dots_i16(
                        black_box(&codes),
                        black_box(&pooled_i16),
                        black_box(&mut out),
                    )
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, heads);
criterion_main!(benches);
