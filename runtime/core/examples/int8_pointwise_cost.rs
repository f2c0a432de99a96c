//! Every pointwise (1x1) layer of one MobileNetV2 1.0 / 224 frame, plus the stem, in integers,
//! `N` times: the workload for counting ARM instructions per frame under qemu
//! (`shared/tools/arm-cost/per-run.sh`, N and N + K repetitions differenced).
//!
//! ```text
//! int8_pointwise_cost N [--scalar] [--kind expand|project|last|stem] [--marks]
//! ```
//!
//! - `--scalar`: the reference path instead of the fastest this CPU runs;
//! - `--kind`: only the layers of one kind (each expansion 1x1, each projection 1x1, the last
//!   1x1 320 -> 1280, or the stem);
//! - `--marks`: a `getpid` system call before each layer and after the last, so the arm-cost
//!   plugin's `mark=172` splits the count per layer (the example prints the layer list first).
//!
//! The data are deterministic pseudo-random codes; the work does not depend on them.

#[path = "../benches/common/mod.rs"]
mod common;

use common::XorShift64;
use nap_core::int8::pointwise::{Isa, Layer, Pointwise, Shape};
use nap_core::int8::stem::{Frame, SCRATCH_LEN, Stem, StemShape};
use nap_core::int8::{OutputStage, Requant, stride};

/// MobileNetV2 1.0's inverted residual blocks: (expansion t, out channels c, repeats n, first
/// stride s).
const BLOCKS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// One pointwise layer of the backbone.
#[derive(Clone, Copy)]
struct Spec {
    kind: &'static str,
    k: usize,
    m: usize,
    side: usize,
}

fn layers() -> Vec<Spec> {
    let (mut channels, mut side) = (32, 112);
    let mut out = Vec::new();
    for (t, c, n, s) in BLOCKS {
        for i in 0..n {
            let hidden = channels * t;
            if t != 1 {
                out.push(Spec {
                    kind: "expand",
                    k: channels,
                    m: hidden,
                    side,
                });
            }
            if i == 0 {
                side /= s;
            }
            out.push(Spec {
                kind: "project",
                k: hidden,
                m: c,
                side,
            });
            channels = c;
        }
    }
    out.push(Spec {
        kind: "last",
        k: 320,
        m: 1280,
        side: 7,
    });
    out
}

/// A packed layer, ready to run.
struct Ready {
    spec: Spec,
    shape: Shape,
    weights: Vec<i8>,
    params: Vec<i32>,
    input: Vec<u8>,
    output: Vec<u8>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = args
        .first()
        .and_then(|n| n.parse().ok())
        .expect("usage: int8_pointwise_cost N [--scalar] [--kind KIND] [--marks]");
    let scalar = args.iter().any(|a| a == "--scalar");
    let marks = args.iter().any(|a| a == "--marks");
    let kind = args
        .iter()
        .position(|a| a == "--kind")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let isa = if scalar {
        Isa::Scalar
    } else {
        Pointwise::new().isa()
    };
    let kernel = Pointwise::with_isa(isa).unwrap();
    let stem = Stem::with_isa(isa).unwrap();
    let mut rng = XorShift64::new(0x9e37_79b9_7f4a_7c15);
    let requant = |m: usize, k: usize| {
        let scale = 1.0 / ((k as f64).sqrt() * 127.0 * 40.0);
        vec![Requant::from_scale(scale).unwrap(); m]
    };
    let stage = OutputStage {
        zero_point: 0,
        min: 0,
        max: 200,
    };

    let mut ready: Vec<Ready> = layers()
        .into_iter()
        .filter(|s| kind.is_none_or(|k| k == s.kind))
        .map(|spec| {
            let shape = Shape {
                pixels: spec.side * spec.side,
                in_channels: spec.k,
                out_channels: spec.m,
            };
            let len = kernel.packed_len(&shape).unwrap();
            let (mut weights, mut params) = (vec![0; len.weights], vec![0; len.params]);
            let w = rng.codes(spec.k * spec.m);
            let bias: Vec<i32> = (0..spec.m)
                .map(|_| (rng.next_u64() % 4001) as i32 - 2000)
                .collect();
            let layer = Layer {
                weights: &w,
                bias: &bias,
                requant: &requant(spec.m, spec.k),
                stage,
            };
            kernel
                .pack(&shape, &layer, &mut weights, &mut params)
                .unwrap();
            Ready {
                spec,
                shape,
                weights,
                params,
                input: rng.bytes(shape.input_len().unwrap()),
                output: vec![0; shape.output_len().unwrap()],
            }
        })
        .collect();

    let run_stem = kind.is_none_or(|k| k == "stem");
    let stem_shape = StemShape {
        height: 224,
        width: 224,
        pads: [1; 4],
        out_channels: 32,
    };
    let stem_len = stem.packed_len(&stem_shape).unwrap();
    let (mut stem_w, mut stem_p) = (vec![0; stem_len.weights], vec![0; stem_len.params]);
    let sw = rng.codes(32 * 27);
    let sb: Vec<i32> = (0..32)
        .map(|_| (rng.next_u64() % 4001) as i32 - 2000)
        .collect();
    stem.pack(
        &stem_shape,
        &Layer {
            weights: &sw,
            bias: &sb,
            requant: &requant(32, 27),
            stage,
        },
        &mut stem_w,
        &mut stem_p,
    )
    .unwrap();
    let frame = rng.bytes(stem_shape.input_len().unwrap());
    let mut stem_out = vec![0; stem_shape.output_len().unwrap()];
    let mut scratch = vec![0; SCRATCH_LEN];

    println!("path {}", isa.name());
    let mut macs = std::collections::BTreeMap::<&str, u64>::new();
    if run_stem {
        println!("layer stem 3->32 224->112 macs {}", 112 * 112 * 32 * 27);
        *macs.entry("stem").or_default() += 112 * 112 * 32 * 27;
    }
    for r in &ready {
        println!(
            "layer {} {}->{} {}x{} macs {}",
            r.spec.kind,
            r.spec.k,
            r.spec.m,
            r.spec.side,
            r.spec.side,
            r.shape.macs()
        );
        *macs.entry(r.spec.kind).or_default() += r.shape.macs();
    }
    for (kind, n) in &macs {
        println!("macs {kind} {n}");
    }

    let mark = || {
        if marks {
            std::hint::black_box(std::process::id());
        }
    };
    let mut check = 0u64;
    for _ in 0..reps {
        if run_stem {
            mark();
            let frame = Frame {
                data: &frame,
                zero_point: 3,
            };
            stem.run(
                &stem_shape,
                &stem_w,
                &stem_p,
                frame,
                &mut scratch,
                &mut stem_out,
            )
            .unwrap();
            check = check.wrapping_add(u64::from(stem_out[stride(32) * 5]));
        }
        for r in &mut ready {
            mark();
            kernel
                .run(&r.shape, &r.weights, &r.params, &r.input, &mut r.output)
                .unwrap();
            check = check.wrapping_add(u64::from(r.output[r.output.len() / 2]));
        }
        mark();
    }
    println!("check {check}");
}
