//! Pointwise (1x1) convolution + ReLU6 on MobileNetV2 1.0 / 224 layer shapes: the scalar
//! reference and the fastest path this CPU runs, side by side in one run. Throughput is in
//! multiply-adds.
//!
//! `cargo bench -p nap-core --bench pointwise`

mod common;

use common::XorShift64;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nap_core::isa::Isa;
use nap_core::pointwise::{Clip, Pointwise, Shape, pack};
use std::hint::black_box;

/// (input channels, output channels, plane side): an expansion, a projection and the two
/// deepest planes the backbone gives this kernel.
const LAYERS: [(usize, usize, usize); 4] =
    [(16, 96, 112), (144, 24, 56), (96, 576, 14), (576, 96, 14)];

/// `n` values in `-1..1`.
fn values(n: usize, seed: u64) -> Vec<f32> {
    XorShift64::new(seed | 1).uniform(n, -1.0, 1.0)
}

fn pointwise(c: &mut Criterion) {
    let relu6 = Clip { min: 0.0, max: 6.0 };
    let paths: Vec<Pointwise> = [Isa::Scalar, Pointwise::new().isa()]
        .into_iter()
        .filter_map(Pointwise::with_isa)
        .collect();
    for (in_channels, out_channels, side) in LAYERS {
        let shape = Shape {
            out_channels,
            in_channels,
            plane: side * side,
        };
        let mut packed = vec![0.0; shape.packed_len().unwrap()];
        pack(&shape, &values(out_channels * in_channels, 1), &mut packed).unwrap();
        let bias = values(out_channels, 2);
        let input = values(in_channels * shape.plane, 3);
        let mut output = vec![0.0; out_channels * shape.plane];
        let mut group = c.benchmark_group(format!(
            "pointwise-{in_channels}to{out_channels}-{side}x{side}"
        ));
        group.throughput(Throughput::Elements(
            (in_channels * out_channels * shape.plane) as u64,
        ));
        for k in &paths {
            group.bench_function(k.isa().name(), |b| {
                b.iter(|| {
                    k.run(
                        &shape,
                        &packed,
                        &bias,
                        relu6,
                        black_box(&input),
                        &mut output,
                    )
                    .unwrap()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, pointwise);
criterion_main!(benches);
