//! `napctl review`: a capture folder as one self-contained HTML page.

use super::shared::{Rate, init_threads, progress_bar, read_bundle, write_file};
use anyhow::{Result, bail};
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;
use napctl::images::ImageFile;
use napctl::review::page::{Comparison, PageOptions, Tile, render};
use napctl::review::{self, Captured};
use napctl::score;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `napctl review`.
#[derive(clap::Args)]
pub struct ReviewArgs {
    /// The capture folder napd wrote (--capture DIR), or a copy of it.
    dir: PathBuf,
    /// The page to write.
    #[arg(short, long, value_name = "PAGE.html")]
    output: PathBuf,
    /// Class names, one per line in class order (e.g. imagenet_labels.txt), to show the top-1
    /// class by name [default: its number].
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Also show what this threshold would do: frames it would no longer flag get a green frame.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    threshold: Option<f32>,
    /// Also show what this bundle (a re-calibrated one, say) would decide: every captured frame
    /// is scored again with it and compared with its threshold; frames it would no longer flag
    /// get a green frame, and a second histogram shows the new scores.
    #[arg(long, value_name = "BUNDLE", conflicts_with = "threshold")]
    bundle: Option<PathBuf>,
    /// Worker threads for --bundle (default: all cores).
    #[arg(long, requires = "bundle")]
    threads: Option<usize>,
    /// Frames in the grid, lowest scores first (the charts count every frame). Each thumbnail
    /// adds about 8 KB to the page.
    #[arg(long, value_name = "N", default_value_t = 300)]
    max_frames: usize,
    /// Thumbnail size, in pixels (the longer side).
    #[arg(long, value_name = "PX", default_value_t = 160)]
    thumbnail: u32,
}

impl ReviewArgs {
    /// Runs `napctl review`.
    pub fn run(self) -> Result<ExitCode> {
        if !(16..=1024).contains(&self.thumbnail) {
            bail!("--thumbnail {} is out of range 16..=1024", self.thumbnail);
        }
        if self.threshold.is_some_and(|t| !t.is_finite()) {
            bail!("--threshold must be a finite number");
        }
        let labels = self
            .labels
            .as_deref()
            .map(review::read_labels)
            .transpose()?;
        let folder = review::read_folder(&self.dir)?;
        for (path, why) in &folder.skipped {
            eprintln!("napctl: warning: left out {}: {why}", path.display());
        }
        if folder.frames.is_empty() {
            bail!(
                "no captured frames in {} (napd --capture writes a .json sidecar beside each frame)",
                self.dir.display()
            );
        }
        let (name, threshold, new_scores) = match (&self.bundle, self.threshold) {
            (Some(path), _) => {
                let (threshold, scores) = rescore(path, &folder.frames, self.threads)?;
                (file_name(path), Some(threshold), scores)
            }
            (None, threshold) => (
                "the new threshold".to_string(),
                threshold,
                folder
                    .frames
                    .iter()
                    .map(|f| Some(f.sidecar.score))
                    .collect(),
            ),
        };
        let mut shown: Vec<usize> = (0..folder.frames.len()).collect();
        shown.sort_by(|&a, &b| {
            let score = |i: usize| folder.frames[i].sidecar.score;
            score(a).total_cmp(&score(b))
        });
        shown.truncate(self.max_frames);
        let bar = progress_bar(shown.len(), "thumbnails", Rate::Shown);
        let tiles: Vec<Tile<'_>> = shown
            .par_iter()
            .map(|&i| {
                let frame = &folder.frames[i];
                let thumbnail =
                    review::thumbnail(&frame.image, self.thumbnail).map_err(|e| format!("{e:#}"));
                bar.inc(1);
                Tile {
                    frame,
                    thumbnail,
                    new_score: new_scores[i],
                }
            })
            .collect();
        bar.finish_and_clear();
        let failed = tiles.iter().filter(|t| t.thumbnail.is_err()).count();
        if failed > 0 {
            eprintln!("napctl: warning: {failed} frames could not be read; the page says which");
        }
        let compare = threshold.map(|threshold| Comparison {
            name: &name,
            threshold,
            scores: &new_scores,
            rescored: self.bundle.is_some(),
        });
        let title = self.dir.display().to_string();
        let page = render(
            &folder.frames,
            &tiles,
            &PageOptions {
                title: &title,
                labels: labels.as_deref(),
                compare: compare.as_ref(),
                skipped: folder.skipped.len(),
            },
        );
        write_file(&self.output, &page)?;
        println!(
            "{}: {} flagged frames, {} in the grid, {} KiB",
            self.output.display(),
            folder.frames.len(),
            tiles.len(),
            page.len().div_ceil(1024)
        );
        if let Some(c) = &compare {
            println!(
                "under {} (threshold {}): {} of {} would still be flagged",
                c.name,
                c.threshold,
                c.still_flagged(),
                folder.frames.len()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Scores every captured frame again with the bundle at `path`: its threshold and each frame's
/// new score (`None` for frames it could not score, each named on stderr).
fn rescore(
    path: &Path,
    frames: &[Captured],
    threads: Option<usize>,
) -> Result<(f32, Vec<Option<f32>>)> {
    init_threads(threads)?;
    let bundle = read_bundle(path)?;
    let Some(threshold) = bundle.manifest.scorer.threshold else {
        bail!(
            "--bundle {}: the bundle has no threshold (napctl calibrate sets one)",
            path.display()
        );
    };
    let detector = Detector::new(&bundle)?;
    let preprocessor = Preprocessor::new(bundle.manifest.input)?;
    let files: Vec<ImageFile> = frames
        .iter()
        .map(|f| ImageFile {
            set: String::new(),
            name: f.sidecar.image.clone(),
            path: f.image.clone(),
        })
        .collect();
    let bar = progress_bar(files.len(), "scoring again", Rate::Shown);
    let results = score::score_images(&detector, &preprocessor, &files, || bar.inc(1))?;
    bar.finish_and_clear();
    Ok((
        threshold,
        results
            .iter()
            .zip(&files)
            .map(|(r, file)| match r {
                Ok(analysis) => Some(analysis.score),
                Err(e) => {
                    eprintln!("napctl: warning: {}: {e}", file.path.display());
                    None
                }
            })
            .collect(),
    ))
}

/// A path's file name, for the page (the whole path when it has none).
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
