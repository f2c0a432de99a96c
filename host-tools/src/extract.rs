//! Per-image features (pooled feature and per-channel max) for whole folders, on all cores,
//! through the [`cache`](crate::cache): the only place `eval` and `calibrate` run the backbone.

use crate::cache::{FeatureCache, Features, content_hash};
use crate::corrupt::Corruption;
use crate::images::ImageFile;
use crate::score::ImageError;
use nap_core::reduce::{Reducer, Shape};
use nap_runtime::bundle::ActivationStorage;
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

/// Per-thread state: a detector worker and the reduction buffers.
struct Scratch {
    worker: Worker,
    max: Vec<f32>,
    sum: Vec<f32>,
    max_u8: Vec<u8>,
    sum_u8: Vec<u32>,
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
    detector.worker()?;
    let c = detector.manifest().pre_pool.channels as usize;
    let reducer = Reducer::new();
    Ok(jobs
        .par_iter()
        .map_init(
            || Scratch {
                worker: detector.worker().expect("a worker was made above"),
                max: vec![0.0; c],
                sum: vec![0.0; c],
                max_u8: vec![0; c],
                sum_u8: vec![0; c],
            },
            |scratch, job| {
                let result = extract_one(detector, preprocessor, cache, &reducer, scratch, job);
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
    reducer: &Reducer,
    scratch: &mut Scratch,
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
    let pre_pool = detector.backbone(&mut scratch.worker, input)?;
    let features = reduce(detector, reducer, scratch, &pre_pool)?;
    cache.put(&hash, variant, &features);
    Ok(features)
}

/// Per-channel mean and max of the pre-pool tensor, computed as the runtime's reduction does so
/// that S_NAP from these features equals the detector's.
fn reduce(
    detector: &Detector,
    reducer: &Reducer,
    s: &mut Scratch,
    pre_pool: &Tensor,
) -> Result<Features, DetectorError> {
    let p = detector.manifest().pre_pool;
    let plane = (p.height * p.width) as usize;
    let shape = Shape {
        channels: p.channels as usize,
        plane,
        layout: p.layout,
    };
    let inv_plane = 1.0 / plane as f32;
    let data = pre_pool.try_as_plain_ram()?;
    match p.storage {
        ActivationStorage::F32 => {
            reducer.reduce_f32(shape, data.as_slice::<f32>()?, &mut s.max, &mut s.sum)?;
            Ok(Features {
                pooled: s.sum.iter().map(|&x| x * inv_plane).collect(),
                max: s.max.clone(),
            })
        }
        ActivationStorage::U8(q) => {
            reducer.reduce_u8(shape, data.as_slice::<u8>()?, &mut s.max_u8, &mut s.sum_u8)?;
            let zero = f32::from(q.zero_point);
            Ok(Features {
                // The same expressions as `nap_core::activation::nap_u8`.
                pooled: s
                    .sum_u8
                    .iter()
                    .map(|&x| q.scale * (x as i32 as f32 * inv_plane - zero))
                    .collect(),
                max: s
                    .max_u8
                    .iter()
                    .map(|&m| q.scale * (f32::from(m) - zero))
                    .collect(),
            })
        }
    }
}
