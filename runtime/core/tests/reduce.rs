//! Every fast reduction path equals the scalar reference: u8 exactly, f32 max exactly and f32 sums
//! within the summation-order bound `plane * f32::EPSILON * sum(|x|)`.

use nap_core::reduce::{Isa, Layout, Reducer, Shape, ShapeError, scalar};
use proptest::prelude::*;

/// The implementations this CPU runs besides the reference; never empty on x86_64 or aarch64.
fn fast_reducers() -> Vec<Reducer> {
    Isa::ALL
        .into_iter()
        .filter(|&isa| isa != Isa::Scalar)
        .filter_map(Reducer::with_isa)
        .collect()
}

fn reference_u8(shape: Shape, a: &[u8]) -> (Vec<u8>, Vec<u32>) {
    let (mut max, mut sum) = (vec![0; shape.channels], vec![0; shape.channels]);
    match shape.layout {
        Layout::Nchw => scalar::u8_nchw(a, shape.plane, &mut max, &mut sum),
        Layout::Nhwc => scalar::u8_nhwc(a, shape.channels, &mut max, &mut sum),
    }
    (max, sum)
}

fn reference_f32(shape: Shape, a: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut max, mut sum) = (vec![0.0; shape.channels], vec![0.0; shape.channels]);
    match shape.layout {
        Layout::Nchw => scalar::f32_nchw(a, shape.plane, &mut max, &mut sum),
        Layout::Nhwc => scalar::f32_nhwc(a, shape.channels, &mut max, &mut sum),
    }
    (max, sum)
}

fn check_u8(shape: Shape, a: &[u8]) -> Result<(), TestCaseError> {
    let expected = reference_u8(shape, a);
    for reducer in fast_reducers() {
        let (mut max, mut sum) = (vec![7; shape.channels], vec![7; shape.channels]);
        reducer.reduce_u8(shape, a, &mut max, &mut sum).unwrap();
        prop_assert_eq!(&expected.0, &max, "max, {:?} {:?}", reducer.isa(), shape);
        prop_assert_eq!(&expected.1, &sum, "sum, {:?} {:?}", reducer.isa(), shape);
    }
    Ok(())
}

fn check_f32(shape: Shape, a: &[f32]) -> Result<(), TestCaseError> {
    let (emax, esum) = reference_f32(shape, a);
    let abs_sum = |c: usize| -> f32 {
        match shape.layout {
            Layout::Nchw => a[c * shape.plane..][..shape.plane]
                .iter()
                .map(|x| x.abs())
                .sum(),
            Layout::Nhwc => a
                .iter()
                .skip(c)
                .step_by(shape.channels)
                .map(|x| x.abs())
                .sum(),
        }
    };
    for reducer in fast_reducers() {
        let (mut max, mut sum) = (vec![7.0; shape.channels], vec![7.0; shape.channels]);
        reducer.reduce_f32(shape, a, &mut max, &mut sum).unwrap();
        prop_assert_eq!(&emax, &max, "max, {:?} {:?}", reducer.isa(), shape);
        for c in 0..shape.channels {
            let tolerance = shape.plane as f32 * f32::EPSILON * abs_sum(c);
            prop_assert!(
                (esum[c] - sum[c]).abs() <= tolerance,
                "sum of channel {c}: {} vs {}, {:?} {:?}",
                esum[c],
                sum[c],
                reducer.isa(),
                shape
            );
        }
    }
    Ok(())
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![Just(Layout::Nchw), Just(Layout::Nhwc)]
}

/// Shapes around every vector width and the u16 flush period, plus MobileNet's 7x7 plane.
fn shape() -> impl Strategy<Value = Shape> {
    let dims = prop_oneof![
        4 => (1usize..=70, 1usize..=80),
        1 => (1usize..=40, 250usize..=600),
        1 => (Just(1280), Just(49)),
    ];
    (dims, layout()).prop_map(|((channels, plane), layout)| Shape {
        channels,
        plane,
        layout,
    })
}

fn u8_case() -> impl Strategy<Value = (Shape, Vec<u8>)> {
    shape().prop_flat_map(|s| {
        let n = s.channels * s.plane;
        // Mostly full-range noise; also sparse tensors like real post-ReLU activations.
        let values = prop_oneof![
            proptest::collection::vec(any::<u8>(), n),
            proptest::collection::vec(prop_oneof![4 => Just(0u8), 1 => any::<u8>()], n),
        ];
        (Just(s), values)
    })
}

fn f32_case() -> impl Strategy<Value = (Shape, Vec<f32>)> {
    shape().prop_flat_map(|s| {
        let n = s.channels * s.plane;
        let values = prop_oneof![
            proptest::collection::vec(0.0f32..=6.0, n),
            proptest::collection::vec(-1e6f32..1e6, n),
        ];
        (Just(s), values)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn u8_fast_paths_equal_reference((shape, a) in u8_case()) {
        check_u8(shape, &a)?;
    }

    #[test]
    fn f32_fast_paths_match_reference((shape, a) in f32_case()) {
        check_f32(shape, &a)?;
    }

    #[test]
    fn constant_planes_are_exact(shape in shape(), value in prop_oneof![Just(0u8), Just(255u8)]) {
        let a = vec![value; shape.channels * shape.plane];
        check_u8(shape, &a)?;
        let (max, sum) = reference_u8(shape, &a);
        prop_assert!(max.iter().all(|&m| m == value));
        prop_assert!(sum.iter().all(|&s| s == u32::from(value) * shape.plane as u32));
    }
}

#[test]
fn saturated_planes_at_the_u16_flush_boundary() {
    // 257 rows fill a u16 lane exactly; 258 and 514 need a flush in between.
    for plane in [256, 257, 258, 514, 515] {
        for layout in [Layout::Nchw, Layout::Nhwc] {
            let shape = Shape {
                channels: 37,
                plane,
                layout,
            };
            check_u8(shape, &vec![255; 37 * plane]).unwrap();
        }
    }
}

#[test]
fn f32_nan_is_never_the_max() {
    for layout in [Layout::Nchw, Layout::Nhwc] {
        let shape = Shape {
            channels: 16,
            plane: 49,
            layout,
        };
        let mut a: Vec<f32> = (0..16 * 49).map(|i| (i % 13) as f32).collect();
        a[5] = f32::NAN;
        a[16 * 49 - 3] = f32::NAN;
        for reducer in fast_reducers()
            .into_iter()
            .chain([Reducer::with_isa(Isa::Scalar).unwrap()])
        {
            let (mut max, mut sum) = (vec![0.0; 16], vec![0.0; 16]);
            reducer.reduce_f32(shape, &a, &mut max, &mut sum).unwrap();
            assert!(
                max.iter().all(|m| !m.is_nan()),
                "{:?} {layout:?}: {max:?}",
                reducer.isa()
            );
        }
    }
}

#[test]
fn mismatched_buffers_are_refused() {
    let r = Reducer::new();
    let (mut max, mut sum) = ([0u8; 4], [0u32; 4]);
    assert_eq!(
        r.reduce_u8(Shape::nchw(4, 49), &[0; 195], &mut max, &mut sum),
        Err(ShapeError::Activation {
            expected: 196,
            got: 195
        })
    );
    assert_eq!(
        r.reduce_u8(Shape::nhwc(3, 2), &[0; 6], &mut max[..3], &mut sum),
        Err(ShapeError::Output {
            expected: 3,
            got: 4
        })
    );
    assert_eq!(
        r.reduce_u8(Shape::nchw(0, 49), &[], &mut max[..0], &mut sum[..0]),
        Err(ShapeError::Empty)
    );
    let huge = Shape::nchw(1, Shape::MAX_PLANE + 1);
    assert_eq!(
        r.reduce_u8(huge, &[], &mut max[..1], &mut sum[..1]),
        Err(ShapeError::PlaneTooLarge {
            plane: Shape::MAX_PLANE + 1
        })
    );
    assert_eq!(
        Shape::nchw(usize::MAX, 2).elements(),
        Err(ShapeError::Overflow)
    );
}

#[test]
fn the_fastest_path_is_chosen_and_reported() {
    let isa = Reducer::new().isa();
    // Shown in CI logs so a reader can see the NEON path really ran under qemu-aarch64.
    eprintln!("reduce: fastest path on this CPU is {}", isa.name());
    if cfg!(target_arch = "aarch64") {
        assert_eq!(isa, Isa::Neon);
    }
    #[cfg(target_arch = "x86_64")]
    {
        let expected = if std::is_x86_feature_detected!("avx2") {
            Isa::Avx2
        } else {
            Isa::Sse2
        };
        assert_eq!(isa, expected);
    }
    assert!(
        !fast_reducers().is_empty() || !cfg!(any(target_arch = "x86_64", target_arch = "aarch64"))
    );
}
