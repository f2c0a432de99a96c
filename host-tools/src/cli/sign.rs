//! `napctl sign`: signs a bundle so devices with `--trusted-keys` accept it.

use super::shared::{read_private_key, write_file_atomically};
use anyhow::{Context, Result};
use nap_runtime::bundle::signature::{fingerprint, sign};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `napctl sign`.
#[derive(clap::Args)]
pub struct SignArgs {
    /// The bundle to sign; a signed one gets the new signature in place of the old.
    bundle: PathBuf,
    /// The private key (`napctl keygen`, or an ed25519 PKCS#8 PEM key from openssl).
    #[arg(long)]
    key: PathBuf,
    /// Write the signed bundle here instead of replacing BUNDLE.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

impl SignArgs {
    /// Runs `napctl sign`.
    pub fn run(self) -> Result<ExitCode> {
        let key = read_private_key(&self.key)?;
        let bytes = std::fs::read(&self.bundle)
            .with_context(|| format!("reading {}", self.bundle.display()))?;
        let signed =
            sign(&bytes, &key).with_context(|| format!("signing {}", self.bundle.display()))?;
        let output = self.output.as_ref().unwrap_or(&self.bundle);
        write_file_atomically(output, &signed)?;
        println!(
            "{}: signed by {}",
            output.display(),
            fingerprint(&key.verifying_key())
        );
        Ok(ExitCode::SUCCESS)
    }
}
