//! Depthwise 3x3 + ReLU6 on MobileNetV2 1.0 / 224 layer shapes: the scalar reference and the
//! fastest path this CPU runs, side by side in one run.
//!
//! `cargo bench -p nap-core --bench depthwise`

mod common;

use common::XorShift64;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nap_core::depthwise::{Clip, Depthwise, Geometry, TAPS};
use nap_core::isa::Isa;
use std::hint::black_box;

/// (channels, input side, stride): TF "SAME" padding, as in the shared model.
const LAYERS: [(usize, usize, usize); 4] = [(32, 112, 1), (96, 112, 2), (144, 56, 1), (960, 7, 1)];

/// `n` values in `-1..5`: ReLU6's range, and some below it.
fn values(n: usize, seed: u64) -> Vec<f32> {
    XorShift64::new(seed | 1).uniform(n, -1.0, 5.0)
}

fn depthwise(c: &mut Criterion) {
    let relu6 = Clip { min: 0.0, max: 6.0 };
    let paths: Vec<Depthwise> = [Isa::Scalar, Depthwise::new().isa()]
        .into_iter()
        .filter_map(Depthwise::with_isa)
        .collect();
    for (channels, side, stride) in LAYERS {
        let out = side / stride;
        let g = Geometry {
            channels,
            in_height: side,
            in_width: side,
            stride,
            pad_top: usize::from(stride == 1),
            pad_left: usize::from(stride == 1),
            out_height: out,
            out_width: out,
        };
        let input = values(channels * side * side, 1);
        let weights = values(channels * TAPS, 2);
        let bias = values(channels, 3);
        let mut output = vec![0.0; channels * out * out];
        let mut scratch = vec![0.0; g.scratch_len()];
        let mut group = c.benchmark_group(format!("depthwise-{channels}x{side}x{side}-s{stride}"));
        group.throughput(Throughput::Elements(output.len() as u64));
        for d in &paths {
            group.bench_function(d.isa().name(), |b| {
                b.iter(|| {
                    d.run(
                        &g,
                        black_box(&input),
                        &weights,
                        &bias,
                        relu6,
                        &mut scratch,
                        &mut output,
                    )
                    .unwrap()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, depthwise);
criterion_main!(benches);
