//! Signed bundles: who made a bundle, and that nobody changed it since.
//!
//! A signed bundle is a bundle with flag [`FLAG_SIGNED`] set in its header (and so its own
//! checksum), followed by a trailer:
//!
//! ```text
//! size  field
//! 8     magic "NAPSIG1\0"
//! 32    the signer's ed25519 public key
//! 64    ed25519 signature of every byte before the trailer
//! ```
//!
//! Runtimes older than the flag read format versions up to 3 and refuse this one by its version
//! number, with a message that says so, rather than misreading it. The signature is checked
//! against a set of trusted keys before any other part of the file is read.

use super::{Bundle, BundleError, FORMAT_VERSION, MAGIC};
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The header flag (bits of the u16 at offset 10) of a signed bundle.
pub const FLAG_SIGNED: u16 = 1;

/// The first format version with header flags, so the first that can be signed.
pub const SIGNED_SINCE: u16 = 4;

/// First bytes of the signature trailer.
const TRAILER_MAGIC: [u8; 8] = *b"NAPSIG1\0";
/// Length of the signature trailer.
pub const TRAILER_LEN: usize = 8 + 32 + 64;

/// Why a bundle is not trusted, or the trusted keys could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The bundle carries no signature.
    #[error("the bundle is not signed; sign it with `napctl sign BUNDLE --key KEY`")]
    Unsigned,
    /// A key that is not among the trusted ones signed it.
    #[error("the bundle is signed by key {fingerprint}, which is not trusted")]
    UnknownSigner {
        /// The signer's key fingerprint.
        fingerprint: String,
    },
    /// The signature does not match the bytes: they changed after signing.
    #[error(
        "the bundle's signature by {fingerprint} does not match its content: it was changed after signing"
    )]
    Tampered {
        /// The signer's key fingerprint.
        fingerprint: String,
    },
    /// The file is not a bundle, or its signature trailer is damaged.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A trusted-key file could not be read.
    #[error("trusted key {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The trusted-key path names no key.
    #[error("{0}: no trusted public key (*.pub, PEM) there")]
    NoKeys(PathBuf),
}

/// A bundle's signature, as stored in its trailer.
#[derive(Clone, Debug)]
pub struct BundleSignature {
    /// The signer's public key.
    pub key: VerifyingKey,
    signature: Signature,
}

impl BundleSignature {
    /// The signer's key fingerprint, as `napctl inspect` and errors show it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key)
    }
}

/// A short, stable name for a public key: `ed25519:` and the first 8 bytes of the SHA-256 of its
/// 32 bytes, in hex.
pub fn fingerprint(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("ed25519:{}", super::hex(&digest[..8]))
}

/// The bundle's format version and flags; `None` when the file ends before them.
fn version_and_flags(bytes: &[u8]) -> Result<Option<(u16, u16)>, BundleError> {
    if !bytes.starts_with(&MAGIC) {
        return Err(BundleError::NotABundle);
    }
    Ok(bytes.get(8..12).map(|v| {
        (
            u16::from_le_bytes([v[0], v[1]]),
            u16::from_le_bytes([v[2], v[3]]),
        )
    }))
}

/// Whether the header says a signature trailer follows.
fn is_signed(bytes: &[u8]) -> Result<bool, BundleError> {
    Ok(matches!(version_and_flags(bytes)?,
        Some((version, flags)) if version >= SIGNED_SINCE && flags & FLAG_SIGNED != 0))
}

/// Splits a signed bundle into the signed bytes and its signature; `None` for an unsigned one.
pub fn split(bytes: &[u8]) -> Result<Option<(&[u8], BundleSignature)>, BundleError> {
    if !is_signed(bytes)? {
        return Ok(None);
    }
    let damaged = || {
        BundleError::Invalid("a signed bundle whose signature trailer is missing or damaged".into())
    };
    let body_len = bytes.len().checked_sub(TRAILER_LEN).ok_or_else(damaged)?;
    let (body, trailer) = bytes.split_at(body_len);
    let (magic, rest) = trailer.split_at(TRAILER_MAGIC.len());
    if magic != TRAILER_MAGIC {
        return Err(damaged());
    }
    let (key, signature) = rest.split_at(32);
    let key = VerifyingKey::from_bytes(key.try_into().expect("32 bytes")).map_err(|_| {
        BundleError::Invalid("the signature trailer holds no valid public key".into())
    })?;
    let signature = Signature::from_bytes(signature.try_into().expect("64 bytes"));
    Ok(Some((body, BundleSignature { key, signature })))
}

/// The bundle's signature, without checking it; `None` for an unsigned bundle.
pub fn signature(bytes: &[u8]) -> Result<Option<BundleSignature>, BundleError> {
    Ok(split(bytes)?.map(|(_, s)| s))
}

/// Signs a bundle (unsigned, or signed before: the old signature is replaced) with `key`,
/// after checking it reads as a bundle. Older layouts are rewritten in the current one first.
pub fn sign(bytes: &[u8], key: &SigningKey) -> Result<Vec<u8>, BundleError> {
    let bundle = Bundle::from_bytes(bytes)?;
    let mut signed = match (split(bytes)?, version_and_flags(bytes)?) {
        (Some((body, _)), _) => body.to_vec(),
        (None, Some((FORMAT_VERSION, _))) => bytes.to_vec(),
        _ => bundle.to_bytes()?,
    };
    signed[10..12].copy_from_slice(&FLAG_SIGNED.to_le_bytes());
    let content = signed.len() - super::CHECKSUM_LEN;
    let checksum = super::CHECKSUM.checksum(&signed[..content]);
    signed[content..].copy_from_slice(&checksum.to_le_bytes());
    let signature = key.sign(&signed);
    signed.extend_from_slice(&TRAILER_MAGIC);
    signed.extend_from_slice(key.verifying_key().as_bytes());
    signed.extend_from_slice(&signature.to_bytes());
    Ok(signed)
}

/// The public keys whose signatures a device accepts.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: Vec<VerifyingKey>,
}

impl TrustedKeys {
    /// The keys in `path`: one PEM public key file (as `napctl keygen` or `openssl pkey -pubout`
    /// writes), or a directory whose `*.pub` files each hold one. Refused when others than the
    /// owner may write the folder or a key: whoever can would choose what the device trusts.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TrustError> {
        let path = path.as_ref();
        owner_writable_only(path)?;
        let files = if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| TrustError::Key {
                path: path.into(),
                reason: e.to_string(),
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        let keys = files
            .iter()
            .map(|file| read_public_key(file))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(TrustError::NoKeys(path.into()));
        }
        Ok(TrustedKeys { keys })
    }

    /// A set of the given keys.
    pub fn from_keys(keys: Vec<VerifyingKey>) -> Self {
        TrustedKeys { keys }
    }

    /// The fingerprints of the trusted keys.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(fingerprint).collect()
    }

    /// Checks that `bytes` are a bundle signed by a trusted key and unchanged since; gives the
    /// signature. Nothing but the header's magic and version is read before the signature
    /// checks out.
    pub fn verify(&self, bytes: &[u8]) -> Result<BundleSignature, TrustError> {
        let (body, signature) = split(bytes)?.ok_or(TrustError::Unsigned)?;
        let fingerprint = signature.fingerprint();
        if !self.keys.contains(&signature.key) {
            return Err(TrustError::UnknownSigner { fingerprint });
        }
        signature
            .key
            .verify_strict(body, &signature.signature)
            .map_err(|_| TrustError::Tampered { fingerprint })?;
        Ok(signature)
    }
}

/// Refuses `path` when its group or others may write it.
fn owner_writable_only(path: &Path) -> Result<(), TrustError> {
    use std::os::unix::fs::PermissionsExt;
    let key_error = |reason: String| TrustError::Key {
        path: path.into(),
        reason,
    };
    let mode = std::fs::metadata(path)
        .map_err(|e| key_error(e.to_string()))?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        return Err(key_error(format!(
            "permissions {:o} let others than its owner change what is trusted; `chmod go-w` it",
            mode & 0o777
        )));
    }
    Ok(())
}

/// One PEM public key (SubjectPublicKeyInfo, `-----BEGIN PUBLIC KEY-----`).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, TrustError> {
    let key_error = |reason: String| TrustError::Key {
        path: path.into(),
        reason,
    };
    owner_writable_only(path)?;
    let pem = std::fs::read_to_string(path).map_err(|e| key_error(e.to_string()))?;
    VerifyingKey::from_public_key_pem(&pem)
        .map_err(|e| key_error(format!("not an ed25519 public key in PEM form ({e})")))
}
