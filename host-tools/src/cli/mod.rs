//! napctl's command line: one module per command, each with its arguments and what it runs.
//! `shared` holds what several commands use (threads, progress bars, bundle files);
//! `features` opens a bundle with its feature cache for `eval` and `calibrate`.

mod bench;
mod calibrate;
mod demo;
mod eval;
mod features;
mod fleet;
mod inspect;
mod keygen;
mod quantize;
mod review;
mod score;
mod shared;
mod sign;
mod split;
mod verify;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Out-of-distribution detection for edge cameras: host tool for NAP bundles.
#[derive(Parser)]
#[command(name = "napctl", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole product on the built-in Fashion-MNIST model: split, quantize, calibrate
    /// from ID frames only, evaluate every method against MNIST digits and textures, and replay
    /// the frames through the runtime into the controller firmware (simulated on this machine).
    Demo(demo::DemoArgs),
    /// Show an ONNX model's inputs, outputs, pooling layer and head, or a bundle's manifest.
    Inspect(inspect::InspectArgs),
    /// Cut a classifier at its global pooling into a bundle: backbone + dense head + scorer.
    ///
    /// The model decides its own input where it can: a fixed input shape sets the frame size
    /// (a contradicting --input-size is an error), and metadata entries preprocess.mean,
    /// preprocess.std (pixel units, one value or R,G,B) and preprocess.crop set the
    /// normalization and crop unless a flag overrides them. Without either, 224 and TF-slim's
    /// (p - 127.5) / 127.5 with an 87.5% crop. The command prints what it used and why.
    Split(split::SplitArgs),
    /// Score every .jpg/.jpeg/.png below each folder; writes a TSV (set file top1 lse nap msp score ood).
    Score(score::ScoreArgs),
    /// Time each stage of scoring a frame (decode, preprocess, backbone, reduce, head, scores).
    Bench(bench::BenchArgs),
    /// Evaluate every method (MSP, MaxLogit, Energy, GEN, ReAct, ASH-S, ASH-B, SCALE, DICE, NAP,
    /// NAP-E, NAP-R, NAP-A, NAP-M, NAP-D) on ID vs OOD folders: FPR95 in both conventions, AUROC, AUPR-In, AUPR-Out, in percent.
    Eval(eval::EvalArgs),
    /// Quantize a float bundle from calibration images, and report how closely it follows the
    /// float bundle (top-1 agreement, pre-pool cosine, NAP and lse correlation).
    ///
    /// int8 (the default): the whole backbone as an integer program on nap-core's kernels (u8
    /// activations from the frame to the pre-pool tensor, no tract), with NEON's dot product or
    /// AVX-512 VNNI where the CPU has them; a quarter of the size, 0.3-0.6x float's time. A
    /// backbone the kernels do not cover gets int8-weights by default (int8-tract with
    /// `--precision int8`), and the command says why. int8-weights: int8 storage, dequantized
    /// when the bundle loads, float speed. int8-tract: int8 pointwise convolutions in tract,
    /// float between them. f16-weights: f16 storage, widened at load, for results equal to
    /// float's at 42% of the size. All store the head as int8 rows. Calibrate the quantized
    /// bundle afterwards (`napctl calibrate`): its scores differ a little from the float
    /// bundle's.
    Quantize(quantize::QuantizeArgs),
    /// Calibrate a bundle: ReAct clip, ASH percentile, fusion weights w and the threshold.
    ///
    /// w is chosen to minimize FPR at the target TPR (ties: higher AUROC) against the --ood
    /// folders, or, without them, against pseudo-OOD copies of the ID images (noise, blur, JPEG,
    /// contrast, pixelation, tile shuffling). The threshold keeps the target share of ID images.
    Calibrate(calibrate::CalibrateArgs),
    /// Make an ed25519 key pair for signing bundles: KEY (private, mode 0600) and KEY.pub.
    Keygen(keygen::KeygenArgs),
    /// Sign a bundle with a private key, so that devices started with --trusted-keys accept it.
    /// The signature covers every byte of the bundle.
    Sign(sign::SignArgs),
    /// Check that a bundle is signed by a trusted key and unchanged since, as napd
    /// --trusted-keys does before loading it.
    Verify(verify::VerifyArgs),
    /// Show what a device flagged: its capture folder (napd --capture) as one self-contained
    /// HTML page, with the frames as a grid (lowest score first), their score histogram against
    /// the threshold, and the frames flagged per hour.
    Review(review::ReviewArgs),
    /// Watch a fleet: the devices publishing to an MQTT broker (napd --mqtt) as a live table
    /// (status, fps, OOD rate, p99 latency, verdicts, drops, last seen), or one JSON snapshot.
    Fleet(fleet::FleetArgs),
}

impl Cli {
    /// Runs the chosen command; the exit code is its verdict (an error is reported by the caller).
    pub fn run(self) -> Result<ExitCode> {
        match self.command {
            Command::Demo(args) => args.run(),
            Command::Inspect(args) => args.run(),
            Command::Split(args) => args.run(),
            Command::Score(args) => args.run(),
            Command::Bench(args) => args.run(),
            Command::Eval(args) => args.run(),
            Command::Quantize(args) => args.run(),
            Command::Calibrate(args) => args.run(),
            Command::Keygen(args) => args.run(),
            Command::Sign(args) => args.run(),
            Command::Verify(args) => args.run(),
            Command::Review(args) => args.run(),
            Command::Fleet(args) => args.run(),
        }
    }
}
