//! MobileNetV2 1.0 / 224's expansion + depthwise pairs in integers, on the fastest paths this
//! CPU runs: as two layers (the expanded tensor written whole, then read) against fused (each
//! expanded row made in the depthwise scratch ring), side by side in one run. Throughput is in
//! output bytes.
//!
//! `cargo bench -p nap-core --bench int8_expand_depthwise`

mod common;

use common::XorShift64;
use common::expand_depthwise::{BLOCKS, Block};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nap_core::int8::depthwise::Depthwise;
use nap_core::int8::expand_depthwise::ExpandDepthwise;
use nap_core::int8::pointwise::Pointwise;

fn expand_depthwise(c: &mut Criterion) {
    let mut rng = XorShift64::new(0x1234_5678);
    let kernels = ExpandDepthwise {
        pointwise: Pointwise::new(),
        depthwise: Depthwise::new(),
    };
    let mut seen = Vec::new();
    for spec in BLOCKS {
        if seen.contains(&spec) {
            continue;
        }
        seen.push(spec);
        let (k, m, side, s) = spec;
        let mut block = Block::new(spec, &kernels.pointwise, &mut rng);
        let mut group = c.benchmark_group(format!(
            "int8-expand-depthwise-{k}-{m}x{side}x{side}-s{s}-{}",
            kernels.depthwise.isa().name()
        ));
        group.throughput(Throughput::Elements(block.output.len() as u64));
        group.bench_function("separate", |b| {
            b.iter(|| block.separate(&kernels.pointwise, &kernels.depthwise))
        });
        group.bench_function("fused", |b| b.iter(|| block.fused(&kernels)));
        group.finish();
    }
}

criterion_group!(benches, expand_depthwise);
criterion_main!(benches);
