//! Batch scoring of image folders with a bundle: what `napctl score` does, on all cores.

use crate::images::ImageFile;
use nap_runtime::detector::{Analysis, Detector, DetectorError, Worker};
use nap_runtime::preprocess::{PreprocessError, Preprocessor};
use rayon::prelude::*;
use std::io::Write;

/// Why one image could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a usable image.
    #[error("{0}")]
    Preprocess(#[from] PreprocessError),
    /// The detector failed on it.
    #[error("{0}")]
    Detector(#[from] DetectorError),
}

/// Scores every image, in parallel (one detector worker per thread), calling `progress` after
/// each; results come back in the order of `files`.
pub fn score_images(
    detector: &Detector,
    preprocessor: &Preprocessor,
    files: &[ImageFile],
    progress: impl Fn() + Sync,
) -> Result<Vec<Result<Analysis, ImageError>>, DetectorError> {
    with_workers(detector, files, progress, |worker, file| {
        score_one(detector, preprocessor, worker, file)
    })
}

/// Runs `f` on every item in parallel, with one detector worker per thread, calling `progress`
/// after each; results come back in the order of `items`. Fails early, once, when no worker can
/// be made at all.
pub(crate) fn with_workers<T: Sync, R: Send>(
    detector: &Detector,
    items: &[T],
    progress: impl Fn() + Sync,
    f: impl Fn(&mut Worker, &T) -> R + Sync + Send,
) -> Result<Vec<R>, DetectorError> {
    detector.worker()?;
    Ok(items
        .par_iter()
        .map_init(
            || detector.worker().expect("a worker was made above"),
            |worker, item| {
                let result = f(worker, item);
                progress();
                result
            },
        )
        .collect())
}

/// Reads, preprocesses and scores one image.
fn score_one(
    detector: &Detector,
    preprocessor: &Preprocessor,
    worker: &mut Worker,
    file: &ImageFile,
) -> Result<Analysis, ImageError> {
    let bytes = std::fs::read(&file.path)?;
    let input = preprocessor.tensor_vec_from_encoded(&bytes)?;
    Ok(detector.analyze(worker, input)?)
}

/// Column names of the score table, tab separated.
pub const TSV_HEADER: &str = "set\tfile\ttop1\tlse\tnap\tmsp\tscore\tood";

/// Writes the score table: one row per scored image (failed images are left out; the caller
/// reports them). `ood` is 1 or 0, or `-` while the bundle has no threshold.
pub fn write_tsv(
    out: &mut impl Write,
    files: &[ImageFile],
    results: &[Result<Analysis, ImageError>],
) -> std::io::Result<()> {
    writeln!(out, "{TSV_HEADER}")?;
    for (file, result) in files.iter().zip(results) {
        if let Ok(a) = result {
            let ood = match a.ood {
                Some(true) => "1",
                Some(false) => "0",
                None => "-",
            };
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{ood}",
                file.set, file.name, a.top1, a.lse, a.nap, a.msp, a.score
            )?;
        }
    }
    Ok(())
}
