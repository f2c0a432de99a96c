//! `napctl quantize`: folders of images to a quantized bundle and its agreement report.

use anyhow::{Context, Result, bail};
use nap_runtime::bundle::Bundle;
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;
use napctl::bundle::quantize::{self, Options, RangeMethod, Target};
use napctl::images::{self, ImageFile};
use rayon::prelude::*;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `napctl quantize`.
#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// The float bundle (from `napctl split`; left unchanged).
    pub bundle: PathBuf,
    /// Calibration images (JPEG/PNG below this folder): activation ranges come from them.
    #[arg(long, required = true)]
    pub calib: PathBuf,
    /// How many calibration images to use, spread evenly over the folder's sorted list.
    #[arg(long, default_value_t = 200)]
    pub calib_count: usize,
    /// How activation ranges are taken from the calibration images.
    #[arg(long, value_enum, default_value_t = RangeMethod::Percentile)]
    pub ranges: RangeMethod,
    /// One weight scale per output channel (the default; MobileNet's folded batch norm makes
    /// channel magnitudes differ widely).
    #[arg(long, conflicts_with = "per_tensor")]
    pub per_channel: bool,
    /// One weight scale per weight tensor instead.
    #[arg(long)]
    pub per_tensor: bool,
    /// What to produce. int8-weights is the default because it is the fastest form that keeps
    /// the accuracy on x86_64: tract runs the int8 form about 1.2x slower than float there (see
    /// BENCHMARKS.md). On boards with int8 dot-product instructions, measure int8 with
    /// `napctl bench --compare`.
    #[arg(long, value_enum, default_value_t = Target::Int8Weights)]
    pub precision: Target,
    /// Images to compare the quantized bundle with the float one on (default: the calibration
    /// folder). Images used for calibration are left out of the comparison.
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Also write the comparison as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where to write the quantized bundle.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(args: QuantizeArgs) -> Result<ExitCode> {
    if args.calib_count == 0 {
        bail!("--calib-count must be at least 1");
    }
    crate::commands::init_threads(args.threads)?;
    let float = Bundle::read(&args.bundle)
        .with_context(|| format!("loading bundle {}", args.bundle.display()))?;
    let precision = float.manifest.backbone.precision;
    if precision.is_quantized() {
        bail!(quantize::QuantizeError::AlreadyQuantized(precision));
    }
    let preprocessor = Preprocessor::new(float.manifest.input)?;

    let all = images::collect(std::slice::from_ref(&args.calib))?;
    let chosen = spread(&all, args.calib_count);
    let calib = load_frames(&preprocessor, &chosen, "calibration")?;
    if calib.is_empty() {
        bail!(
            "{}: none of its {} chosen image(s) could be decoded",
            args.calib.display(),
            chosen.len()
        );
    }
    let options = Options {
        target: args.precision,
        ranges: args.ranges,
        per_channel: !args.per_tensor,
    };
    let frames: Vec<Vec<f32>> = calib.into_iter().map(|(_, f)| f).collect();
    let bar = progress(frames.len(), "calibration");
    let quantized = quantize::quantize(&float, &frames, options, || bar.inc(1))?;
    bar.finish_and_clear();
    quantized
        .write(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    // The files' sizes, rather than serializing both bundles again.
    let size = |path: &PathBuf| -> Result<u64> {
        Ok(std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len())
    };
    let (before, after) = (size(&args.bundle)?, size(&args.output)?);
    println!(
        "{} -> {} ({}, {} weights, {:?} ranges from {} calibration image(s))",
        args.bundle.display(),
        args.output.display(),
        quantized.manifest.backbone.precision,
        if options.per_channel {
            "per-channel"
        } else {
            "per-tensor"
        },
        options.ranges,
        frames.len()
    );
    println!(
        "  size                   {:.2} MB -> {:.2} MB ({:.1}%)",
        before as f64 / 1e6,
        after as f64 / 1e6,
        100.0 * after as f64 / before as f64
    );

    // The comparison: the validation folder without the calibration images.
    let val_dir = args.val.as_ref().unwrap_or(&args.calib);
    let used: HashSet<PathBuf> = chosen
        .iter()
        .filter_map(|f| f.path.canonicalize().ok())
        .collect();
    let rest: Vec<ImageFile> = images::collect(std::slice::from_ref(val_dir))?
        .into_iter()
        .filter(|f| f.path.canonicalize().map_or(true, |p| !used.contains(&p)))
        .collect();
    if rest.is_empty() {
        println!(
            "  no images left in {} besides the calibration ones: pass --val DIR to compare",
            val_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let val: Vec<Vec<f32>> = load_frames(&preprocessor, &rest, "comparison")?
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    let float_detector = Detector::new(&float)?;
    let quantized_detector = Detector::new(&quantized)?;
    let bar = progress(val.len(), "comparison");
    let agreement = quantize::compare(&float_detector, &quantized_detector, &val, || bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "  agreement with the float bundle on {} image(s) of {}:",
        agreement.frames,
        val_dir.display()
    );
    println!("{agreement}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&agreement)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `count` files spread evenly over `files` (all of them when there are fewer).
fn spread(files: &[ImageFile], count: usize) -> Vec<ImageFile> {
    if files.len() <= count {
        return files.to_vec();
    }
    (0..count)
        .map(|i| files[i * files.len() / count].clone())
        .collect()
}

/// Decodes and preprocesses `files` on all cores; an undecodable file is reported and skipped.
fn load_frames(
    preprocessor: &Preprocessor,
    files: &[ImageFile],
    what: &str,
) -> Result<Vec<(ImageFile, Vec<f32>)>> {
    let loaded: Vec<_> = files
        .par_iter()
        .map(|file| {
            let frame = std::fs::read(&file.path)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(preprocessor.tensor_vec_from_encoded(&bytes)?));
            (file, frame)
        })
        .collect();
    let mut frames = Vec::new();
    for (file, frame) in loaded {
        match frame {
            Ok(f) => frames.push((file.clone(), f)),
            Err(e) => eprintln!("napctl: {} image {}: {e:#}", what, file.path.display()),
        }
    }
    Ok(frames)
}

fn progress(len: usize, what: &str) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(len as u64).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{pos}}/{{len}} [{{elapsed_precise}}] {{bar:30}} eta {{eta}}"
        ))
        .expect("valid template"),
    )
}
