//! Calibration of a bundle's scorer from cached features: ReAct's clip, ASH's percentile, the
//! fusion weights `w`, ViM's subspace dimension, the deciding method when asked to choose it, and
//! the decision threshold, as `napctl calibrate` does it.

use super::vim::{self, DimsChoice, VimCalibration};
use crate::eval::features::Features;
use crate::eval::metrics::{MetricsError, percentile, threshold_at_tpr};
use crate::eval::{Components, ComponentsError, FUSED_METHODS, HostHead, mean_fpr_auroc, scores};
use nap_core::score::Head;
use nap_core::score::{Method, Params, ScoreError};
use nap_runtime::bundle::DiceSpec;

/// Percentile of the ID pooled activations ReAct clips at (Sun et al.; DESIGN.md section 1).
pub const REACT_PERCENTILE: f64 = 90.0;

/// Why calibration failed.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// A metric could not be computed (no frames, non-finite scores, bad TPR).
    #[error("{0}")]
    Metrics(#[from] MetricsError),
    /// A method could not score.
    #[error("{0}")]
    Score(#[from] ScoreError),
    /// The frames could not be scored.
    #[error("{0}")]
    Components(#[from] ComponentsError),
    /// Nothing to calibrate on.
    #[error("{0}")]
    Input(String),
    /// ViM's subspace could not be computed.
    #[error("ViM: {0}")]
    Vim(#[from] nap_linalg::LinalgError),
}

/// ReAct's clip `c`: the 90th percentile of every pooled activation of the ID frames.
pub fn react_clip(id: &[Features]) -> Result<f32, CalibrateError> {
    let all: Vec<f64> = id
        .iter()
        .flat_map(|f| f.pooled.iter().map(|&x| f64::from(x)))
        .collect();
    Ok(percentile(&all, REACT_PERCENTILE)? as f32)
}

/// DICE's statistics from the ID frames: the mean input of `head`'s dense layer (their pooled
/// feature, or its neck's output), with `sparsity`.
pub fn dice_spec(
    head: &HostHead<'_>,
    id: &[Features],
    sparsity: f32,
) -> Result<DiceSpec, CalibrateError> {
    if id.is_empty() {
        return Err(CalibrateError::Input("no ID frames for DICE's mean".into()));
    }
    let inputs = head
        .dense_inputs(id)
        .map_err(|e| CalibrateError::Components(e.into()))?;
    let mut sum = vec![0.0f64; inputs[0].len()];
    for input in &inputs {
        for (s, &x) in sum.iter_mut().zip(input) {
            *s += f64::from(x);
        }
    }
    Ok(DiceSpec {
        mean: sum.iter().map(|s| (s / id.len() as f64) as f32).collect(),
        sparsity,
    })
}

/// ViM calibrated on the ID frames, its scores written into the frames' components: at `dims`,
/// or the default without OOD sets, or else at the candidate dimension with the lowest mean FPR
/// at `tpr` against them (ties: higher AUROC, then fewer dimensions), the criterion `w` is
/// chosen by.
fn calibrate_vim(
    head: &HostHead<'_>,
    id: &[Features],
    oods: &[Vec<Features>],
    dims: Option<usize>,
    tpr: f64,
    id_c: &mut [Components],
    ood_c: &mut [Vec<Components>],
) -> Result<VimCalibration, CalibrateError> {
    let ood_inputs: Vec<Vec<Vec<f32>>> = oods
        .iter()
        .map(|o| head.dense_inputs(o))
        .collect::<Result<_, _>>()
        .map_err(|e| CalibrateError::Components(e.into()))?;
    let fill = |cal: &VimCalibration, id_c: &mut [Components], ood_c: &mut [Vec<Components>]| {
        for (c, &v) in id_c.iter_mut().zip(&cal.id_logits) {
            *c = c.with_vim_logit(v);
        }
        for (set, inputs) in ood_c.iter_mut().zip(&ood_inputs) {
            let logits = vim::virtual_logits(&cal.fit.spec, inputs);
            for (c, v) in set.iter_mut().zip(logits) {
                *c = c.with_vim_logit(v);
            }
        }
    };
    let candidates = vim::candidate_dims(head.dense.features(), id.len());
    let searched = match (dims, candidates.last()) {
        (None, Some(&max)) if !oods.is_empty() => {
            let cross = vim::CrossFit::new(head, id, max)?;
            let mut tried = Vec::new();
            let mut best: Option<(f64, f64, VimCalibration)> = None;
            for d in candidates {
                // A dimension whose subspace holds the ID frames is no candidate.
                let Ok(cal) = cross.at(d, DimsChoice::Given) else {
                    continue;
                };
                fill(&cal, id_c, ood_c);
                let sets: Vec<&[Components]> = ood_c.iter().map(Vec::as_slice).collect();
                let (fpr, auroc) = mean_fpr_auroc(id_c, &sets, Method::Vim, 1.0, tpr)?;
                tried.push((d, fpr, auroc));
                if best
                    .as_ref()
                    .is_none_or(|(f, a, _)| better(fpr, auroc, *f, *a))
                {
                    best = Some((fpr, auroc, cal));
                }
            }
            best.map(|(_, _, cal)| VimCalibration {
                dims: DimsChoice::Searched(tried),
                ..cal
            })
        }
        _ => None,
    };
    let cal = match searched {
        Some(cal) => cal,
        None => vim::calibration(head, id, dims)?,
    };
    fill(&cal, id_c, ood_c);
    Ok(cal)
}

/// Whether `(fpr, auroc)` beats `(best_fpr, best_auroc)`: a lower FPR, or the same and a higher
/// AUROC, beyond rounding. Calibration's one criterion.
fn better(fpr: f64, auroc: f64, best_fpr: f64, best_auroc: f64) -> bool {
    fpr < best_fpr - 1e-12 || ((fpr - best_fpr).abs() <= 1e-12 && auroc > best_auroc + 1e-12)
}

/// The outcome of one `w` search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WChoice {
    /// The chosen weight of the logit score, in [0, 1].
    pub w: f32,
    /// Mean FPR (ID-positive, at the target TPR) over the OOD sets at `w`, as a fraction.
    pub fpr: f64,
    /// Mean AUROC over the OOD sets at `w`, as a fraction.
    pub auroc: f64,
}

/// Grid step of the coarse pass and of the refinement around its best point.
const COARSE_STEP: f32 = 0.05;
const FINE_STEP: f32 = 0.005;

/// The `w` in [0, 1] minimizing `objective(w) = (fpr, auroc)`; ties go to the higher AUROC, then
/// to the first `w` tried. A coarse grid (step 0.05) first, then a fine grid (step 0.005) over
/// the coarse best's neighbourhood: FPR is a step function of `w`, so no gradient method applies.
pub fn search_w(
    objective: impl Fn(f32) -> Result<(f64, f64), MetricsError>,
) -> Result<WChoice, MetricsError> {
    let beats = |a: &WChoice, b: &WChoice| better(a.fpr, a.auroc, b.fpr, b.auroc);
    let consider = |best: &mut Option<WChoice>, w: f32| -> Result<(), MetricsError> {
        let (fpr, auroc) = objective(w)?;
        let c = WChoice { w, fpr, auroc };
        if best.as_ref().is_none_or(|b| beats(&c, b)) {
            *best = Some(c);
        }
        Ok(())
    };
    let mut best = None;
    let coarse = (1.0 / COARSE_STEP).round() as i32;
    for i in 0..=coarse {
        consider(&mut best, i as f32 * COARSE_STEP)?;
    }
    let centre = best.expect("the grid is not empty").w;
    let half = (COARSE_STEP / FINE_STEP).round() as i32;
    for i in -half..=half {
        let w = centre + i as f32 * FINE_STEP;
        if (0.0..=1.0).contains(&w) {
            consider(&mut best, w)?;
        }
    }
    Ok(best.expect("the grid is not empty"))
}

/// Which method decides the calibrated bundle's verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deciding {
    /// The method with the lowest mean FPR against the OOD sets (ties: higher AUROC), each
    /// fused method at its chosen `w`: the criterion `w` is chosen by.
    Auto,
    /// This one.
    Method(Method),
}

/// One method's standing against the OOD sets, at the calibrated parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Standing {
    /// The method.
    pub method: Method,
    /// Its fusion weight (1 for methods that are not fused).
    pub w: f32,
    /// Mean FPR (ID-positive, at the target TPR) over the OOD sets, as a fraction.
    pub fpr: f64,
    /// Mean AUROC over the OOD sets, as a fraction.
    pub auroc: f64,
}

/// What calibration chose.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// The scorer parameters: clip, percentile and weights set.
    pub params: Params,
    /// DICE's statistics from the ID frames.
    pub dice: DiceSpec,
    /// ViM's statistics from the ID frames, or why they could not be fit (ViM is then left
    /// out of the ranking and cannot decide).
    pub vim: Result<VimCalibration, String>,
    /// The `w` search of each fused method, in [`FUSED_METHODS`] order.
    pub searches: Vec<(Method, WChoice)>,
    /// Every method against the OOD sets, best first; empty without OOD sets.
    pub ranking: Vec<Standing>,
    /// The deciding method.
    pub method: Method,
    /// Frames of the deciding method scoring below it are OOD.
    pub threshold: f32,
    /// Share of the ID frames rejected at `threshold` (about `1 - tpr`).
    pub id_rejection: f64,
}

/// What the user sets for a calibration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Which method decides.
    pub deciding: Deciding,
    /// Share of ID frames the threshold keeps, in (0, 1).
    pub tpr: f64,
    /// ASH's pruning percentile, in [0, 100).
    pub ash_percentile: f32,
    /// DICE's sparsity, percent, in [0, 100).
    pub dice_sparsity: f32,
    /// ViM's subspace dimension; `None`: the best of [`vim::candidate_dims`] against the OOD
    /// sets, or [`vim::default_dims`] without them.
    pub vim_dims: Option<usize>,
}

impl Settings {
    /// `deciding` at TPR 95%, ASH p 90 and DICE's default sparsity: `napctl calibrate`'s
    /// defaults.
    pub fn new(deciding: Deciding) -> Settings {
        Settings {
            deciding,
            tpr: 0.95,
            ash_percentile: 90.0,
            dice_sparsity: nap_core::score::dice::DEFAULT_SPARSITY,
            vim_dims: None,
        }
    }
}

/// Calibrates on ID features against OOD (real or pseudo) feature sets: ReAct clip from ID, the
/// given ASH percentile, DICE's ID mean at `dice_sparsity`, ViM's subspace, each fused method's `w` by [`search_w`] on the mean FPR at `tpr` over
/// the OOD sets, every method ranked by the same criterion, the deciding method, and its
/// threshold at `tpr` on ID. With no OOD sets the weights of `base` are kept and only the rest
/// is calibrated (and the deciding method must be named).
pub fn calibrate(
    head: &HostHead<'_>,
    base: Params,
    id: &[Features],
    oods: &[Vec<Features>],
    settings: Settings,
) -> Result<Calibration, CalibrateError> {
    let Settings {
        deciding,
        tpr,
        ash_percentile,
        dice_sparsity,
        vim_dims,
    } = settings;
    if !(tpr > 0.0 && tpr < 1.0) {
        return Err(MetricsError::InvalidTpr(tpr).into());
    }
    if oods.iter().any(Vec::is_empty) {
        return Err(CalibrateError::Input(
            "no OOD frames to choose w against".into(),
        ));
    }
    if oods.is_empty() && deciding == Deciding::Auto {
        return Err(CalibrateError::Input(
            "choosing the method needs OOD or pseudo-OOD sets to compare methods on; name one \
             instead"
                .into(),
        ));
    }
    let mut params = base;
    params.react_clip = Some(react_clip(id)?);
    params.ash_percentile = ash_percentile;
    params.validate()?;
    if !(0.0..100.0).contains(&dice_sparsity) {
        return Err(CalibrateError::Input(format!(
            "DICE sparsity {dice_sparsity} is outside [0, 100)"
        )));
    }
    let dice = dice_spec(head, id, dice_sparsity)?;
    let no_vim = |frames: &[Features]| vec![f32::NAN; frames.len()];
    let mut id_c = head.components(id, &dice, &no_vim(id), &params)?;
    let mut ood_c: Vec<Vec<Components>> = oods
        .iter()
        .map(|o| head.components(o, &dice, &no_vim(o), &params))
        .collect::<Result<_, _>>()?;
    let vim = match calibrate_vim(head, id, oods, vim_dims, tpr, &mut id_c, &mut ood_c) {
        Err(e) if deciding == Deciding::Method(Method::Vim) => return Err(e),
        fit => fit.map_err(|e| e.to_string()),
    };
    let sets: Vec<&[Components]> = ood_c.iter().map(Vec::as_slice).collect();
    let mut searches = Vec::new();
    for m in FUSED_METHODS.into_iter().filter(|_| !sets.is_empty()) {
        let choice = search_w(|w| mean_fpr_auroc(&id_c, &sets, m, w, tpr))?;
        let slot = match m {
            Method::NapE => &mut params.weights.nap_e,
            Method::NapR => &mut params.weights.nap_r,
            Method::NapA => &mut params.weights.nap_a,
            Method::NapD => &mut params.weights.nap_d,
            _ => &mut params.weights.nap_m,
        };
        *slot = choice.w;
        searches.push((m, choice));
    }
    let mut ranking = Vec::new();
    let scored = |m: &Method| *m != Method::Vim || vim.is_ok();
    for m in Method::ALL
        .into_iter()
        .filter(scored)
        .filter(|_| !sets.is_empty())
    {
        let w = params.weights.of(m);
        let (fpr, auroc) = mean_fpr_auroc(&id_c, &sets, m, w, tpr)?;
        ranking.push(Standing {
            method: m,
            w,
            fpr,
            auroc,
        });
    }
    // Stable: among equals the registry's order stands.
    ranking.sort_by(|a, b| a.fpr.total_cmp(&b.fpr).then(b.auroc.total_cmp(&a.auroc)));
    let method = match deciding {
        Deciding::Method(m) => m,
        Deciding::Auto => ranking[0].method,
    };
    let id_scores = scores(&id_c, method, params.weights.of(method));
    let threshold = threshold_at_tpr(&id_scores, tpr)? as f32;
    let rejected = id_scores
        .iter()
        .filter(|&&s| (s as f32) < threshold)
        .count();
    Ok(Calibration {
        params,
        dice,
        vim,
        searches,
        ranking,
        method,
        threshold,
        id_rejection: rejected as f64 / id_scores.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nap_core::score::LinearHead;

    #[test]
    fn search_finds_the_known_best_w_and_breaks_ties_by_auroc() {
        // FPR is lowest (0.1) on [0.62, 0.68]; AUROC peaks at 0.65 inside it.
        let choice = search_w(|w| {
            let fpr = if (0.62..=0.68).contains(&w) { 0.1 } else { 0.5 };
            Ok((fpr, 1.0 - (w as f64 - 0.65).abs()))
        })
        .unwrap();
        assert!((choice.w - 0.65).abs() < 1e-4, "{choice:?}");
        assert_eq!(choice.fpr, 0.1);
        // A narrow optimum between coarse grid points is found by the refinement.
        let choice = search_w(|w| Ok(((w as f64 - 0.437).abs(), 0.5))).unwrap();
        assert!((choice.w - 0.435).abs() < 1e-4, "{choice:?}");
        // Errors pass through.
        assert!(search_w(|_| Err(MetricsError::InvalidTpr(2.0))).is_err());
    }

    /// ID frames have strong peaks and high energy; OOD frames of set A are told apart by the
    /// logits, those of set B only by their flat activations: the best `w` is strictly inside.
    #[test]
    fn calibration_picks_an_interior_w_and_keeps_the_target_tpr() {
        let c = 4;
        let weights = [
            4.0, 0.0, 0.0, 0.0, //
            0.0, 4.0, 0.0, 0.0, //
            0.0, 0.0, 4.0, 0.0,
        ];
        let bias = [0.0; 3];
        let dense = LinearHead::new(&weights, &bias, c).unwrap();
        let head = HostHead::dense(dense);
        let frame = |pooled: [f32; 4], peak: f32| Features {
            pooled: pooled.to_vec(),
            max: pooled.iter().map(|p| p * peak).collect(),
        };
        let id: Vec<Features> = (0..40)
            .map(|i| {
                let x = 1.0 + (i % 10) as f32 * 0.1;
                frame([x, 0.1, 0.1, 0.5], 4.0 + (i % 7) as f32 * 0.3)
            })
            .collect();
        let ood_a: Vec<Features> = (0..20)
            .map(|i| frame([0.2 + (i % 5) as f32 * 0.02, 0.1, 0.1, 0.5], 30.0))
            .collect();
        let ood_b: Vec<Features> = (0..20)
            .map(|i| frame([1.2 + (i % 5) as f32 * 0.1, 0.1, 0.1, 0.5], 1.2))
            .collect();
        let cal = calibrate(
            &head,
            Params::default(),
            &id,
            &[ood_a.clone(), ood_b.clone()],
            Settings {
                vim_dims: Some(2),
                ..Settings::new(Deciding::Method(Method::NapE))
            },
        )
        .unwrap();
        let (_, e) = cal.searches[0];
        assert_eq!(e.fpr, 0.0, "{e:?}");
        assert!(e.w > 0.0 && e.w < 1.0, "{e:?}");
        assert_eq!(cal.params.weights.nap_e, e.w);
        // Energy alone (w = 1) or NAP alone (w = 0) each leave one set fully accepted.
        let sparse = cal.dice.sparsified(dense.weights());
        let dice = LinearHead::new(&sparse, &bias, c).unwrap();
        let no_vim = vec![f32::NAN; id.len()];
        let ids = Components::of_all(&id, &dense, &dice, &no_vim, &cal.params).unwrap();
        let ids_scores = scores(&ids, Method::NapE, e.w);
        let kept = ids_scores
            .iter()
            .filter(|&&s| s as f32 >= cal.threshold)
            .count();
        assert_eq!(kept, 38, "95% of 40 ID frames kept");
        assert!((cal.id_rejection - 0.05).abs() < 1e-9);
        assert!(cal.params.react_clip.is_some());

        // The ID frames span two dimensions, ViM's whole subspace at --vim-dims 2: it is left
        // out, and every other method is ranked; Energy and NAP alone each leave a set accepted.
        let why = cal.vim.as_ref().unwrap_err();
        assert!(
            why.contains("do not lie in a 2-dimensional subspace"),
            "{why}"
        );
        assert_eq!(cal.ranking.len(), Method::ALL.len() - 1);
        assert!(cal.ranking.iter().all(|s| s.method != Method::Vim));
        let standing = |m| cal.ranking.iter().find(|s| s.method == m).unwrap();
        assert_eq!(standing(Method::NapE).fpr, 0.0);
        assert!(standing(Method::Energy).fpr >= 0.5 && standing(Method::Nap).fpr >= 0.5);
        assert!(cal.ranking.windows(2).all(|p| p[0].fpr <= p[1].fpr));

        // Auto decides by the ranking, and its threshold is the chosen method's.
        let ood = [ood_a.clone(), ood_b.clone()];
        let auto = calibrate(
            &head,
            Params::default(),
            &id,
            &ood,
            Settings {
                vim_dims: Some(2),
                ..Settings::new(Deciding::Auto)
            },
        )
        .unwrap();
        assert_eq!(auto.method, auto.ranking[0].method);
        assert_eq!(auto.ranking[0].fpr, 0.0);
        let chosen = scores(
            &Components::of_all(&id, &dense, &dice, &no_vim, &auto.params).unwrap(),
            auto.method,
            auto.params.weights.of(auto.method),
        );
        let kept = chosen
            .iter()
            .filter(|&&s| s as f32 >= auto.threshold)
            .count();
        assert_eq!(kept, 38, "95% of 40 ID frames kept by {}", auto.method);
        assert!(matches!(
            calibrate(
                &head,
                Params::default(),
                &id,
                &[],
                Settings::new(Deciding::Auto),
            ),
            Err(CalibrateError::Input(_))
        ));

        // Without OOD sets the weights stay; the threshold still keeps 95% of ID.
        let nap_e = Deciding::Method(Method::NapE);
        let kept = calibrate(&head, Params::default(), &id, &[], Settings::new(nap_e)).unwrap();
        assert_eq!(kept.params.weights, Params::default().weights);
        assert!(kept.searches.is_empty());
        assert!((kept.id_rejection - 0.05).abs() < 1e-9);
        assert!(matches!(
            calibrate(
                &head,
                Params::default(),
                &id,
                &[vec![]],
                Settings::new(Deciding::Method(Method::NapE)),
            ),
            Err(CalibrateError::Input(_))
        ));
        for tpr in [0.0, 1.0, 1.5, f64::NAN] {
            assert!(
                calibrate(
                    &head,
                    Params::default(),
                    &id,
                    std::slice::from_ref(&id),
                    Settings {
                        tpr,
                        ..Settings::new(Deciding::Method(Method::NapE))
                    },
                )
                .is_err(),
                "tpr {tpr}"
            );
        }
    }
}
