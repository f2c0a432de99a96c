//! The classifier head that turns a pooled feature into logits.

use crate::gemv::Int8Gemv;

/// A classifier head: pooled feature (`features` values) in, `classes` logits out.
///
/// ReAct and ASH reshape the pooled feature and run the head again, so scoring needs the head
/// itself, not only the logits. The runtime may supply a faster implementation than
/// [`LinearHead`]; all must compute the same affine map.
pub trait Head {
    /// Length of the pooled feature.
    fn features(&self) -> usize;
    /// Number of logits.
    fn classes(&self) -> usize;
    /// Writes `classes()` logits for a pooled feature of `features()` values.
    fn logits(&self, pooled: &[f32], out: &mut [f32]);
}

/// A dense head `logits = W * pooled + b`, W row-major with one row per class: the 1x1 conv,
/// Gemm and MatMul + Add heads of exported CNNs all reduce to it.
#[derive(Clone, Copy, Debug)]
pub struct LinearHead<'a> {
    weights: &'a [f32],
    bias: &'a [f32],
    features: usize,
}

/// Why a head's weights were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// No classes or no features.
    Empty,
    /// `weights` does not hold `bias.len() * features` values.
    WeightCount {
        /// classes * features.
        expected: usize,
        /// The buffer's length.
        got: usize,
    },
    /// An int8 head without exactly one scale per class row.
    ScaleCount {
        /// classes.
        expected: usize,
        /// The buffer's length.
        got: usize,
    },
}

impl core::error::Error for HeadError {}

impl core::fmt::Display for HeadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HeadError::Empty => write!(f, "classifier head has no classes or no features"),
            HeadError::WeightCount { expected, got } => {
                write!(
                    f,
                    "classifier head has {got} weights, classes * features needs {expected}"
                )
            }
            HeadError::ScaleCount { expected, got } => {
                write!(
                    f,
                    "int8 classifier head has {got} row scales for {expected} classes"
                )
            }
        }
    }
}

/// Checks that `weights` holds one row of `features` values per class of `bias`.
fn check_shape(weights: usize, bias: &[f32], features: usize) -> Result<(), HeadError> {
    if bias.is_empty() || features == 0 {
        return Err(HeadError::Empty);
    }
    let expected = bias.len().checked_mul(features).ok_or(HeadError::Empty)?;
    if weights != expected {
        return Err(HeadError::WeightCount {
            expected,
            got: weights,
        });
    }
    Ok(())
}

impl<'a> LinearHead<'a> {
    /// A head with `bias.len()` classes over `features` inputs.
    pub fn new(weights: &'a [f32], bias: &'a [f32], features: usize) -> Result<Self, HeadError> {
        check_shape(weights.len(), bias, features)?;
        Ok(LinearHead {
            weights,
            bias,
            features,
        })
    }

    /// The weights, row-major `[classes][features]`.
    pub fn weights(&self) -> &'a [f32] {
        self.weights
    }

    /// The bias, one per class.
    pub fn bias(&self) -> &'a [f32] {
        self.bias
    }
}

impl Head for LinearHead<'_> {
    fn features(&self) -> usize {
        self.features
    }

    fn classes(&self) -> usize {
        self.bias.len()
    }

    fn logits(&self, pooled: &[f32], out: &mut [f32]) {
        for ((o, row), &b) in out
            .iter_mut()
            .zip(self.weights.chunks_exact(self.features))
            .zip(self.bias)
        {
            *o = b + dot(row, pooled);
        }
    }
}

/// A dense head stored as int8 codes with one scale per class row:
/// `logits[k] = b[k] + scale[k] * (codes[k] . pooled)`, the affine map of [`LinearHead`] with
/// weights `scale[k] * codes[k][i]`.
///
/// The head's time goes into reading its weights (a 1000 x 1280 f32 head is 5 MB per frame);
/// codes are a quarter of that, and the device computes with them as stored. The pooled feature
/// becomes i16 codes first (one scale, its largest magnitude at 32767: within 1.6e-5 of that
/// magnitude per value), so the products are integer ones, summed exactly; a feature with a
/// value that is not finite, or longer than [`Int8Head::MAX_I16_FEATURES`], takes the f32
/// products instead.
#[derive(Clone, Copy, Debug)]
pub struct Int8Head<'a> {
    codes: &'a [i8],
    scales: &'a [f32],
    bias: &'a [f32],
    features: usize,
    gemv: Int8Gemv,
}

impl<'a> Int8Head<'a> {
    /// A head with `bias.len()` classes over `features` inputs, row `k` scaled by `scales[k]`.
    pub fn new(
        codes: &'a [i8],
        scales: &'a [f32],
        bias: &'a [f32],
        features: usize,
    ) -> Result<Self, HeadError> {
        check_shape(codes.len(), bias, features)?;
        if scales.len() != bias.len() {
            return Err(HeadError::ScaleCount {
                expected: bias.len(),
                got: scales.len(),
            });
        }
        Ok(Int8Head {
            codes,
            scales,
            bias,
            features,
            gemv: Int8Gemv::new(),
        })
    }
}

impl Int8Head<'_> {
    /// The longest pooled feature quantized to i16 (a stack buffer of 8 KiB); ResNet-50 has 2048.
    pub const MAX_I16_FEATURES: usize = 4096;
}

impl Head for Int8Head<'_> {
    fn features(&self) -> usize {
        self.features
    }

    fn classes(&self) -> usize {
        self.bias.len()
    }

    fn logits(&self, pooled: &[f32], out: &mut [f32]) {
        let out = &mut out[..self.bias.len()];
        let mut buffer = [0i16; Int8Head::MAX_I16_FEATURES];
        let coded = buffer
            .get_mut(..pooled.len())
            .and_then(|x| quantize_i16(pooled, x).map(|scale| (x, scale)));
        // The value of one unit of the products' vector: an i16 code's, or 1 for f32 values.
        let scale = match coded {
            Some((x, scale)) => {
                self.gemv.dots_i16(self.codes, x, out);
                scale
            }
            None => {
                self.gemv.dots(self.codes, pooled, out);
                1.0
            }
        };
        for ((o, &row_scale), &b) in out.iter_mut().zip(self.scales).zip(self.bias) {
            *o = b + (row_scale * scale) * *o;
        }
    }
}

/// Writes `x` as i16 codes in `-32767..=32767`, its largest magnitude at 32767, and returns the
/// value of one code; `None` when some value is not finite.
fn quantize_i16(x: &[f32], codes: &mut [i16]) -> Option<f32> {
    // Magnitudes compare as their bit patterns, which vectorizes; infinities and NaNs are the
    // patterns from 0x7f80_0000 up.
    let largest = x
        .iter()
        .map(|v| v.to_bits() & 0x7fff_ffff)
        .max()
        .unwrap_or(0);
    if largest >= 0x7f80_0000 {
        return None;
    }
    let max = f32::from_bits(largest);
    if max == 0.0 {
        codes.fill(0);
        return Some(0.0);
    }
    let inv = 32767.0 / max;
    for (c, &v) in codes.iter_mut().zip(x) {
        // Rounded half away from zero (`f32::round` is not in core); at most 32767 in
        // magnitude, since `|v| <= max`, to float rounding that truncation absorbs.
        let scaled = v * inv;
        *c = (scaled + if scaled < 0.0 { -0.5 } else { 0.5 }) as i32 as i16;
    }
    Some(max / 32767.0)
}

/// Independent partial sums of [`dot`]: one running sum would serialize every add on its
/// latency (a 1000 x 1280 head took 1 ms); lanes let the compiler vectorize.
const LANES: usize = 8;

/// `sum(a[i] * b[i])` over the common length.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; LANES];
    for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for l in 0..LANES {
            lanes[l] += ca[l] * cb[l];
        }
    }
    let tail = n / LANES * LANES;
    let rest: f32 = a[tail..].iter().zip(&b[tail..]).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_head_by_hand() {
        // 2 classes over 10 features (a full lane block and a tail).
        let w: [f32; 20] = core::array::from_fn(|i| i as f32);
        let x = [1.0f32; 10];
        let head = LinearHead::new(&w, &[0.5, -1.0], 10).unwrap();
        let mut out = [0.0; 2];
        head.logits(&x, &mut out);
        // Row 0: 0 + 1 + ... + 9 = 45; row 1: 10 + ... + 19 = 145.
        assert_eq!(out, [45.5, 144.0]);
    }

    #[test]
    fn int8_head_by_hand() {
        // 2 classes over 10 features; row 1 is row 0 negated, with another scale.
        let q: [i8; 20] =
            core::array::from_fn(|i| if i < 10 { i as i8 } else { -((i - 10) as i8) });
        let x = [1.0f32; 10];
        let head = Int8Head::new(&q, &[0.5, 0.25], &[1.0, 0.0], 10).unwrap();
        let mut out = [0.0; 2];
        head.logits(&x, &mut out);
        // 0 + 1 + ... + 9 = 45.
        assert_eq!(out, [1.0 + 0.5 * 45.0, -0.25 * 45.0]);
    }

    #[test]
    fn int8_head_refuses_a_scale_per_row_missing() {
        let q = [0i8; 20];
        assert_eq!(
            Int8Head::new(&q, &[1.0], &[0.0, 0.0], 10).unwrap_err(),
            HeadError::ScaleCount {
                expected: 2,
                got: 1
            }
        );
        assert_eq!(
            Int8Head::new(&q, &[1.0, 1.0], &[0.0, 0.0], 9).unwrap_err(),
            HeadError::WeightCount {
                expected: 18,
                got: 20
            }
        );
    }
}
