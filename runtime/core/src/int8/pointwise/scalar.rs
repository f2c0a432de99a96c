//! The reference: each output channel of each pixel summed over the input channels in order,
//! then requantized, straight from the weights as the model gives them (`[M][K]`).

use super::{PointwiseError, Shape};
use crate::int8::{OutputStage, Requant, requant::requantize, stride};

/// The reference's packed parameters: `bias[M]`, `multiplier[M]`, `shift[M]` after the header.
pub(crate) struct Params<'a> {
    bias: &'a [i32],
    multiplier: &'a [i32],
    shift: &'a [i32],
}

impl<'a> Params<'a> {
    /// Splits the body of the params (after the header) of `out_channels` channels; refuses an
    /// invalid requant.
    pub(crate) fn new(body: &'a [i32], out_channels: usize) -> Result<Self, PointwiseError> {
        let (bias, rest) = body.split_at(out_channels);
        let (multiplier, shift) = rest.split_at(out_channels);
        let p = Params {
            bias,
            multiplier,
            shift,
        };
        if (0..out_channels).all(|m| p.requant(m).is_some_and(|r| r.is_valid())) {
            Ok(p)
        } else {
            Err(PointwiseError::Packing)
        }
    }

    /// Output channel `m`'s bias.
    pub(crate) fn bias(&self, m: usize) -> i32 {
        self.bias[m]
    }

    /// Output channel `m`'s requant (`None` when the shift does not fit an i8).
    pub(crate) fn requant(&self, m: usize) -> Option<Requant> {
        Some(Requant {
            multiplier: self.multiplier[m],
            shift: i8::try_from(self.shift[m]).ok()?,
        })
    }
}

/// Every pixel: `out[m] = requantize(bias[m] + sum_k w[m][k] * x[k], requant[m], stage)`,
/// wrapping in i32. Writes only the real output channels.
pub(super) fn run(
    shape: &Shape,
    weights: &[i8],
    body: &[i32],
    stage: OutputStage,
    input: &[u8],
    output: &mut [u8],
) -> Result<(), PointwiseError> {
    let (k, m) = (shape.in_channels, shape.out_channels);
    let params = Params::new(body, m)?;
    let pixels = input
        .chunks_exact(stride(k))
        .zip(output.chunks_exact_mut(stride(m)));
    for (x, out) in pixels {
        for (o, (row, y)) in weights.chunks_exact(k).zip(out.iter_mut()).enumerate() {
            let acc = row.iter().zip(x).fold(params.bias(o), |acc, (&w, &x)| {
                acc.wrapping_add(i32::from(w) * i32::from(x))
            });
            // Checked in Params::new.
            let r = params.requant(o).unwrap_or(Requant::ZERO);
            *y = requantize(acc, r, stage);
        }
    }
    Ok(())
}
