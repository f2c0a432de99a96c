//! `napctl bench`: per-stage timing of scoring a frame with one bundle, or several compared in
//! alternating rounds.

use super::shared::read_bundle;
use anyhow::{Context, Result};
use clap::ValueEnum;
use nap_runtime::backbone::BackboneOptions;
use nap_runtime::bundle::Bundle;
use napctl::bench;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `napctl bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// The bundle.
    bundle: PathBuf,
    /// Worker threads running frames in parallel.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Frames to score (after one warm-up frame per thread).
    #[arg(long, default_value_t = 100)]
    frames: usize,
    /// A JPEG or PNG to use as the frame (default: a built-in synthetic 640x480 JPEG).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Who runs the depthwise convolutions of a tract backbone: nap-core's kernel or tract
    /// (default: the runtime's choice for this CPU, nap-core on x86_64 and tract on aarch64).
    #[arg(long, value_enum)]
    depthwise: Option<Engine>,
    /// Run an int8 bundle's backbone in tract (its int8 ONNX model) instead of its integer
    /// program on nap-core's integer kernels, to compare the two.
    #[arg(long)]
    tract_int8: bool,
    /// Who runs the pointwise (1x1) convolutions: nap-core's kernel or tract (default: the
    /// runtime's choice for this CPU, nap-core on x86_64 and tract on aarch64).
    #[arg(long, value_enum)]
    pointwise: Option<Engine>,
    /// How an int8 bundle's integer program runs an expansion (1x1) and the depthwise
    /// convolution after it: fused row by row where the rows are wide enough (the default), or
    /// separate, the expanded tensor written whole.
    #[arg(long, value_enum, default_value_t = Expansions::Fused)]
    expansions: Expansions,
    /// Another bundle to measure in the same run (e.g. the int8 bundle against its float
    /// original); repeat for several. Rounds alternate between the bundles, and the backbone
    /// time of each is given as a ratio to the first.
    #[arg(long)]
    compare: Vec<PathBuf>,
    /// Rounds the frames are split into when comparing bundles.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Time frames as a camera delivers them, raw RGB8 pixels: the image is decoded once,
    /// and each frame starts at preprocessing.
    #[arg(long)]
    raw_frames: bool,
}

/// How the integer program runs expansions and their depthwise convolutions.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Expansions {
    /// Row by row, the expanded tensor never whole.
    Fused,
    /// One layer after the other.
    Separate,
}

/// Who runs a kind of convolution in the backbone.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Engine {
    /// nap-core's kernel.
    Nap,
    /// tract's own.
    Tract,
}

impl BenchArgs {
    /// Runs `napctl bench`.
    pub fn run(self) -> Result<ExitCode> {
        let paths: Vec<&PathBuf> = std::iter::once(&self.bundle).chain(&self.compare).collect();
        let bundles = paths
            .iter()
            .map(|p| read_bundle(p))
            .collect::<Result<Vec<_>>>()?;
        let frame = match &self.image {
            Some(path) => {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
            }
            None => bench::synthetic_jpeg(),
        };
        let plan = bench::Plan {
            threads: self.threads,
            frames: self.frames,
            rounds: if self.compare.is_empty() {
                1
            } else {
                self.rounds
            },
            backbone: BackboneOptions {
                own_depthwise: self
                    .depthwise
                    .map_or(BackboneOptions::default().own_depthwise, |e| {
                        e == Engine::Nap
                    }),
                own_pointwise: self
                    .pointwise
                    .map_or(BackboneOptions::default().own_pointwise, |e| {
                        e == Engine::Nap
                    }),
                integer: !self.tract_int8,
                fuse_expansions: self.expansions == Expansions::Fused,
            },
            raw_frames: self.raw_frames,
        };
        let bundles: Vec<&Bundle> = bundles.iter().collect();
        let reports = bench::compare(&bundles, &frame, plan)?;
        if self.json {
            match &reports[..] {
                [one] => println!("{}", serde_json::to_string_pretty(one)?),
                all => println!("{}", serde_json::to_string_pretty(all)?),
            }
        } else {
            let base = reports[0].median_us("backbone");
            for (report, path) in reports.iter().zip(paths) {
                println!("{}", path.display());
                print!("{report}");
                if let (Some(b), Some(t)) = (base, report.median_us("backbone"))
                    && reports.len() > 1
                {
                    println!("backbone median {:.2}x the first bundle's", t / b);
                }
                println!();
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
