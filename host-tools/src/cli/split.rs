//! `napctl split`: a classifier ONNX cut at its global pooling into a bundle.

use anyhow::Result;
use clap::ValueEnum;
use nap_runtime::bundle::{ChannelOrder, InputSpec};
use napctl::bundle::{BuildOptions, build_bundle};
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
}

#[derive(Clone, Copy, ValueEnum)]
enum Preset {
    Tf,
    Torch,
}

impl SplitArgs {
    /// The model's input as the flags describe it: the preset, then each override.
    fn input(&self) -> InputSpec {
        let mut input = match self.preprocess {
            Preset::Tf => InputSpec::TF,
            Preset::Torch => InputSpec::TORCH,
        };
        input.size = self.input_size;
        input.crop_fraction = self.crop;
        if let Some(m) = &self.mean {
            input.mean = [m[0], m[1], m[2]];
        }
        if let Some(s) = &self.std {
            input.std = [s[0], s[1], s[2]];
        }
        if self.bgr {
            input.channel_order = ChannelOrder::Bgr;
            input.mean.reverse();
            input.std.reverse();
        }
        input
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
}
