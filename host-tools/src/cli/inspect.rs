//! `napctl inspect`: what an ONNX model holds and where it can be cut, or a bundle's manifest.

use anyhow::{Context, Result};
use nap_runtime::bundle::signature::signature;
use nap_runtime::bundle::{Bundle, MAGIC, Manifest};
use napctl::bundle::quantize::LayerCounts;
use napctl::onnx;
use std::path::PathBuf;
use std::process::ExitCode;

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
                if let Some(program) = &bundle.program {
                    println!(
                        "integer program: {} layers ({})",
                        program.layers.len(),
                        LayerCounts::of(program)
                    );
                }
                println!("{:#?}", bundle.manifest);
            }
            return Ok(ExitCode::SUCCESS);
        }
        let model = onnx::decode(&bytes).with_context(|| format!("reading {}", path.display()))?;
        let info = onnx::inspect(&model)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&info)?);
        } else {
            print!("{info}");
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
