//! `napctl demo`: the whole product on the built-in default, with no network and no ImageNet.
//!
//! The Fashion-MNIST model in models/fashion is split, quantized to int8 and calibrated from
//! in-distribution frames only; then every method is evaluated against MNIST digits and
//! textures, and the demo frames are replayed through the runtime library into the controller
//! firmware's state machine (running on the host), which drives its reject line as it would on
//! the board.

use super::calibrate::{Against, Calibration, calibrate_bundle};
use super::eval::{Evaluation, evaluate_bundle};
use super::features::CacheOptions;
use super::quantize::{Quantization, quantize_bundle};
use anyhow::{Context, Result, bail};
use embedded_hal::digital::{ErrorType, OutputPin};
use nap_core::protocol::{self, Heartbeat, MAX_FRAME_LEN, Message, Verdict};
use nap_core::score::Method;
use nap_firmware::time::Tick;
use nap_firmware::{Config, Controller};
use nap_runtime::bundle::{Bundle, ChannelOrder, InputSpec};
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;
use napctl::bundle::calibrate::Deciding;
use napctl::bundle::quantize::{Options, RangeMethod, Target};
use napctl::bundle::{BuildOptions, build_bundle};
use napctl::images;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Where the default model and frames live in a checkout.
const MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/fashion");

/// The demo model's input, as its model card states: 28 x 28 grey frames (replicated to three
/// channels), no crop, normalized with Fashion-MNIST's mean and deviation.
const INPUT: InputSpec = InputSpec {
    size: 28,
    crop_fraction: 1.0,
    channel_order: ChannelOrder::Rgb,
    mean: [72.94; 3],
    std: [90.02; 3],
};

/// Arguments of `napctl demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// The model (default: the Fashion-MNIST model in models/fashion).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Folder with `id/` and `ood-*/` frame folders (default: models/fashion/frames).
    #[arg(long)]
    frames: Option<PathBuf>,
    /// Where bundles, the evaluation JSON and the plots go.
    #[arg(short, long, default_value = "napctl-demo")]
    out: PathBuf,
}

impl DemoArgs {
    /// Runs `napctl demo`: each step calls what its command runs, with the demo's settings.
    pub fn run(self) -> Result<ExitCode> {
        let args = self;
        let start = Instant::now();
        let model = args
            .model
            .unwrap_or_else(|| Path::new(MODELS).join("fashion_mnv2.onnx"));
        let frames = args
            .frames
            .unwrap_or_else(|| Path::new(MODELS).join("frames"));
        let id = frames.join("id");
        let ood = ood_folders(&frames)?;
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        let out = |name: &str| args.out.join(name);
        let cache = CacheOptions::in_dir(out("cache"));

        step(1, "split the model at its global pooling");
        let proto = napctl::onnx::read_model(&model).with_context(
            || "the default model ships in models/fashion; pass --model for another",
        )?;
        let source = model
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into());
        let options = BuildOptions {
            layer: None,
            input: INPUT.into(),
        };
        build_bundle(&proto, &source, options)?
            .bundle
            .write(out("f32.nap"))?;
        println!("wrote {}", out("f32.nap").display());

        step(2, "quantize to int8 from the ID frames");
        quantize_bundle(&Quantization {
            bundle: &out("f32.nap"),
            calib: &id,
            calib_count: 100,
            fallback: false,
            options: Options {
                target: Target::Int8,
                ranges: RangeMethod::Percentile,
                per_channel: true,
            },
            val: None,
            json: None,
            output: &out("int8.nap"),
        })?;

        // The threshold comes from the ID frames alone. w stays at the paper's 0.6: corrupted copies
        // of 28 x 28 grey frames (calibrate's stand-in OOD) are told apart by NAP alone, so a search
        // against them lowers w, while MNIST digits need the energy term (see the model card).
        step(
            3,
            "calibrate the threshold from ID frames only (w stays at the paper's 0.6)",
        );
        calibrate_bundle(&Calibration {
            bundle: &out("int8.nap"),
            id: std::slice::from_ref(&id),
            against: Against::Nothing,
            tpr: 0.95,
            method: Deciding::Method(Method::NapE),
            ash_percentile: 90.0,
            dice_sparsity: nap_core::score::dice::DEFAULT_SPARSITY,
            vim_dims: None,
            output: &out("int8-calibrated.nap"),
            cache: &cache,
        })?;

        step(
            4,
            "evaluate every method: Fashion-MNIST (ID) against the OOD sets",
        );
        evaluate_bundle(&Evaluation {
            bundle: &out("int8-calibrated.nap"),
            id: &id,
            ood: &ood,
            compare: &[],
            pseudo_ood: &[],
            sweep_w: false,
            json: Some(&out("eval.json")),
            plots: Some(&out("plots")),
            channel: None,
            vim_dims: None,
            cache: &cache,
        })?;

        step(
            5,
            "replay the frames through the runtime into the controller firmware",
        );
        let bundle = Bundle::read(out("int8-calibrated.nap"))?;
        let replay = replay(&bundle, &std::iter::once(id).chain(ood).collect::<Vec<_>>())?;
        print!("{replay}");
        println!(
            "\ndone in {:.1} s; bundles, eval.json and plots/ are in {}",
            start.elapsed().as_secs_f64(),
            args.out.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}

fn step(n: u32, what: &str) {
    println!("\n== {n}. {what}");
}

/// The `ood-*` folders of the frames folder, sorted.
fn ood_folders(frames: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(frames).with_context(|| {
        format!(
            "reading {} (the demo frames ship in models/fashion/frames; pass --frames for others)",
            frames.display()
        )
    })?;
    let mut ood: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("ood-"))
        })
        .collect();
    ood.sort();
    if ood.is_empty() {
        bail!("{}: no ood-* folder", frames.display());
    }
    Ok(ood)
}

/// A GPIO line on the host: remembers its level and counts rising edges, like a logic analyzer
/// on the controller's reject pin.
#[derive(Default)]
struct ProbedPin {
    high: bool,
    rises: u32,
}

impl ErrorType for ProbedPin {
    type Error = core::convert::Infallible;
}

impl OutputPin for ProbedPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.high = false;
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.rises += u32::from(!self.high);
        self.high = true;
        Ok(())
    }
}

/// What the replay showed, per frame set and on the controller's side.
struct Replay {
    sets: Vec<(String, usize, usize)>,
    controller_frames: u32,
    controller_ood: u32,
    reject_pulses: u32,
    link_errors: u32,
    armed: bool,
}

impl std::fmt::Display for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<16}{:>8}{:>10}{:>10}",
            "set", "frames", "flagged", "share"
        )?;
        for (set, n, flagged) in &self.sets {
            let share = 100.0 * *flagged as f64 / (*n).max(1) as f64;
            writeln!(f, "{set:<16}{n:>8}{flagged:>10}{share:>9.1}%")?;
        }
        writeln!(
            f,
            "controller: {} valid frames, {} OOD verdicts, {} reject pulses, {} damaged frames, {}",
            self.controller_frames,
            self.controller_ood,
            self.reject_pulses,
            self.link_errors,
            if self.armed { "armed" } else { "NOT armed" }
        )
    }
}

/// Scores every frame of `sets` with the bundle, sends each verdict as a protocol frame to the
/// controller state machine (one frame every 4 ticks of its 100 Hz clock, a heartbeat first),
/// and counts what it did.
fn replay(bundle: &Bundle, sets: &[PathBuf]) -> Result<Replay> {
    let detector = Detector::new(bundle)?;
    let preprocessor = Preprocessor::new(bundle.manifest.input)?;
    let mut worker = detector.worker()?;
    let config = Config::DEFAULT_100HZ;
    let pulse = match config.reject {
        nap_firmware::RejectMode::Pulse { ticks } => ticks,
        nap_firmware::RejectMode::Level => 1,
    };
    let mut controller = Controller::new(config, ProbedPin::default(), ProbedPin::default());
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut send = |controller: &mut Controller<ProbedPin, ProbedPin>, msg: Message, now: u32| {
        let bytes = protocol::encode(&msg, &mut buf).expect("a full-size buffer");
        controller.receive(bytes, Tick(now));
    };
    let mut now = 0;
    send(
        &mut controller,
        Message::Heartbeat(Heartbeat {
            seq: 0,
            timestamp_us: 0,
        }),
        now,
    );
    let mut seq = 0;
    let mut summary = Vec::new();
    for dir in sets {
        let files = images::collect(std::slice::from_ref(dir))?;
        let mut flagged = 0;
        for file in &files {
            let bytes = std::fs::read(&file.path)?;
            let input = preprocessor.tensor_vec_from_encoded(&bytes)?;
            let analysis = detector.analyze(&mut worker, input)?;
            let ood = analysis
                .ood
                .context("the calibrated bundle has a threshold")?;
            flagged += usize::from(ood);
            seq += 1;
            // Far enough apart that every reject pulse ends before the next verdict.
            now += pulse + 1;
            controller.tick(Tick(now));
            let verdict = Verdict {
                seq,
                timestamp_us: u64::from(now) * 10_000,
                score: analysis.score,
                threshold: bundle.manifest.scorer.threshold.unwrap_or(f32::NAN),
                ood,
            };
            send(&mut controller, Message::Verdict(verdict), now);
        }
        let set = files.first().map_or_else(String::new, |f| f.set.clone());
        summary.push((set, files.len(), flagged));
    }
    let counters = *controller.counters();
    let armed = controller.state() == nap_core::protocol::ControllerState::Armed;
    let (reject, _fault) = controller.release();
    Ok(Replay {
        sets: summary,
        controller_frames: counters.frames,
        controller_ood: counters.ood,
        reject_pulses: reject.rises,
        link_errors: counters.frame_errors(),
        armed,
    })
}
