//! Per-image features (pooled feature and per-channel max) for whole folders, on all cores,
//! through the [`cache`](super::cache): the only place `eval` and `calibrate` run the backbone.

use super::cache::{FeatureCache, content_hash};
use super::corrupt::Corruption;
use super::features::Features;
use crate::images::{self, ImageFile, ImagesError};
use crate::score::{ImageError, with_workers};
use nap_runtime::detector::{Detector, DetectorError, PrePool, Worker};
use nap_runtime::preprocess::{Preprocessor, decode};
use std::path::{Path, PathBuf};

/// One frame to extract: an image file, or a corrupted copy of it (pseudo-OOD).
#[derive(Clone, Debug)]
pub struct Job {
    /// The image file.
    pub file: ImageFile,
    /// The corruption applied before preprocessing, if any.
    pub corruption: Option<Corruption>,
}

/// A named set of frames to extract: an image folder, or the pseudo-OOD copies of one
/// corruption.
#[derive(Clone, Debug)]
pub struct FrameSet {
    /// The set's name: the folder's base name, or `pseudo-ood-<corruption>`.
    pub name: String,
    /// Its frames.
    pub jobs: Vec<Job>,
}

impl FrameSet {
    /// The images below `dir` as a set named after the folder.
    pub fn folder(dir: &Path) -> Result<FrameSet, ImagesError> {
        FrameSet::folders(&[dir.to_path_buf()])
    }

    /// The images below each of `dirs`, in order, as one set named after the folders
    /// (`a+b`): an ID set grown by frames gathered in the field, for instance.
    pub fn folders(dirs: &[PathBuf]) -> Result<FrameSet, ImagesError> {
        let mut names = Vec::new();
        let mut jobs = Vec::new();
        for dir in dirs {
            let files = images::collect(std::slice::from_ref(dir))?;
            names.push(
                files
                    .first()
                    .map_or_else(|| dir.display().to_string(), |f| f.set.clone()),
            );
            jobs.extend(files.into_iter().map(|file| Job {
                file,
                corruption: None,
            }));
        }
        Ok(FrameSet {
            name: names.join("+"),
            jobs,
        })
    }

    /// Pseudo-OOD made from these (ID) frames: frame `i` gets corruption `i mod 6` of
    /// [`Corruption::ALL`], giving one set per corruption; only the sets of `chosen` are kept.
    /// The assignment does not depend on `chosen`, so every choice reuses the same cached copies.
    pub fn pseudo_ood(&self, chosen: &[Corruption]) -> Vec<FrameSet> {
        Corruption::ALL
            .iter()
            .enumerate()
            .filter(|(_, c)| chosen.contains(c))
            .map(|(k, &c)| FrameSet {
                name: format!("pseudo-ood-{c}"),
                jobs: self
                    .jobs
                    .iter()
                    .skip(k)
                    .step_by(Corruption::ALL.len())
                    .map(|j| Job {
                        file: j.file.clone(),
                        corruption: Some(c),
                    })
                    .collect(),
            })
            .filter(|set| !set.jobs.is_empty())
            .collect()
    }
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
    with_workers(detector, jobs, progress, |worker, job| {
        extract_one(detector, preprocessor, cache, worker, job)
    })
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
    pre_pool: &PrePool,
) -> Result<Features, DetectorError> {
    detector.reduce(worker, pre_pool)?;
    Ok(Features {
        pooled: worker.pooled().to_vec(),
        max: detector.channel_max(worker),
    })
}
