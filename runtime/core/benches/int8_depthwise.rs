//! Int8 depthwise 3x3 (u8 NHWC, per-channel requantization, ReLU6-style clamp) on MobileNetV2
//! 1.0 / 224 layer shapes, and the residual add: the scalar reference and every path this
//! CPU runs, side by side in one run. Throughput is in output bytes.
//!
//! `cargo bench -p nap-core --bench int8_depthwise`

mod common;

use common::{XorShift64, padded_square};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nap_core::depthwise::TAPS;
use nap_core::int8::add::{Add, AddParams};
use nap_core::int8::depthwise::{Depthwise, Packed, pack, scratch_len};
use nap_core::int8::{OutputStage, Quant, Requant, stride};
use nap_core::isa::Isa;
use std::hint::black_box;

/// (channels, input side, stride), padding 1 on every side.
const LAYERS: [(usize, usize, usize); 5] = [
    (32, 112, 1),
    (96, 112, 2),
    (144, 56, 1),
    (384, 14, 1),
    (960, 7, 1),
];

/// (channels, side) of residual adds.
const ADDS: [(usize, usize); 2] = [(24, 56), (96, 14)];

fn depthwise(c: &mut Criterion) {
    let mut rng = XorShift64::new(0x1234_5678);
    let stage = OutputStage {
        zero_point: 0,
        min: 0,
        max: 200,
    };
    let paths: Vec<Depthwise> = Isa::ALL
        .into_iter()
        .filter_map(Depthwise::with_isa)
        .collect();
    for (channels, side, s) in LAYERS {
        let g = padded_square(channels, side, s);
        let weights: Vec<i8> = (0..channels * TAPS)
            .map(|_| (rng.next_u64() % 255) as i8 / 2)
            .collect();
        let bias = rng.biases(channels);
        let requant = vec![Requant::from_scale(0.004).unwrap(); channels];
        let mut pw = vec![0; Packed::weights_len(channels).unwrap()];
        let mut pp = vec![0; Packed::params_len(channels).unwrap()];
        let packed = pack(&weights, &bias, &requant, &mut pw, &mut pp).unwrap();
        let sc = stride(channels);
        let input = rng.bytes(sc * side * side);
        let mut scratch = vec![0; scratch_len(&g).unwrap()];
        let mut output = vec![0; sc * g.out_height * g.out_width];
        let mut group = c.benchmark_group(format!("int8-depthwise-{channels}x{side}x{side}-s{s}"));
        group.throughput(Throughput::Elements(output.len() as u64));
        for d in &paths {
            group.bench_function(d.isa().name(), |b| {
                b.iter(|| {
                    d.run(
                        &g,
                        &packed,
                        0,
                        stage,
                        black_box(&input),
                        &mut scratch,
                        &mut output,
                    )
                    .unwrap()
                })
            });
        }
        group.finish();
    }
    let params = AddParams::new(
        Quant {
            scale: 0.05,
            zero_point: 120,
        },
        Quant {
            scale: 0.03,
            zero_point: 131,
        },
        Quant {
            scale: 0.06,
            zero_point: 125,
        },
        OutputStage::unclamped(125),
    )
    .unwrap();
    let adds: Vec<Add> = [Isa::Scalar, Add::new().isa()]
        .into_iter()
        .filter_map(Add::with_isa)
        .collect();
    for (channels, side) in ADDS {
        let len = stride(channels) * side * side;
        let (a, b) = (rng.bytes(len), rng.bytes(len));
        let mut out = vec![0; len];
        let mut group = c.benchmark_group(format!("int8-add-{channels}x{side}x{side}"));
        group.throughput(Throughput::Elements(len as u64));
        for k in &adds {
            group.bench_function(k.isa().name(), |bench| {
                bench.iter(|| k.run(&params, black_box(&a), &b, &mut out).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group!(benches, depthwise);
criterion_main!(benches);
