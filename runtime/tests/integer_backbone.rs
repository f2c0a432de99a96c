//! The integer backbone end to end: random programs of every layer kind give the same codes on
//! the fastest kernel paths as on the scalar references, and stay within a few codes of the
//! same layers computed in float from the same codes (so the wiring between layers, the folded
//! zero points, the rescales and the shared buffers all mean what the program says).

use nap_core::int8::Quant;
use nap_core::isa::Isa;
use nap_runtime::integer::{Conv, IntegerBackbone, Layer, Op, Options, Program, TensorShape};
use proptest::prelude::*;

/// A small deterministic generator, so a program is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f32 {
        self.next() as f32 / (1u64 << 31) as f32
    }
}

fn quant(rng: &mut Rng) -> Quant {
    Quant {
        scale: 0.01 + 0.05 * rng.unit(),
        zero_point: rng.below(100) as u8,
    }
}

fn conv(rng: &mut Rng, input: usize, outputs: usize, taps: usize) -> Conv {
    Conv {
        input: input as u32,
        weights: (0..outputs * taps)
            .map(|_| (rng.below(255) as i32 - 127) as i8)
            .collect(),
        weight_scales: (0..outputs).map(|_| 0.002 + 0.01 * rng.unit()).collect(),
        bias: (0..outputs)
            .map(|_| rng.below(2001) as i32 - 1000)
            .collect(),
    }
}

/// Appends a layer with random output codes and clamp; returns the tensor it writes.
fn push(layers: &mut Vec<Layer>, rng: &mut Rng, op: Op) -> usize {
    let output = quant(rng);
    let clamp = match rng.below(3) {
        // ReLU6 in the output's codes.
        0 => [output.quantize(0.0), output.quantize(6.0)],
        1 => [output.zero_point, 255],
        _ => [0, 255],
    };
    layers.push(Layer { op, output, clamp });
    layers.len()
}

/// A stem, then `blocks` of expansion / depthwise / projection with a residual add where the
/// shapes allow, in the shape of a MobileNetV2 stage.
fn program(seed: u64, size: usize, blocks: usize) -> Program {
    let mut rng = Rng(seed);
    let mut layers = Vec::new();
    let mut channels = 3 + rng.below(14);
    let stem = Op::Stem {
        conv: conv(&mut rng, 0, channels, 27),
        pads: [rng.below(2) as u8, rng.below(2) as u8, 1, 1],
    };
    let mut x = push(&mut layers, &mut rng, stem);
    for _ in 0..blocks {
        let expanded = channels * (1 + rng.below(3));
        let expansion = Op::Pointwise(conv(&mut rng, x, expanded, channels));
        let e = push(&mut layers, &mut rng, expansion);
        let stride = 1 + rng.below(2) as u8;
        let depthwise = Op::Depthwise {
            conv: conv(&mut rng, e, expanded, 9),
            stride,
            pads: [1, 1, 1, 1],
        };
        let d = push(&mut layers, &mut rng, depthwise);
        let out = if stride == 1 && rng.below(2) == 0 {
            channels
        } else {
            channels + rng.below(9)
        };
        let projection = Op::Pointwise(conv(&mut rng, d, out, expanded));
        let p = push(&mut layers, &mut rng, projection);
        x = if stride == 1 && out == channels {
            let add = Op::Add {
                a: x as u32,
                b: p as u32,
            };
            push(&mut layers, &mut rng, add)
        } else {
            p
        };
        channels = out;
    }
    Program {
        size: size as u32,
        input: Quant {
            scale: 4.5 / 255.0,
            zero_point: 120,
        },
        layers,
    }
}

/// A preprocessed frame, values about as a normalized photo has them.
fn frame(seed: u64, size: usize) -> Vec<f32> {
    let mut rng = Rng(seed);
    (0..3 * size * size)
        .map(|_| rng.unit() * 4.2 - 2.1)
        .collect()
}

/// Layer `i` of `program` computed in float from the codes of the tensors before it (NHWC,
/// exactly their channels), rounded to its output codes: what the integer kernels approximate.
fn float_layer(program: &Program, tensors: &[Vec<u8>], i: usize) -> Vec<u8> {
    let shapes = program.shapes().unwrap();
    let layer = &program.layers[i];
    {
        let out_shape = shapes[i + 1];
        let real = |t: usize, pixel: usize, c: usize, shape: TensorShape| {
            program
                .quant(t)
                .dequantize(tensors[t][pixel * shape.channels + c])
        };
        let code = |v: f32| {
            let q = layer.output.quantize(v);
            q.clamp(layer.clamp[0], layer.clamp[1])
        };
        let mut out = vec![0u8; out_shape.pixels() * out_shape.channels];
        match &layer.op {
            Op::Stem { conv, pads } | Op::Depthwise { conv, pads, .. } => {
                let stride = match &layer.op {
                    Op::Depthwise { stride, .. } => usize::from(*stride),
                    _ => 2,
                };
                let t = conv.input as usize;
                let x = shapes[t];
                let depthwise = matches!(layer.op, Op::Depthwise { .. });
                for oy in 0..out_shape.height {
                    for ox in 0..out_shape.width {
                        for m in 0..out_shape.channels {
                            let s_w = conv.weight_scales[m];
                            let mut acc = conv.bias[m] as f32 * program.quant(t).scale * s_w;
                            let ins: Vec<usize> =
                                if depthwise { vec![m] } else { (0..3).collect() };
                            for (ci, &c) in ins.iter().enumerate() {
                                for ky in 0..3 {
                                    for kx in 0..3 {
                                        let iy = (oy * stride + ky) as isize - pads[0] as isize;
                                        let ix = (ox * stride + kx) as isize - pads[1] as isize;
                                        if iy < 0
                                            || ix < 0
                                            || iy >= x.height as isize
                                            || ix >= x.width as isize
                                        {
                                            continue;
                                        }
                                        let w = if depthwise {
                                            conv.weights[m * 9 + ky * 3 + kx]
                                        } else {
                                            conv.weights[m * 27 + ci * 9 + ky * 3 + kx]
                                        };
                                        let pixel = iy as usize * x.width + ix as usize;
                                        acc += f32::from(w) * s_w * real(t, pixel, c, x);
                                    }
                                }
                            }
                            out[(oy * out_shape.width + ox) * out_shape.channels + m] = code(acc);
                        }
                    }
                }
            }
            Op::Pointwise(conv) => {
                let t = conv.input as usize;
                let x = shapes[t];
                for p in 0..out_shape.pixels() {
                    for m in 0..out_shape.channels {
                        let s_w = conv.weight_scales[m];
                        let mut acc = conv.bias[m] as f32 * program.quant(t).scale * s_w;
                        for k in 0..x.channels {
                            acc += f32::from(conv.weights[m * x.channels + k])
                                * s_w
                                * real(t, p, k, x);
                        }
                        out[p * out_shape.channels + m] = code(acc);
                    }
                }
            }
            Op::Add { a, b } => {
                let (a, b) = (*a as usize, *b as usize);
                for p in 0..out_shape.pixels() {
                    for c in 0..out_shape.channels {
                        out[p * out_shape.channels + c] =
                            code(real(a, p, c, out_shape) + real(b, p, c, out_shape));
                    }
                }
            }
        }
        out
    }
}

/// Every tensor of `program` on `input` as the integer backbone computes it: tensor `k` is the
/// output of the program cut after its first `k` layers.
fn integer_tensors(program: &Program, input: &[f32]) -> Vec<Vec<u8>> {
    let plane = (program.size * program.size) as usize;
    let frame = (0..plane * 3)
        .map(|i| program.input.quantize(input[(i % 3) * plane + i / 3]))
        .collect();
    let mut tensors = vec![frame];
    for k in 1..=program.layers.len() {
        let prefix = Program {
            layers: program.layers[..k].to_vec(),
            ..program.clone()
        };
        let backbone = IntegerBackbone::new(&prefix).unwrap();
        tensors.push(
            backbone
                .run(&mut backbone.activations(), input)
                .unwrap()
                .to_vec(),
        );
    }
    tensors
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn fast_paths_equal_the_references_and_each_layer_float_within_a_code(
        seed in any::<u64>(),
        size in 9usize..24,
        blocks in 1usize..4,
    ) {
        let program = program(seed, size, blocks);
        let input = frame(seed ^ 0x5eed, size);
        let separate = |isa| Options { isa, fuse_min_width: None };
        let reference = IntegerBackbone::with_options(&program, separate(Some(Isa::Scalar)))
            .unwrap();
        prop_assert_eq!(reference.fused_expansions(), 0);
        let mut ra = reference.activations();
        let want = reference.run(&mut ra, &input).unwrap().to_vec();
        // The default choice, then each path family on its own (AVX2 where VNNI is the default),
        // with every expansion fused (these frames' rows are narrower than the default's
        // threshold) and with none.
        let fast = IntegerBackbone::new(&program).unwrap();
        let each = Isa::ALL.into_iter().filter(|isa| isa.is_supported());
        let options = each.flat_map(|isa| {
            let fused = Options { isa: Some(isa), fuse_min_width: Some(1) };
            [fused, separate(Some(isa))]
        });
        for (backbone, options) in [(fast, None)].into_iter().chain(options.map(|o| {
            (IntegerBackbone::with_options(&program, o).unwrap(), Some(o))
        })) {
            if options.is_some_and(|o| o.fuse_min_width.is_some()) {
                prop_assert_eq!(backbone.fused_expansions(), blocks);
            }
            let mut fa = backbone.activations();
            let got = backbone.run(&mut fa, &input).unwrap();
            prop_assert_eq!(got, &want[..], "paths {:?}, {:?}", backbone.paths(), options);
        }

        // Each layer against float from the same input codes: within one code (the rounding of
        // the fixed-point rescale against float's), so every layer reads the tensors, zero
        // points and buffers the program says.
        let tensors = integer_tensors(&program, &input);
        prop_assert_eq!(tensors.last().unwrap(), &want);
        for i in 0..program.layers.len() {
            let float = float_layer(&program, &tensors, i);
            let worst = tensors[i + 1].iter().zip(&float).map(|(a, b)| a.abs_diff(*b)).max();
            prop_assert!(worst <= Some(1), "layer {} {:?}: {:?} codes off", i,
                program.layers[i].op, worst);
        }
    }
}

#[test]
fn the_paths_in_use_are_named() {
    let program = program(1, 16, 2);
    let fast = IntegerBackbone::new(&program).unwrap();
    println!(
        "integer backbone paths on this CPU (stem, pointwise, depthwise, add): {:?}",
        fast.paths()
    );
    assert_eq!(
        IntegerBackbone::with_isa(&program, Isa::Scalar)
            .unwrap()
            .paths(),
        [Isa::Scalar; 4]
    );
}

#[test]
fn a_frame_of_another_size_is_refused() {
    let backbone = IntegerBackbone::new(&program(2, 12, 1)).unwrap();
    let mut act = backbone.activations();
    assert!(backbone.run(&mut act, &frame(0, 13)).is_none());
    let other = IntegerBackbone::new(&program(3, 16, 2)).unwrap();
    assert!(other.run(&mut act, &frame(0, 16)).is_none());
}
