//! The scoring methods pinned to hand-computed values on a tiny head.

use nap_core::score::dice::sparsify;
use nap_core::score::{
    Evidence, FUSION_FLOOR, Head, LinearHead, Method, Params, ScoreError, Workspace, fuse,
};

// Head: logits = [x0, x1 + x2]; pooled [2, 0.5, 3] gives logits [2, 3.5]. S_NAP = e.
const WEIGHTS: [f32; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0];
const BIAS: [f32; 2] = [0.0, 0.0];
const POOLED: [f32; 3] = [2.0, 0.5, 3.0];
const E: f32 = core::f32::consts::E;
// DICE with ID mean [1, 1, 0.1] at sparsity 67: contributions [1, 0, 0, 0, 1, 0.1], the top
// 6 - round(4.02) = 2 kept: the head becomes [x0, x1], logits [2, 0.5].
const ID_MEAN: [f32; 3] = [1.0, 1.0, 0.1];
const DICE_SPARSITY: f32 = 67.0;

fn score(method: Method, params: &Params) -> Result<f32, ScoreError> {
    score_with(method, params, true)
}

/// ViM's virtual logit, as the detector would compute it from the bundle's subspace.
const VIM_LOGIT: f32 = 0.7;

/// A method's score; `calibrated` gives it DICE's logits and ViM's virtual logit.
fn score_with(method: Method, params: &Params, calibrated: bool) -> Result<f32, ScoreError> {
    let head = LinearHead::new(&WEIGHTS, &BIAS, 3).unwrap();
    let mut logits = [0.0; 2];
    head.logits(&POOLED, &mut logits);
    let mut sparse = WEIGHTS;
    sparsify(&mut sparse, &ID_MEAN, DICE_SPARSITY, &mut [0.0; 6]);
    assert_eq!(sparse, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    let mut dice_logits = [0.0; 2];
    LinearHead::new(&sparse, &BIAS, 3)
        .unwrap()
        .logits(&POOLED, &mut dice_logits);
    let evidence = Evidence {
        nap: E,
        pooled: &POOLED,
        logits: &logits,
        dice_logits: calibrated.then_some(&dice_logits[..]),
        vim_logit: calibrated.then_some(VIM_LOGIT),
    };
    let mut buffer = [0.0; Workspace::required(3, 2)];
    let mut workspace = Workspace::new(&mut buffer);
    method
        .score(params, &evidence, &head, &mut workspace)
        .map(|s| s.value)
}

fn calibrated() -> Params {
    // ReAct c = 1: pooled [1, 0.5, 1]. ASH p = 34: keeps 3 - round(1.02) = 2 of 3 entries.
    Params {
        react_clip: Some(1.0),
        ash_percentile: 34.0,
        ..Params::default()
    }
}

#[test]
fn every_method_by_hand() {
    let lse = |l: &[f64]| {
        let m = l.iter().cloned().fold(f64::MIN, f64::max);
        m + l.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
    };
    let ash_s = (5.5f64 / 5.0).exp(); // s1 = 5.5, s2 = 5 after pruning 0.5
    let expected = [
        (Method::Msp, 0.817_574_5),    // exp(3.5) / (exp(2) + exp(3.5))
        (Method::Energy, 3.701_413_3), // lse(2, 3.5)
        (Method::React, 1.974_077),    // lse(1, 1.5)
        (Method::AshS, lse(&[2.0 * ash_s, 3.0 * ash_s]) as f32), // 9.060888
        (Method::AshB, 3.443_147_2),   // lse(2.75, 2.75): s1 / k = 5.5 / 2
        (Method::AshP, 3.313_261_7),   // lse(2, 3)
        (Method::Nap, E),
        (Method::NapE, 1.185_228_8), // 0.6 ln 3.701413 + 0.4 ln e
        (Method::NapR, 0.744_080_8), // 0.8 ln 1.974077 + 0.2
        (Method::NapA, 1.963_173_7), // 0.8 ln 9.060888 + 0.2
        (Method::NapM, 0.639_576),   // 0.3 ln 0.817574 + 0.7
        (Method::MaxLogit, 3.5),
        (Method::Gen, -1.653_450_8), // -2 (0.182426 * 0.817574)^0.1
        (Method::Scale, lse(&[2.0 * ash_s, 3.5 * ash_s]) as f32), // 10.525560
        (Method::Dice, 2.201_413_3), // lse(2, 0.5)
        (Method::NapD, 0.831_279_6), // 0.8 ln 2.201413 + 0.2
        (Method::Vim, 3.001_413_3),  // lse(2, 3.5) - 0.7
    ];
    assert_eq!(expected.len(), Method::ALL.len());
    for (method, want) in expected {
        let got = score(method, &calibrated()).unwrap();
        assert!((got - want).abs() < 2e-5, "{method}: {got} vs {want}");
    }
}

#[test]
fn fusion_at_the_ends_and_the_middle() {
    let lse = E * E; // ln = 2
    let nap = E; // ln = 1
    assert!((fuse(lse, nap, 0.0).score - 1.0).abs() < 1e-6);
    assert!((fuse(lse, nap, 0.6).score - 1.6).abs() < 1e-6);
    assert!((fuse(lse, nap, 1.0).score - 2.0).abs() < 1e-6);
    assert!(!fuse(lse, nap, 0.6).clamped);
}

#[test]
fn fusion_floors_non_positive_factors_and_says_so() {
    // lse <= 0: 0.6 ln(1e-6) + 0.4 ln e = -7.889306.
    for lse in [-3.0, 0.0, f32::NAN] {
        let fused = fuse(lse, E, 0.6);
        assert!((fused.score - -7.889_306).abs() < 1e-4, "{lse}: {fused:?}");
        assert!(fused.clamped);
    }
    // A black frame: S_NAP = 0.
    let fused = fuse(E, 0.0, 0.6);
    assert!(fused.score.is_finite() && fused.clamped);
    assert!((fused.score - (0.6 + 0.4 * FUSION_FLOOR.ln())).abs() < 1e-4);
    // Ranking follows the product where both factors are positive.
    assert!(fuse(3.0, 2.0, 0.6).score > fuse(2.0, 2.0, 0.6).score);
}

#[test]
fn names_round_trip() {
    for method in Method::ALL {
        assert_eq!(Method::from_name(method.name()), Ok(method));
        assert_eq!(method.name().to_lowercase().parse::<Method>(), Ok(method));
    }
    let err = Method::from_name("NAP-X").unwrap_err().to_string();
    assert!(err.contains("NAP-E") && err.contains("ASH-B"), "{err}");
}

#[test]
fn react_without_calibration_is_an_error() {
    assert_eq!(
        score(Method::React, &Params::default()),
        Err(ScoreError::ReactUncalibrated)
    );
    assert_eq!(
        score(Method::NapR, &Params::default()),
        Err(ScoreError::ReactUncalibrated)
    );
    assert!(score(Method::NapE, &Params::default()).is_ok());
}

#[test]
fn dice_and_vim_without_their_statistics_are_errors() {
    for (method, error) in [
        (Method::Dice, ScoreError::DiceUncalibrated),
        (Method::NapD, ScoreError::DiceUncalibrated),
        (Method::Vim, ScoreError::VimUncalibrated),
    ] {
        assert_eq!(score_with(method, &calibrated(), false), Err(error));
    }
    assert!(score_with(Method::Energy, &calibrated(), false).is_ok());
}

#[test]
fn buffers_that_do_not_match_the_head_are_errors() {
    let head = LinearHead::new(&WEIGHTS, &BIAS, 3).unwrap();
    let logits = [2.0, 3.5];
    let mut small = [0.0; 5];
    let evidence = Evidence {
        nap: 1.0,
        pooled: &POOLED,
        logits: &logits,
        dice_logits: None,
        vim_logit: None,
    };
    let err = Method::AshS.score(
        &calibrated(),
        &evidence,
        &head,
        &mut Workspace::new(&mut small),
    );
    assert_eq!(
        err,
        Err(ScoreError::Length {
            what: "workspace",
            expected: 8,
            got: 5
        })
    );
    let short = Evidence {
        pooled: &POOLED[..2],
        ..evidence
    };
    let err = Method::Energy.score(
        &calibrated(),
        &short,
        &head,
        &mut Workspace::new(&mut small),
    );
    assert_eq!(
        err,
        Err(ScoreError::Length {
            what: "pooled feature",
            expected: 3,
            got: 2
        })
    );
    assert!(LinearHead::new(&WEIGHTS[..5], &BIAS, 3).is_err());
    assert!(LinearHead::new(&[], &[], 3).is_err());
}

#[test]
fn params_are_validated() {
    assert_eq!(Params::default().validate(), Ok(()));
    assert_eq!(calibrated().validate(), Ok(()));
    let bad = [
        Params {
            eps: 0.0,
            ..Params::default()
        },
        Params {
            eps: f32::NAN,
            ..Params::default()
        },
        Params {
            react_clip: Some(-1.0),
            ..Params::default()
        },
        Params {
            ash_percentile: 100.0,
            ..Params::default()
        },
        Params {
            weights: nap_core::score::FusionWeights {
                nap_e: 1.5,
                ..Default::default()
            },
            ..Params::default()
        },
    ];
    for params in bad {
        assert!(
            matches!(params.validate(), Err(ScoreError::InvalidParam(_))),
            "{params:?}"
        );
    }
}
