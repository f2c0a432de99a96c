//! Per-frame pre-pool reductions on MobileNetV2's shape (1280 x 7 x 7): every implementation this
//! CPU runs, side by side in one run, and the whole S_NAP + pooled computation.
//!
//! `cargo bench -p nap-core --bench reduce`

mod common;

use common::XorShift64;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nap_core::int8::Quant;
use nap_core::nap::{DEFAULT_EPS, nap_f32, nap_u8};
use nap_core::reduce::{Isa, Layout, Reducer, Shape};
use std::hint::black_box;

const CHANNELS: usize = 1280;
const PLANE: usize = 49;

/// A deterministic activation that looks like a ReLU6 output (about half zeros), as u8 codes
/// and as the floats they stand for.
fn activations() -> (Vec<u8>, Vec<f32>) {
    let mut rng = XorShift64::new(0x2545_f491_4f6c_dd1d);
    let codes: Vec<u8> = (0..CHANNELS * PLANE)
        .map(|_| {
            let bits = rng.next_u64();
            if bits & 1 == 0 { 0 } else { (bits >> 8) as u8 }
        })
        .collect();
    let floats = codes
        .iter()
        .map(|&x| Quant::RELU6.real(f32::from(x)))
        .collect();
    (codes, floats)
}

fn reducers() -> Vec<Reducer> {
    Isa::ALL.into_iter().filter_map(Reducer::with_isa).collect()
}

fn reductions(c: &mut Criterion) {
    let (a, af) = activations();
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let shape = Shape {
            channels: CHANNELS,
            plane: PLANE,
            layout,
        };
        let mut group = c.benchmark_group(format!("reduce-u8-{layout:?}-1280x7x7"));
        group.throughput(Throughput::Bytes(a.len() as u64));
        for reducer in reducers() {
            let (mut max, mut sum) = (vec![0u8; CHANNELS], vec![0u32; CHANNELS]);
            group.bench_function(reducer.isa().name(), |b| {
                b.iter(|| {
                    reducer
                        .reduce_u8(shape, black_box(&a), &mut max, &mut sum)
                        .unwrap()
                })
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("reduce-f32-{layout:?}-1280x7x7"));
        group.throughput(Throughput::Bytes((af.len() * 4) as u64));
        for reducer in reducers() {
            let (mut max, mut sum) = (vec![0f32; CHANNELS], vec![0f32; CHANNELS]);
            group.bench_function(reducer.isa().name(), |b| {
                b.iter(|| {
                    reducer
                        .reduce_f32(shape, black_box(&af), &mut max, &mut sum)
                        .unwrap()
                })
            });
        }
        group.finish();
    }
}

/// Everything the device does to the pre-pool tensor per frame before the head: reduce, then
/// S_NAP and the pooled feature.
fn per_frame(c: &mut Criterion) {
    let (a, af) = activations();
    let reducer = Reducer::new();
    let mut group = c.benchmark_group("nap-and-pooled-1280x7x7");
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let shape = Shape {
            channels: CHANNELS,
            plane: PLANE,
            layout,
        };
        let (mut max, mut sum, mut pooled) = (
            vec![0u8; CHANNELS],
            vec![0u32; CHANNELS],
            vec![0f32; CHANNELS],
        );
        group.bench_function(format!("u8-{layout:?}-{}", reducer.isa().name()), |b| {
            b.iter(|| {
                reducer
                    .reduce_u8(shape, black_box(&a), &mut max, &mut sum)
                    .unwrap();
                nap_u8(&max, &sum, PLANE, Quant::RELU6, DEFAULT_EPS, &mut pooled)
            })
        });
        let (mut maxf, mut sumf) = (vec![0f32; CHANNELS], vec![0f32; CHANNELS]);
        group.bench_function(format!("f32-{layout:?}-{}", reducer.isa().name()), |b| {
            b.iter(|| {
                reducer
                    .reduce_f32(shape, black_box(&af), &mut maxf, &mut sumf)
                    .unwrap();
                nap_f32(&maxf, &sumf, PLANE, DEFAULT_EPS, &mut pooled)
            })
        });
    }
    let (mut max, mut sum, mut pooled) = (
        vec![0u8; CHANNELS],
        vec![0u32; CHANNELS],
        vec![0f32; CHANNELS],
    );
    reducer
        .reduce_u8(Shape::nchw(CHANNELS, PLANE), &a, &mut max, &mut sum)
        .unwrap();
    group.bench_function("u8-nap-from-reductions-only", |b| {
        b.iter(|| {
            nap_u8(
                black_box(&max),
                black_box(&sum),
                PLANE,
                Quant::RELU6,
                DEFAULT_EPS,
                &mut pooled,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, reductions, per_frame);
criterion_main!(benches);
