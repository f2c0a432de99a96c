//! The fused expansion + depthwise convolution: on every pair of paths this CPU runs, byte for
//! byte what the two scalar references give one after the other (random sizes, strides,
//! paddings, zero points and clamps, MobileNetV2's shapes), and its refusals.

mod common;

use common::{Rng, real};
use nap_core::depthwise::{Geometry, TAPS};
use nap_core::int8::depthwise::{self, Depthwise, DepthwiseError, Packed};
use nap_core::int8::expand_depthwise::{ExpandDepthwise, ExpandDepthwiseError, Expansion};
use nap_core::int8::pointwise::{Layer, Pointwise, PointwiseError, Shape};
use nap_core::int8::{OutputStage, Requant, stride};
use nap_core::isa::Isa;
use proptest::prelude::*;

/// Every pair of implementations this CPU runs, printed once.
fn supported() -> Vec<ExpandDepthwise> {
    let pointwise = Isa::ALL.into_iter().filter_map(Pointwise::with_isa);
    let pairs: Vec<_> = pointwise
        .flat_map(|p| {
            Isa::ALL
                .into_iter()
                .filter_map(Depthwise::with_isa)
                .map(move |d| ExpandDepthwise {
                    pointwise: p,
                    depthwise: d,
                })
        })
        .collect();
    static SAY_ONCE: std::sync::Once = std::sync::Once::new();
    SAY_ONCE.call_once(|| {
        let names: Vec<_> = pairs
            .iter()
            .map(|k| format!("{}+{}", k.pointwise.isa().name(), k.depthwise.isa().name()))
            .collect();
        println!("fused expansion + depthwise paths (pointwise+depthwise) on this CPU: {names:?}");
    });
    pairs
}

impl Rng {
    fn weights(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.range(-127, 127) as i8).collect()
    }

    /// Per-channel rescales from 2^-14 to 2 (some shift left).
    fn requants(&mut self, n: usize) -> Vec<Requant> {
        (0..n)
            .map(|_| {
                let exponent = self.range(-14_000, 1_000) as f64 / 1000.0;
                Requant::from_scale(2f64.powf(exponent)).unwrap()
            })
            .collect()
    }

    /// A random zero point, clamped to a random range for half the stages.
    fn stage(&mut self) -> OutputStage {
        let zero_point = self.range(0, 255) as u8;
        let (a, b) = (self.range(0, 255) as u8, self.range(0, 255) as u8);
        if self.next().is_multiple_of(2) {
            OutputStage::unclamped(zero_point)
        } else {
            OutputStage {
                zero_point,
                min: a.min(b),
                max: a.max(b),
            }
        }
    }
}

/// One expansion and the depthwise convolution it feeds, with random numbers.
struct Block {
    shape: Shape,
    g: Geometry,
    expand_weights: Vec<i8>,
    expand_bias: Vec<i32>,
    expand_requant: Vec<Requant>,
    expand_stage: OutputStage,
    dw_weights: Vec<i8>,
    dw_params: Vec<i32>,
    dw_stage: OutputStage,
    input: Vec<u8>,
}

impl Block {
    fn new(in_channels: usize, g: Geometry, seed: u64) -> Block {
        let mut rng = Rng(seed);
        let m = g.channels;
        let shape = Shape {
            pixels: g.in_height * g.in_width,
            in_channels,
            out_channels: m,
        };
        let expand_weights = rng.weights(m * in_channels);
        let expand_bias = (0..m).map(|_| rng.range(-60_000, 60_000) as i32).collect();
        let expand_requant = rng.requants(m);
        let expand_stage = rng.stage();
        let dw = rng.weights(m * TAPS);
        let mut bias: Vec<i32> = (0..m).map(|_| rng.range(-60_000, 60_000) as i32).collect();
        nap_core::int8::fold_zero_point(&mut bias, &dw, TAPS, expand_stage.zero_point).unwrap();
        let mut dw_weights = vec![0; Packed::weights_len(m).unwrap()];
        let mut dw_params = vec![0; Packed::params_len(m).unwrap()];
        depthwise::pack(
            &dw,
            &bias,
            &rng.requants(m),
            &mut dw_weights,
            &mut dw_params,
        )
        .unwrap();
        let dw_stage = rng.stage();
        let input = (0..shape.input_len().unwrap())
            .map(|_| rng.next() as u8)
            .collect();
        Block {
            shape,
            g,
            expand_weights,
            expand_bias,
            expand_requant,
            expand_stage,
            dw_weights,
            dw_params,
            dw_stage,
            input,
        }
    }

    fn packed(&self) -> Packed<'_> {
        Packed::new(self.g.channels, &self.dw_weights, &self.dw_params).unwrap()
    }

    /// The expansion packed for `pointwise`.
    fn expansion(&self, pointwise: &Pointwise) -> (Vec<i8>, Vec<i32>) {
        let len = pointwise.packed_len(&self.shape).unwrap();
        let (mut w, mut p) = (vec![0; len.weights], vec![0; len.params]);
        let layer = Layer {
            weights: &self.expand_weights,
            bias: &self.expand_bias,
            requant: &self.expand_requant,
            stage: self.expand_stage,
        };
        pointwise.pack(&self.shape, &layer, &mut w, &mut p).unwrap();
        (w, p)
    }

    fn output_len(&self) -> usize {
        stride(self.g.channels) * self.g.out_height * self.g.out_width
    }

    /// The two scalar references one after the other, the expanded tensor whole.
    fn reference(&self) -> Vec<u8> {
        let pointwise = Pointwise::with_isa(Isa::Scalar).unwrap();
        let (w, p) = self.expansion(&pointwise);
        let mut expanded = vec![0; self.shape.output_len().unwrap()];
        pointwise
            .run(&self.shape, &w, &p, &self.input, &mut expanded)
            .unwrap();
        let mut out = vec![0; self.output_len()];
        let mut scratch = vec![0; depthwise::scratch_len(&self.g).unwrap()];
        Depthwise::with_isa(Isa::Scalar)
            .unwrap()
            .run(
                &self.g,
                &self.packed(),
                self.expand_stage.zero_point,
                self.dw_stage,
                &expanded,
                &mut scratch,
                &mut out,
            )
            .unwrap();
        real(&out, self.g.channels)
    }

    /// `kernels` fused, the scratch and output full of junk first.
    fn fused(&self, kernels: &ExpandDepthwise) -> Result<Vec<u8>, ExpandDepthwiseError> {
        let (w, p) = self.expansion(&kernels.pointwise);
        let mut out = vec![0xa5; self.output_len()];
        let mut scratch = vec![0x5a; depthwise::scratch_len(&self.g).unwrap()];
        let expansion = Expansion {
            shape: self.shape,
            weights: &w,
            params: &p,
        };
        kernels.run(
            &expansion,
            &self.g,
            &self.packed(),
            self.dw_stage,
            &self.input,
            &mut scratch,
            &mut out,
        )?;
        Ok(real(&out, self.g.channels))
    }
}

/// A geometry (see [`common::geometry`]) the depthwise kernels accept.
fn geometry(
    channels: usize,
    size: (usize, usize),
    stride: usize,
    pads: (usize, usize, usize, usize),
) -> Option<Geometry> {
    let g = common::geometry(channels, size, stride, pads)?;
    let c = channels;
    g.check(
        c * g.in_height * g.in_width,
        c * TAPS,
        c,
        c * g.out_height * g.out_width,
    )
    .ok()
    .map(|_| g)
}

fn agrees(block: &Block) -> Result<(), TestCaseError> {
    let want = block.reference();
    for kernels in supported() {
        let got = block.fused(&kernels).unwrap();
        let first = (0..want.len()).find(|&i| got[i] != want[i]);
        prop_assert!(
            first.is_none(),
            "{:?}+{:?} {:?} K {}: first difference at {:?}",
            kernels.pointwise.isa(),
            kernels.depthwise.isa(),
            block.g,
            block.shape.in_channels,
            first
        );
    }
    Ok(())
}

#[test]
fn mobilenet_v2_blocks_equal_the_references() {
    // (input channels, expanded channels, side, stride), padding 1 on every side: MobileNetV2
    // 1.0 / 224's distinct expansion + depthwise pairs, at a third of their side to keep the
    // scalar references quick (the rows are what the fusion changes, not their count).
    for (k, m, side, s) in [
        (16, 96, 112usize, 2),
        (24, 144, 56, 1),
        (24, 144, 56, 2),
        (32, 192, 28, 1),
        (32, 192, 28, 2),
        (64, 384, 14, 1),
        (96, 576, 14, 2),
        (160, 960, 7, 1),
    ] {
        let side = side.div_ceil(3).max(7);
        let g = geometry(m, (side, side), s, (1, 1, 1, 1)).unwrap();
        agrees(&Block::new(k, g, (side * 31 + m) as u64)).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn every_pair_of_paths_equals_the_references(
        in_channels in 1usize..40,
        channels in 1usize..70,
        in_height in 1usize..20,
        in_width in 1usize..30,
        stride in 1usize..=2,
        pads in (0usize..=1, 0usize..=2, 0usize..=1, 0usize..=2),
        seed in any::<u64>(),
    ) {
        let Some(g) = geometry(channels, (in_height, in_width), stride, pads) else {
            return Err(TestCaseError::reject("not a valid geometry"));
        };
        agrees(&Block::new(in_channels, g, seed))?;
    }
}

#[test]
fn refusals() {
    let g = geometry(24, (9, 11), 2, (1, 1, 1, 1)).unwrap();
    let block = Block::new(8, g, 7);
    for kernels in supported() {
        assert!(block.fused(&kernels).is_ok());
        let (w, p) = block.expansion(&kernels.pointwise);
        let packed = block.packed();
        let expansion = Expansion {
            shape: block.shape,
            weights: &w,
            params: &p,
        };
        let scratch_len = depthwise::scratch_len(&g).unwrap();
        let run = |e: &Expansion<'_>, g: &Geometry, input: &[u8], scratch: usize, out: usize| {
            let (mut scratch, mut out) = (vec![0; scratch], vec![0; out]);
            kernels.run(e, g, &packed, block.dw_stage, input, &mut scratch, &mut out)
        };
        let out = block.output_len();
        let input = &block.input;
        assert_eq!(
            run(&expansion, &g, &input[1..], scratch_len, out),
            Err(ExpandDepthwiseError::Pointwise(
                PointwiseError::BufferLength
            ))
        );
        assert_eq!(
            run(&expansion, &g, input, scratch_len - 1, out),
            Err(ExpandDepthwiseError::Depthwise(DepthwiseError::Scratch))
        );
        assert_eq!(
            run(&expansion, &g, input, scratch_len, out + 1),
            Err(ExpandDepthwiseError::Depthwise(DepthwiseError::Output))
        );
        // The depthwise input is another size than the expansion's output.
        let taller = Geometry {
            in_height: g.in_height + 1,
            ..g
        };
        assert_eq!(
            run(&expansion, &taller, input, scratch_len, out),
            Err(ExpandDepthwiseError::Mismatch)
        );
        // Packed for another shape: the header says so.
        let wider = Expansion {
            shape: Shape {
                in_channels: 9,
                ..block.shape
            },
            ..expansion
        };
        assert!(matches!(
            run(&wider, &g, input, scratch_len, out),
            Err(ExpandDepthwiseError::Pointwise(_))
        ));
    }
}
