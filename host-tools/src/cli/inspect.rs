//! `napctl inspect`: what an ONNX model holds and where it can be cut, or a bundle's manifest.

use anyhow::{Context, Result};
use nap_runtime::bundle::signature::signature;
use nap_runtime::bundle::{Bundle, MAGIC, Manifest};
use napctl::bundle::input::{self, InputRequest, ResolvedInput};
use napctl::bundle::quantize::LayerCounts;
use napctl::onnx;
use std::path::PathBuf;
use std::process::ExitCode;

/// How many values of DICE's mean and ViM's subspace the text output shows (`--json` has them
/// all).
const STATISTICS_SHOWN: usize = 4;

/// Arguments of `napctl inspect`.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// An ONNX model or a .nap bundle.
    path: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl InspectArgs {
    /// Runs `napctl inspect`: a bundle is told from a model by its magic bytes.
    pub fn run(self) -> Result<ExitCode> {
        let path = &self.path;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if bytes.starts_with(&MAGIC) {
            let bundle = Bundle::from_bytes(&bytes)
                .with_context(|| format!("loading bundle {}", path.display()))?;
            let signer = signature(&bytes)?.map(|s| s.fingerprint());
            if self.json {
                let info = BundleInfo {
                    manifest: &bundle.manifest,
                    signer,
                };
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!(
                    "bundle {} ({} bytes, backbone model {} bytes)",
                    path.display(),
                    bytes.len(),
                    bundle.backbone.len()
                );
                match signer {
                    Some(key) => println!(
                        "signed by {key} (not checked here: napctl verify --trusted KEY.pub)"
                    ),
                    None => println!("unsigned"),
                }
                println!("{}", bundle.manifest.head_summary());
                if let Some(program) = &bundle.program {
                    println!(
                        "integer program: {} layers ({})",
                        program.layers.len(),
                        LayerCounts::of(program)
                    );
                }
                // DICE's mean and ViM's subspace have a value per feature (or many): only their
                // starts are shown.
                let mut manifest = bundle.manifest.clone();
                if let Some(dice) = &mut manifest.dice {
                    println!(
                        "DICE's ID mean pooled feature: {} values, the first {} shown",
                        dice.mean.len(),
                        STATISTICS_SHOWN.min(dice.mean.len())
                    );
                    dice.mean.truncate(STATISTICS_SHOWN);
                }
                if let Some(vim) = &mut manifest.vim {
                    println!(
                        "ViM's principal subspace: {} dimensions of {} features, alpha {}; the \
                         first {STATISTICS_SHOWN} values of its origin and basis shown",
                        vim.dims(),
                        vim.origin.len(),
                        vim.alpha
                    );
                    vim.origin.truncate(STATISTICS_SHOWN);
                    vim.basis.truncate(STATISTICS_SHOWN);
                }
                println!("{manifest:#?}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        let model = onnx::decode(&bytes).with_context(|| format!("reading {}", path.display()))?;
        let info = onnx::inspect(&model)?;
        let split_input = split_input(&model, &info);
        if self.json {
            let (spec, problem) = match &split_input {
                Ok(resolved) => (Some(resolved.spec), None),
                Err(e) => (None, Some(e.clone())),
            };
            let report = ModelReport {
                info: &info,
                split_input: spec,
                split_input_problem: problem,
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{info}");
            match split_input {
                Ok(resolved) => println!("split without options feeds: {resolved}"),
                Err(e) => println!("split without options: {e}"),
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `inspect --json` of a bundle: the manifest's fields and the signer's key fingerprint.
#[derive(serde::Serialize)]
struct BundleInfo<'a> {
    #[serde(flatten)]
    manifest: &'a Manifest,
    /// `null` for an unsigned bundle.
    signer: Option<String>,
}

/// `inspect --json` of a model: what [`onnx::inspect`] found, and the input `split` would
/// settle on without options (or why it cannot).
#[derive(serde::Serialize)]
struct ModelReport<'a> {
    #[serde(flatten)]
    info: &'a onnx::ModelInfo,
    /// `null` when `split_input_problem` says why there is none.
    split_input: Option<nap_runtime::bundle::InputSpec>,
    split_input_problem: Option<String>,
}

/// The input `split` settles on without options: from the model's one run-time input and its
/// metadata.
fn split_input(
    model: &tract_onnx::pb::ModelProto,
    info: &onnx::ModelInfo,
) -> Result<ResolvedInput, String> {
    let [image] = &info.inputs[..] else {
        return Err(format!(
            "the model has {} run-time inputs; split needs exactly one, the image",
            info.inputs.len()
        ));
    };
    input::resolve(
        &InputRequest::default(),
        model,
        &image.name,
        image.shape.as_deref(),
    )
    .map_err(|e| e.to_string())
}
