//! Int8 residual add: hand cases, every fast path against the scalar reference byte for byte,
//! the result within one code of the float computation, and refused parameters.

use nap_core::int8::add::{Add, AddError, AddParams};
use nap_core::int8::{OutputStage, Quant};
use nap_core::isa::Isa;
use proptest::prelude::*;
use std::sync::Once;

/// Every implementation this CPU runs, printed once.
fn supported() -> Vec<Add> {
    let paths: Vec<_> = Isa::ALL.into_iter().filter_map(Add::with_isa).collect();
    static SAY_ONCE: Once = Once::new();
    SAY_ONCE.call_once(|| {
        println!(
            "int8 add paths on this CPU: {:?}; fastest {}",
            paths.iter().map(|k| k.isa().name()).collect::<Vec<_>>(),
            Add::new().isa().name()
        )
    });
    paths
}

fn run(k: Add, params: &AddParams, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0xa5; a.len()];
    k.run(params, a, b, &mut out).unwrap();
    out
}

/// Every pair of codes (a, b), in one buffer each: 65536 bytes, so every fast path also has
/// whole steps and, sliced, a tail.
fn all_pairs() -> (Vec<u8>, Vec<u8>) {
    (0..=u16::MAX).map(|i| ((i >> 8) as u8, i as u8)).unzip()
}

fn q(scale: f32, zero_point: u8) -> Quant {
    Quant { scale, zero_point }
}

#[test]
fn hand_cases() {
    let (a, b) = all_pairs();
    // Equal scales, zero points 0, output on the same scale: the plain sum, saturated.
    let same = AddParams::new(q(0.1, 0), q(0.1, 0), q(0.1, 0), OutputStage::unclamped(0)).unwrap();
    // All zero points 128: a + b - 128, saturated.
    let centred = AddParams::new(
        q(0.05, 128),
        q(0.05, 128),
        q(0.05, 128),
        OutputStage::unclamped(128),
    )
    .unwrap();
    // Output scale twice the inputs': (a + b) / 2 rounded half up; clamped to 10..=100.
    let halved = AddParams::new(
        q(0.02, 0),
        q(0.02, 0),
        q(0.04, 0),
        OutputStage {
            zero_point: 0,
            min: 10,
            max: 100,
        },
    )
    .unwrap();
    // b twice a's scale, zero points 3 and 7, output on b's scale and zero point 1:
    // (a - 3) / 2 + (b - 7) + 1 with the half rounded up, saturated.
    let mixed = AddParams::new(q(0.5, 3), q(1.0, 7), q(1.0, 1), OutputStage::unclamped(1)).unwrap();
    let sat = |v: i32| v.clamp(0, 255) as u8;
    for k in supported() {
        let name = k.isa().name();
        for (i, ((&x, &y), o)) in a.iter().zip(&b).zip(run(k, &same, &a, &b)).enumerate() {
            assert_eq!(o, sat(i32::from(x) + i32::from(y)), "{name} {i}");
        }
        for ((&x, &y), o) in a.iter().zip(&b).zip(run(k, &centred, &a, &b)) {
            assert_eq!(o, sat(i32::from(x) + i32::from(y) - 128), "{name}");
        }
        for ((&x, &y), o) in a.iter().zip(&b).zip(run(k, &halved, &a, &b)) {
            let want = ((i32::from(x) + i32::from(y) + 1) >> 1).clamp(10, 100) as u8;
            assert_eq!(o, want, "{name} {x} {y}");
        }
        for ((&x, &y), o) in a.iter().zip(&b).zip(run(k, &mixed, &a, &b)) {
            // In halves: 2 * real = (a - 3) + 2 (b - 7) + 2, rounded half up to a whole code.
            let twice = i32::from(x) - 3 + 2 * (i32::from(y) - 7) + 2;
            assert_eq!(o, sat((twice + 1) >> 1), "{name} {x} {y}");
        }
    }
}

/// Scales from 1e-3 to 1, log-uniform.
fn scale() -> impl Strategy<Value = f32> {
    (-3.0f32..0.0).prop_map(|e| 10f32.powf(e))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn fast_paths_equal_reference_and_float_within_one_code(
        (sa, sb, so) in (scale(), scale(), scale()),
        (za, zb, zo) in (any::<u8>(), any::<u8>(), any::<u8>()),
        clamp in (any::<u8>(), any::<u8>()),
        clamped in any::<bool>(),
        len in 0usize..300,
        seed in any::<u64>(),
    ) {
        let stage = if clamped {
            OutputStage { zero_point: zo, min: clamp.0.min(clamp.1), max: clamp.0.max(clamp.1) }
        } else {
            OutputStage::unclamped(zo)
        };
        let (qa, qb, qo) = (q(sa, za), q(sb, zb), q(so, zo));
        let params = AddParams::new(qa, qb, qo, stage).unwrap();
        let mut state = seed | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        };
        let a: Vec<u8> = (0..len).map(|_| next()).collect();
        let b: Vec<u8> = (0..len).map(|_| next()).collect();
        let want = run(Add::with_isa(Isa::Scalar).unwrap(), &params, &a, &b);
        for k in supported() {
            prop_assert_eq!(&run(k, &params, &a, &b), &want, "{}", k.isa().name());
        }
        for ((&x, &y), &o) in a.iter().zip(&b).zip(&want) {
            let float = qo
                .quantize(qa.dequantize(x) + qb.dequantize(y))
                .clamp(stage.min, stage.max);
            prop_assert!(o.abs_diff(float) <= 1, "{x} {y}: {o} vs float {float}");
        }
    }
}

#[test]
fn every_pair_equals_reference_on_odd_lengths() {
    let (a, b) = all_pairs();
    let params = AddParams::new(
        q(0.023, 131),
        q(0.0071, 77),
        q(0.031, 250),
        OutputStage {
            zero_point: 250,
            min: 3,
            max: 254,
        },
    )
    .unwrap();
    // An output scale so small that the output's factor shifts left (the fast paths leave
    // that step out when it does not).
    let tiny = AddParams::new(
        q(1.0, 131),
        q(0.7, 77),
        q(1e-7, 128),
        OutputStage::unclamped(128),
    )
    .unwrap();
    assert!(tiny.out.left() > 0);
    for params in [params, tiny] {
        let want = run(Add::with_isa(Isa::Scalar).unwrap(), &params, &a, &b);
        for k in supported() {
            assert_eq!(run(k, &params, &a, &b), want, "{}", k.isa().name());
            // A length that leaves a tail after the last whole step.
            let n = a.len() - 13;
            let short = run(k, &params, &a[..n], &b[..n]);
            assert_eq!(short, want[..n], "{}", k.isa().name());
        }
    }
}

#[test]
fn refused_parameters_and_buffers() {
    let ok = q(0.1, 0);
    let unclamped = OutputStage::unclamped(0);
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let bad = q(bad, 0);
        assert_eq!(AddParams::new(bad, ok, ok, unclamped), Err(AddError::Scale));
        assert_eq!(AddParams::new(ok, bad, ok, unclamped), Err(AddError::Scale));
        assert_eq!(AddParams::new(ok, ok, bad, unclamped), Err(AddError::Scale));
    }
    // An output factor of 2^30 or more cannot be represented.
    assert_eq!(
        AddParams::new(q(1.0, 0), ok, q(1e-30, 0), unclamped),
        Err(AddError::Scale)
    );
    assert_eq!(
        AddParams::new(ok, ok, ok, OutputStage::unclamped(1)),
        Err(AddError::Stage)
    );
    let reversed = OutputStage {
        zero_point: 0,
        min: 5,
        max: 4,
    };
    assert_eq!(AddParams::new(ok, ok, ok, reversed), Err(AddError::Stage));
    let params = AddParams::new(ok, ok, ok, unclamped).unwrap();
    for k in supported() {
        let mut out = [0u8; 16];
        assert_eq!(
            k.run(&params, &[0; 16], &[0; 15], &mut out),
            Err(AddError::Length)
        );
        assert_eq!(
            k.run(&params, &[0; 17], &[0; 16], &mut out),
            Err(AddError::Length)
        );
        assert_eq!(
            k.run(&params, &[0; 16], &[0; 16], &mut out[1..]),
            Err(AddError::Length)
        );
        assert_eq!(k.run(&params, &[], &[], &mut []), Ok(()));
    }
    assert!(AddError::Length.to_string().contains("length"));
}
