//! Integer pointwise (1x1) convolution and the stem on MobileNetV2 1.0 / 224 layer shapes: the
//! scalar reference and every path this CPU runs, side by side in one run. Throughput is
//! in multiply-adds.
//!
//! `cargo bench -p nap-core --bench int8_pointwise`

mod common;

use common::XorShift64;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nap_core::int8::pointwise::{Isa, Layer, Pointwise, Shape};
use nap_core::int8::stem::{Frame, SCRATCH_LEN, Stem, StemShape};
use nap_core::int8::{OutputStage, Requant};
use std::hint::black_box;

/// (input channels, output channels, side): the first expansion, a projection to 24, two of
/// the 14x14 layers and the last 1x1.
const LAYERS: [(usize, usize, usize); 5] = [
    (16, 96, 112),
    (144, 24, 56),
    (96, 576, 14),
    (576, 96, 14),
    (320, 1280, 7),
];

/// A layer's parameters: random weights and biases, a typical rescale, ReLU6-like clamp.
struct Params {
    weights: Vec<i8>,
    bias: Vec<i32>,
    requant: Vec<Requant>,
}

impl Params {
    fn new(rng: &mut XorShift64, k: usize, m: usize) -> Params {
        let scale = 1.0 / ((k as f64).sqrt() * 127.0 * 40.0);
        Params {
            weights: rng.codes(k * m),
            bias: (0..m)
                .map(|_| (rng.next_u64() % 4001) as i32 - 2000)
                .collect(),
            requant: vec![Requant::from_scale(scale).unwrap(); m],
        }
    }

    fn layer(&self) -> Layer<'_> {
        Layer {
            weights: &self.weights,
            bias: &self.bias,
            requant: &self.requant,
            stage: OutputStage {
                zero_point: 0,
                min: 0,
                max: 200,
            },
        }
    }
}

fn pointwise(c: &mut Criterion) {
    let mut rng = XorShift64::new(7);
    let paths: Vec<Pointwise> = Isa::ALL
        .into_iter()
        .filter_map(Pointwise::with_isa)
        .collect();
    for (k, m, side) in LAYERS {
        let shape = Shape {
            pixels: side * side,
            in_channels: k,
            out_channels: m,
        };
        let params = Params::new(&mut rng, k, m);
        let input = rng.bytes(shape.input_len().unwrap());
        let mut output = vec![0; shape.output_len().unwrap()];
        let mut group = c.benchmark_group(format!("int8-pointwise-{k}to{m}-{side}x{side}"));
        group.throughput(Throughput::Elements(shape.macs()));
        for kernel in &paths {
            let len = kernel.packed_len(&shape).unwrap();
            let (mut w, mut p) = (vec![0; len.weights], vec![0; len.params]);
            kernel
                .pack(&shape, &params.layer(), &mut w, &mut p)
                .unwrap();
            group.bench_function(kernel.isa().name(), |b| {
                b.iter(|| {
                    kernel
                        .run(&shape, &w, &p, black_box(&input), &mut output)
                        .unwrap()
                })
            });
        }
        group.finish();
    }
}

fn stem(c: &mut Criterion) {
    let mut rng = XorShift64::new(11);
    let shape = StemShape {
        height: 224,
        width: 224,
        pads: [1; 4],
        out_channels: 32,
    };
    let params = Params::new(&mut rng, 27, 32);
    let frame = rng.bytes(shape.input_len().unwrap());
    let mut output = vec![0; shape.output_len().unwrap()];
    let mut scratch = vec![0; SCRATCH_LEN];
    let mut group = c.benchmark_group("int8-stem-3to32-224");
    group.throughput(Throughput::Elements(112 * 112 * 32 * 27));
    for stem in [Isa::Scalar, Stem::new().isa()]
        .into_iter()
        .filter_map(Stem::with_isa)
    {
        let len = stem.packed_len(&shape).unwrap();
        let (mut w, mut p) = (vec![0; len.weights], vec![0; len.params]);
        stem.pack(&shape, &params.layer(), &mut w, &mut p).unwrap();
        group.bench_function(stem.isa().name(), |b| {
            b.iter(|| {
                let frame = Frame {
                    data: black_box(&frame),
                    zero_point: 3,
                };
                stem.run(&shape, &w, &p, frame, &mut scratch, &mut output)
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pointwise, stem);
criterion_main!(benches);
