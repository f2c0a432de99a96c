//! The integer stem (3x3 stride-2 convolution over the RGB frame): every path against a direct
//! convolution written here from the definition, padded borders and odd frame sizes included,
//! scratch blocks of every size, and the refusals.

use nap_core::int8::pointwise::{Isa, Layer, PointwiseError};
use nap_core::int8::requant::requantize;
use nap_core::int8::stem::{Frame, SCRATCH_ROW, Stem, StemShape, TAPS};
use nap_core::int8::{OutputStage, Requant, fold_zero_point, stride};
use proptest::prelude::*;

/// Every implementation this CPU runs, the reference first.
fn supported() -> Vec<Stem> {
    Isa::ALL.into_iter().filter_map(Stem::with_isa).collect()
}

fn announce() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        println!(
            "int8 stem paths on this CPU: {:?}; fastest {}",
            supported()
                .iter()
                .map(|k| k.isa().name())
                .collect::<Vec<_>>(),
            Stem::new().isa().name()
        );
    });
}

/// xorshift64.
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
}

/// A random stem layer on a random frame; the bias has the frame's zero point folded in.
struct Case {
    shape: StemShape,
    weights: Vec<i8>,
    bias: Vec<i32>,
    requant: Vec<Requant>,
    stage: OutputStage,
    frame: Vec<u8>,
    zero_point: u8,
}

impl Case {
    fn new(shape: StemShape, seed: u64) -> Case {
        let mut rng = Rng(seed | 1);
        let m = shape.out_channels;
        let weights: Vec<i8> = (0..m * TAPS)
            .map(|_| (rng.below(255) as i32 - 127) as i8)
            .collect();
        let zero_point = rng.below(256) as u8;
        let mut bias: Vec<i32> = (0..m).map(|_| rng.below(20_001) as i32 - 10_000).collect();
        fold_zero_point(&mut bias, &weights, TAPS, zero_point).unwrap();
        let requant = (0..m)
            .map(|_| Requant::from_scale(1.0 / (200.0 + rng.below(20_000) as f64)).unwrap())
            .collect();
        let (a, b) = (rng.below(256) as u8, rng.below(256) as u8);
        let stage = OutputStage {
            zero_point: rng.below(256) as u8,
            min: a.min(b),
            max: a.max(b),
        };
        let frame = (0..shape.input_len().unwrap())
            .map(|_| rng.next() as u8)
            .collect();
        Case {
            shape,
            weights,
            bias,
            requant,
            stage,
            frame,
            zero_point,
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

    /// The definition: ONNX-order weights `[m][c][ky][kx]`, padding taps read the zero point.
    fn direct(&self) -> Vec<u8> {
        let s = &self.shape;
        let (oh, ow, m) = (
            s.out_height().unwrap(),
            s.out_width().unwrap(),
            s.out_channels,
        );
        let mut out = vec![0; s.output_len().unwrap()];
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..m {
                    let mut acc = self.bias[o];
                    for c in 0..3 {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let y = (2 * oy + ky) as isize - s.pads[0] as isize;
                                let x = (2 * ox + kx) as isize - s.pads[1] as isize;
                                let inside = (0..s.height as isize).contains(&y)
                                    && (0..s.width as isize).contains(&x);
                                let code = if inside {
                                    self.frame[(y as usize * s.width + x as usize) * 3 + c]
                                } else {
                                    self.zero_point
                                };
                                let w = self.weights[o * 27 + c * 9 + ky * 3 + kx];
                                acc = acc.wrapping_add(i32::from(w) * i32::from(code));
                            }
                        }
                    }
                    out[(oy * ow + ox) * stride(m) + o] =
                        requantize(acc, self.requant[o], self.stage);
                }
            }
        }
        out
    }

    /// `stem`'s output with a scratch of `scratch` bytes.
    fn run(&self, stem: &Stem, scratch: usize) -> Vec<u8> {
        let len = stem.packed_len(&self.shape).unwrap();
        let (mut w, mut p) = (vec![0x11; len.weights], vec![0x2222; len.params]);
        stem.pack(&self.shape, &self.layer(), &mut w, &mut p)
            .unwrap();
        let mut scratch = vec![0x77; scratch];
        let mut out = vec![0xcc; self.shape.output_len().unwrap()];
        let frame = Frame {
            data: &self.frame,
            zero_point: self.zero_point,
        };
        stem.run(&self.shape, &w, &p, frame, &mut scratch, &mut out)
            .unwrap();
        out
    }

    fn agrees(&self, scratch: usize) -> Result<(), TestCaseError> {
        let want = self.direct();
        let m = self.shape.out_channels;
        for stem in supported() {
            let got = self.run(&stem, scratch);
            for (p, (g, w)) in got
                .chunks_exact(stride(m))
                .zip(want.chunks_exact(stride(m)))
                .enumerate()
            {
                prop_assert_eq!(&g[..m], &w[..m], "{} pixel {}", stem.isa().name(), p);
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_path_equals_the_direct_convolution(
        height in 1usize..40,
        width in 1usize..40,
        pads in prop::array::uniform4(0usize..=2),
        out_channels in 1usize..40,
        rows in 1usize..20,
        extra in 0usize..SCRATCH_ROW,
        seed in any::<u64>(),
    ) {
        announce();
        let shape = StemShape { height, width, pads, out_channels };
        prop_assume!(shape.out_height().is_some() && shape.out_width().is_some());
        Case::new(shape, seed).agrees(rows * SCRATCH_ROW + extra)?;
    }
}

#[test]
fn mobilenet_stem_corner() {
    announce();
    // MobileNetV2's stem (pads 1, 32 channels) on a smaller frame, odd and even sides.
    for (height, width) in [(32, 48), (33, 47)] {
        let shape = StemShape {
            height,
            width,
            pads: [1; 4],
            out_channels: 32,
        };
        Case::new(shape, 99).agrees(256 * SCRATCH_ROW).unwrap();
    }
}

#[test]
fn refusals() {
    announce();
    let shape = StemShape {
        height: 5,
        width: 6,
        pads: [1, 1, 0, 0],
        out_channels: 4,
    };
    assert_eq!((shape.out_height(), shape.out_width()), (Some(2), Some(3)));
    let case = Case::new(shape, 3);
    for stem in supported() {
        let name = stem.isa().name();
        for bad in [
            StemShape {
                pads: [3, 0, 0, 0],
                ..shape
            },
            StemShape {
                height: 1,
                pads: [0, 0, 1, 0],
                ..shape
            },
            StemShape { width: 0, ..shape },
            StemShape {
                out_channels: 0,
                ..shape
            },
        ] {
            assert_eq!(
                stem.packed_len(&bad),
                Err(PointwiseError::Shape),
                "{name} {bad:?}"
            );
        }
        let len = stem.packed_len(&shape).unwrap();
        let (mut w, mut p) = (vec![0; len.weights], vec![0; len.params]);
        let mut weights = case.weights.clone();
        weights[26] = -128;
        let layer = Layer {
            weights: &weights,
            ..case.layer()
        };
        assert_eq!(
            stem.pack(&shape, &layer, &mut w, &mut p),
            Err(PointwiseError::Weight)
        );
        let layer = Layer {
            weights: &weights[1..],
            ..case.layer()
        };
        assert_eq!(
            stem.pack(&shape, &layer, &mut w, &mut p),
            Err(PointwiseError::BufferLength)
        );
        stem.pack(&shape, &case.layer(), &mut w, &mut p).unwrap();
        let frame = Frame {
            data: &case.frame,
            zero_point: case.zero_point,
        };
        let mut out = vec![0; shape.output_len().unwrap()];
        let mut scratch = vec![0; SCRATCH_ROW];
        assert_eq!(
            stem.run(&shape, &w, &p, frame, &mut scratch, &mut out),
            Ok(())
        );
        let e = |r| assert_eq!(r, Err(PointwiseError::BufferLength), "{name}");
        e(stem.run(&shape, &w, &p, frame, &mut scratch[1..], &mut out));
        e(stem.run(&shape, &w, &p, frame, &mut scratch, &mut out[1..]));
        let short = Frame {
            data: &case.frame[1..],
            ..frame
        };
        e(stem.run(&shape, &w, &p, short, &mut scratch, &mut out));
        assert_eq!(
            stem.run(&shape, &w[1..], &p, frame, &mut scratch, &mut out),
            Err(PointwiseError::Packing)
        );
        let other = StemShape {
            out_channels: 5,
            ..shape
        };
        let mut out5 = vec![0; other.output_len().unwrap()];
        if stem.packed_len(&other) == Ok(len) {
            assert_eq!(
                stem.run(&other, &w, &p, frame, &mut scratch, &mut out5),
                Err(PointwiseError::Packing)
            );
        }
    }
}
