//! Symmetric int8 weight codes with their scales.

/// Symmetric int8 codes of a weight tensor: one scale per output channel, or one for all.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct QuantizedWeights {
    /// Codes in -127..=127, same layout as the float weights.
    pub codes: Vec<i8>,
    /// One scale per output channel (per-channel), or one.
    pub scales: Vec<f32>,
}

/// Quantizes `weights` of `outputs` rows symmetrically; an all-zero row gets scale 1.
pub(crate) fn quantize_weights(
    weights: &[f32],
    outputs: usize,
    per_channel: bool,
) -> QuantizedWeights {
    let row = weights.len() / outputs;
    let scale_of = |w: &[f32]| {
        let max = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        if max > 0.0 { max / 127.0 } else { 1.0 }
    };
    let scales: Vec<f32> = if per_channel {
        weights.chunks(row).map(scale_of).collect()
    } else {
        vec![scale_of(weights)]
    };
    let codes = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let s = if per_channel {
                scales[i / row]
            } else {
                scales[0]
            };
            (w / s).round().clamp(-127.0, 127.0) as i8
        })
        .collect();
    QuantizedWeights { codes, scales }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_codes_use_the_full_range_of_each_row() {
        let q = quantize_weights(&[0.5, -1.0, 0.25, 0.0, 0.0, 0.0], 2, true);
        assert_eq!(q.codes, vec![64, -127, 32, 0, 0, 0]);
        assert_eq!(q.scales, vec![1.0 / 127.0, 1.0]);
        let t = quantize_weights(&[0.5, -1.0, 0.25, 2.0], 2, false);
        assert_eq!(t.scales, vec![2.0 / 127.0]);
        assert_eq!(t.codes, vec![32, -64, 16, 127]);
    }
}
