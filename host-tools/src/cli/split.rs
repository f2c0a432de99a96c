//! `napctl split`: a classifier ONNX cut at its global pooling into a bundle.

use anyhow::Result;
use napctl::bundle::{BuildOptions, InputRequest, Preset, build_bundle};
use napctl::onnx;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `napctl split`.
#[derive(clap::Args)]
pub struct SplitArgs {
    /// The classifier, as ONNX.
    model: PathBuf,
    /// Where to write the bundle.
    #[arg(short, long)]
    output: PathBuf,
    /// The pre-pool tensor (or pooling node) to cut at, when the model has several candidates.
    #[arg(long)]
    layer: Option<String>,
    /// Side of the square input, in pixels (default: the model's fixed input size, else 224).
    /// An error when it contradicts a fixed input.
    #[arg(long)]
    input_size: Option<u32>,
    /// Input normalization: tf = (p - 127.5) / 127.5; torch = ImageNet mean/std on p / 255
    /// (default: the model's preprocess.mean / preprocess.std metadata, else tf).
    #[arg(long, value_enum)]
    preprocess: Option<Preset>,
    /// Per-channel mean in pixel units (0..255), overriding preset and metadata: R,G,B.
    #[arg(long, value_delimiter = ',', num_args = 3)]
    mean: Option<Vec<f32>>,
    /// Per-channel std in pixel units, overriding preset and metadata: R,G,B.
    #[arg(long, value_delimiter = ',', num_args = 3)]
    std: Option<Vec<f32>>,
    /// Central crop as a fraction of the shorter side, 1 = no crop (default: the model's
    /// preprocess.crop metadata, else 0.875).
    #[arg(long)]
    crop: Option<f32>,
    /// The model takes BGR input.
    #[arg(long)]
    bgr: bool,
}

impl SplitArgs {
    /// The input as the flags ask for it; the model settles the rest.
    fn input(&self) -> InputRequest {
        let rgb = |v: &Option<Vec<f32>>| v.as_deref().map(|v| [v[0], v[1], v[2]]);
        InputRequest {
            size: self.input_size,
            preset: self.preprocess,
            mean: rgb(&self.mean),
            std: rgb(&self.std),
            crop: self.crop,
            bgr: self.bgr,
        }
    }

    /// Runs `napctl split`.
    pub fn run(self) -> Result<ExitCode> {
        let options = BuildOptions {
            layer: self.layer.clone(),
            input: self.input(),
        };
        let (model, output) = (&self.model, &self.output);
        let proto = onnx::read_model(model)?;
        let source = model.file_name().map_or_else(
            || model.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let built = build_bundle(&proto, &source, options)?;
        let bundle = built.bundle;
        bundle.write(output)?;
        let m = &bundle.manifest;
        println!(
            "{}: cut at {} ({} x {} x {}), {}; wrote {}\n  input {}",
            model.display(),
            m.backbone.output_name,
            m.pre_pool.channels,
            m.pre_pool.height,
            m.pre_pool.width,
            m.head_summary(),
            output.display(),
            built.input,
        );
        Ok(ExitCode::SUCCESS)
    }
}
