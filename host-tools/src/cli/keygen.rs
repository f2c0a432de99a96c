//! `napctl keygen`: a key pair for signing bundles.

use super::shared::public_key_path;
use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use nap_runtime::bundle::signature::fingerprint;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `napctl keygen`.
#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Where the private key goes (PKCS#8 PEM, readable by its owner only); the public key
    /// goes beside it as OUTPUT.pub, for devices' --trusted-keys.
    #[arg(short, long)]
    output: PathBuf,
    /// Replace key files that exist (otherwise they are left alone and this fails).
    #[arg(long)]
    force: bool,
}

impl KeygenArgs {
    /// Runs `napctl keygen`.
    pub fn run(self) -> Result<ExitCode> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))?;
        let key = SigningKey::from_bytes(&seed);
        let private = key.to_pkcs8_pem(LineEnding::LF)?;
        let public = key.verifying_key().to_public_key_pem(LineEnding::LF)?;
        let public_path = public_key_path(&self.output);
        write_new(&self.output, private.as_bytes(), 0o600, self.force)?;
        write_new(&public_path, public.as_bytes(), 0o644, self.force)?;
        println!(
            "wrote {} (private: keep it off devices) and {}; key {}",
            self.output.display(),
            public_path.display(),
            fingerprint(&key.verifying_key())
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Writes `contents` to a file created with `mode`, refusing to replace one unless `force`.
fn write_new(path: &Path, contents: &[u8], mode: u32, force: bool) -> Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        // An existing file keeps its mode through truncation: remove it so `mode` applies.
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("replacing {}", path.display()));
            }
            _ => {}
        }
    }
    options.create_new(true);
    let mut file = options.open(path).with_context(|| {
        if path.exists() {
            format!("{} exists; pass --force to replace it", path.display())
        } else {
            format!("creating {}", path.display())
        }
    })?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}
