//! What several commands share: the worker pool's size, the progress bar, and reading and
//! writing the files named on the command line with the path in every error.

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use nap_runtime::bundle::Bundle;
use std::path::Path;

/// Sizes the worker pool when `--threads` is given (the default is one worker per core).
pub fn init_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        // Once per process: a command that opens several bundles asks again.
        static POOL: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        if POOL.get().is_none() {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()?;
            let _ = POOL.set(());
        }
    }
    Ok(())
}

/// Whether a progress bar shows the items done per second.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// Items per second after the bar.
    Shown,
    /// No rate.
    Hidden,
}

/// A progress bar on stderr over `len` items, labelled `what`.
pub fn progress_bar(len: usize, what: &str, rate: Rate) -> ProgressBar {
    let rate = if rate == Rate::Shown {
        " {per_sec}"
    } else {
        ""
    };
    let template = format!(
        "{{spinner}} {what} {{pos}}/{{len}} [{{elapsed_precise}}] {{bar:30}}{rate} eta {{eta}}"
    );
    ProgressBar::new(len as u64)
        .with_style(ProgressStyle::with_template(&template).expect("valid template"))
}

/// Reads a bundle file.
pub fn read_bundle(path: &Path) -> Result<Bundle> {
    Bundle::read(path).with_context(|| format!("loading bundle {}", path.display()))
}

/// Writes a bundle file.
pub fn write_bundle(bundle: &Bundle, path: &Path) -> Result<()> {
    bundle
        .write(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes a file the user named (a report, a table).
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Writes a file through a temporary one renamed into place, so that a reader (a device
/// picking up a bundle) never sees it half-written.
pub fn write_file_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Where `napctl keygen` puts the public key of private key `key`: beside it, `.pub` added.
pub fn public_key_path(key: &Path) -> std::path::PathBuf {
    let mut path = key.as_os_str().to_owned();
    path.push(".pub");
    path.into()
}

/// An ed25519 private key in PKCS#8 PEM form (`napctl keygen`, `openssl genpkey -algorithm
/// ed25519`), refused when others than its owner may read it.
pub fn read_private_key(path: &Path) -> Result<ed25519_dalek::SigningKey> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading key {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{}: permissions {:o} let others read this private key; `chmod 600 {}` (and make a new key if others may have copied it)",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        anyhow::anyhow!(
            "{}: not an ed25519 private key in PKCS#8 PEM form ({e})",
            path.display()
        )
    })
}
