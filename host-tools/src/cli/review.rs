//! `napctl review`: a capture folder as one self-contained HTML page.

use super::shared::{Rate, progress_bar, write_file};
use anyhow::{Result, bail};
use napctl::review::page::{PageOptions, Tile, render};
use napctl::review::{self, Captured};
use rayon::prelude::*;
use std::path::PathBuf;
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
        let mut shown: Vec<&Captured> = folder.frames.iter().collect();
        shown.sort_by(|a, b| a.sidecar.score.total_cmp(&b.sidecar.score));
        shown.truncate(self.max_frames);
        let bar = progress_bar(shown.len(), "thumbnails", Rate::Shown);
        let tiles: Vec<Tile<'_>> = shown
            .par_iter()
            .map(|frame| {
                let thumbnail =
                    review::thumbnail(&frame.image, self.thumbnail).map_err(|e| format!("{e:#}"));
                bar.inc(1);
                Tile { frame, thumbnail }
            })
            .collect();
        bar.finish_and_clear();
        let failed = tiles.iter().filter(|t| t.thumbnail.is_err()).count();
        if failed > 0 {
            eprintln!("napctl: warning: {failed} frames could not be read; the page says which");
        }
        let title = self.dir.display().to_string();
        let page = render(
            &folder.frames,
            &tiles,
            &PageOptions {
                title: &title,
                labels: labels.as_deref(),
                new_threshold: self.threshold,
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
        Ok(ExitCode::SUCCESS)
    }
}
