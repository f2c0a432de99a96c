//! Calibration of a bundle's scorer from cached features: ReAct's clip, ASH's percentile, the
//! fusion weights `w`, the deciding method when asked to choose it, and the decision threshold,
//! as `napctl calibrate` does it.

use crate::eval::features::Features;
use crate::eval::metrics::{MetricsError, percentile, threshold_at_tpr};
use crate::eval::{Components, ComponentsError, FUSED_METHODS, HostHead, mean_fpr_auroc, scores};
use nap_core::score::Head;
use nap_core::score::{Method, Params, ScoreError};
use nap_runtime::bundle::{DiceSpec, VimSpec};

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

/// ViM's statistics from the ID frames, and what the fit says about them.
#[derive(Clone, Debug, PartialEq)]
pub struct VimFit {
    /// The origin, principal subspace and scale the bundle stores.
    pub spec: VimSpec,
    /// Share of the ID inputs' second moment about the origin the subspace holds.
    pub captured: f64,
    /// The paper's dimension, where too few ID frames made the subspace smaller.
    pub capped_from: Option<usize>,
}

/// ViM's principal subspace dimension for `features` inputs (Wang et al.: 1000 from 1500
/// features, 512 from 768, half below).
pub fn vim_paper_dims(features: usize) -> usize {
    match features {
        1500.. => 1000,
        768.. => 512,
        _ => (features / 2).max(1),
    }
}

/// ID frames each dimension of ViM's default subspace needs. On the shared MobileNetV2 (229
/// frames per half-fit) ViM's AUROC on ood-dtd falls from 93.4% at 4 dimensions and 92.0% at 16
/// to 78.6% at 64 (BENCHMARKS.md).
pub const VIM_FRAMES_PER_DIM: usize = 16;

/// ViM's statistics fit to all ID frames, and each ID frame's virtual logit from a fit that did
/// not see it.
#[derive(Clone, Debug, PartialEq)]
pub struct VimCalibration {
    /// The fit to every ID frame, which the bundle stores.
    pub fit: VimFit,
    /// Each ID frame's virtual logit, out of sample.
    pub id_logits: Vec<f32>,
}

/// ViM's statistics from the ID frames by 2-fold cross-fitting: the frames alternate between two
/// halves, and each half's fit scores the other half, so the ID scores that rank methods and set
/// the threshold are those of unseen frames (a fit scores its own frames far too well); the
/// bundle gets the fit to all frames. `dims` defaults to [`vim_paper_dims`], meant for a whole
/// training set, but at most [`VIM_FRAMES_PER_DIM`]th of a half's frames: directions estimated
/// from fewer frames than that fit the sample, not the distribution.
pub fn vim_calibration(
    head: &HostHead<'_>,
    id: &[Features],
    dims: Option<usize>,
) -> Result<VimCalibration, CalibrateError> {
    let half = id.len() / 2;
    let paper = vim_paper_dims(head.dense.features());
    let (dims, capped_from) = match dims {
        Some(d) if d >= half => {
            return Err(CalibrateError::Input(format!(
                "ViM's subspace of {d} dimensions needs more than {} ID frames, got {}",
                2 * d + 1,
                id.len()
            )));
        }
        Some(d) => (d, None),
        None if half < 4 => {
            return Err(CalibrateError::Input(format!(
                "ViM needs at least 8 ID frames to fit and check its subspace, got {}",
                id.len()
            )));
        }
        None if paper > half / VIM_FRAMES_PER_DIM => {
            ((half / VIM_FRAMES_PER_DIM).max(1), Some(paper))
        }
        None => (paper, None),
    };
    let (even, odd): (Vec<_>, Vec<_>) = id
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let strip =
        |v: Vec<(usize, Features)>| -> Vec<Features> { v.into_iter().map(|(_, f)| f).collect() };
    let (even, odd) = (strip(even), strip(odd));
    let logits = |fit_on: &[Features], score: &[Features]| -> Result<Vec<f32>, CalibrateError> {
        let fit = vim_fit(head, fit_on, dims)?;
        head.vim_logits(score, &fit.spec)
            .map_err(|e| CalibrateError::Components(e.into()))
    };
    let (on_even, on_odd) = (logits(&odd, &even)?, logits(&even, &odd)?);
    let mut id_logits = Vec::with_capacity(id.len());
    for i in 0..id.len() {
        id_logits.push(if i % 2 == 0 {
            on_even[i / 2]
        } else {
            on_odd[i / 2]
        });
    }
    let mut fit = vim_fit(head, id, dims)?;
    fit.capped_from = capped_from;
    Ok(VimCalibration { fit, id_logits })
}

/// ViM's statistics from `frames` (Wang et al. 2022): the origin `-pinv(W) b` of `head`'s dense
/// layer, the `dims`-dimensional principal subspace of the frames' dense-layer inputs about it,
/// and `alpha`, their mean largest logit over their mean residual norm.
pub fn vim_fit(
    head: &HostHead<'_>,
    frames: &[Features],
    dims: usize,
) -> Result<VimFit, CalibrateError> {
    let dense = &head.dense;
    let features = dense.features();
    if dims == 0 || dims >= features || dims >= frames.len() {
        return Err(CalibrateError::Input(format!(
            "ViM's subspace of {dims} dimensions needs 1 to {} (fewer than the {features} \
             features and the {} frames it is fit to)",
            (features - 1).min(frames.len().saturating_sub(1)),
            frames.len()
        )));
    }
    let id = frames;
    let inputs = head
        .dense_inputs(id)
        .map_err(|e| CalibrateError::Components(e.into()))?;
    let origin = nap_linalg::zero_output_origin(dense.weights(), dense.bias(), features)?;
    let centered: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| x.iter().zip(&origin).map(|(x, u)| x - u).collect())
        .collect();
    let subspace = nap_linalg::principal_subspace(&centered, features, dims)?;
    let mut spec = VimSpec {
        origin,
        basis: subspace.basis,
        alpha: 1.0,
    };
    let offset = spec.offset();
    let vim = spec.view(&offset);
    let (mut logit_sum, mut residual_sum, mut norm_sum) = (0.0f64, 0.0f64, 0.0f64);
    let (mut logits, mut projection) = (vec![0.0; dense.classes()], vec![0.0; dims]);
    for (input, z) in inputs.iter().zip(&centered) {
        dense.logits(input, &mut logits);
        logit_sum += f64::from(logits.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        residual_sum += f64::from(vim.residual_norm(input, &mut projection));
        norm_sum += z.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    }
    // Residuals within f32 rounding of zero (the projection's, about 3e-4 of the norm): the ID
    // frames lie in the subspace, and alpha would scale rounding noise.
    let alpha = (logit_sum / residual_sum) as f32;
    if residual_sum <= 1e-3 * norm_sum || !(alpha > 0.0 && alpha.is_finite()) {
        return Err(CalibrateError::Input(format!(
            "the ID frames' mean largest logit ({:.4}) over their mean residual off the \
             subspace ({:.3e}, of mean norm {:.4}) makes no scale: ViM needs ID frames whose \
             largest logit is positive on average and which do not lie in a {dims}-dimensional \
             subspace",
            logit_sum / id.len() as f64,
            residual_sum / id.len() as f64,
            norm_sum / id.len() as f64,
        )));
    }
    spec.alpha = alpha;
    Ok(VimFit {
        spec,
        captured: subspace.captured,
        capped_from: None,
    })
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
    let better = |a: &WChoice, b: &WChoice| {
        a.fpr < b.fpr - 1e-12 || ((a.fpr - b.fpr).abs() <= 1e-12 && a.auroc > b.auroc + 1e-12)
    };
    let consider = |best: &mut Option<WChoice>, w: f32| -> Result<(), MetricsError> {
        let (fpr, auroc) = objective(w)?;
        let c = WChoice { w, fpr, auroc };
        if best.as_ref().is_none_or(|b| better(&c, b)) {
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
    /// ViM's subspace dimension; `None`: [`vim_fit`]'s default.
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
    let vim = match vim_calibration(head, id, vim_dims) {
        Err(e) if deciding == Deciding::Method(Method::Vim) => return Err(e),
        fit => fit.map_err(|e| e.to_string()),
    };
    let (id_vim, ood_vim) = match &vim {
        Ok(v) => {
            let ood: Vec<Vec<f32>> = oods
                .iter()
                .map(|o| head.vim_logits(o, &v.fit.spec))
                .collect::<Result<_, _>>()
                .map_err(|e| CalibrateError::Components(e.into()))?;
            (v.id_logits.clone(), ood)
        }
        Err(_) => (
            vec![f32::NAN; id.len()],
            oods.iter().map(|o| vec![f32::NAN; o.len()]).collect(),
        ),
    };
    let id_c = head.components(id, &dice, &id_vim, &params)?;
    let ood_c: Vec<Vec<Components>> = oods
        .iter()
        .zip(&ood_vim)
        .map(|(o, vim)| head.components(o, &dice, vim, &params))
        .collect::<Result<_, _>>()?;
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
    fn vim_fit_holds_the_subspace_origin_and_scale_it_promises() {
        // 6 features, 3 classes; 60 frames spread over all 6 directions, most along 2.
        let weights: Vec<f32> = (0..18).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
        let bias = [0.5, -0.25, 1.0];
        let dense = LinearHead::new(&weights, &bias, 6).unwrap();
        let head = HostHead::dense(dense);
        let id: Vec<Features> = (0..60)
            .map(|i| {
                let t = i as f32;
                let pooled = vec![
                    3.0 + (t * 0.37).sin() * 2.0,
                    1.0 + (t * 0.91).cos() * 1.5,
                    0.2 + (t * 1.7).sin() * 0.1,
                    0.5 + (t * 2.3).cos() * 0.1,
                    0.1 * (t * 0.13).sin(),
                    0.3 + 0.05 * (t * 3.1).cos(),
                ];
                Features {
                    max: pooled.iter().map(|p| p * 2.0).collect(),
                    pooled,
                }
            })
            .collect();
        let fit = vim_fit(&head, &id, 3).unwrap();
        let spec = &fit.spec;
        assert_eq!(spec.dims(), 3);
        assert!(fit.captured > 0.9 && fit.captured < 1.0, "{}", fit.captured);
        // The origin zeroes the logits; the basis rows are orthonormal.
        let mut logits = [0.0; 3];
        dense.logits(&spec.origin, &mut logits);
        assert!(logits.iter().all(|l| l.abs() < 1e-4), "{logits:?}");
        for (i, a) in spec.basis.chunks(6).enumerate() {
            for (j, b) in spec.basis.chunks(6).enumerate() {
                let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-5, "rows {i} {j}: {dot}");
            }
        }
        // alpha: mean largest logit over mean residual norm.
        let offset = spec.offset();
        let vim = spec.view(&offset);
        let (mut top, mut residual) = (0.0f64, 0.0f64);
        for f in &id {
            dense.logits(&f.pooled, &mut logits);
            top += f64::from(logits.iter().copied().fold(f32::MIN, f32::max));
            residual += f64::from(vim.residual_norm(&f.pooled, &mut [0.0; 3]));
        }
        assert!(((top / residual) as f32 - spec.alpha).abs() < 1e-5 * spec.alpha);

        for dims in [0, 6] {
            let err = vim_fit(&head, &id, dims).unwrap_err().to_string();
            assert!(err.contains("needs 1 to 5"), "{err}");
        }

        // Cross-fitting: the stored fit is the one to all frames, and each frame's logit comes
        // from the other half's fit.
        let cal = vim_calibration(&head, &id, Some(3)).unwrap();
        assert_eq!(cal.fit, fit);
        let odd: Vec<Features> = id.iter().skip(1).step_by(2).cloned().collect();
        let on_even = vim_fit(&head, &odd, 3).unwrap();
        let want = head.vim_logits(&id[..1], &on_even.spec).unwrap()[0];
        assert_eq!(cal.id_logits[0], want);
        assert_ne!(
            cal.id_logits[0],
            head.vim_logits(&id[..1], spec).unwrap()[0]
        );
        // By default a dimension per 16 frames of a half, not the paper's 3 (half the
        // features); a chosen dimension must fit a half.
        let default = vim_calibration(&head, &id, None).unwrap();
        assert_eq!(
            (default.fit.spec.dims(), default.fit.capped_from),
            (1, Some(3))
        );
        let few = vim_calibration(&head, &id[..8], None).unwrap();
        assert_eq!((few.fit.spec.dims(), few.fit.capped_from), (1, Some(3)));
        assert_eq!(few.id_logits.len(), 8);
        assert!(vim_calibration(&head, &id[..7], None).is_err());
        let err = vim_calibration(&head, &id[..8], Some(4)).unwrap_err();
        assert!(
            err.to_string().contains("needs more than 9 ID frames"),
            "{err}"
        );
    }

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
