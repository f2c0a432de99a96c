//! The int8 head: its row products on every path against the reference (x86 here; NEON under
//! qemu-aarch64 in CI), f32 vectors to float rounding and i16 vectors exactly, and the head as a
//! whole against the f32 head of its dequantized weights.

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
        let largest = pooled.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (k, (w, g)) in want.iter().zip(&got).enumerate() {
            // The int8 head takes the pooled feature as i16 codes, each within half a code
            // (largest / 32767) of its value; then float rounding over the row's magnitude.
            let row = &weights[k * features..(k + 1) * features];
            let magnitude: f32 =
                row.iter().zip(&pooled).map(|(a, b)| (a * b).abs()).sum::<f32>() + bias[k].abs();
            let coding: f32 = row.iter().map(|a| a.abs()).sum::<f32>() * largest / 65534.0;
            prop_assert!(
                (w - g).abs() <= coding + 1e-5 * magnitude + 1e-6,
                "class {k}: {w} vs {g}"
            );
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

fn gemv_i16_case() -> impl Strategy<Value = (Vec<i8>, Vec<i16>, usize)> {
    // Lengths around the paths' steps (8, 16, 32 codes), and past their i32 blocks (2048 to
    // 8192 codes) with the largest products.
    let short = (1usize..11, 1usize..70).prop_flat_map(|(rows, features)| {
        (
            prop::collection::vec(any::<i8>(), rows * features),
            prop::collection::vec(-32767i16..=32767, features),
            Just(rows),
        )
    });
    let long = (1usize..3, 2040usize..8300, any::<bool>()).prop_map(|(rows, features, sign)| {
        let v = if sign { 32767 } else { -32767 };
        (vec![-128i8; rows * features], vec![v; features], rows)
    });
    prop_oneof![4 => short, 1 => long]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_i16_gemv_path_equals_the_reference((codes, x, rows) in gemv_i16_case()) {
        let mut want = vec![0.0; rows];
        Int8Gemv::with_isa(Isa::Scalar).unwrap().dots_i16(&codes, &x, &mut want);
        for path in gemv_paths() {
            let mut got = vec![f32::NAN; rows];
            path.dots_i16(&codes, &x, &mut got);
            prop_assert_eq!(&got, &want, "{}", path.isa().name());
        }
    }
}

#[test]
fn i16_gemv_by_hand_on_every_path() {
    // Row k of 8200 codes: 8192 of k, then 8 of -1; x all 32767 except the last 8 at 2. The sums
    // pass 2^31 for k >= 9: i32 sums would wrap.
    let features = 8200;
    let x: Vec<i16> = (0..features)
        .map(|i| if i < 8192 { 32767 } else { 2 })
        .collect();
    let codes: Vec<i8> = (0..12)
        .flat_map(|k| (0..features).map(move |i| if i < 8192 { k as i8 } else { -1 }))
        .collect();
    let want: Vec<f32> = (0..12i64).map(|k| (k * 8192 * 32767 - 16) as f32).collect();
    for path in gemv_paths() {
        let mut out = vec![0.0; 12];
        path.dots_i16(&codes, &x, &mut out);
        assert_eq!(out, want, "{}", path.isa().name());
    }
}

#[test]
fn an_int8_head_with_a_value_that_is_not_finite_gives_nan_logits() {
    let (codes, scales, bias) = ([1i8, 2, 3, 4], [0.5f32, 0.25], [0.0f32, 1.0]);
    let head = Int8Head::new(&codes, &scales, &bias, 2).unwrap();
    let mut out = [0.0; 2];
    head.logits(&[2.0, 4.0], &mut out);
    for (got, want) in out.iter().zip([0.5 * 10.0, 1.0 + 0.25 * 22.0]) {
        assert!((got - want).abs() <= 1e-4 * want, "{got} vs {want}");
    }
    head.logits(&[f32::NAN, 1.0], &mut out);
    assert!(out.iter().all(|v| v.is_nan()), "{out:?}");
    head.logits(&[f32::INFINITY, 1.0], &mut out);
    assert!(out.iter().all(|v| !v.is_finite()), "{out:?}");
}

#[test]
fn an_int8_head_longer_than_its_i16_buffer_takes_the_f32_products() {
    let features = Int8Head::MAX_I16_FEATURES + 3;
    let codes = vec![1i8; features];
    let pooled = vec![0.5f32; features];
    let head = Int8Head::new(&codes, &[2.0], &[1.0], features).unwrap();
    let mut out = [0.0];
    head.logits(&pooled, &mut out);
    assert_eq!(out[0], 1.0 + features as f32);
}
