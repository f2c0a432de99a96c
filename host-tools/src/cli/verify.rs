//! `napctl verify`: checks a bundle the way a device with `--trusted-keys` does.

use anyhow::{Context, Result};
use nap_runtime::bundle::Bundle;
use nap_runtime::bundle::signature::TrustedKeys;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `napctl verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The signed bundle.
    bundle: PathBuf,
    /// The trusted public key (PEM), or a folder of them (*.pub): what napd's --trusted-keys
    /// would be given.
    #[arg(long)]
    trusted: PathBuf,
}

impl VerifyArgs {
    /// Runs `napctl verify`: exit 0 when the bundle is signed by a trusted key, unchanged and
    /// readable, 1 otherwise.
    pub fn run(self) -> Result<ExitCode> {
        let keys = TrustedKeys::load(&self.trusted)?;
        let bytes = std::fs::read(&self.bundle)
            .with_context(|| format!("reading {}", self.bundle.display()))?;
        let signature = keys
            .verify(&bytes)
            .with_context(|| format!("verifying {}", self.bundle.display()))?;
        Bundle::from_bytes(&bytes)
            .with_context(|| format!("loading bundle {}", self.bundle.display()))?;
        println!(
            "{}: signed by {} (trusted), unchanged since",
            self.bundle.display(),
            signature.fingerprint()
        );
        Ok(ExitCode::SUCCESS)
    }
}
