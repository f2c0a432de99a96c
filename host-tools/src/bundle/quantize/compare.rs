//! How closely a quantized bundle follows its float original, frame by frame: what a user reads
//! before trusting an int8 model.

use nap_core::reduce::Layout;
use nap_runtime::bundle::ActivationStorage;
use nap_runtime::detector::{Detector, DetectorError, PrePool};
use rayon::prelude::*;
use serde::Serialize;
use std::fmt;
use std::time::Instant;

/// Agreement of a quantized bundle with the float one over some frames.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agreement {
    /// Frames compared.
    pub frames: usize,
    /// Frames whose top-1 class is the same, in percent.
    pub top1_agreement: f64,
    /// Mean over frames of the cosine between the two pre-pool tensors.
    pub pre_pool_cosine: f64,
    /// Pearson correlation of S_NAP over the frames.
    pub nap_correlation: f64,
    /// Pearson correlation of lse (negative energy) over the frames.
    pub lse_correlation: f64,
    /// The quantized backbone's time over the float one's, both timed frame by frame on the
    /// same threads: a rough ratio (`napctl bench --compare` measures it properly).
    pub backbone_time_ratio: f64,
}

impl fmt::Display for Agreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  frames compared        {}", self.frames)?;
        writeln!(f, "  top-1 agreement        {:.2}%", self.top1_agreement)?;
        writeln!(f, "  pre-pool cosine        {:.4}", self.pre_pool_cosine)?;
        writeln!(f, "  NAP correlation        {:.4}", self.nap_correlation)?;
        writeln!(f, "  lse correlation        {:.4}", self.lse_correlation)?;
        write!(
            f,
            "  backbone time          {:.2}x the float bundle's (rough; `napctl bench --compare` measures it)",
            self.backbone_time_ratio
        )
    }
}

struct FramePair {
    same_top1: bool,
    cosine: f64,
    nap: (f64, f64),
    lse: (f64, f64),
    /// Backbone seconds, float and quantized.
    time: (f64, f64),
}

/// Runs both detectors on every preprocessed frame (on all cores) and compares them, each
/// with the backbone it runs by default (an int8 bundle's integer program where it has one).
pub fn compare(
    float: &Detector,
    quantized: &Detector,
    frames: &[Vec<f32>],
    progress: impl Fn() + Sync,
) -> Result<Agreement, DetectorError> {
    float.worker()?;
    quantized.worker()?;
    let pairs = frames
        .par_iter()
        .map_init(
            || {
                let w = float.worker().expect("a worker was made above");
                let q = quantized.worker().expect("a worker was made above");
                (w, q)
            },
            |(wf, wq), frame| {
                let start = Instant::now();
                let a = float.backbone(wf, frame.clone())?;
                let float_time = start.elapsed().as_secs_f64();
                let fa = float.analyze_pre_pool(wf, &a)?;
                let start = Instant::now();
                let b = quantized.backbone(wq, frame.clone())?;
                let quantized_time = start.elapsed().as_secs_f64();
                let qa = quantized.analyze_pre_pool(wq, &b)?;
                progress();
                Ok(FramePair {
                    same_top1: fa.top1 == qa.top1,
                    cosine: cosine(&real_values(float, &a)?, &real_values(quantized, &b)?),
                    nap: (f64::from(fa.nap), f64::from(qa.nap)),
                    lse: (f64::from(fa.lse), f64::from(qa.lse)),
                    time: (float_time, quantized_time),
                })
            },
        )
        .collect::<Result<Vec<_>, DetectorError>>()?;
    let n = pairs.len().max(1) as f64;
    let unzip =
        |f: fn(&FramePair) -> (f64, f64)| -> (Vec<f64>, Vec<f64>) { pairs.iter().map(f).unzip() };
    let (nf, nq) = unzip(|p| p.nap);
    let (lf, lq) = unzip(|p| p.lse);
    let (tf, tq) = unzip(|p| p.time);
    Ok(Agreement {
        frames: pairs.len(),
        top1_agreement: 100.0 * pairs.iter().filter(|p| p.same_top1).count() as f64 / n,
        pre_pool_cosine: pairs.iter().map(|p| p.cosine).sum::<f64>() / n,
        nap_correlation: pearson(&nf, &nq),
        lse_correlation: pearson(&lf, &lq),
        backbone_time_ratio: tq.iter().sum::<f64>() / tf.iter().sum::<f64>().max(f64::MIN_POSITIVE),
    })
}

/// The pre-pool tensor in real units, whatever its storage, channel-major (NCHW) whatever the
/// backbone's layout, so two detectors' tensors compare value for value.
fn real_values(detector: &Detector, pre_pool: &PrePool) -> Result<Vec<f32>, DetectorError> {
    let real: Vec<f32> = match (detector.manifest().pre_pool.storage, pre_pool) {
        (ActivationStorage::F32, PrePool::F32(values)) => values.clone(),
        (ActivationStorage::U8(q), PrePool::U8(codes)) => {
            codes.iter().map(|&c| q.dequantize(c)).collect()
        }
        (storage, other) => {
            return Err(DetectorError::PrePoolStorage {
                expected: storage.name(),
                got: other.storage_name(),
            });
        }
    };
    if detector.pre_pool_layout() == Layout::Nchw {
        return Ok(real);
    }
    let channels = detector.manifest().pre_pool.channels as usize;
    let plane = real.len() / channels.max(1);
    let mut nchw = vec![0.0; real.len()];
    for (p, pixel) in real.chunks_exact(channels).enumerate() {
        for (c, &v) in pixel.iter().enumerate() {
            nchw[c * plane + p] = v;
        }
    }
    Ok(nchw)
}

/// Cosine of the angle between two vectors; 1 for two zero vectors.
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 && bb == 0.0 {
        return 1.0;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}

/// Pearson correlation; 0 when either side is constant.
pub(crate) fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n == 0.0 {
        return 0.0;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma) * (x - ma);
        bb += (y - mb) * (y - mb);
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    ab / (aa * bb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_pearson_by_hand() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
        assert_eq!(cosine(&[0.0], &[0.0]), 1.0);
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.5]) - 0.997_948_7).abs() < 1e-6);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
    }
}
