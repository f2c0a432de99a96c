//! `napctl quantize`: a float bundle quantized from calibration images, and how closely it
//! follows the float one on other images.

use super::shared::{Rate, init_threads, progress_bar, read_bundle, write_bundle, write_file};
use anyhow::{Context, Result, bail};
use nap_runtime::detector::Detector;
use nap_runtime::neck::Neck;
use nap_runtime::preprocess::Preprocessor;
use napctl::bundle::quantize::{self, Options, RangeMethod, Target};
use napctl::images::{self, ImageFile};
use rayon::prelude::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `napctl quantize`.
#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// The float bundle (from `napctl split`; left unchanged).
    bundle: PathBuf,
    /// Calibration images (JPEG/PNG below this folder): activation ranges come from them.
    #[arg(long, required = true)]
    calib: PathBuf,
    /// How many calibration images to use, spread evenly over the folder's sorted list.
    #[arg(long, default_value_t = 200)]
    calib_count: usize,
    /// How activation ranges are taken from the calibration images.
    #[arg(long, value_enum, default_value_t = RangeMethod::Percentile)]
    ranges: RangeMethod,
    /// One weight scale per output channel (the default; MobileNet's folded batch norm makes
    /// channel magnitudes differ widely).
    #[arg(long, conflicts_with = "per_tensor")]
    per_channel: bool,
    /// One weight scale per weight tensor instead.
    #[arg(long)]
    per_tensor: bool,
    /// What to produce. Default: int8 (the integer program) where nap-core's integer kernels
    /// cover the backbone, else int8-weights (the command says why). int8 is the faster form
    /// on every CPU measured (BENCHMARKS.md); `napctl bench --compare` measures it on yours.
    #[arg(long, value_enum)]
    precision: Option<Target>,
    /// Images to compare the quantized bundle with the float one on (default: the calibration
    /// folder). Images used for calibration are left out of the comparison.
    #[arg(long)]
    val: Option<PathBuf>,
    /// Also write the comparison as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where to write the quantized bundle.
    #[arg(short, long)]
    output: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

impl QuantizeArgs {
    /// Runs `napctl quantize`.
    pub fn run(self) -> Result<ExitCode> {
        if self.calib_count == 0 {
            bail!("--calib-count must be at least 1");
        }
        init_threads(self.threads)?;
        quantize_bundle(&Quantization {
            bundle: &self.bundle,
            calib: &self.calib,
            calib_count: self.calib_count,
            fallback: self.precision.is_none(),
            options: Options {
                target: self.precision.unwrap_or(Target::Int8),
                ranges: self.ranges,
                per_channel: !self.per_tensor,
            },
            val: self.val.as_deref(),
            json: self.json.as_deref(),
            output: &self.output,
        })?;
        Ok(ExitCode::SUCCESS)
    }
}

/// One quantization: the float bundle, its calibration and comparison images, and where the
/// results go.
pub struct Quantization<'a> {
    /// The float bundle (left unchanged).
    pub bundle: &'a Path,
    /// The calibration image folder.
    pub calib: &'a Path,
    /// How many of its images calibrate, spread over the folder (at least 1).
    pub calib_count: usize,
    /// What to produce, and how.
    pub options: Options,
    /// Whether an int8 target whose backbone the integer kernels do not cover becomes
    /// int8-weights (the default precision) rather than int8-tract.
    pub fallback: bool,
    /// The comparison image folder (default: the calibration folder's other images).
    pub val: Option<&'a Path>,
    /// Where the comparison's JSON goes.
    pub json: Option<&'a Path>,
    /// Where the quantized bundle goes.
    pub output: &'a Path,
}

/// Quantizes, writes the quantized bundle, and reports its size and its agreement with the float
/// bundle.
pub fn quantize_bundle(q: &Quantization) -> Result<()> {
    let float = read_bundle(q.bundle)?;
    let precision = float.manifest.backbone.precision;
    if precision.is_quantized() {
        bail!(quantize::QuantizeError::AlreadyQuantized(precision));
    }
    let preprocessor = Preprocessor::new(float.manifest.input)?;

    let all = images::collect(&[q.calib.to_path_buf()])?;
    let chosen = spread(&all, q.calib_count);
    let calib = load_frames(&preprocessor, &chosen, "calibration")?;
    if calib.is_empty() {
        bail!(
            "{}: none of its {} chosen image(s) could be decoded",
            q.calib.display(),
            chosen.len()
        );
    }
    let mut options = q.options;
    let frames: Vec<Vec<f32>> = calib.into_iter().map(|(_, f)| f).collect();
    let bar = progress_bar(frames.len(), "calibration", Rate::Hidden);
    let quantize::Quantized {
        bundle: mut quantized,
        no_program,
    } = quantize::quantize(&float, &frames, options, || bar.inc(1))?;
    bar.finish_and_clear();
    if q.fallback && no_program.is_some() {
        // int8-tract is slower than float on x86_64; int8-weights keeps float's speed.
        options.target = Target::Int8Weights;
        quantized = quantize::quantize(&float, &frames, options, || {})?.bundle;
    }
    write_bundle(&quantized, q.output)?;
    // The files' sizes, rather than serializing both bundles again.
    let size = |path: &Path| -> Result<u64> {
        Ok(std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len())
    };
    let (before, after) = (size(q.bundle)?, size(q.output)?);
    println!(
        "{} -> {} ({}, {} weights, {:?} ranges from {} calibration image(s))",
        q.bundle.display(),
        q.output.display(),
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
    match (&quantized.program, &no_program) {
        (Some(program), _) => println!(
            "  integer program        {} layers ({}), u8 NHWC pre-pool",
            program.layers.len(),
            quantize::LayerCounts::of(program)
        ),
        (None, Some(why)) if options.target == Target::Int8Weights => println!(
            "  integer program        none: {why}; int8-weights instead (--precision int8 \
             gives the int8-tract form)"
        ),
        (None, Some(why)) => {
            println!("  integer program        none: {why} (the backbone runs in tract)")
        }
        (None, None) => {}
    }
    if let Some(neck) = Neck::load(&quantized)? {
        println!(
            "  head graph             {} dense layer(s) as int8 rows",
            neck.int8_layers()
        );
    }

    // The comparison: the validation folder without the calibration images.
    let val_dir = q.val.unwrap_or(q.calib);
    let used: HashSet<PathBuf> = chosen
        .iter()
        .filter_map(|f| f.path.canonicalize().ok())
        .collect();
    let rest: Vec<ImageFile> = images::collect(&[val_dir.to_path_buf()])?
        .into_iter()
        .filter(|f| f.path.canonicalize().map_or(true, |p| !used.contains(&p)))
        .collect();
    if rest.is_empty() {
        println!(
            "  no images left in {} besides the calibration ones: pass --val DIR to compare",
            val_dir.display()
        );
        return Ok(());
    }
    let val: Vec<Vec<f32>> = load_frames(&preprocessor, &rest, "comparison")?
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    let float_detector = Detector::new(&float)?;
    let quantized_detector = Detector::new(&quantized)?;
    let bar = progress_bar(val.len(), "comparison", Rate::Hidden);
    let agreement = quantize::compare(&float_detector, &quantized_detector, &val, || bar.inc(1))?;
    bar.finish_and_clear();
    println!(
        "  agreement with the float bundle on {} image(s) of {}{}:",
        agreement.frames,
        val_dir.display(),
        if quantized_detector.runs_integer_program() {
            " (backbone: the integer program)"
        } else {
            ""
        }
    );
    println!("{agreement}");
    if let Some(path) = q.json {
        write_file(path, serde_json::to_string_pretty(&agreement)?)?;
    }
    Ok(())
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
