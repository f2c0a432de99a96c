//! `napctl`: the host tool. Cuts a classifier into a bundle, inspects models and bundles, scores
//! image folders and benchmarks a bundle.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use nap_runtime::backbone::BackboneOptions;
use nap_runtime::bundle::{Bundle, ChannelOrder, InputSpec, MAGIC};
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;
use napctl::bundle::{BuildOptions, build_bundle};
use napctl::{bench, images, onnx, score};

mod commands;
mod demo_command;
mod quantize_command;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Out-of-distribution detection for edge cameras: host tool for NAP bundles.
#[derive(Parser)]
#[command(name = "napctl", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole product on the built-in Fashion-MNIST model: split, quantize, calibrate
    /// from ID frames only, evaluate every method against MNIST digits and textures, and replay
    /// the frames through the runtime into the controller firmware (simulated on this machine).
    Demo(demo_command::DemoArgs),
    /// Show an ONNX model's inputs, outputs, pooling layer and head, or a bundle's manifest.
    Inspect {
        /// An ONNX model or a .nap bundle.
        path: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Cut a classifier at its global pooling into a bundle: backbone + dense head + scorer.
    Split {
        /// The classifier, as ONNX.
        model: PathBuf,
        /// Where to write the bundle.
        #[arg(short, long)]
        output: PathBuf,
        /// The pre-pool tensor (or pooling node) to cut at, when the model has several candidates.
        #[arg(long)]
        layer: Option<String>,
        /// Side of the square input, in pixels.
        #[arg(long, default_value_t = 224)]
        input_size: u32,
        /// Input normalization: tf = (p - 127.5) / 127.5; torch = ImageNet mean/std on p / 255.
        #[arg(long, value_enum, default_value_t = Preset::Tf)]
        preprocess: Preset,
        /// Per-channel mean in pixel units (0..255), overriding the preset: R,G,B.
        #[arg(long, value_delimiter = ',', num_args = 3)]
        mean: Option<Vec<f32>>,
        /// Per-channel std in pixel units, overriding the preset: R,G,B.
        #[arg(long, value_delimiter = ',', num_args = 3)]
        std: Option<Vec<f32>>,
        /// Central crop as a fraction of the shorter side (1 = no crop).
        #[arg(long, default_value_t = 0.875)]
        crop: f32,
        /// The model takes BGR input.
        #[arg(long)]
        bgr: bool,
    },
    /// Score every .jpg/.jpeg/.png below each folder; writes a TSV (set file top1 lse nap msp score ood).
    Score {
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
    },
    /// Time each stage of scoring a frame (decode, preprocess, backbone, reduce, head, scores).
    Bench {
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
        /// Let tract run the depthwise convolutions itself instead of nap-core's kernel, to
        /// compare the two.
        #[arg(long)]
        tract_depthwise: bool,
        /// Who runs the pointwise (1x1) convolutions: nap-core's kernel or tract (default: the
        /// runtime's choice for this CPU, nap-core on x86_64 and tract on aarch64).
        #[arg(long, value_enum)]
        pointwise: Option<Engine>,
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
    },
    /// Evaluate every method (MSP, Energy, ReAct, ASH-S, ASH-B, NAP, NAP-E, NAP-R, NAP-A, NAP-M)
    /// on ID vs OOD folders: FPR95 in both conventions, AUROC, AUPR-In, AUPR-Out, in percent.
    Eval(commands::EvalArgs),
    /// Quantize a float bundle from calibration images, and report how closely it follows the
    /// float bundle (top-1 agreement, pre-pool cosine, NAP and lse correlation).
    ///
    /// int8-weights (the default): int8 storage, dequantized when the bundle loads, a quarter of
    /// the size at float speed. int8: the pointwise convolutions run as int8 x u8 matrix
    /// products, the depthwise convolutions and residual adds stay float, and the pre-pool tensor
    /// comes out as u8 codes that the device reduces with integer kernels. f16-weights: f16
    /// storage, widened at load, for results equal to float's at 42% of the size. All store the
    /// head as int8 rows. Calibrate the quantized bundle afterwards (`napctl calibrate`): its scores
    /// differ a little from the float bundle's.
    Quantize(quantize_command::QuantizeArgs),
    /// Calibrate a bundle: ReAct clip, ASH percentile, fusion weights w and the threshold.
    ///
    /// w is chosen to minimize FPR at the target TPR (ties: higher AUROC) against the --ood
    /// folders, or, without them, against pseudo-OOD copies of the ID images (noise, blur, JPEG,
    /// contrast, pixelation, tile shuffling). The threshold keeps the target share of ID images.
    Calibrate(commands::CalibrateArgs),
}

/// Who runs a kind of convolution in the backbone.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Engine {
    /// nap-core's kernel.
    Nap,
    /// tract's own.
    Tract,
}

#[derive(Clone, Copy, ValueEnum)]
enum Preset {
    Tf,
    Torch,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("napctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Inspect { path, json } => inspect(&path, json),
        Command::Split {
            model,
            output,
            layer,
            input_size,
            preprocess,
            mean,
            std,
            crop,
            bgr,
        } => {
            let mut input = match preprocess {
                Preset::Tf => InputSpec::TF,
                Preset::Torch => InputSpec::TORCH,
            };
            input.size = input_size;
            input.crop_fraction = crop;
            if let Some(m) = mean {
                input.mean = [m[0], m[1], m[2]];
            }
            if let Some(s) = std {
                input.std = [s[0], s[1], s[2]];
            }
            if bgr {
                input.channel_order = ChannelOrder::Bgr;
                input.mean.reverse();
                input.std.reverse();
            }
            split(&model, &output, BuildOptions { layer, input })
        }
        Command::Score {
            bundle,
            dirs,
            output,
            threads,
        } => score_dirs(&bundle, &dirs, output, threads),
        Command::Bench {
            bundle,
            threads,
            frames,
            image,
            json,
            tract_depthwise,
            pointwise,
            compare,
            rounds,
            raw_frames,
        } => {
            let bundles = std::iter::once(&bundle)
                .chain(&compare)
                .map(read_bundle)
                .collect::<Result<Vec<_>>>()?;
            let frame = match image {
                Some(path) => {
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
                }
                None => bench::synthetic_jpeg(),
            };
            let plan = bench::Plan {
                threads,
                frames,
                rounds: if compare.is_empty() { 1 } else { rounds },
                backbone: BackboneOptions {
                    own_depthwise: !tract_depthwise,
                    own_pointwise: pointwise
                        .map_or(BackboneOptions::default().own_pointwise, |e| {
                            e == Engine::Nap
                        }),
                },
                raw_frames,
            };
            let bundles: Vec<&Bundle> = bundles.iter().collect();
            let reports = bench::compare(&bundles, &frame, plan)?;
            if json {
                match &reports[..] {
                    [one] => println!("{}", serde_json::to_string_pretty(one)?),
                    all => println!("{}", serde_json::to_string_pretty(all)?),
                }
            } else {
                let paths = std::iter::once(&bundle).chain(&compare);
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
        Command::Eval(args) => commands::eval(args),
        Command::Quantize(args) => quantize_command::run(args),
        Command::Demo(args) => demo_command::run(args),
        Command::Calibrate(args) => commands::calibrate(args),
    }
}

fn read_bundle(path: &PathBuf) -> Result<Bundle> {
    Bundle::read(path).with_context(|| format!("loading bundle {}", path.display()))
}

fn inspect(path: &PathBuf, json: bool) -> Result<ExitCode> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(&MAGIC) {
        let bundle = Bundle::from_bytes(&bytes)
            .with_context(|| format!("loading bundle {}", path.display()))?;
        if json {
            println!("{}", serde_json::to_string_pretty(&bundle.manifest)?);
        } else {
            println!(
                "bundle {} ({} bytes, backbone {} bytes)",
                path.display(),
                bytes.len(),
                bundle.backbone.len()
            );
            println!("{:#?}", bundle.manifest);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let model = onnx::decode(&bytes).with_context(|| format!("reading {}", path.display()))?;
    let info = onnx::inspect(&model)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{info}");
    }
    Ok(ExitCode::SUCCESS)
}

fn split(model: &PathBuf, output: &PathBuf, options: BuildOptions) -> Result<ExitCode> {
    let proto = onnx::read_model(model)?;
    let source = model.file_name().map_or_else(
        || model.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let bundle = build_bundle(&proto, &source, options)?;
    bundle.write(output)?;
    let m = &bundle.manifest;
    println!(
        "{}: cut at {} ({} x {} x {}), head {:?} {} -> {} classes; wrote {}",
        model.display(),
        m.backbone.output_name,
        m.pre_pool.channels,
        m.pre_pool.height,
        m.pre_pool.width,
        m.head.form,
        m.head.features,
        m.head.classes,
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn score_dirs(
    bundle: &PathBuf,
    dirs: &[PathBuf],
    output: Option<PathBuf>,
    threads: Option<usize>,
) -> Result<ExitCode> {
    commands::init_threads(threads)?;
    let bundle = read_bundle(bundle)?;
    let detector = Detector::new(&bundle)?;
    let preprocessor = Preprocessor::new(bundle.manifest.input)?;
    let files = images::collect(dirs)?;

    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} scoring {pos}/{len} [{elapsed_precise}] {bar:30} {per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
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
    match output {
        Some(path) => {
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&path)
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
