//! S_NAP and the pooled feature, from the per-channel max and sum of the pre-pool activation A.
//!
//! `S_NAP = (1/C) * sum_j (max_hw A_j / (mean_hw A_j + eps))^2`: channels whose activation is a
//! sharp peak over a quiet plane, as a familiar object's features are, raise it. The pooled feature
//! `mean_hw A_j` is what global average pooling would have given the classifier head.

/// NAP's stabiliser in `max / (mean + eps)`; the paper uses 1.0 in all its runs.
pub const DEFAULT_EPS: f32 = 1.0;

use crate::int8::Quant;

/// S_NAP of a u8 activation from its exact integer reductions, writing the pooled feature.
///
/// `max` and `sum` hold one entry per channel, as [`crate::reduce::Reducer::reduce_u8`] gives
/// them; `plane` is H*W; `pooled` receives one real mean per channel. Scale only enters here,
/// once per channel. Lengths must agree (the reducer's buffers do) and `eps` must be positive.
pub fn nap_u8(
    max: &[u8],
    sum: &[u32],
    plane: usize,
    quant: Quant,
    eps: f32,
    pooled: &mut [f32],
) -> f32 {
    let inv_plane = 1.0 / plane as f32;
    let (scale, zero) = (quant.scale, f32::from(quant.zero_point));
    accumulate(max, sum, eps, pooled, |m, s| {
        // i32 -> f32 vectorizes where u32 -> f32 does not; sums fit (`Shape::MAX_PLANE`).
        (
            scale * (f32::from(m) - zero),
            scale * (s as i32 as f32 * inv_plane - zero),
        )
    })
}

/// S_NAP of an f32 activation from its reductions, writing the pooled feature; see [`nap_u8`].
pub fn nap_f32(max: &[f32], sum: &[f32], plane: usize, eps: f32, pooled: &mut [f32]) -> f32 {
    let inv_plane = 1.0 / plane as f32;
    accumulate(max, sum, eps, pooled, |m, s| (m, s * inv_plane))
}

/// Channels handled together: independent partial sums over fixed-size blocks let the compiler
/// vectorize the conversions, the division and the sum, which otherwise cost as much as the
/// reduction itself.
const LANES: usize = 8;

/// Mean over channels of `(max / (mean + eps))^2`, writing each mean to `pooled`; `real` turns a
/// channel's raw max and sum into its real max and mean.
#[inline(always)]
fn accumulate<M: Copy + Default, S: Copy + Default>(
    max: &[M],
    sum: &[S],
    eps: f32,
    pooled: &mut [f32],
    real: impl Fn(M, S) -> (f32, f32),
) -> f32 {
    let channels = max.len().min(sum.len()).min(pooled.len());
    if channels == 0 {
        return 0.0;
    }
    let mut lanes = [0.0f32; LANES];
    let full = channels / LANES * LANES;
    let blocks = max[..full]
        .chunks_exact(LANES)
        .zip(sum[..full].chunks_exact(LANES));
    for ((m, s), p) in blocks.zip(pooled[..full].chunks_exact_mut(LANES)) {
        for l in 0..LANES {
            let (peak, mean) = real(m[l], s[l]);
            let ratio = peak / (mean + eps);
            lanes[l] += ratio * ratio;
            p[l] = mean;
        }
    }
    // The last partial block, one channel at a time.
    for (l, ((&m, &s), p)) in max[full..channels]
        .iter()
        .zip(&sum[full..channels])
        .zip(&mut pooled[full..channels])
        .enumerate()
    {
        let (peak, mean) = real(m, s);
        let ratio = peak / (mean + eps);
        lanes[l] += ratio * ratio;
        *p = mean;
    }
    let total: f64 = lanes.iter().map(|&x| f64::from(x)).sum();
    (total / channels as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nap_of_a_tiny_tensor_by_hand() {
        // Channel 0 codes [0, 255, 0, 85]: max 6.0, mean 85 codes = 2.0, ratio 6 / 3 = 2, squared 4.
        // Channel 1 all zero: ratio 0. S_NAP = (4 + 0) / 2 = 2.
        let (max, sum) = ([255u8, 0], [340u32, 0]);
        let mut pooled = [9.0; 2];
        let nap = nap_u8(&max, &sum, 4, Quant::RELU6, 1.0, &mut pooled);
        assert!((nap - 2.0).abs() < 1e-6, "{nap}");
        assert!(
            (pooled[0] - 2.0).abs() < 1e-6 && pooled[1] == 0.0,
            "{pooled:?}"
        );

        // The same activation in f32: [0, 6, 0, 2] and [0, 0, 0, 0].
        let mut pooled_f = [9.0; 2];
        let nap_f = nap_f32(&[6.0, 0.0], &[8.0, 0.0], 4, 1.0, &mut pooled_f);
        assert!((nap_f - nap).abs() < 1e-6, "{nap_f} vs {nap}");
        assert_eq!(pooled, pooled_f);
    }

    #[test]
    fn zero_point_and_eps_enter_as_documented() {
        // Codes [12, 20] with scale 0.5, zero point 10: reals [1, 5], max 5, mean 3.
        // eps = 2: ratio 5 / 5 = 1, S_NAP = 1.
        let quant = Quant {
            scale: 0.5,
            zero_point: 10,
        };
        let mut pooled = [0.0];
        let nap = nap_u8(&[20], &[32], 2, quant, 2.0, &mut pooled);
        assert!((nap - 1.0).abs() < 1e-6, "{nap}");
        assert!((pooled[0] - 3.0).abs() < 1e-6);
    }

    #[test]
    fn a_black_frame_has_zero_nap() {
        let mut pooled = [1.0; 3];
        assert_eq!(
            nap_u8(&[0; 3], &[0; 3], 49, Quant::RELU6, 1.0, &mut pooled),
            0.0
        );
        assert_eq!(pooled, [0.0; 3]);
    }
}
