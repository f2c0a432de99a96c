//! The classifier head that turns a pooled feature into logits.

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
}

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
        }
    }
}

impl<'a> LinearHead<'a> {
    /// A head with `bias.len()` classes over `features` inputs.
    pub fn new(weights: &'a [f32], bias: &'a [f32], features: usize) -> Result<Self, HeadError> {
        if bias.is_empty() || features == 0 {
            return Err(HeadError::Empty);
        }
        let expected = bias.len().checked_mul(features).ok_or(HeadError::Empty)?;
        if weights.len() != expected {
            return Err(HeadError::WeightCount {
                expected,
                got: weights.len(),
            });
        }
        Ok(LinearHead {
            weights,
            bias,
            features,
        })
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
            *o = b + row.iter().zip(pooled).map(|(w, x)| w * x).sum::<f32>();
        }
    }
}
