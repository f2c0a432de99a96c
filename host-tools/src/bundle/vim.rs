//! ViM's statistics from ID frames (Wang et al. 2022): the origin `-pinv(W) b` of the head's
//! last dense layer, the principal subspace of the frames' dense-layer inputs about it, and
//! `alpha`, their mean largest logit over their mean residual norm.
//!
//! A subspace fit to a few hundred frames scores those same frames far too well (fit to the 458
//! shared ID images at 229 dimensions, ViM told them from every pseudo-OOD set perfectly), so
//! calibration cross-fits: the frames alternate between two halves and each half's fit scores
//! the other half. Those out-of-sample ID scores rank ViM and set its threshold; the bundle gets
//! the fit to all frames.

use super::calibrate::CalibrateError;
use crate::eval::HostHead;
use crate::eval::features::Features;
use nap_core::score::Head;
use nap_linalg::Subspace;
use nap_runtime::bundle::VimSpec;
use rayon::prelude::*;

/// ViM's principal subspace dimension for `features` inputs (Wang et al.: 1000 from 1500
/// features, 512 from 768, half below), meant for a whole training set.
pub fn paper_dims(features: usize) -> usize {
    match features {
        1500.. => 1000,
        768.. => 512,
        _ => (features / 2).max(1),
    }
}

/// ID frames each dimension of the default subspace needs in a half-fit. On the shared
/// MobileNetV2 (229 frames per half) ViM's AUROC on ood-dtd falls from 93.4% at 4 dimensions
/// and 92.0% at 16 to 78.6% at 64 (BENCHMARKS.md).
pub const FRAMES_PER_DIM: usize = 16;

/// ViM's statistics from some frames, and what the fit says about them.
#[derive(Clone, Debug, PartialEq)]
pub struct VimFit {
    /// The origin, principal subspace and scale the bundle stores.
    pub spec: VimSpec,
    /// Share of the inputs' second moment about the origin the subspace holds.
    pub captured: f64,
}

/// How the subspace's dimension was chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum DimsChoice {
    /// Asked for.
    Given,
    /// The paper's.
    Paper,
    /// One per [`FRAMES_PER_DIM`] frames of a half-fit, fewer than the paper's.
    Capped {
        /// The paper's dimension.
        paper: usize,
    },
    /// The candidate with the lowest mean FPR against the OOD sets (ties: higher AUROC, then
    /// fewer dimensions), each candidate as `(dims, fpr, auroc)`.
    Searched(Vec<(usize, f64, f64)>),
}

/// ViM calibrated on ID frames: the fit to all of them, and each one's out-of-sample virtual
/// logit.
#[derive(Clone, Debug, PartialEq)]
pub struct VimCalibration {
    /// The fit to every ID frame, which the bundle stores.
    pub fit: VimFit,
    /// Each ID frame's virtual logit from the fit to the other half.
    pub id_logits: Vec<f32>,
    /// How the dimension was chosen.
    pub dims: DimsChoice,
}

/// A fit of ViM's subspace to some frames at the largest dimension wanted, cut to any smaller
/// one without another eigendecomposition.
struct Fitted {
    origin: Vec<f32>,
    subspace: Subspace,
    /// The frames' dense-layer inputs, whose residuals `alpha` is computed from.
    inputs: Vec<Vec<f32>>,
    /// The sums over the frames of their largest logit and of their norm about the origin:
    /// the same for every cut.
    logit_sum: f64,
    norm_sum: f64,
}

impl Fitted {
    fn new(head: &HostHead<'_>, frames: &[Features], dims: usize) -> Result<Self, CalibrateError> {
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
        let inputs = head
            .dense_inputs(frames)
            .map_err(|e| CalibrateError::Components(e.into()))?;
        let origin = nap_linalg::zero_output_origin(dense.weights(), dense.bias(), features)?;
        let centered: Vec<Vec<f32>> = inputs
            .iter()
            .map(|x| x.iter().zip(&origin).map(|(x, u)| x - u).collect())
            .collect();
        let subspace = nap_linalg::principal_subspace(&centered, features, dims)?;
        let logit_sum = inputs
            .iter()
            .map(|input| {
                let mut logits = vec![0.0; dense.classes()];
                dense.logits(input, &mut logits);
                f64::from(logits.into_iter().fold(f32::NEG_INFINITY, f32::max))
            })
            .sum();
        let norm_sum = centered
            .iter()
            .map(|x| x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt())
            .sum();
        Ok(Fitted {
            origin,
            subspace,
            inputs,
            logit_sum,
            norm_sum,
        })
    }

    /// The fit cut to its leading `dims` directions, with its own `alpha`.
    fn cut(&self, dims: usize) -> Result<VimFit, CalibrateError> {
        let features = self.origin.len();
        let fitted = self.subspace.basis.len() / features;
        if dims == 0 || dims > fitted {
            return Err(CalibrateError::Input(format!(
                "ViM's subspace was fit to 1 to {fitted} dimensions, not {dims}"
            )));
        }
        let mut spec = VimSpec {
            origin: self.origin.clone(),
            basis: self.subspace.basis[..dims * features].to_vec(),
            alpha: 1.0,
        };
        let residuals = virtual_logits(&spec, &self.inputs);
        let residual_sum: f64 = residuals.iter().map(|&r| f64::from(r)).sum();
        let (logit_sum, norm_sum) = (self.logit_sum, self.norm_sum);
        let n = self.inputs.len() as f64;
        // Residuals within f32 rounding of zero (the projection's, about 3e-4 of the norm): the
        // frames lie in the subspace, and alpha would scale rounding noise.
        let alpha = (logit_sum / residual_sum) as f32;
        if residual_sum <= 1e-3 * norm_sum || !(alpha > 0.0 && alpha.is_finite()) {
            return Err(CalibrateError::Input(format!(
                "the ID frames' mean largest logit ({:.4}) over their mean residual off the \
                 subspace ({:.3e}, of mean norm {:.4}) makes no scale: ViM needs ID frames \
                 whose largest logit is positive on average and which do not lie in a \
                 {dims}-dimensional subspace",
                logit_sum / n,
                residual_sum / n,
                norm_sum / n,
            )));
        }
        spec.alpha = alpha;
        Ok(VimFit {
            spec,
            captured: self.subspace.captured(dims),
        })
    }
}

/// `spec`'s virtual logits of dense-layer inputs.
pub fn virtual_logits(spec: &VimSpec, inputs: &[Vec<f32>]) -> Vec<f32> {
    let offset = spec.offset();
    let vim = spec.view(&offset);
    inputs
        .par_iter()
        .map(|input| vim.virtual_logit(input, &mut vec![0.0; vim.dims()]))
        .collect()
}

/// ViM fit to `frames` at `dims` dimensions.
pub fn fit(
    head: &HostHead<'_>,
    frames: &[Features],
    dims: usize,
) -> Result<VimFit, CalibrateError> {
    Fitted::new(head, frames, dims)?.cut(dims)
}

/// ViM fit to all ID frames and to each half of them, up to some dimension.
pub struct CrossFit {
    all: Fitted,
    /// Fit to the even and to the odd frames.
    halves: [Fitted; 2],
}

impl CrossFit {
    /// Fits up to `max_dims` dimensions, which must be below half the frames.
    pub fn new(
        head: &HostHead<'_>,
        id: &[Features],
        max_dims: usize,
    ) -> Result<Self, CalibrateError> {
        if max_dims >= id.len() / 2 {
            return Err(CalibrateError::Input(format!(
                "ViM's subspace of {max_dims} dimensions needs more than {} ID frames, got {}",
                2 * max_dims + 1,
                id.len()
            )));
        }
        let half = |parity: usize| -> Vec<Features> {
            id.iter().skip(parity).step_by(2).cloned().collect()
        };
        Ok(CrossFit {
            all: Fitted::new(head, id, max_dims)?,
            halves: [
                Fitted::new(head, &half(0), max_dims)?,
                Fitted::new(head, &half(1), max_dims)?,
            ],
        })
    }

    /// The calibration at `dims` (at most the `max_dims` fitted).
    pub fn at(&self, dims: usize, choice: DimsChoice) -> Result<VimCalibration, CalibrateError> {
        let fit = self.all.cut(dims)?;
        let [even, odd] = &self.halves;
        let on_even = virtual_logits(&odd.cut(dims)?.spec, &even.inputs);
        let on_odd = virtual_logits(&even.cut(dims)?.spec, &odd.inputs);
        let mut id_logits = Vec::with_capacity(self.all.inputs.len());
        for i in 0..self.all.inputs.len() {
            id_logits.push(if i % 2 == 0 {
                on_even[i / 2]
            } else {
                on_odd[i / 2]
            });
        }
        Ok(VimCalibration {
            fit,
            id_logits,
            dims: choice,
        })
    }
}

/// The default dimension for `frames` ID frames: the paper's, or one per [`FRAMES_PER_DIM`]
/// frames of a half-fit where that is fewer.
pub fn default_dims(features: usize, frames: usize) -> (usize, DimsChoice) {
    let paper = paper_dims(features);
    let cap = (frames / 2 / FRAMES_PER_DIM).max(1);
    if paper > cap {
        (cap, DimsChoice::Capped { paper })
    } else {
        (paper, DimsChoice::Paper)
    }
}

/// The dimensions a search tries: powers of two and the paper's, below a quarter of the frames
/// (half a half-fit's) and the features.
pub fn candidate_dims(features: usize, frames: usize) -> Vec<usize> {
    let limit = (frames / 4).min(features);
    let mut dims: Vec<usize> = std::iter::successors(Some(1usize), |d| Some(d * 2))
        .take_while(|&d| d < limit)
        .collect();
    let paper = paper_dims(features);
    if paper < limit && !dims.contains(&paper) {
        dims.push(paper);
        dims.sort_unstable();
    }
    dims
}

/// ViM calibrated on the ID frames at `dims`, or at [`default_dims`].
pub fn calibration(
    head: &HostHead<'_>,
    id: &[Features],
    dims: Option<usize>,
) -> Result<VimCalibration, CalibrateError> {
    if dims.is_none() && id.len() < 8 {
        return Err(CalibrateError::Input(format!(
            "ViM needs at least 8 ID frames to fit and check its subspace, got {}",
            id.len()
        )));
    }
    let (dims, choice) = match dims {
        Some(d) => (d, DimsChoice::Given),
        None => default_dims(head.dense.features(), id.len()),
    };
    CrossFit::new(head, id, dims)?.at(dims, choice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nap_core::score::LinearHead;

    #[test]
    fn a_fit_holds_the_subspace_origin_and_scale_it_promises() {
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
        let all = fit(&head, &id, 3).unwrap();
        let spec = &all.spec;
        assert_eq!(spec.dims(), 3);
        assert!(all.captured > 0.9 && all.captured < 1.0, "{}", all.captured);
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
            let err = fit(&head, &id, dims).unwrap_err().to_string();
            assert!(err.contains("needs 1 to 5"), "{err}");
        }

        // Cross-fitting: the stored fit is the one to all frames, and each frame's logit comes
        // from the other half's fit.
        let cal = calibration(&head, &id, Some(3)).unwrap();
        assert_eq!((&cal.fit, &cal.dims), (&all, &DimsChoice::Given));
        let odd: Vec<Features> = id.iter().skip(1).step_by(2).cloned().collect();
        let on_even = fit(&head, &odd, 3).unwrap();
        let first = [id[0].pooled.clone()];
        assert_eq!(cal.id_logits[0], virtual_logits(&on_even.spec, &first)[0]);
        assert_ne!(cal.id_logits[0], virtual_logits(spec, &first)[0]);
        // A cross-fit at more dimensions cut to fewer is the fit at those.
        let wide = CrossFit::new(&head, &id, 4).unwrap();
        assert_eq!(wide.at(3, DimsChoice::Given).unwrap(), cal);
        assert!(wide.at(5, DimsChoice::Given).is_err());
        // By default a dimension per 16 frames of a half, not the paper's 3 (half the
        // features); a chosen dimension must fit a half.
        let capped = DimsChoice::Capped { paper: 3 };
        let default = calibration(&head, &id, None).unwrap();
        assert_eq!((default.fit.spec.dims(), &default.dims), (1, &capped));
        let few = calibration(&head, &id[..8], None).unwrap();
        assert_eq!((few.fit.spec.dims(), &few.dims), (1, &capped));
        assert_eq!(few.id_logits.len(), 8);
        assert!(calibration(&head, &id[..7], None).is_err());
        let err = calibration(&head, &id[..8], Some(4)).unwrap_err();
        assert!(
            err.to_string().contains("needs more than 9 ID frames"),
            "{err}"
        );
    }

    #[test]
    fn dimensions_by_default_and_to_search() {
        assert_eq!(paper_dims(1280), 512);
        assert_eq!(paper_dims(2048), 1000);
        assert_eq!(paper_dims(512), 256);
        // 458 frames: 229 per half, one dimension per 16 of them.
        assert_eq!(
            default_dims(1280, 458),
            (14, DimsChoice::Capped { paper: 512 })
        );
        assert_eq!(default_dims(16, 600), (8, DimsChoice::Paper));
        assert_eq!(candidate_dims(1280, 458), [1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(
            candidate_dims(1280, 4000),
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
        );
        assert_eq!(candidate_dims(6, 60), [1, 2, 3, 4]);
        assert!(candidate_dims(6, 4).is_empty());
    }
}
