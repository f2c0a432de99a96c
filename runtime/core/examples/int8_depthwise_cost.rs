//! The int8 depthwise 3x3 layers and residual adds of one MobileNetV2 1.0 / 224 frame, run
//! `N` times, for counting instructions per frame under qemu (arm-cost's `per-run.sh`: run
//! with N and N + K and difference). Random codes and parameters; set-up (packing) is outside
//! the loop.
//!
//! ```text
//! int8_depthwise_cost N [--scalar] [--dw I | --add I]
//! ```
//!
//! `--scalar` runs the reference instead of the fastest path; `--dw I` / `--add I` run only
//! depthwise layer I (0..17) or add I (0..10) of the lists below, N times.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{XorShift64, padded_square};
use nap_core::depthwise::{Geometry, TAPS};
use nap_core::int8::add::{Add, AddParams};
use nap_core::int8::depthwise::{Depthwise, Packed, pack, scratch_len};
use nap_core::int8::{OutputStage, Quant, fold_zero_point, stride};
use nap_core::isa::Isa;
use std::hint::black_box;

/// (channels, input side, stride) of every depthwise layer, padding 1 on every side: blocks
/// (t, c, n, s) = (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2)
/// (6,320,1,1) after a 32-channel 112x112 stem, t times each block's input channels.
const DEPTHWISE: [(usize, usize, usize); 17] = [
    (32, 112, 1),
    (96, 112, 2),
    (144, 56, 1),
    (144, 56, 2),
    (192, 28, 1),
    (192, 28, 1),
    (192, 28, 2),
    (384, 14, 1),
    (384, 14, 1),
    (384, 14, 1),
    (384, 14, 1),
    (576, 14, 1),
    (576, 14, 1),
    (576, 14, 2),
    (960, 7, 1),
    (960, 7, 1),
    (960, 7, 1),
];

/// (channels, side) of every residual add: the blocks with stride 1 and as many channels out
/// as in.
const ADDS: [(usize, usize); 10] = [
    (24, 56),
    (32, 28),
    (32, 28),
    (64, 14),
    (64, 14),
    (64, 14),
    (96, 14),
    (96, 14),
    (160, 7),
    (160, 7),
];

/// One depthwise layer's buffers.
struct Layer {
    g: Geometry,
    zero_point: u8,
    input: Vec<u8>,
    scratch: Vec<u8>,
    output: Vec<u8>,
}

/// A layer with random numbers, and its packed weights and parameters.
fn layer(
    (c, side, s): (usize, usize, usize),
    rng: &mut XorShift64,
) -> (Layer, (Vec<i8>, Vec<i32>)) {
    let g = padded_square(c, side, s);
    let w = rng.codes(c * TAPS);
    let zero_point = 0;
    let mut bias = rng.biases(c);
    fold_zero_point(&mut bias, &w, TAPS, zero_point).unwrap();
    let requant = rng.requants(c);
    let mut weights = vec![0; Packed::weights_len(c).unwrap()];
    let mut params = vec![0; Packed::params_len(c).unwrap()];
    pack(&w, &bias, &requant, &mut weights, &mut params).unwrap();
    let sc = stride(c);
    let layer = Layer {
        g,
        zero_point,
        input: rng.bytes(sc * side * side),
        scratch: vec![0; scratch_len(&g).unwrap()],
        output: vec![0; sc * g.out_height * g.out_width],
    };
    (layer, (weights, params))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .expect("usage: int8_depthwise_cost N [--scalar] [--dw I | --add I]");
    let scalar = args.iter().any(|a| a == "--scalar");
    let only = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].parse::<usize>().expect("a layer index"))
    };
    let (only_dw, only_add) = (only("--dw"), only("--add"));
    let everything = only_dw.is_none() && only_add.is_none();
    let (dw, add) = if scalar {
        (
            Depthwise::with_isa(Isa::Scalar).unwrap(),
            Add::with_isa(Isa::Scalar).unwrap(),
        )
    } else {
        (Depthwise::new(), Add::new())
    };
    let mut rng = XorShift64::new(0x9e37_79b9_7f4a_7c15);
    let (mut layers, buffers): (Vec<Layer>, Vec<_>) = DEPTHWISE
        .iter()
        .enumerate()
        .filter(|&(i, _)| everything || only_dw == Some(i))
        .map(|(_, &shape)| layer(shape, &mut rng))
        .unzip();
    // The views a model makes once when it loads.
    let packed: Vec<Packed<'_>> = layers
        .iter()
        .zip(&buffers)
        .map(|(l, (w, p))| Packed::new(l.g.channels, w, p).unwrap())
        .collect();
    let stage = OutputStage {
        zero_point: 0,
        min: 0,
        max: 200,
    };
    let add_params = AddParams::new(
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
    let mut adds: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = ADDS
        .iter()
        .enumerate()
        .filter(|&(i, _)| everything || only_add == Some(i))
        .map(|(_, &(c, side))| {
            let len = stride(c) * side * side;
            (rng.bytes(len), rng.bytes(len), vec![0; len])
        })
        .collect();
    eprintln!(
        "{n} runs of {} depthwise layers ({}) and {} adds ({})",
        layers.len(),
        dw.isa().name(),
        adds.len(),
        add.isa().name()
    );
    for _ in 0..n {
        for (l, packed) in layers.iter_mut().zip(&packed) {
            dw.run(
                &l.g,
                packed,
                l.zero_point,
                stage,
                black_box(&l.input),
                &mut l.scratch,
                &mut l.output,
            )
            .unwrap();
            black_box(&l.output);
        }
        for (a, b, out) in &mut adds {
            add.run(&add_params, black_box(a), black_box(b), out)
                .unwrap();
            black_box(&out);
        }
    }
    let sum: u64 = layers
        .iter()
        .flat_map(|l| l.output.iter())
        .chain(adds.iter().flat_map(|(_, _, o)| o.iter()))
        .map(|&b| u64::from(b))
        .sum();
    println!("checksum {sum}");
}
