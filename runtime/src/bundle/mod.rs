//! The bundle: one file holding everything the device needs to score frames with one model.
//!
//! ```text
//! offset    size  field
//! 0         8     magic "NAPBNDL\0"
//! 8         2     format version, u16 little-endian (FORMAT_VERSION)
//! 10        2     flags, u16 LE: bit 0 signed (a signature trailer follows), others zero
//! 12        4     manifest length M, u32 LE
//! 16        8     backbone length B, u64 LE
//! 24        8     head length H, u64 LE
//! 32        8     integer program length P, u64 LE (0: none)
//! 40        M     manifest, postcard-encoded [`Manifest`]
//! 40+M      B     backbone model bytes (format named in the manifest)
//! 40+M+B    H     head (below)
//! 40+M+B+H  P     the int8 backbone as integer layers, postcard-encoded [`Program`]
//! end-4     4     CRC-32C of every byte before it, u32 LE
//! ```
//!
//! The head is its last dense layer's weights, row-major `[classes][features]`, then its bias
//! `[classes]` as f32 LE. The manifest's [`HeadStorage`] says how the weights are stored: f32 LE,
//! or int8 codes followed by one f32 LE scale per class row. A head with layers before the dense
//! one (the manifest's [`NeckSpec`]) ends with them as an ONNX model, the rest of the section.
//!
//! An int8 bundle whose backbone the integer kernels cover holds the program and no backbone
//! model (B = 0); otherwise the backbone model is the int8 ONNX graph tract runs. Version 2
//! files (no program length, a 32-byte header) still load: they have no program, so an int8 one
//! runs its backbone in tract as before. Versions 2 and 3 have no flags (never signed) and a
//! manifest without the calibrated TPR; versions 2 to 4 a manifest without NAP-D's weight and
//! DICE's statistics, versions 2 to 5 one without the neck, and versions 2 to 6 one without
//! ViM's statistics ([`legacy`] reads them).
//!
//! A signed bundle has flag bit 0 set and a signature trailer after the checksum
//! ([`signature`]).
//!
//! Everything is checked at load: magic, version, the declared lengths against the file size,
//! the checksum, the manifest, and that the manifest, head, program and parameters agree with
//! each other.

mod legacy;
pub mod manifest;
pub mod signature;

pub use manifest::{
    ActivationStorage, BackboneSpec, ChannelOrder, DiceSpec, HeadForm, HeadSpec, HeadStorage,
    InputSpec, Manifest, ModelFormat, NeckSpec, PrePoolSpec, Precision, ScorerConfig, VimSpec,
};

use crate::integer::Program;
use crate::limits::{MAX_BUNDLE_BYTES, ReadError, read_capped};
use crc::{CRC_32_ISCSI, Crc};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// First bytes of every bundle file.
pub const MAGIC: [u8; 8] = *b"NAPBNDL\0";

/// The bundle format this runtime reads and writes. Bump it for any change to the layout or to
/// the manifest's encoding.
pub const FORMAT_VERSION: u16 = 7;

/// The oldest format version this runtime still reads.
pub const OLDEST_VERSION: u16 = 2;

const HEADER_LEN: usize = 40;
/// Version 2's header: no program length.
const V2_HEADER_LEN: usize = 32;
const CHECKSUM_LEN: usize = 4;
static CHECKSUM: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// A bundle as read from its file, with what identifies the file.
#[derive(Debug)]
pub struct BundleFile {
    /// The bundle.
    pub bundle: Bundle,
    /// SHA-256 of the whole file, lowercase hex: what `sha256sum` prints, so a log or a captured
    /// frame names the exact bundle that decided.
    pub sha256: String,
    /// Who signed it, when trusted keys were asked to check.
    pub signature: Option<signature::BundleSignature>,
}

impl BundleFile {
    /// Reads and checks a bundle file. With `trusted`, the file is refused unless one of those
    /// keys signed it and it is unchanged since (nothing past the header's version is read
    /// before that is checked).
    pub fn read(
        path: impl AsRef<Path>,
        trusted: Option<&signature::TrustedKeys>,
    ) -> Result<Self, signature::TrustError> {
        let bytes = read_file(path.as_ref())?;
        let signature = trusted.map(|keys| keys.verify(&bytes)).transpose()?;
        let sha256 = hex(&Sha256::digest(&bytes));
        Ok(BundleFile {
            bundle: Bundle::from_file_bytes(bytes)?,
            sha256,
            signature,
        })
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A model ready for the device: manifest, backbone bytes and head.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    /// Everything about the model besides its weights.
    pub manifest: Manifest,
    /// The backbone model (input -> pre-pool tensor); empty when the integer program is the
    /// backbone.
    pub backbone: Vec<u8>,
    /// Head weights, row-major `[classes][features]`, as the device computes with them (for
    /// int8 storage, each code times its row's scale).
    pub head_weights: Vec<f32>,
    /// Head bias, `[classes]`.
    pub head_bias: Vec<f32>,
    /// The head's layers before the dense one, as an ONNX model the manifest's [`NeckSpec`]
    /// describes; empty when there are none.
    pub neck: Vec<u8>,
    /// One scale per class row when the head is stored as int8 ([`HeadStorage::I8`]); empty
    /// for f32 storage.
    pub head_scales: Vec<f32>,
    /// The int8 backbone as integer layers, for nap-core's kernels (int8 bundles only).
    pub program: Option<Program>,
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
    /// The file is larger than [`MAX_BUNDLE_BYTES`].
    #[error("{path}: {size} bytes, more than the {limit}-byte limit on bundles")]
    TooLarge {
        /// The bundle's path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The bytes do not start with [`MAGIC`].
    #[error(
        "not a NAP bundle (no NAPBNDL magic); make one with `napctl split MODEL.onnx -o MODEL.nap`"
    )]
    NotABundle,
    /// A bundle of another format version.
    #[error(
        "bundle format version {found}, this runtime reads versions {OLDEST_VERSION} to {FORMAT_VERSION}; re-create it with this napctl, or update the runtime"
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
        let head = self.head_bytes();
        let head_len = head.len();
        let program = match &self.program {
            Some(p) => postcard::to_stdvec(p)?,
            None => Vec::new(),
        };
        let mut out = Vec::with_capacity(
            HEADER_LEN + manifest.len() + self.backbone.len() + head_len + program.len() + 4,
        );
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&manifest_len.to_le_bytes());
        out.extend_from_slice(&(self.backbone.len() as u64).to_le_bytes());
        out.extend_from_slice(&(head_len as u64).to_le_bytes());
        out.extend_from_slice(&(program.len() as u64).to_le_bytes());
        out.extend_from_slice(&manifest);
        out.extend_from_slice(&self.backbone);
        out.extend_from_slice(&head);
        out.extend_from_slice(&program);
        let checksum = CHECKSUM.checksum(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        Ok(out)
    }

    /// Parses and checks a bundle; any damage gives an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
        let (parts, backbone) = Parts::parse(bytes)?;
        parts.into_bundle(bytes[backbone].to_vec())
    }

    /// Reads and checks a bundle file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, BundleError> {
        Self::from_file_bytes(read_file(path.as_ref())?)
    }

    /// A whole file's bytes to a bundle, reusing the buffer for the backbone.
    fn from_file_bytes(mut bytes: Vec<u8>) -> Result<Self, BundleError> {
        let (parts, backbone) = Parts::parse(&bytes)?;
        // The backbone is most of the file: keep it in the file's buffer rather than holding
        // the file and a copy at once (a device counts every MiB).
        bytes.truncate(backbone.end);
        bytes.drain(..backbone.start);
        bytes.shrink_to_fit();
        parts.into_bundle(bytes)
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

    /// Stores the head as int8 codes with one symmetric scale per class row, a quarter of the f32
    /// size; the weights become the values the codes stand for. Idempotent.
    pub fn quantize_head(&mut self) {
        let features = self.manifest.head.features as usize;
        if self.manifest.head.storage == HeadStorage::I8 || features == 0 {
            return;
        }
        let mut scales = Vec::with_capacity(self.head_bias.len());
        for row in self.head_weights.chunks_mut(features) {
            let max = row.iter().fold(0f32, |m, w| m.max(w.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            for w in row.iter_mut() {
                *w = (*w / scale).round().clamp(-127.0, 127.0) * scale;
            }
            scales.push(scale);
        }
        self.head_scales = scales;
        self.manifest.head.storage = HeadStorage::I8;
    }

    /// The int8 codes of a [`HeadStorage::I8`] head, row-major like
    /// [`Bundle::head_weights`]; empty for an f32 head.
    pub fn head_codes(&self) -> Vec<i8> {
        if self.manifest.head.storage != HeadStorage::I8 {
            return Vec::new();
        }
        let features = self.manifest.head.features as usize;
        self.head_weights
            .chunks(features.max(1))
            .zip(&self.head_scales)
            // Exact: validation checked that every weight is a whole code times its row's scale.
            .flat_map(|(row, &scale)| row.iter().map(move |&w| (w / scale).round() as i8))
            .collect()
    }

    /// The head section: weights in the manifest's storage, then the bias.
    fn head_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.manifest.head.storage {
            HeadStorage::F32 => {
                out.extend(self.head_weights.iter().flat_map(|x| x.to_le_bytes()));
            }
            HeadStorage::I8 => {
                out.extend(self.head_codes().iter().map(|&q| q as u8));
                out.extend(self.head_scales.iter().flat_map(|x| x.to_le_bytes()));
            }
        }
        out.extend(self.head_bias.iter().flat_map(|x| x.to_le_bytes()));
        out.extend_from_slice(&self.neck);
        out
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
            .chain(&self.head_scales)
            .find(|x| !x.is_finite())
        {
            return invalid(format!("head holds a non-finite value {bad}"));
        }
        match m.head.storage {
            HeadStorage::F32 if !self.head_scales.is_empty() => {
                return invalid("an f32 head has no row scales".into());
            }
            HeadStorage::F32 => {}
            HeadStorage::I8 => {
                if self.head_scales.len() != classes || self.head_scales.iter().any(|&s| s <= 0.0) {
                    return invalid(format!(
                        "an int8 head needs {classes} positive row scales, it has {}",
                        self.head_scales.len()
                    ));
                }
                let off_grid = self
                    .head_weights
                    .chunks(features)
                    .zip(&self.head_scales)
                    .any(|(row, &s)| {
                        row.iter().any(|&w| {
                            let code = (w / s).round();
                            code.abs() > 127.0 || code * s != w
                        })
                    });
                if off_grid {
                    return invalid(
                        "int8 head weights are not whole codes times their scale".into(),
                    );
                }
            }
        }
        if m.neck.is_some() == self.neck.is_empty() {
            return invalid(format!(
                "the manifest {} head graph before the dense layer, the file holds {} bytes of one",
                if m.neck.is_some() {
                    "describes a"
                } else {
                    "has no"
                },
                self.neck.len()
            ));
        }
        let p = &m.pre_pool;
        // A neck maps the C pooled channels to the dense layer's input; tract checks its shapes
        // when the detector loads it.
        if m.neck.is_none() && p.channels as usize != features {
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
        if self.backbone.is_empty() && self.program.is_none() {
            return invalid("no backbone model".into());
        }
        if let Some(program) = &self.program {
            self.validate_program(program)?;
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
        if let Some(tpr) = m.scorer.tpr
            && !(tpr > 0.0 && tpr < 1.0)
        {
            return invalid(format!("calibrated TPR {tpr} is outside (0, 1)"));
        }
        if let Some(dice) = &m.dice {
            if dice.mean.len() != features || dice.mean.iter().any(|x| !x.is_finite()) {
                return invalid(format!(
                    "DICE's ID mean has {} values (all finite?), the head {features} features",
                    dice.mean.len()
                ));
            }
            if !(0.0..100.0).contains(&dice.sparsity) {
                return invalid(format!(
                    "DICE sparsity {} is outside [0, 100)",
                    dice.sparsity
                ));
            }
        }
        if let Some(vim) = &m.vim {
            validate_vim(vim, features)?;
        }
        Ok(())
    }

    /// The head's weights (dequantized, row-major) with DICE's mask applied, when the bundle
    /// has DICE's statistics.
    pub fn dice_weights(&self) -> Option<Vec<f32>> {
        let dice = self.manifest.dice.as_ref()?;
        Some(dice.sparsified(&self.head_weights))
    }
}

/// ViM's statistics fit the head's dense layer: lengths, finite values, a subspace of 1 to
/// `features - 1` unit rows (a garbled basis would score every frame wrongly), a positive scale.
fn validate_vim(vim: &VimSpec, features: usize) -> Result<(), BundleError> {
    let invalid = |msg: String| Err(BundleError::Invalid(format!("ViM's statistics: {msg}")));
    if vim.origin.len() != features {
        return invalid(format!(
            "origin of {} values, the head has {features} features",
            vim.origin.len()
        ));
    }
    let dims = vim.dims();
    if !vim.basis.len().is_multiple_of(features) || !(1..features).contains(&dims) {
        return invalid(format!(
            "basis of {} values is not 1 to {} rows of {features}",
            vim.basis.len(),
            features - 1
        ));
    }
    if vim.origin.iter().chain(&vim.basis).any(|x| !x.is_finite()) {
        return invalid("a value is not finite".into());
    }
    if let Some(row) = vim.basis.chunks_exact(features).position(|row| {
        let norm: f64 = row.iter().map(|&x| f64::from(x).powi(2)).sum();
        (norm - 1.0).abs() > 1e-3
    }) {
        return invalid(format!("basis row {row} is not of unit length"));
    }
    if !(vim.alpha > 0.0 && vim.alpha.is_finite()) {
        return invalid(format!("scale alpha {} is not positive", vim.alpha));
    }
    Ok(())
}

impl Bundle {
    /// Checks the program's layers and that it is the backbone the manifest describes: the same
    /// input size, and the pre-pool tensor's shape and codes (its layout is the backbone
    /// model's; the program's output is NHWC whatever it says).
    fn validate_program(&self, program: &Program) -> Result<(), BundleError> {
        let invalid = |msg: String| Err(BundleError::Invalid(msg));
        let m = &self.manifest;
        if m.backbone.precision != Precision::Int8 {
            return invalid(format!(
                "an integer program in a {:?} bundle",
                m.backbone.precision
            ));
        }
        let shapes = program
            .shapes()
            .map_err(|e| BundleError::Invalid(e.to_string()))?;
        if program.size != m.input.size {
            return invalid(format!(
                "the integer program takes {} px frames, the manifest {}",
                program.size, m.input.size
            ));
        }
        let out = shapes.last().expect("shapes() checked there are layers");
        let p = &m.pre_pool;
        if [out.channels, out.height, out.width]
            != [p.channels, p.height, p.width].map(|x| x as usize)
        {
            return invalid(format!(
                "the integer program ends in {out:?}, the pre-pool tensor is {} x {} x {}",
                p.channels, p.height, p.width
            ));
        }
        if p.storage != ActivationStorage::U8(program.output()) {
            return invalid(format!(
                "the integer program's output codes {:?} are not the pre-pool tensor's {:?}",
                program.output(),
                p.storage
            ));
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, BundleError> {
    read_capped(path, MAX_BUNDLE_BYTES).map_err(|e| match e {
        ReadError::Io(source) => BundleError::Io {
            path: path.into(),
            source,
        },
        ReadError::TooLarge { size, limit } => BundleError::TooLarge {
            path: path.into(),
            size,
            limit,
        },
    })
}

/// A bundle file's sections besides the backbone, parsed and checked against the file.
struct Parts {
    manifest: Manifest,
    head_weights: Vec<f32>,
    head_bias: Vec<f32>,
    head_scales: Vec<f32>,
    neck: Vec<u8>,
    program: Option<Program>,
}

impl Parts {
    /// Checks the header, sizes and checksum, decodes the manifest and the head, and says where
    /// the backbone lies in `bytes`.
    fn parse(bytes: &[u8]) -> Result<(Parts, std::ops::Range<usize>), BundleError> {
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(BundleError::NotABundle);
        }
        // A signed bundle's body is a prefix of the file: the ranges below hold for both.
        let bytes = match signature::split(bytes)? {
            Some((body, _)) => body,
            None => bytes,
        };
        let version = bytes.get(8..10).ok_or(BundleError::Size {
            expected: (HEADER_LEN + CHECKSUM_LEN) as u64,
            actual: bytes.len() as u64,
        })?;
        let found = u16::from_le_bytes([version[0], version[1]]);
        if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&found) {
            return Err(BundleError::Version { found });
        }
        let header_len = if found == 2 {
            V2_HEADER_LEN
        } else {
            HEADER_LEN
        };
        let header = bytes.get(..header_len).ok_or(BundleError::Size {
            expected: (header_len + CHECKSUM_LEN) as u64,
            actual: bytes.len() as u64,
        })?;
        let flags = u16::from_le_bytes([header[10], header[11]]);
        if found >= signature::SIGNED_SINCE && flags & !signature::FLAG_SIGNED != 0 {
            return Err(BundleError::Invalid(format!(
                "unknown header flags {flags:#06x}: made by a newer napctl?"
            )));
        }
        let manifest_len = u64::from(u32::from_le_bytes(
            header[12..16].try_into().expect("4 bytes"),
        ));
        let backbone_len = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
        let head_len = u64::from_le_bytes(header[24..32].try_into().expect("8 bytes"));
        let program_len = match header.get(32..40) {
            Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
            None => 0,
        };
        let expected = [
            manifest_len,
            backbone_len,
            head_len,
            program_len,
            (header_len + CHECKSUM_LEN) as u64,
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
        let manifest_end = header_len + manifest_len as usize;
        let backbone = manifest_end..manifest_end + backbone_len as usize;
        let head_end = backbone.end + head_len as usize;
        let manifest = &content[header_len..manifest_end];
        let manifest: Manifest = if found == FORMAT_VERSION {
            postcard::from_bytes(manifest)?
        } else {
            legacy::read_manifest(manifest, found)?
        };
        let (head_weights, head_scales, head_bias, neck) =
            parse_head(&manifest.head, &content[backbone.end..head_end])?;
        let program = match program_len {
            0 => None,
            _ => Some(postcard::from_bytes(&content[head_end..]).map_err(|e| {
                BundleError::Invalid(format!("the integer program is not readable: {e}"))
            })?),
        };
        let parts = Parts {
            manifest,
            head_weights,
            head_bias,
            head_scales,
            neck,
            program,
        };
        Ok((parts, backbone))
    }

    /// The bundle, given its backbone bytes, once it passes [`Bundle::validate`].
    fn into_bundle(self, backbone: Vec<u8>) -> Result<Bundle, BundleError> {
        let bundle = Bundle {
            manifest: self.manifest,
            backbone,
            head_weights: self.head_weights,
            head_bias: self.head_bias,
            head_scales: self.head_scales,
            neck: self.neck,
            program: self.program,
        };
        bundle.validate()?;
        Ok(bundle)
    }
}

/// Splits the head section into weights (dequantized), row scales, bias and neck model, as the
/// manifest's head says they are stored.
#[allow(clippy::type_complexity)]
fn parse_head(
    head: &HeadSpec,
    bytes: &[u8],
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>, Vec<u8>), BundleError> {
    let (classes, features) = (head.classes as usize, head.features as usize);
    if classes == 0 || features == 0 {
        return Err(BundleError::Invalid(format!(
            "head of {classes} classes x {features} features"
        )));
    }
    let weights = classes.checked_mul(features);
    let weight_bytes = match head.storage {
        HeadStorage::F32 => weights.and_then(|n| n.checked_mul(4)),
        HeadStorage::I8 => weights.and_then(|n| n.checked_add(classes.checked_mul(4)?)),
    };
    let dense = weight_bytes.and_then(|n| n.checked_add(classes.checked_mul(4)?));
    let Some(dense) = dense.filter(|&n| n <= bytes.len()) else {
        return Err(BundleError::Invalid(format!(
            "head section of {} bytes does not hold {classes} x {features} {:?} weights and {classes} biases",
            bytes.len(),
            head.storage
        )));
    };
    let (bytes, neck) = bytes.split_at(dense);
    let floats = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect()
    };
    let (weight_bytes, bias) = bytes.split_at(bytes.len() - classes * 4);
    let (weights, scales) = match head.storage {
        HeadStorage::F32 => (floats(weight_bytes), Vec::new()),
        HeadStorage::I8 => {
            let (codes, scales) = weight_bytes.split_at(classes * features);
            let scales = floats(scales);
            let weights = codes
                .chunks(features)
                .zip(&scales)
                .flat_map(|(row, &s)| row.iter().map(move |&c| f32::from(c as i8) * s))
                .collect();
            (weights, scales)
        }
    };
    Ok((weights, scales, floats(bias), neck.to_vec()))
}
