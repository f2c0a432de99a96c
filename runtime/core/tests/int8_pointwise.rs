//! Integer pointwise (1x1) convolution: a case small enough to check by hand, every fast path
//! against the scalar reference byte for byte on random shapes (tails over pixels, input
//! channels and output-channel panels, left-shifting and right-shifting requants, clamps,
//! accumulators that wrap), and every refusal.

use nap_core::int8::pointwise::{
    Isa, Layer, MAX_CHANNELS, PackedLen, Pointwise, PointwiseError, Shape,
};
use nap_core::int8::{OutputStage, Requant, stride};
use proptest::prelude::*;

/// Every implementation this CPU runs, the reference first.
fn supported() -> Vec<Pointwise> {
    Isa::ALL
        .into_iter()
        .filter_map(Pointwise::with_isa)
        .collect()
}

/// Prints, once per test binary, which paths this CPU runs.
fn announce() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        println!(
            "int8 pointwise paths on this CPU: {:?}; fastest {}",
            supported()
                .iter()
                .map(|k| k.isa().name())
                .collect::<Vec<_>>(),
            Pointwise::new().isa().name()
        );
    });
}

/// The packed buffers of `layer` for `kernel`, filled with junk first.
fn packed(kernel: &Pointwise, shape: &Shape, layer: &Layer<'_>) -> (Vec<i8>, Vec<i32>) {
    let len = kernel.packed_len(shape).unwrap();
    let (mut w, mut p) = (vec![0x5a; len.weights], vec![0x5a5a_5a5a; len.params]);
    kernel.pack(shape, layer, &mut w, &mut p).unwrap();
    (w, p)
}

/// Runs `kernel` on `input`, the output's bytes starting as `fill`.
fn run(kernel: &Pointwise, shape: &Shape, layer: &Layer<'_>, input: &[u8], fill: u8) -> Vec<u8> {
    let (w, p) = packed(kernel, shape, layer);
    let mut out = vec![fill; shape.output_len().unwrap()];
    kernel.run(shape, &w, &p, input, &mut out).unwrap();
    out
}

#[test]
fn by_hand_on_every_path() {
    announce();
    // Two output channels over three input channels, three pixels; the input's five padding
    // bytes per pixel are junk that must not reach the output.
    let shape = Shape {
        pixels: 3,
        in_channels: 3,
        out_channels: 2,
    };
    let weights = [1, 2, 3, -1, 0, 127];
    let bias = [10, -20];
    let half = Requant::from_scale(0.5).unwrap();
    let quarter = Requant::from_scale(0.25).unwrap();
    let stage = OutputStage {
        zero_point: 3,
        min: 3,
        max: 250,
    };
    let layer = Layer {
        weights: &weights,
        bias: &bias,
        requant: &[half, quarter],
        stage,
    };
    let junk = [0xab; 5];
    let input: Vec<u8> = [[1, 2, 3], [0, 0, 0], [255, 255, 255]]
        .iter()
        .flat_map(|px| px.iter().chain(&junk).copied())
        .collect();
    // Channel 0: 10 + 1 + 4 + 9 = 24, 10, 10 + 6 * 255 = 1540; halved: 12, 5, 770.
    // Channel 1: -20 - 1 + 381 = 360, -20, -20 - 255 + 127 * 255 = 32110; quartered, rounding
    // half up: 90, -5, 8028 (32110 / 4 = 8027.5).
    // Plus the zero point 3, clamped to 3..=250.
    let want = [[15, 93], [8, 3], [250, 250]];
    for kernel in supported() {
        let out = run(&kernel, &shape, &layer, &input, 0xee);
        for (p, want) in want.iter().enumerate() {
            assert_eq!(
                &out[p * 8..p * 8 + 2],
                want,
                "{} pixel {p}",
                kernel.isa().name()
            );
        }
    }
}

/// A random layer: weights in -127..=127, biases (now and then extreme, to make accumulators
/// wrap), requants over a wide range of scales, a clamped output stage, and input codes with
/// junk in the padding bytes.
#[derive(Debug)]
struct Case {
    shape: Shape,
    weights: Vec<i8>,
    bias: Vec<i32>,
    requant: Vec<Requant>,
    stage: OutputStage,
    input: Vec<u8>,
}

/// xorshift64: deterministic data from a proptest seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Case {
    /// `scales`: 0 typical (mid-range outputs), 1 all below 1 (no left shift), 2 wide
    /// (1e-10..100, some shifting left).
    fn new(shape: Shape, seed: u64, scales: u8) -> Case {
        let mut rng = Rng(seed | 1);
        let (k, m) = (shape.in_channels, shape.out_channels);
        let weights = (0..k * m)
            .map(|_| (rng.below(255) as i32 - 127) as i8)
            .collect();
        let bias = (0..m)
            .map(|_| match rng.below(16) {
                0 => [i32::MAX, i32::MIN, i32::MAX - 1000, i32::MIN + 1000][rng.below(4) as usize],
                _ => rng.below(1 << 20) as i32 - (1 << 19),
            })
            .collect();
        // Accumulators spread over about sqrt(K) * 127 * 128 around the bias.
        let typical = 1.0 / ((k as f64).sqrt() * 127.0 * 40.0);
        let requant = (0..m)
            .map(|_| {
                let scale = match scales {
                    0 => typical * 2f64.powf(4.0 * rng.unit() - 2.0),
                    1 => 10f64.powf(-10.0 + 9.9 * rng.unit()),
                    _ => 10f64.powf(-10.0 + 12.0 * rng.unit()),
                };
                Requant::from_scale(scale).unwrap()
            })
            .collect();
        let zero_point = rng.below(256) as u8;
        let (a, b) = (rng.below(256) as u8, rng.below(256) as u8);
        let stage = match rng.below(3) {
            0 => OutputStage::unclamped(zero_point),
            _ => OutputStage {
                zero_point,
                min: a.min(b),
                max: a.max(b),
            },
        };
        let input = (0..shape.input_len().unwrap())
            .map(|_| rng.next() as u8)
            .collect();
        Case {
            shape,
            weights,
            bias,
            requant,
            stage,
            input,
        }
    }

    fn layer(&self) -> Layer<'_> {
        Layer {
            weights: &self.weights,
            bias: &self.bias,
            requant: &self.requant,
            stage: self.stage,
        }
    }
}

/// Every path's output equals the reference's on every real channel.
fn agrees(case: &Case) -> Result<(), TestCaseError> {
    let shape = &case.shape;
    let reference = Pointwise::with_isa(Isa::Scalar).unwrap();
    let want = run(&reference, shape, &case.layer(), &case.input, 0);
    let (m, mm) = (shape.out_channels, stride(shape.out_channels));
    for kernel in supported() {
        let got = run(&kernel, shape, &case.layer(), &case.input, 0xcc);
        for p in 0..shape.pixels {
            for o in 0..m {
                prop_assert_eq!(
                    got[p * mm + o],
                    want[p * mm + o],
                    "{} pixel {} channel {}",
                    kernel.isa().name(),
                    p,
                    o
                );
            }
        }
    }
    Ok(())
}

fn shapes() -> impl Strategy<Value = Shape> {
    (1usize..300, 1usize..200, 1usize..70).prop_map(|(pixels, in_channels, out_channels)| Shape {
        pixels,
        in_channels,
        out_channels,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_path_equals_the_reference(shape in shapes(), seed in any::<u64>(), scales in 0u8..3) {
        announce();
        agrees(&Case::new(shape, seed, scales))?;
    }
}

#[test]
fn every_tail_and_panel_size() {
    announce();
    // Each output-channel panel size (stride(M) = 8..=72) and pixel tail (1..=9), with input
    // channels on both sides of a 16-channel block.
    for m in (1..=72).step_by(7).chain([8, 16, 24, 32, 40, 64, 72]) {
        for (pixels, k) in [(1, 1), (2, 8), (3, 9), (5, 16), (7, 24), (9, 27), (6, 33)] {
            let shape = Shape {
                pixels,
                in_channels: k,
                out_channels: m,
            };
            for scales in 0..3 {
                agrees(&Case::new(shape, (m * 1000 + k) as u64, scales)).unwrap();
            }
        }
    }
}

#[test]
fn mobilenet_shapes_agree() {
    announce();
    // One of each kind of MobileNetV2 layer, on a few pixels: expand, project, the last 1x1.
    for (k, m) in [(16, 96), (24, 144), (144, 24), (960, 160), (320, 1280)] {
        let shape = Shape {
            pixels: 9,
            in_channels: k,
            out_channels: m,
        };
        agrees(&Case::new(shape, (k * m) as u64, 0)).unwrap();
    }
}

#[test]
fn refusals() {
    announce();
    let shape = Shape {
        pixels: 4,
        in_channels: 3,
        out_channels: 5,
    };
    let case = Case::new(shape, 7, 0);
    for kernel in supported() {
        let name = kernel.isa().name();
        let len = kernel.packed_len(&shape).unwrap();
        let (w, p) = packed(&kernel, &shape, &case.layer());
        let mut out = vec![0; shape.output_len().unwrap()];
        let input = &case.input;
        assert_eq!(kernel.run(&shape, &w, &p, input, &mut out), Ok(()));

        // Sizes.
        for bad in [
            Shape { pixels: 0, ..shape },
            Shape {
                in_channels: 0,
                ..shape
            },
            Shape {
                out_channels: 0,
                ..shape
            },
            Shape {
                in_channels: MAX_CHANNELS + 1,
                ..shape
            },
            Shape {
                pixels: usize::MAX / 2,
                ..shape
            },
        ] {
            assert_eq!(
                kernel.packed_len(&bad),
                Err(PointwiseError::Shape),
                "{name} {bad:?}"
            );
            assert_eq!(
                kernel.run(&bad, &w, &p, input, &mut out),
                Err(PointwiseError::Shape),
                "{name} {bad:?}"
            );
        }

        // Run: activation lengths, then packed buffers of other lengths.
        let e = |r| assert_eq!(r, Err(PointwiseError::BufferLength), "{name}");
        e(kernel.run(&shape, &w, &p, &input[1..], &mut out));
        e(kernel.run(&shape, &w, &p, input, &mut out[1..]));
        let e = |r| assert_eq!(r, Err(PointwiseError::Packing), "{name}");
        e(kernel.run(&shape, &w[1..], &p, input, &mut out));
        e(kernel.run(&shape, &w, &p[1..], input, &mut out));
        // Packed for another shape with the same buffer lengths, or with a broken header.
        let other = Shape {
            out_channels: 6,
            ..shape
        };
        if kernel.packed_len(&other) == Ok(len) {
            let mut out = vec![0; other.output_len().unwrap()];
            e(kernel.run(&other, &w, &p, input, &mut out));
        }
        let mut broken = p.clone();
        broken[0] ^= 1;
        e(kernel.run(&shape, &w, &broken, input, &mut out));
        let mut broken = p.clone();
        broken[5] = 300;
        e(kernel.run(&shape, &w, &broken, input, &mut out));

        // Pack: lengths, -128, requants, clamps.
        let (mut w2, mut p2) = (vec![0; len.weights], vec![0; len.params]);
        let pack =
            |layer: &Layer<'_>, w: &mut [i8], p: &mut [i32]| kernel.pack(&shape, layer, w, p);
        let layer = case.layer();
        let e = |r| assert_eq!(r, Err(PointwiseError::BufferLength), "{name}");
        e(pack(
            &Layer {
                weights: &case.weights[1..],
                ..layer
            },
            &mut w2,
            &mut p2,
        ));
        e(pack(
            &Layer {
                bias: &case.bias[1..],
                ..layer
            },
            &mut w2,
            &mut p2,
        ));
        e(pack(
            &Layer {
                requant: &case.requant[1..],
                ..layer
            },
            &mut w2,
            &mut p2,
        ));
        e(pack(&layer, &mut w2[1..], &mut p2));
        e(pack(&layer, &mut w2, &mut p2[1..]));
        let mut weights = case.weights.clone();
        weights[7] = -128;
        assert_eq!(
            pack(
                &Layer {
                    weights: &weights,
                    ..layer
                },
                &mut w2,
                &mut p2
            ),
            Err(PointwiseError::Weight),
            "{name}"
        );
        let mut requant = case.requant.clone();
        requant[2] = Requant {
            multiplier: 5,
            shift: 0,
        };
        let e = |r| assert_eq!(r, Err(PointwiseError::Requant), "{name}");
        e(pack(
            &Layer {
                requant: &requant,
                ..layer
            },
            &mut w2,
            &mut p2,
        ));
        requant[2] = Requant {
            multiplier: 1 << 30,
            shift: 31,
        };
        e(pack(
            &Layer {
                requant: &requant,
                ..layer
            },
            &mut w2,
            &mut p2,
        ));
        let reversed = OutputStage {
            zero_point: 0,
            min: 9,
            max: 8,
        };
        e(pack(
            &Layer {
                stage: reversed,
                ..layer
            },
            &mut w2,
            &mut p2,
        ));
    }

    // Buffers packed by one path are refused by another.
    let paths = supported();
    for a in &paths {
        let (w, p) = packed(a, &shape, &case.layer());
        for b in paths.iter().filter(|b| b.isa() != a.isa()) {
            let mut out = vec![0; shape.output_len().unwrap()];
            assert_eq!(
                b.run(&shape, &w, &p, &case.input, &mut out),
                Err(PointwiseError::Packing),
                "{} packed, {} ran",
                a.isa().name(),
                b.isa().name()
            );
        }
    }
    assert_eq!(
        PackedLen {
            weights: 15,
            params: 8 + 15
        },
        Pointwise::with_isa(Isa::Scalar)
            .unwrap()
            .packed_len(&shape)
            .unwrap()
    );
    assert!(PointwiseError::Weight.to_string().contains("-128"));
}
