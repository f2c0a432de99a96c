//! Depthwise 3x3 convolution: hand-computed cases, every fast path against the scalar reference
//! on random geometries (x86 here; NEON under qemu-aarch64 in CI), and refused geometries.

mod common;

use common::geometry;
use nap_core::depthwise::{Clip, Depthwise, Geometry, GeometryError, TAPS};
use nap_core::isa::Isa;
use proptest::prelude::*;
use std::sync::Once;

fn reference() -> Depthwise {
    Depthwise::with_isa(Isa::Scalar).unwrap()
}

/// Every implementation this CPU runs.
fn supported() -> Vec<Depthwise> {
    let paths: Vec<_> = Isa::ALL
        .into_iter()
        .filter_map(Depthwise::with_isa)
        .collect();
    static SAY_ONCE: Once = Once::new();
    SAY_ONCE.call_once(|| {
        println!(
            "depthwise paths on this CPU: {:?}; fastest {}",
            paths.iter().map(|d| d.isa().name()).collect::<Vec<_>>(),
            Depthwise::new().isa().name()
        )
    });
    paths
}

fn run(
    d: Depthwise,
    g: &Geometry,
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    clip: Clip,
) -> Vec<f32> {
    let mut out = vec![f32::NAN; g.channels * g.out_height * g.out_width];
    // Scratch full of NaN: a path that read scratch it had not written would show.
    let mut scratch = vec![f32::NAN; g.scratch_len()];
    d.run(g, input, weights, bias, clip, &mut scratch, &mut out)
        .unwrap();
    out
}

#[test]
fn hand_computed_same_padding() {
    // One 3x3 channel of ones, weights 1..=9, bias 0.5, padding 1: the centre sees all nine
    // taps, the top-left corner only w[4], w[5], w[7], w[8].
    let g = geometry(1, (3, 3), 1, (1, 1, 1, 1)).unwrap();
    let w: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    for d in supported() {
        let out = run(d, &g, &[1.0; 9], &w, &[0.5], Clip::NONE);
        assert_eq!(out[4], 45.5, "{:?}", d.isa());
        assert_eq!(out[0], 5.0 + 6.0 + 8.0 + 9.0 + 0.5, "{:?}", d.isa());
        assert_eq!(out[8], 1.0 + 2.0 + 4.0 + 5.0 + 0.5, "{:?}", d.isa());
    }
}

#[test]
fn hand_computed_stride_two_with_clip() {
    // A 1x20 row, no padding, stride 2, only the centre tap: output ox = 1 * x[2 ox + 1] ...
    // with the row index shifted by the centre row, which a 3-row input provides.
    let g = geometry(1, (3, 20), 2, (0, 0, 0, 0)).unwrap();
    assert_eq!((g.out_height, g.out_width), (1, 9));
    let input: Vec<f32> = (0..60).map(|i| (i % 20) as f32 - 4.0).collect();
    let mut w = [0.0; TAPS];
    w[4] = 1.0;
    let relu6 = Clip { min: 0.0, max: 6.0 };
    for d in supported() {
        let out = run(d, &g, &input, &w, &[0.0], relu6);
        let want: Vec<f32> = (0..9)
            .map(|ox| ((2 * ox + 1) as f32 - 4.0).clamp(0.0, 6.0))
            .collect();
        assert_eq!(out, want, "{:?}", d.isa());
    }
}

/// Largest |fast - reference| allowed at one pixel: a few ulps of the sum of the magnitudes
/// (fused multiply-add rounds once where the reference rounds twice).
fn tolerance(g: &Geometry, input: &[f32], weights: &[f32], bias: &[f32]) -> Vec<f32> {
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    run(
        reference(),
        g,
        &abs(input),
        &abs(weights),
        &abs(bias),
        Clip::NONE,
    )
    .into_iter()
    .map(|m| m * 4.0 * f32::EPSILON + f32::MIN_POSITIVE)
    .collect()
}

fn check_against_reference(g: &Geometry, seed: u64, clip: Clip) -> Result<(), TestCaseError> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
    };
    let input: Vec<f32> = (0..g.channels * g.in_height * g.in_width)
        .map(|_| next())
        .collect();
    let weights: Vec<f32> = (0..g.channels * TAPS).map(|_| next()).collect();
    let bias: Vec<f32> = (0..g.channels).map(|_| next()).collect();
    let want = run(reference(), g, &input, &weights, &bias, clip);
    let tol = tolerance(g, &input, &weights, &bias);
    for d in supported() {
        let got = run(d, g, &input, &weights, &bias, clip);
        for (i, ((a, b), t)) in got.iter().zip(&want).zip(&tol).enumerate() {
            prop_assert!(
                (a - b).abs() <= *t,
                "{:?} {g:?} pixel {i}: {a} vs reference {b} (tolerance {t})",
                d.isa()
            );
        }
    }
    Ok(())
}

#[test]
fn mobilenet_v2_shapes_agree_with_reference() {
    let relu6 = Clip { min: 0.0, max: 6.0 };
    // (channels, input side, stride, TF "SAME" padding): the layers of MobileNetV2 1.0 / 224.
    for (c, side, stride, (top, bottom)) in [
        (32, 112, 1, (1, 1)),
        (96, 112, 2, (0, 1)),
        (144, 56, 1, (1, 1)),
        (144, 56, 2, (0, 1)),
        (192, 28, 2, (0, 1)),
        (384, 14, 1, (1, 1)),
        (576, 14, 2, (0, 1)),
        (960, 7, 1, (1, 1)),
    ] {
        let g = geometry(c, (side, side), stride, (top, bottom, top, bottom)).unwrap();
        assert_eq!(g.out_width, side / stride);
        check_against_reference(&g, side as u64 * 31 + c as u64, relu6).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn fast_paths_agree_with_reference(
        channels in 1usize..4,
        in_height in 1usize..12,
        in_width in 1usize..48,
        stride in 1usize..=2,
        pads in (0usize..=2, 0usize..=2, 0usize..=2, 0usize..=2),
        clipped in any::<bool>(),
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
        let clip = if clipped { Clip { min: -1.0, max: 2.0 } } else { Clip::NONE };
        check_against_reference(&g, seed, clip)?;
    }
}

#[test]
fn short_scratch_is_refused() {
    let g = geometry(2, (8, 8), 2, (0, 1, 0, 1)).unwrap();
    let mut out = vec![0.0; 2 * 4 * 4];
    for d in supported().into_iter().filter(|d| d.isa() != Isa::Scalar) {
        let mut scratch = vec![0.0; g.scratch_len() - 1];
        let result = d.run(
            &g,
            &[0.0; 128],
            &[0.0; 18],
            &[0.0; 2],
            Clip::NONE,
            &mut scratch,
            &mut out,
        );
        assert_eq!(result, Err(GeometryError::BufferLength), "{:?}", d.isa());
    }
}

#[test]
fn unsupported_geometries_are_refused() {
    let ok = geometry(2, (8, 8), 1, (1, 1, 1, 1)).unwrap();
    let lens = |g: &Geometry| {
        (
            g.channels * g.in_height * g.in_width,
            g.channels * TAPS,
            g.channels,
            g.channels * g.out_height * g.out_width,
        )
    };
    let check = |g: &Geometry| {
        let (i, w, b, o) = lens(g);
        g.check(i, w, b, o)
    };
    assert_eq!(check(&ok), Ok(()));
    for bad in [
        Geometry { stride: 3, ..ok },
        Geometry { stride: 0, ..ok },
        Geometry { pad_top: 3, ..ok },
        Geometry { channels: 0, ..ok },
        Geometry { in_width: 0, ..ok },
        Geometry {
            out_height: 0,
            ..ok
        },
    ] {
        assert_eq!(check(&bad), Err(GeometryError::Unsupported), "{bad:?}");
    }
    // One output row too many: its window would lie in the bottom padding and beyond.
    let tall = Geometry {
        out_height: 10,
        ..ok
    };
    assert_eq!(check(&tall), Err(GeometryError::OutputSize));
    // A size whose buffers cannot exist.
    let huge = Geometry {
        channels: usize::MAX / 4,
        in_height: 8,
        ..ok
    };
    assert_eq!(huge.check(0, 0, 0, 0), Err(GeometryError::BufferLength));
    let (i, w, b, o) = lens(&ok);
    for (i, w, b, o) in [
        (i - 1, w, b, o),
        (i, w + 1, b, o),
        (i, w, b + 1, o),
        (i, w, b, o - 1),
    ] {
        assert_eq!(ok.check(i, w, b, o), Err(GeometryError::BufferLength));
    }
    let mut out = vec![0.0; o];
    let reversed = Clip { min: 1.0, max: 0.0 };
    let nan = Clip {
        min: f32::NAN,
        max: 6.0,
    };
    for clip in [reversed, nan] {
        assert_eq!(
            reference().run(
                &ok,
                &vec![0.0; i],
                &vec![0.0; w],
                &vec![0.0; b],
                clip,
                &mut [],
                &mut out
            ),
            Err(GeometryError::Clip)
        );
    }
}
