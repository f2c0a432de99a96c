//! ViM (Wang et al., CVPR 2022): how far a frame's feature lies off the principal subspace of ID
//! features, as a *virtual logit* that is subtracted from the logits' logsumexp.
//!
//! The feature is the input of the head's last dense layer, measured from the origin
//! `u = -pinv(W) b`, where the logits are all zero. Calibration stores the principal subspace
//! (its orthonormal basis, the top `D` eigenvectors of the ID features' second moment about
//! `u`) and `alpha`, which scales the residual's norm to the ID logits' size.

use super::head::{Head, LinearHead};

/// ViM's statistics as the scorer uses them, borrowed from the bundle.
#[derive(Clone, Copy, Debug)]
pub struct Vim<'a> {
    /// `x -> B x - B u`: the coordinates of `x - u` in the principal subspace, as a dense
    /// layer whose rows are the basis and whose bias is [`offset`]'s.
    projection: LinearHead<'a>,
    origin: &'a [f32],
    alpha: f32,
}

impl<'a> Vim<'a> {
    /// ViM over `origin.len()` features: `basis` holds the principal subspace row-major
    /// (`dims x features`, orthonormal rows), `offset` is [`offset`] of the two. `None` when the
    /// lengths disagree.
    pub fn new(origin: &'a [f32], basis: &'a [f32], offset: &'a [f32], alpha: f32) -> Option<Self> {
        let features = origin.len();
        if features == 0 || basis.len() != offset.len() * features {
            return None;
        }
        let projection = LinearHead::new(basis, offset, features).ok()?;
        Some(Vim {
            projection,
            origin,
            alpha,
        })
    }

    /// The principal subspace's dimension `D`.
    pub fn dims(&self) -> usize {
        self.projection.classes()
    }

    /// The norm of `input - u` off the principal subspace: `sqrt(|x - u|^2 - |B (x - u)|^2)`.
    /// `projection` holds [`Vim::dims`] floats.
    pub fn residual_norm(&self, input: &[f32], projection: &mut [f32]) -> f32 {
        let projection = &mut projection[..self.dims()];
        self.projection.logits(input, projection);
        let whole: f64 = input
            .iter()
            .zip(self.origin)
            .map(|(&x, &u)| {
                let z = f64::from(x - u);
                z * z
            })
            .sum();
        let inside: f64 = projection
            .iter()
            .map(|&p| f64::from(p) * f64::from(p))
            .sum();
        // Rounding can leave a feature inside the subspace a tiny negative remainder.
        libm::sqrt((whole - inside).max(0.0)) as f32
    }

    /// The virtual logit `alpha * residual_norm`, which ViM subtracts from the logsumexp.
    pub fn virtual_logit(&self, input: &[f32], projection: &mut [f32]) -> f32 {
        self.alpha * self.residual_norm(input, projection)
    }
}

/// Writes `-B u`, the projection's constant term, into `out` (`dims` floats), so that
/// projecting `x` needs no copy of `x - u`.
pub fn offset(basis: &[f32], origin: &[f32], out: &mut [f32]) {
    if origin.is_empty() {
        return;
    }
    for (o, row) in out.iter_mut().zip(basis.chunks_exact(origin.len())) {
        let dot: f64 = row
            .iter()
            .zip(origin)
            .map(|(&b, &u)| f64::from(b) * f64::from(u))
            .sum();
        *o = -dot as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_norm_and_virtual_logit_by_hand() {
        // One basis vector e0, origin (0, 0, 1): x = (2, 3, 5) is z = (2, 3, 4) from it, of
        // which 2 lies in the subspace: the residual is |(3, 4)| = 5.
        let origin = [0.0, 0.0, 1.0];
        let basis = [1.0, 0.0, 0.0];
        let mut off = [0.0];
        offset(&basis, &origin, &mut off);
        assert_eq!(off, [0.0]);
        let vim = Vim::new(&origin, &basis, &off, 0.5).unwrap();
        assert_eq!(vim.dims(), 1);
        let mut p = [0.0];
        assert_eq!(vim.residual_norm(&[2.0, 3.0, 5.0], &mut p), 5.0);
        assert_eq!(p, [2.0]);
        assert_eq!(vim.virtual_logit(&[2.0, 3.0, 5.0], &mut p), 2.5);

        // A tilted basis (1, 1, 0) / sqrt 2 with an origin the offset moves: z = (1, 1, 0)
        // lies in the subspace, so nothing is left.
        let s = core::f32::consts::FRAC_1_SQRT_2;
        let basis = [s, s, 0.0];
        let origin = [1.0, 1.0, 1.0];
        offset(&basis, &origin, &mut off);
        assert!((off[0] + 2.0 * s).abs() < 1e-6);
        let vim = Vim::new(&origin, &basis, &off, 1.0).unwrap();
        assert!(vim.residual_norm(&[2.0, 2.0, 1.0], &mut p) < 1e-3);
        // z = (0, 0, 3) is orthogonal to it: all of it is residual.
        assert!((vim.residual_norm(&[1.0, 1.0, 4.0], &mut p) - 3.0).abs() < 1e-6);
    }

    #[test]
    fn mismatched_lengths_are_refused() {
        let origin = [0.0; 3];
        assert!(Vim::new(&origin, &[0.0; 5], &[0.0; 2], 1.0).is_none());
        assert!(Vim::new(&[], &[], &[], 1.0).is_none());
    }
}
