//! The dense linear algebra ViM's calibration needs: the origin of a dense layer (its
//! pseudo-inverse) and the principal subspace of ID features (a symmetric eigendecomposition),
//! in f64 with nalgebra.
//!
//! A crate of its own so that the workspace's dev profile can build it optimized: unoptimized,
//! a 1280 x 1280 eigendecomposition takes minutes, and generic code is compiled in the crate
//! that names its types, so only a non-generic crate of its own gets the optimization.

use nalgebra::{DMatrix, DVector, SVD, SymmetricEigen};

/// Why a decomposition failed.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum LinalgError {
    /// A value is NaN or infinite.
    #[error("{0} holds a value that is not finite")]
    NotFinite(&'static str),
    /// Lengths disagree.
    #[error("{what} has {got} values, expected {expected}")]
    Length {
        /// Which input.
        what: &'static str,
        /// The length the other inputs imply.
        expected: usize,
        /// Its length.
        got: usize,
    },
    /// The subspace's dimension is not below the features'.
    #[error("a principal subspace of {dims} dimensions in {features} features (needs 1 to {max})", max = .features - 1)]
    Dims {
        /// The asked dimension.
        dims: usize,
        /// The features' dimension.
        features: usize,
    },
    /// The iteration did not converge.
    #[error("the {0} did not converge")]
    NoConvergence(&'static str),
}

/// The least-norm point where the dense layer `W x + b` is zero (least squares where no
/// point is): `-pinv(W) b`, ViM's origin. `weights` is row-major `[bias.len()][features]`.
pub fn zero_output_origin(
    weights: &[f32],
    bias: &[f32],
    features: usize,
) -> Result<Vec<f32>, LinalgError> {
    let rows = bias.len();
    if weights.len() != rows * features || features == 0 || rows == 0 {
        return Err(LinalgError::Length {
            what: "the dense layer's weights",
            expected: rows * features.max(1),
            got: weights.len(),
        });
    }
    finite("the dense layer", weights.iter().chain(bias))?;
    let w = DMatrix::from_row_iterator(rows, features, weights.iter().map(|&x| f64::from(x)));
    let b = DVector::from_iterator(rows, bias.iter().map(|&x| f64::from(x)));
    let svd = SVD::try_new(w, true, true, f64::EPSILON, 0)
        .ok_or(LinalgError::NoConvergence("dense layer's SVD"))?;
    // numpy's pinv cut: singular values below max(m, n) eps of the largest are zero.
    let largest = svd.singular_values.max();
    let cut = largest * rows.max(features) as f64 * f64::EPSILON;
    let x = svd
        .solve(&b, cut)
        .map_err(|_| LinalgError::NoConvergence("dense layer's SVD"))?;
    Ok(x.iter().map(|&v| -v as f32).collect())
}

/// The principal subspace of a set of vectors: the `dims` leading eigenvectors of their second
/// moment `1/n sum x x^T`.
#[derive(Clone, Debug, PartialEq)]
pub struct Subspace {
    /// Orthonormal basis, row-major `[dims][features]`, by decreasing eigenvalue; its first `d`
    /// rows are the `d`-dimensional principal subspace.
    pub basis: Vec<f32>,
    /// Every eigenvalue of the second moment, decreasing.
    pub eigenvalues: Vec<f64>,
}

impl Subspace {
    /// Share of the second moment's trace the leading `dims` directions hold, in [0, 1].
    pub fn captured(&self, dims: usize) -> f64 {
        let trace: f64 = self.eigenvalues.iter().sum();
        let kept: f64 = self.eigenvalues.iter().take(dims).sum();
        if trace > 0.0 {
            (kept / trace).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// The `dims`-dimensional principal subspace of `rows` (each `features` long).
pub fn principal_subspace(
    rows: &[Vec<f32>],
    features: usize,
    dims: usize,
) -> Result<Subspace, LinalgError> {
    if dims == 0 || dims >= features {
        return Err(LinalgError::Dims { dims, features });
    }
    if let Some(r) = rows.iter().find(|r| r.len() != features) {
        return Err(LinalgError::Length {
            what: "a feature vector",
            expected: features,
            got: r.len(),
        });
    }
    finite("the features", rows.iter().flatten())?;
    let x = DMatrix::from_row_iterator(
        rows.len(),
        features,
        rows.iter().flatten().map(|&v| f64::from(v)),
    );
    let moment = x.transpose() * &x / rows.len().max(1) as f64;
    let eigen = SymmetricEigen::try_new(moment, f64::EPSILON, 0)
        .ok_or(LinalgError::NoConvergence("eigendecomposition"))?;
    let mut order: Vec<usize> = (0..features).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    let basis = order[..dims]
        .iter()
        .flat_map(|&i| {
            eigen
                .eigenvectors
                .column(i)
                .iter()
                .map(|&v| v as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(Subspace {
        basis,
        eigenvalues: order.iter().map(|&i| eigen.eigenvalues[i]).collect(),
    })
}

fn finite<'a>(
    what: &'static str,
    mut values: impl Iterator<Item = &'a f32>,
) -> Result<(), LinalgError> {
    if values.all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(LinalgError::NotFinite(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_zeroes_the_layer_with_the_least_norm() {
        // Two outputs over three features: W x + b = 0 along a line; the least-norm point of
        // x0 + 2 = 0, x1 - 1 = 0 is (-2, 1, 0).
        let weights = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let origin = zero_output_origin(&weights, &[2.0, -1.0], 3).unwrap();
        assert_eq!(origin.len(), 3);
        for (got, want) in origin.iter().zip([-2.0, 1.0, 0.0]) {
            assert!((got - want).abs() < 1e-6, "{origin:?}");
        }
        // More outputs than features: the least-squares point. x = 1 and x = 3: x = 2.
        let origin = zero_output_origin(&[1.0, 1.0], &[-1.0, -3.0], 1).unwrap();
        assert!((origin[0] - 2.0).abs() < 1e-6, "{origin:?}");
        assert!(zero_output_origin(&[1.0, f32::NAN], &[0.0, 0.0], 1).is_err());
        assert!(zero_output_origin(&[1.0; 5], &[0.0, 0.0], 3).is_err());
    }

    #[test]
    fn principal_subspace_finds_the_dominant_directions() {
        // Points spread along e0 (a lot) and e1 (a little), none along e2.
        let rows: Vec<Vec<f32>> = (0..20)
            .map(|i| {
                let t = i as f32 - 9.5;
                vec![3.0 * t, 0.5 * ((i % 3) as f32 - 1.0), 0.0]
            })
            .collect();
        let one = principal_subspace(&rows, 3, 1).unwrap();
        assert_eq!(one.basis.len(), 3);
        assert!((one.basis[0].abs() - 1.0).abs() < 1e-6, "{one:?}");
        assert!(one.captured(1) > 0.99 && one.captured(1) < 1.0, "{one:?}");
        assert!(one.eigenvalues.windows(2).all(|w| w[0] >= w[1]));
        let two = principal_subspace(&rows, 3, 2).unwrap();
        assert!((two.basis[4].abs() - 1.0).abs() < 1e-6, "{two:?}");
        assert!((two.captured(2) - 1.0).abs() < 1e-12);
        assert_eq!(
            principal_subspace(&rows, 3, 3),
            Err(LinalgError::Dims {
                dims: 3,
                features: 3
            })
        );
        assert!(principal_subspace(&[vec![1.0, 2.0]], 3, 1).is_err());
    }
}
