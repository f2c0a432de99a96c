//! `napctl score`: every image below some folders scored with a bundle, as a TSV table.

use super::shared::{Rate, init_threads, progress_bar, read_bundle};
use anyhow::{Context, Result};
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;
use napctl::{images, score};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `napctl score`.
#[derive(clap::Args)]
pub struct ScoreArgs {
    /// The bundle.
    bundle: PathBuf,
    /// Image folders; each folder's base name is its set name.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Write the table here instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

impl ScoreArgs {
    /// Runs `napctl score`: the table lists the scored images; those that failed are named on
    /// stderr and make the exit code 1.
    pub fn run(self) -> Result<ExitCode> {
        init_threads(self.threads)?;
        let bundle = read_bundle(&self.bundle)?;
        let detector = Detector::new(&bundle)?;
        let preprocessor = Preprocessor::new(bundle.manifest.input)?;
        let files = images::collect(&self.dirs)?;

        let bar = progress_bar(files.len(), "scoring", Rate::Shown);
        let results = score::score_images(&detector, &preprocessor, &files, || bar.inc(1))?;
        bar.finish_and_clear();

        let failed: Vec<_> = files
            .iter()
            .zip(&results)
            .filter_map(|(f, r)| r.as_ref().err().map(|e| (f, e)))
            .collect();
        for (file, error) in &failed {
            eprintln!("napctl: {}: {error}", file.path.display());
        }
        match &self.output {
            Some(path) => {
                let mut out = std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                );
                score::write_tsv(&mut out, &files, &results)?;
                out.flush()?;
                eprintln!(
                    "scored {} of {} images -> {}",
                    files.len() - failed.len(),
                    files.len(),
                    path.display()
                );
            }
            None => score::write_tsv(&mut std::io::stdout().lock(), &files, &results)?,
        }
        if failed.is_empty() {
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!("napctl: {} image(s) could not be scored", failed.len());
            Ok(ExitCode::FAILURE)
        }
    }
}
