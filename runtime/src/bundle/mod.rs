//! The bundle: one file holding everything the device needs to score frames with one model.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "NAPBNDL\0"
//! 8       2     format version, u16 little-endian (FORMAT_VERSION)
//! 10      2     reserved, zero
//! 12      4     manifest length M, u32 LE
//! 16      8     backbone length B, u64 LE
//! 24      8     head length H, u64 LE: (classes * features + classes) * 4
//! 32      M     manifest, postcard-encoded [`Manifest`]
//! 32+M    B     backbone model bytes (format named in the manifest)
//! 32+M+B  H     head weights, row-major [classes][features], then bias [classes]; f32 LE
//! end-4   4     CRC-32C of every byte before it, u32 LE
//! ```
//!
//! Everything is checked at load: magic, version, the declared lengths against the file size,
//! the checksum, the manifest, and that the manifest, head and parameters agree with each other.

pub mod manifest;

pub use manifest::{
    ActivationStorage, BackboneSpec, ChannelOrder, HeadForm, HeadSpec, InputSpec, Manifest,
    ModelFormat, PrePoolSpec, Precision, ScorerConfig,
};

use crc::{CRC_32_ISCSI, Crc};
use std::path::{Path, PathBuf};

/// First bytes of every bundle file.
pub const MAGIC: [u8; 8] = *b"NAPBNDL\0";

/// The bundle format this runtime reads and writes. Bump it for any change to the layout or to
/// the manifest's encoding.
pub const FORMAT_VERSION: u16 = 1;

const HEADER_LEN: usize = 32;
const CHECKSUM_LEN: usize = 4;
static CHECKSUM: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// A model ready for the device: manifest, backbone bytes and head.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    /// Everything about the model besides its weights.
    pub manifest: Manifest,
    /// The backbone model (input -> pre-pool tensor).
    pub backbone: Vec<u8>,
    /// Head weights, row-major `[classes][features]`.
    pub head_weights: Vec<f32>,
    /// Head bias, `[classes]`.
    pub head_bias: Vec<f32>,
}

/// Why a bundle could not be read, written or trusted.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The bundle's path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes do not start with [`MAGIC`].
    #[error(
        "not a NAP bundle (no NAPBNDL magic); make one with `napctl split MODEL.onnx -o MODEL.nap`"
    )]
    NotABundle,
    /// A bundle of another format version.
    #[error(
        "bundle format version {found}, this runtime reads version {FORMAT_VERSION}; re-create it with this napctl"
    )]
    Version {
        /// The version in the file.
        found: u16,
    },
    /// The file is shorter or longer than its header declares.
    #[error(
        "bundle is {actual} bytes but its header declares {expected}: the file is truncated or has trailing data"
    )]
    Size {
        /// What the header adds up to.
        expected: u64,
        /// The file's size.
        actual: u64,
    },
    /// The checksum does not match the content.
    #[error(
        "bundle checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is corrupted"
    )]
    Checksum {
        /// The stored CRC-32C.
        stored: u32,
        /// The CRC-32C of the content.
        computed: u32,
    },
    /// The manifest does not decode or encode.
    #[error("bundle manifest is not readable: {0}")]
    Manifest(#[from] postcard::Error),
    /// The parts of the bundle disagree with each other.
    #[error("bundle is inconsistent: {0}")]
    Invalid(String),
}

impl Bundle {
    /// Serializes the bundle in the format above, after checking it is consistent.
    pub fn to_bytes(&self) -> Result<Vec<u8>, BundleError> {
        self.validate()?;
        let manifest = postcard::to_stdvec(&self.manifest)?;
        let manifest_len = u32::try_from(manifest.len())
            .map_err(|_| BundleError::Invalid("manifest larger than 4 GiB".into()))?;
        let head_len = (self.head_weights.len() + self.head_bias.len()) * 4;
        let mut out =
            Vec::with_capacity(HEADER_LEN + manifest.len() + self.backbone.len() + head_len + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&manifest_len.to_le_bytes());
        out.extend_from_slice(&(self.backbone.len() as u64).to_le_bytes());
        out.extend_from_slice(&(head_len as u64).to_le_bytes());
        out.extend_from_slice(&manifest);
        out.extend_from_slice(&self.backbone);
        for x in self.head_weights.iter().chain(&self.head_bias) {
            out.extend_from_slice(&x.to_le_bytes());
        }
        let checksum = CHECKSUM.checksum(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        Ok(out)
    }

    /// Parses and checks a bundle; any damage gives an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(BundleError::NotABundle);
        }
        let header = bytes.get(..HEADER_LEN).ok_or(BundleError::Size {
            expected: (HEADER_LEN + CHECKSUM_LEN) as u64,
            actual: bytes.len() as u64,
        })?;
        let found = u16::from_le_bytes([header[8], header[9]]);
        if found != FORMAT_VERSION {
            return Err(BundleError::Version { found });
        }
        let manifest_len = u64::from(u32::from_le_bytes(
            header[12..16].try_into().expect("4 bytes"),
        ));
        let backbone_len = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
        let head_len = u64::from_le_bytes(header[24..32].try_into().expect("8 bytes"));
        let expected = [
            manifest_len,
            backbone_len,
            head_len,
            (HEADER_LEN + CHECKSUM_LEN) as u64,
        ]
        .into_iter()
        .try_fold(0u64, u64::checked_add)
        .unwrap_or(u64::MAX);
        if expected != bytes.len() as u64 {
            return Err(BundleError::Size {
                expected,
                actual: bytes.len() as u64,
            });
        }
        let (content, stored) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        let stored = u32::from_le_bytes(stored.try_into().expect("4 bytes"));
        let computed = CHECKSUM.checksum(content);
        if stored != computed {
            return Err(BundleError::Checksum { stored, computed });
        }

        // The lengths add up to the file size, so every section below is in bounds.
        let (manifest, rest) = content[HEADER_LEN..].split_at(manifest_len as usize);
        let (backbone, head) = rest.split_at(backbone_len as usize);
        let manifest: Manifest = postcard::from_bytes(manifest)?;
        let floats: Vec<f32> = head
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        if head.len() % 4 != 0 || floats.len() < manifest.head.classes as usize {
            return Err(BundleError::Invalid(format!(
                "head section of {} bytes is not whole floats",
                head.len()
            )));
        }
        let (head_weights, head_bias) =
            floats.split_at(floats.len() - manifest.head.classes as usize);
        let bundle = Bundle {
            manifest,
            backbone: backbone.to_vec(),
            head_weights: head_weights.to_vec(),
            head_bias: head_bias.to_vec(),
        };
        bundle.validate()?;
        Ok(bundle)
    }

    /// Reads and checks a bundle file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, BundleError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| BundleError::Io {
            path: path.into(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// Writes the bundle, through a temporary file renamed into place, so a reader never sees a
    /// half-written bundle.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), BundleError> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        let io = |source| BundleError::Io {
            path: path.into(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Checks that the manifest, the head and the scorer parameters agree.
    pub fn validate(&self) -> Result<(), BundleError> {
        let invalid = |msg: String| Err(BundleError::Invalid(msg));
        let m = &self.manifest;
        let (classes, features) = (m.head.classes as usize, m.head.features as usize);
        if classes == 0 || features == 0 {
            return invalid(format!("head of {classes} classes x {features} features"));
        }
        if self.head_bias.len() != classes
            || Some(self.head_weights.len()) != classes.checked_mul(features)
        {
            return invalid(format!(
                "head holds {} weights and {} biases, {classes} classes x {features} features need {} and {classes}",
                self.head_weights.len(),
                self.head_bias.len(),
                classes.saturating_mul(features)
            ));
        }
        if let Some(bad) = self
            .head_weights
            .iter()
            .chain(&self.head_bias)
            .find(|x| !x.is_finite())
        {
            return invalid(format!("head holds a non-finite value {bad}"));
        }
        let p = &m.pre_pool;
        if p.channels as usize != features {
            return invalid(format!(
                "pre-pool tensor has {} channels, the head takes {features} features",
                p.channels
            ));
        }
        if p.height == 0 || p.width == 0 {
            return invalid(format!("pre-pool tensor of {} x {}", p.height, p.width));
        }
        if let ActivationStorage::U8(q) = p.storage
            && !(q.scale.is_finite() && q.scale > 0.0)
        {
            return invalid(format!("pre-pool scale {} is not positive", q.scale));
        }
        let input = &m.input;
        if input.size == 0 || !(input.crop_fraction > 0.0 && input.crop_fraction <= 1.0) {
            return invalid(format!(
                "input size {} with crop fraction {}",
                input.size, input.crop_fraction
            ));
        }
        if input.std.iter().chain(&input.mean).any(|x| !x.is_finite()) || input.std.contains(&0.0) {
            return invalid(format!(
                "input normalization mean {:?} std {:?}",
                input.mean, input.std
            ));
        }
        if self.backbone.is_empty() {
            return invalid("no backbone model".into());
        }
        m.scorer
            .params
            .validate()
            .map_err(|e| BundleError::Invalid(e.to_string()))?;
        if let Some(t) = m.scorer.threshold
            && !t.is_finite()
        {
            return invalid(format!("threshold {t} is not finite"));
        }
        Ok(())
    }
}
