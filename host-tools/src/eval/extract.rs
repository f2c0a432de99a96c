//! Per-image features (pooled feature and per-channel max) for whole folders, on all cores,
//! through the [`cache`](super::cache): the only place `eval` and `calibrate` run the backbone.

use super::cache::{FeatureCache, content_hash};
use super::corrupt::Corruption;
use super::features::Features;
use crate::images::ImageFile;
use crate::score::ImageError;
use nap_runtime::detector::{Detector, DetectorError, Worker};
use nap_runtime::preprocess::{Preprocessor, decode};
use rayon::prelude::*;
use tract_onnx::prelude::Tensor;

/// One frame to extract: an image file, or a corrupted copy of it (pseudo-OOD).
#[derive(Clone, Debug)]
pub struct Job {
    /// The image file.
    pub file: ImageFile,
    /// The corruption applied before preprocessing, if any.
    pub corruption: Option<Corruption>,
}

/// Extracts every job's features, in parallel, calling `progress` after each; results come back
/// in job order. Cached entries are read instead of running the backbone; new ones are stored.
pub fn extract(
    detector: &Detector,
    preprocessor: &Preprocessor,
    cache: &FeatureCache,
    jobs: &[Job],
    progress: impl Fn() + Sync,
) -> Result<Vec<Result<Features, ImageError>>, DetectorError> {
    // Fail early, once, if a worker cannot be made at all.
    detector.worker()?;
    Ok(jobs
        .par_iter()
        .map_init(
            || detector.worker().expect("a worker was made above"),
            |worker, job| {
                let result = extract_one(detector, preprocessor, cache, worker, job);
                progress();
                result
            },
        )
        .collect())
}

fn extract_one(
    detector: &Detector,
    preprocessor: &Preprocessor,
    cache: &FeatureCache,
    worker: &mut Worker,
    job: &Job,
) -> Result<Features, ImageError> {
    let bytes = std::fs::read(&job.file.path)?;
    let hash = content_hash(&bytes);
    let variant = job.corruption.map(Corruption::cache_variant);
    let variant = variant.as_deref().unwrap_or("");
    if let Some(features) = cache.get(&hash, variant) {
        return Ok(features);
    }
    let input = match job.corruption {
        None => preprocessor.tensor_vec_from_encoded(&bytes)?,
        Some(c) => {
            let image = decode(&bytes)?;
            let seed = u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"));
            let corrupted = c.apply(&image, seed);
            preprocessor.tensor_vec_from_rgb8(
                corrupted.width(),
                corrupted.height(),
                corrupted.as_raw(),
            )?
        }
    };
    let pre_pool = detector.backbone(worker, input)?;
    let features = reduce(detector, worker, &pre_pool)?;
    cache.put(&hash, variant, &features);
    Ok(features)
}

/// Per-channel mean and max of the pre-pool tensor, by the runtime's own reduction, so that
/// S_NAP from these features equals the detector's.
fn reduce(
    detector: &Detector,
    worker: &mut Worker,
    pre_pool: &Tensor,
) -> Result<Features, DetectorError> {
    detector.reduce(worker, pre_pool)?;
    Ok(Features {
        pooled: worker.pooled().to_vec(),
        max: detector.channel_max(worker),
    })
}
