//! Pointwise (1x1) convolution: a hand-computed case, every fast path against the scalar
//! reference on random shapes (x86 here; NEON under qemu-aarch64 in CI), and refused buffers.

use nap_core::isa::Isa;
use nap_core::pointwise::{Clip, PANEL, Pointwise, PointwiseError, Shape, pack};
use proptest::prelude::*;

/// Every implementation this CPU runs.
fn supported() -> Vec<Pointwise> {
    Isa::ALL
        .into_iter()
        .filter_map(Pointwise::with_isa)
        .collect()
}

fn packed(shape: &Shape, weights: &[f32]) -> Vec<f32> {
    let mut packed = vec![f32::NAN; shape.packed_len().unwrap()];
    pack(shape, weights, &mut packed).unwrap();
    packed
}

const RELU6: Clip = Clip { min: 0.0, max: 6.0 };

#[test]
fn by_hand_on_every_path() {
    // 7 output channels (a full panel and one more) over 2 input channels and 19 pixels (a
    // 16-pixel strip, two 8-pixel strips, and a tail). Channel m is m * in0 - in1, plus m.
    let shape = Shape {
        out_channels: 7,
        in_channels: 2,
        plane: 19,
    };
    let weights: Vec<f32> = (0..7).flat_map(|m| [m as f32, -1.0]).collect();
    let bias: Vec<f32> = (0..7).map(|m| m as f32).collect();
    let input: Vec<f32> = (0..19).map(|p| p as f32 * 0.25).chain([1.0; 19]).collect();
    let want =
        |m: usize, p: usize, clip: Clip| clip.apply(m as f32 * p as f32 * 0.25 - 1.0 + m as f32);
    let packed = packed(&shape, &weights);
    println!(
        "pointwise paths on this CPU: {:?}; fastest {}",
        supported()
            .iter()
            .map(|k| k.isa().name())
            .collect::<Vec<_>>(),
        Pointwise::new().isa().name()
    );
    for kernel in supported() {
        for clip in [Clip::NONE, RELU6] {
            let mut out = vec![f32::NAN; 7 * 19];
            kernel
                .run(&shape, &packed, &bias, clip, &input, &mut out)
                .unwrap();
            for m in 0..7 {
                for p in 0..19 {
                    assert_eq!(
                        out[m * 19 + p],
                        want(m, p, clip),
                        "{} m {m} p {p}",
                        kernel.isa().name()
                    );
                }
            }
        }
    }
}

#[test]
fn buffers_that_do_not_match_are_refused() {
    let shape = Shape {
        out_channels: 3,
        in_channels: 2,
        plane: 4,
    };
    assert_eq!(shape.packed_len(), Some(PANEL * 2));
    let packed = packed(&shape, &[1.0; 6]);
    let (bias, input, mut out) = ([0.0; 3], [0.0; 8], [0.0; 12]);
    let kernel = Pointwise::new();
    assert!(
        kernel
            .run(&shape, &packed, &bias, Clip::NONE, &input, &mut out)
            .is_ok()
    );
    let errors = [
        kernel.run(&shape, &packed[1..], &bias, Clip::NONE, &input, &mut out),
        kernel.run(&shape, &packed, &bias[1..], Clip::NONE, &input, &mut out),
        kernel.run(&shape, &packed, &bias, Clip::NONE, &input[1..], &mut out),
        kernel.run(&shape, &packed, &bias, Clip::NONE, &input, &mut out[1..]),
    ];
    for e in errors {
        assert_eq!(e, Err(PointwiseError::BufferLength));
    }
    let reversed = Clip { min: 1.0, max: 0.0 };
    assert_eq!(
        kernel.run(&shape, &packed, &bias, reversed, &input, &mut out),
        Err(PointwiseError::Clip)
    );
    let empty = Shape { plane: 0, ..shape };
    assert_eq!(
        kernel.run(&empty, &packed, &bias, Clip::NONE, &[], &mut []),
        Err(PointwiseError::BufferLength)
    );
    let mut short = vec![0.0; PANEL];
    assert_eq!(
        pack(&shape, &[1.0; 6], &mut short),
        Err(PointwiseError::BufferLength)
    );
}

fn case() -> impl Strategy<Value = (Shape, Vec<f32>, Vec<f32>, Vec<f32>, bool)> {
    (1usize..20, 1usize..40, 1usize..70).prop_flat_map(|(m, k, plane)| {
        let shape = Shape {
            out_channels: m,
            in_channels: k,
            plane,
        };
        (
            Just(shape),
            prop::collection::vec(-1f32..1.0, m * k),
            prop::collection::vec(-1f32..1.0, m),
            prop::collection::vec(-6f32..6.0, k * plane),
            any::<bool>(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_path_agrees_with_the_reference((shape, weights, bias, input, relu6) in case()) {
        let clip = if relu6 { RELU6 } else { Clip::NONE };
        let packed = packed(&shape, &weights);
        let mut want = vec![0.0; shape.out_channels * shape.plane];
        Pointwise::with_isa(Isa::Scalar)
            .unwrap()
            .run(&shape, &packed, &bias, clip, &input, &mut want)
            .unwrap();
        for kernel in supported() {
            let mut got = vec![f32::NAN; want.len()];
            kernel.run(&shape, &packed, &bias, clip, &input, &mut got).unwrap();
            for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                let (m, p) = (i / shape.plane, i % shape.plane);
                let magnitude: f32 = (0..shape.in_channels)
                    .map(|k| (weights[m * shape.in_channels + k] * input[k * shape.plane + p]).abs())
                    .sum::<f32>()
                    + bias[m].abs();
                prop_assert!(
                    (w - g).abs() <= 1e-5 * magnitude + 1e-6,
                    "{} m {m} p {p}: {g} vs reference {w}", kernel.isa().name()
                );
            }
        }
    }
}
