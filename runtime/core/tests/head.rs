//! The int8 head: its row products on every path against the reference (x86 here; NEON under
//! qemu-aarch64 in CI), and the head as a whole against the f32 head of its dequantized weights.

use nap_core::gemv::Int8Gemv;
use nap_core::isa::Isa;
use nap_core::score::{Head, Int8Head, LinearHead};
use proptest::prelude::*;

fn int8_head_case() -> impl Strategy<Value = (usize, Vec<i8>, Vec<f32>, Vec<f32>, Vec<f32>)> {
    (1usize..6, 1usize..40).prop_flat_map(|(classes, features)| {
        (
            Just(features),
            prop::collection::vec(any::<i8>(), classes * features),
            prop::collection::vec(1e-4f32..1.0, classes),
            prop::collection::vec(-10f32..10.0, classes),
            prop::collection::vec(0f32..6.0, features),
        )
    })
}

proptest! {
    #[test]
    fn int8_head_equals_the_f32_head_of_its_dequantized_weights(
        (features, codes, scales, bias, pooled) in int8_head_case()
    ) {
        let weights: Vec<f32> = codes
            .chunks(features)
            .zip(&scales)
            .flat_map(|(row, &s)| row.iter().map(move |&q| s * f32::from(q)))
            .collect();
        let float = LinearHead::new(&weights, &bias, features).unwrap();
        let int8 = Int8Head::new(&codes, &scales, &bias, features).unwrap();
        let (mut want, mut got) = (vec![0.0; bias.len()], vec![0.0; bias.len()]);
        float.logits(&pooled, &mut want);
        int8.logits(&pooled, &mut got);
        for (k, (w, g)) in want.iter().zip(&got).enumerate() {
            // Both sum the same products in the same order, but the scale enters each product
            // in one and the sum in the other: allow float rounding over the row's magnitude.
            let magnitude: f32 = weights[k * features..(k + 1) * features]
                .iter()
                .zip(&pooled)
                .map(|(a, b)| (a * b).abs())
                .sum::<f32>()
                + bias[k].abs();
            prop_assert!((w - g).abs() <= 1e-5 * magnitude + 1e-6, "class {k}: {w} vs {g}");
        }
    }
}

/// Every int8 row-product implementation this CPU runs.
fn gemv_paths() -> Vec<Int8Gemv> {
    Isa::ALL
        .into_iter()
        .filter_map(Int8Gemv::with_isa)
        .collect()
}

fn gemv_case() -> impl Strategy<Value = (Vec<i8>, Vec<f32>, usize)> {
    // Row counts and lengths around the fast paths' blocks of 4 rows and 8 codes.
    (1usize..11, 1usize..70).prop_flat_map(|(rows, features)| {
        (
            prop::collection::vec(any::<i8>(), rows * features),
            prop::collection::vec(-8f32..8.0, features),
            Just(rows),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_gemv_path_agrees_with_the_reference((codes, x, rows) in gemv_case()) {
        let mut want = vec![0.0; rows];
        Int8Gemv::with_isa(Isa::Scalar).unwrap().dots(&codes, &x, &mut want);
        for path in gemv_paths() {
            let mut got = vec![f32::NAN; rows];
            path.dots(&codes, &x, &mut got);
            for (k, (w, g)) in want.iter().zip(&got).enumerate() {
                let magnitude: f32 = codes[k * x.len()..(k + 1) * x.len()]
                    .iter()
                    .zip(&x)
                    .map(|(&q, v)| (f32::from(q) * v).abs())
                    .sum();
                prop_assert!(
                    (w - g).abs() <= 1e-5 * magnitude + 1e-6,
                    "{} row {k}: {g} vs reference {w}", path.isa().name()
                );
            }
        }
    }
}

#[test]
fn gemv_by_hand_on_every_path() {
    // Nine rows of 17 codes: two blocks of four rows and one more, two vectors of eight and one
    // more code. Row k is all k's, so its product is k * sum(x) = k * 17.
    let x = [1.0f32; 17];
    let codes: Vec<i8> = (0..9).flat_map(|k| [k as i8; 17]).collect();
    println!(
        "int8 head paths on this CPU: {:?}; fastest {}",
        gemv_paths()
            .iter()
            .map(|p| p.isa().name())
            .collect::<Vec<_>>(),
        Int8Gemv::new().isa().name()
    );
    for path in gemv_paths() {
        let mut out = [0.0; 9];
        path.dots(&codes, &x, &mut out);
        let want: [f32; 9] = core::array::from_fn(|k| 17.0 * k as f32);
        assert_eq!(out, want, "{}", path.isa().name());
    }
}
