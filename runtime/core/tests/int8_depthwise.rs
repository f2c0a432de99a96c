//! Int8 depthwise 3x3: a hand-computed case with padding on every side (stride 1 and 2), every
//! fast path against the scalar reference byte for byte on random geometries and on the
//! MobileNetV2 layer shapes, and refused buffers and parameters.

mod common;

use common::{Rng, geometry, real};
use nap_core::depthwise::{Geometry, GeometryError, TAPS};
use nap_core::int8::depthwise::{Depthwise, DepthwiseError, Packed, pack, scratch_len};
use nap_core::int8::{OutputStage, Requant, fold_zero_point, stride};
use nap_core::isa::Isa;
use proptest::prelude::*;
use std::sync::Once;

/// Every implementation this CPU runs, printed once.
fn supported() -> Vec<Depthwise> {
    let paths: Vec<_> = Isa::ALL
        .into_iter()
        .filter_map(Depthwise::with_isa)
        .collect();
    static SAY_ONCE: Once = Once::new();
    SAY_ONCE.call_once(|| {
        println!(
            "int8 depthwise paths on this CPU: {:?}; fastest {}",
            paths.iter().map(|d| d.isa().name()).collect::<Vec<_>>(),
            Depthwise::new().isa().name()
        )
    });
    paths
}

/// A layer's parameters before packing: real bias (the zero point not yet folded).
struct Layer {
    weights: Vec<i8>,
    bias: Vec<i32>,
    requant: Vec<Requant>,
    zero_point: u8,
}

/// The layer's packed buffers (weights, params), the zero point folded into the bias.
fn packed_buffers(layer: &Layer) -> (Vec<i8>, Vec<i32>) {
    let c = layer.bias.len();
    let mut bias = layer.bias.clone();
    fold_zero_point(&mut bias, &layer.weights, TAPS, layer.zero_point).unwrap();
    let mut w = vec![0; Packed::weights_len(c).unwrap()];
    let mut p = vec![0; Packed::params_len(c).unwrap()];
    pack(&layer.weights, &bias, &layer.requant, &mut w, &mut p).unwrap();
    (w, p)
}

/// Output of `d` with the scratch and the output full of junk first.
fn run(d: Depthwise, g: &Geometry, layer: &Layer, stage: OutputStage, input: &[u8]) -> Vec<u8> {
    let (w, p) = packed_buffers(layer);
    let packed = Packed::new(g.channels, &w, &p).unwrap();
    let sc = stride(g.channels);
    let mut out = vec![0xa5; sc * g.out_height * g.out_width];
    let mut scratch = vec![0x5a; scratch_len(g).unwrap()];
    d.run(
        g,
        &packed,
        layer.zero_point,
        stage,
        input,
        &mut scratch,
        &mut out,
    )
    .unwrap();
    out
}

#[test]
fn hand_computed_padding_on_every_side() {
    // Three channels over a 4x4 input, zero point 10. Channels 0 and 1 read code 12 everywhere
    // (real value 2); channel 2 reads 10 + 4 iy + ix. Channel 0: all weights 1, bias 100,
    // factor 1: 100 + 2 * (taps inside). Channel 1: all -1, bias 100, factor 1/2 (rounding half
    // up). Channel 2: only the top-left tap (1), bias 0: x[oy - 1][ox - 1] - 10, 0 in the
    // padding. Output zero point 5, clamped to 5..=120.
    let zp = 10;
    let c = 3;
    let sc = stride(c);
    let mut input = vec![0u8; 16 * sc];
    for (i, pixel) in input.chunks_exact_mut(sc).enumerate() {
        pixel[..3].copy_from_slice(&[12, 12, 10 + i as u8]);
        pixel[3..].fill(0xee); // padding: must never reach a channel
    }
    let mut weights = vec![1i8; 9];
    weights.extend([-1i8; 9]);
    weights.extend([1, 0, 0, 0, 0, 0, 0, 0, 0]);
    let one = Requant::from_scale(1.0).unwrap();
    let layer = Layer {
        weights,
        bias: vec![100, 100, 0],
        requant: vec![one, Requant::from_scale(0.5).unwrap(), one],
        zero_point: zp,
    };
    let stage = OutputStage {
        zero_point: 5,
        min: 5,
        max: 120,
    };
    // Stride 1: taps inside are 4 at a corner, 6 on an edge, 9 inside.
    let g = geometry(c, (4, 4), 1, (1, 1, 1, 1)).unwrap();
    let inside = |oy: usize, ox: usize| {
        let edge = |o: usize| if o == 0 || o == 3 { 2 } else { 3 };
        edge(oy) * edge(ox)
    };
    let mut want = Vec::new();
    for oy in 0..4 {
        for ox in 0..4 {
            let n = inside(oy, ox);
            let ch2 = if oy == 0 || ox == 0 {
                0
            } else {
                4 * (oy - 1) + ox - 1
            };
            want.extend([
                (100 + 2 * n + 5).min(120) as u8,
                ((100 - 2 * n + 1) / 2 + 5) as u8,
                (ch2 + 5) as u8,
            ]);
        }
    }
    assert_eq!(&want[..6], &[113, 51, 5, 117, 49, 5]);
    // Stride 2 over the same input: windows at rows/columns -1..=1 and 1..=3.
    let g2 = geometry(c, (4, 4), 2, (1, 1, 1, 1)).unwrap();
    assert_eq!((g2.out_height, g2.out_width), (2, 2));
    // Channel 2's top-left tap lies in the padding but at (1, 1), which reads 10 + 5.
    let want2 = [[113, 51, 5], [117, 49, 5], [117, 49, 5], [120, 46, 5 + 5]].concat();
    for d in supported() {
        assert_eq!(
            real(&run(d, &g, &layer, stage, &input), c),
            want,
            "{:?}",
            d.isa()
        );
        assert_eq!(
            real(&run(d, &g2, &layer, stage, &input), c),
            want2,
            "{:?}",
            d.isa()
        );
    }
}

/// Random weights (-127..=127), biases, per-channel factors from 2^-14 to 2 (a few shift
/// left) or, for half the layers, below 1 only (no left shift anywhere: the fast paths then
/// leave that step out), a random zero point, and an output stage with a clamp.
fn random_layer(channels: usize, rng: &mut Rng) -> (Layer, OutputStage) {
    let top = if rng.next().is_multiple_of(2) {
        1_000
    } else {
        -1
    };
    let weights = (0..channels * TAPS)
        .map(|_| rng.range(-127, 127) as i8)
        .collect();
    let bias = (0..channels)
        .map(|_| rng.range(-60_000, 60_000) as i32)
        .collect();
    let requant = (0..channels)
        .map(|_| {
            let exponent = rng.range(-14_000, top) as f64 / 1000.0;
            Requant::from_scale(2f64.powf(exponent)).unwrap()
        })
        .collect();
    let zero_point = rng.range(0, 255) as u8;
    let (a, b) = (rng.range(0, 255) as u8, rng.range(0, 255) as u8);
    let stage = OutputStage {
        zero_point: rng.range(0, 255) as u8,
        min: a.min(b),
        max: a.max(b),
    };
    (
        Layer {
            weights,
            bias,
            requant,
            zero_point,
        },
        stage,
    )
}

/// Every path against the reference on one geometry with random numbers.
fn check_against_reference(g: &Geometry, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let (layer, stage) = random_layer(g.channels, &mut rng);
    let input: Vec<u8> = (0..stride(g.channels) * g.in_height * g.in_width)
        .map(|_| rng.next() as u8)
        .collect();
    let reference = Depthwise::with_isa(Isa::Scalar).unwrap();
    let want = real(&run(reference, g, &layer, stage, &input), g.channels);
    for d in supported() {
        let got = real(&run(d, g, &layer, stage, &input), g.channels);
        if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
            prop_assert!(
                false,
                "{:?} {g:?}: pixel {} channel {}: {} vs reference {}",
                d.isa(),
                i / g.channels,
                i % g.channels,
                got[i],
                want[i]
            );
        }
    }
    Ok(())
}

#[test]
fn mobilenet_v2_shapes_agree_with_reference() {
    // (channels, input side, stride), padding 1 on every side: the distinct depthwise layers
    // of MobileNetV2 1.0 / 224.
    for (c, side, s) in [
        (32, 112, 1),
        (96, 112, 2),
        (144, 56, 1),
        (144, 56, 2),
        (192, 28, 1),
        (192, 28, 2),
        (384, 14, 1),
        (576, 14, 1),
        (576, 14, 2),
        (960, 7, 1),
    ] {
        let g = geometry(c, (side, side), s, (1, 1, 1, 1)).unwrap();
        assert_eq!(g.out_width, side / s);
        check_against_reference(&g, (side * 31 + c) as u64).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn fast_paths_equal_reference(
        channels in 1usize..80,
        in_height in 1usize..40,
        in_width in 1usize..40,
        stride in 1usize..=2,
        pads in (0usize..=1, 0usize..=2, 0usize..=1, 0usize..=2),
        seed in any::<u64>(),
    ) {
        let Some(g) = geometry(channels, (in_height, in_width), stride, pads) else {
            return Err(TestCaseError::reject("input smaller than the window"));
        };
        prop_assume!(g.check(
            channels * in_height * in_width,
            channels * TAPS,
            channels,
            channels * g.out_height * g.out_width
        ).is_ok());
        check_against_reference(&g, seed)?;
    }
}

#[test]
fn packed_view_is_checked_again() {
    let mut rng = Rng(7);
    let (layer, _) = random_layer(20, &mut rng);
    let (w, p) = packed_buffers(&layer);
    let view = Packed::new(20, &w, &p).unwrap();
    assert_eq!(Packed::new(33, &w, &p).unwrap_err(), DepthwiseError::Packed);
    // Viewed again from what the first check established: the same view, lengths checked.
    let again = Packed::again(view.checked(), &w, &p).unwrap();
    assert_eq!(again.checked(), view.checked());
    assert!((0..20).all(|c| again.bias(c) == view.bias(c) && again.requant(c) == view.requant(c)));
    assert_eq!(
        Packed::again(view.checked(), &w[1..], &p).unwrap_err(),
        DepthwiseError::Packed
    );
    assert_eq!(
        Packed::again(view.checked(), &w, &p[..p.len() - 1]).unwrap_err(),
        DepthwiseError::Packed
    );
    assert_eq!(
        Packed::new(20, &w[1..], &p).unwrap_err(),
        DepthwiseError::Packed
    );
    assert_eq!(
        Packed::new(0, &[], &[]).unwrap_err(),
        DepthwiseError::Packed
    );
    let mut bad = w.clone();
    bad[5] = i8::MIN;
    assert_eq!(
        Packed::new(20, &bad, &p).unwrap_err(),
        DepthwiseError::WeightRange
    );
    // A weight changed without its flipped bias, and a multiplier out of range: the fast
    // paths would no longer agree with the reference.
    let mut bad = w.clone();
    bad[5] = bad[5].wrapping_add(1).max(-127);
    assert_eq!(
        Packed::new(20, &bad, &p).unwrap_err(),
        DepthwiseError::InvalidParams
    );
    let padded = p.len() / 5;
    let mut bad = p.clone();
    bad[2 * padded] = 12345;
    assert_eq!(
        Packed::new(20, &w, &bad).unwrap_err(),
        DepthwiseError::InvalidParams
    );
    let mut bad = p.clone();
    bad[2 * padded + 4] = -2; // channel 0: a right shift next to a left one
    bad[2 * padded + 8] = 3;
    assert_eq!(
        Packed::new(20, &w, &bad).unwrap_err(),
        DepthwiseError::InvalidParams
    );
}

#[test]
fn refused_buffers_and_parameters() {
    let c = 10;
    let mut rng = Rng(3);
    let (layer, stage) = random_layer(c, &mut rng);
    let (wl, pl) = (
        Packed::weights_len(c).unwrap(),
        Packed::params_len(c).unwrap(),
    );
    // Packing.
    let (mut w, mut p) = (vec![0; wl], vec![0; pl]);
    let one = [Requant::from_scale(0.1).unwrap(); 10];
    let bias = [0; 10];
    let weights = vec![1i8; 90];
    assert!(pack(&weights, &bias, &one, &mut w, &mut p).is_ok());
    for (weights, bias, requant, wl, pl, err) in [
        (
            &weights[1..],
            &bias[..],
            &one[..],
            wl,
            pl,
            DepthwiseError::Weights,
        ),
        (
            &weights[..],
            &bias[..],
            &one[1..],
            wl,
            pl,
            DepthwiseError::Requant,
        ),
        (
            &weights[..0],
            &bias[..0],
            &one[..0],
            wl,
            pl,
            DepthwiseError::Weights,
        ),
        (
            &weights[..],
            &bias[..],
            &one[..],
            wl - 1,
            pl,
            DepthwiseError::Packed,
        ),
        (
            &weights[..],
            &bias[..],
            &one[..],
            wl,
            pl + 1,
            DepthwiseError::Packed,
        ),
    ] {
        let (mut w, mut p) = (vec![0; wl], vec![0; pl]);
        assert_eq!(
            pack(weights, bias, requant, &mut w, &mut p).unwrap_err(),
            err
        );
    }
    let mut minus = weights.clone();
    minus[17] = i8::MIN;
    assert_eq!(
        pack(&minus, &bias, &one, &mut w, &mut p).unwrap_err(),
        DepthwiseError::WeightRange
    );
    let mut invalid = one;
    invalid[4].multiplier = 5; // below 2^30
    assert_eq!(
        pack(&weights, &bias, &invalid, &mut w, &mut p).unwrap_err(),
        DepthwiseError::InvalidParams
    );
    // Running.
    let (w, p) = packed_buffers(&layer);
    let packed = Packed::new(c, &w, &p).unwrap();
    let g = geometry(c, (9, 7), 2, (1, 1, 0, 2)).unwrap();
    let sc = stride(c);
    let (i, o, s) = (
        sc * 63,
        sc * g.out_height * g.out_width,
        scratch_len(&g).unwrap(),
    );
    let zp = layer.zero_point;
    for d in supported() {
        let attempt = |g: &Geometry, stage: OutputStage, i: usize, s: usize, o: usize| {
            let (input, mut scratch, mut out) = (vec![0; i], vec![0; s], vec![0; o]);
            d.run(g, &packed, zp, stage, &input, &mut scratch, &mut out)
        };
        assert_eq!(attempt(&g, stage, i, s, o), Ok(()));
        assert_eq!(
            attempt(&g, stage, i, s + 100, o),
            Ok(()),
            "a longer scratch is fine"
        );
        assert_eq!(attempt(&g, stage, i - 1, s, o), Err(DepthwiseError::Input));
        assert_eq!(attempt(&g, stage, i + sc, s, o), Err(DepthwiseError::Input));
        assert_eq!(attempt(&g, stage, i, s, o + 1), Err(DepthwiseError::Output));
        assert_eq!(
            attempt(&g, stage, i, s - 1, o),
            Err(DepthwiseError::Scratch)
        );
        let reversed = OutputStage {
            min: 9,
            max: 8,
            ..stage
        };
        assert_eq!(attempt(&g, reversed, i, s, o), Err(DepthwiseError::Stage));
        let other = Geometry { channels: 11, ..g };
        let oi = stride(11) * 63;
        assert_eq!(
            attempt(&other, stage, oi, s, o),
            Err(DepthwiseError::Packed)
        );
        let bad = Geometry { stride: 3, ..g };
        assert_eq!(
            attempt(&bad, stage, i, s, o),
            Err(DepthwiseError::Geometry(GeometryError::Unsupported))
        );
        let tall = Geometry {
            out_height: g.out_height + 2,
            ..g
        };
        assert_eq!(
            attempt(&tall, stage, i, s, o),
            Err(DepthwiseError::Geometry(GeometryError::OutputSize))
        );
        let huge = Geometry {
            in_height: usize::MAX / 2,
            ..g
        };
        assert_eq!(attempt(&huge, stage, i, s, o), Err(DepthwiseError::Size));
    }
    assert!(DepthwiseError::Scratch.to_string().contains("scratch"));
}
