//! Per-image feature cache: what every scoring method needs from one frame, kept on disk so that
//! evaluating another method, another `w` or another threshold never runs the backbone again.
//!
//! One entry per (bundle, image content, variant) in its own file:
//!
//! ```text
//! offset  size  field
//! 0       8     magic "NAPFEAT\0"
//! 8       2     format version, u16 LE (CACHE_VERSION)
//! 10      2     reserved, zero
//! 12      32    key: SHA-256 of (bundle key, image content hash, variant)
//! 44      4     channels C, u32 LE
//! 48      4*C   pooled feature (per-channel mean), f32 LE
//! 48+4C   4*C   per-channel max, f32 LE
//! end-4   4     CRC-32C of every byte before it
//! ```
//!
//! The bundle key hashes the backbone bytes, the input, pre-pool and head specs and the head
//! weights, so another model or preprocessing never hits; the scorer parameters are left out, so
//! a calibrated copy of a bundle shares its uncalibrated twin's entries. An entry whose key,
//! version, length or checksum does not match is a miss (damaged ones with a warning), never an
//! error and never a wrong answer.

use super::features::Features;
use crc::{CRC_32_ISCSI, Crc};
use nap_runtime::bundle::Bundle;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// First bytes of every cache entry.
pub const CACHE_MAGIC: [u8; 8] = *b"NAPFEAT\0";
/// Entry format version; bump on any layout change (old entries then simply miss).
pub const CACHE_VERSION: u16 = 1;
const HEADER_LEN: usize = 48;
static CHECKSUM: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// SHA-256 of everything in a bundle that changes a frame's features: backbone (model and
/// integer program), input spec, pre-pool spec, head spec and head weights. The scorer section
/// is left out on purpose.
pub fn bundle_key(bundle: &Bundle) -> [u8; 32] {
    let m = &bundle.manifest;
    let mut h = Sha256::new();
    h.update(b"napctl bundle key v1\0");
    // JSON of the specs: stable, and includes every field.
    for spec in [
        serde_json::to_vec(&m.backbone),
        serde_json::to_vec(&m.input),
        serde_json::to_vec(&m.pre_pool),
        serde_json::to_vec(&m.head),
    ] {
        let spec = spec.expect("manifest specs serialize to JSON");
        h.update((spec.len() as u64).to_le_bytes());
        h.update(&spec);
    }
    h.update((bundle.backbone.len() as u64).to_le_bytes());
    h.update(&bundle.backbone);
    if let Some(program) = &bundle.program {
        let program = postcard::to_stdvec(program).expect("a program serializes");
        h.update((program.len() as u64).to_le_bytes());
        h.update(&program);
    }
    for x in bundle.head_weights.iter().chain(&bundle.head_bias) {
        h.update(x.to_le_bytes());
    }
    h.finalize().into()
}

/// SHA-256 of a file's content.
pub fn content_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The default cache folder: `$XDG_CACHE_HOME/napctl`, else `$HOME/.cache/napctl`, else
/// `.napcache` beside the bundle.
pub fn default_dir(bundle_path: &Path) -> PathBuf {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(xdg) = env("XDG_CACHE_HOME") {
        return PathBuf::from(xdg).join("napctl");
    }
    if let Some(home) = env("HOME") {
        return PathBuf::from(home).join(".cache").join("napctl");
    }
    bundle_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(".napcache")
}

/// Hit and miss counts of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries read back.
    pub hits: u64,
    /// Entries absent or unusable.
    pub misses: u64,
    /// Entries found damaged (counted in `misses` too).
    pub corrupt: u64,
}

/// The feature cache of one bundle; `dir = None` disables it.
pub struct FeatureCache {
    dir: Option<PathBuf>,
    bundle_key: [u8; 32],
    hits: AtomicU64,
    misses: AtomicU64,
    corrupt: AtomicU64,
    write_warned: AtomicBool,
}

impl FeatureCache {
    /// A cache below `root` for the bundle with this key (entries go to `root/<key prefix>/`).
    pub fn new(root: Option<PathBuf>, bundle_key: [u8; 32]) -> Self {
        FeatureCache {
            dir: root.map(|r| r.join(hex(&bundle_key[..8]))),
            bundle_key,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            write_warned: AtomicBool::new(false),
        }
    }

    /// A cache that never stores anything (`--no-cache`).
    pub fn disabled() -> Self {
        Self::new(None, [0; 32])
    }

    /// The folder entries of this bundle go to, if enabled.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Counts so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
        }
    }

    fn key(&self, content: &[u8; 32], variant: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.bundle_key);
        h.update(content);
        h.update((variant.len() as u64).to_le_bytes());
        h.update(variant.as_bytes());
        h.finalize().into()
    }

    fn path(&self, key: &[u8; 32]) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.feat", hex(key))))
    }

    /// The entry for an image with this content hash and variant (`""` for the image itself, a
    /// corruption's name for a pseudo-OOD copy), if present and intact.
    pub fn get(&self, content: &[u8; 32], variant: &str) -> Option<Features> {
        let key = self.key(content, variant);
        let path = self.path(&key)?;
        let found = match std::fs::read(&path) {
            Ok(bytes) => match decode_entry(&bytes, &key) {
                Ok(f) => Some(f),
                Err(why) => {
                    self.corrupt.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "napctl: warning: ignoring cache entry {}: {why}",
                        path.display()
                    );
                    None
                }
            },
            Err(_) => None,
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores an entry. Failure to write only warns (once): the cache is an optimisation.
    pub fn put(&self, content: &[u8; 32], variant: &str, features: &Features) {
        let key = self.key(content, variant);
        let Some(path) = self.path(&key) else {
            return;
        };
        if let Err(e) = write_atomic(&path, &encode_entry(&key, features))
            && !self.write_warned.swap(true, Ordering::Relaxed)
        {
            eprintln!(
                "napctl: warning: cannot write the feature cache at {}: {e}",
                path.display()
            );
        }
    }
}

/// Writes through a uniquely named temporary file renamed into place, so concurrent readers
/// and writers never see half an entry.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Serializes one entry in the layout of the module docs.
pub fn encode_entry(key: &[u8; 32], f: &Features) -> Vec<u8> {
    let c = f.pooled.len();
    let mut out = Vec::with_capacity(HEADER_LEN + 8 * c + 4);
    out.extend_from_slice(&CACHE_MAGIC);
    out.extend_from_slice(&CACHE_VERSION.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(key);
    out.extend_from_slice(&(c as u32).to_le_bytes());
    for x in f.pooled.iter().chain(&f.max) {
        out.extend_from_slice(&x.to_le_bytes());
    }
    let crc = CHECKSUM.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Parses and checks one entry against the key it must have.
pub fn decode_entry(bytes: &[u8], key: &[u8; 32]) -> Result<Features, String> {
    if bytes.len() < HEADER_LEN + 4 || bytes[..8] != CACHE_MAGIC {
        return Err("not a napctl cache entry".into());
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != CACHE_VERSION {
        return Err(format!(
            "cache format version {version}, expected {CACHE_VERSION}"
        ));
    }
    let (content, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    if CHECKSUM.checksum(content) != stored {
        return Err("checksum mismatch".into());
    }
    if &content[12..44] != key {
        return Err("entry is for another image or bundle".into());
    }
    let c = u32::from_le_bytes(content[44..48].try_into().expect("4 bytes")) as usize;
    let body = &content[HEADER_LEN..];
    if Some(body.len()) != c.checked_mul(8) {
        return Err(format!("{} bytes of data for {c} channels", body.len()));
    }
    let floats: Vec<f32> = body
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    if floats.iter().any(|x| !x.is_finite()) {
        return Err("non-finite value".into());
    }
    let (pooled, max) = floats.split_at(c);
    Ok(Features {
        pooled: pooled.to_vec(),
        max: max.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Features {
        Features {
            pooled: vec![0.5, 0.0, 2.0],
            max: vec![3.0, 0.0, 6.0],
        }
    }

    #[test]
    fn entry_round_trips_and_rejects_damage() {
        let key = [7u8; 32];
        let bytes = encode_entry(&key, &sample());
        assert_eq!(decode_entry(&bytes, &key).unwrap(), sample());
        assert!(decode_entry(&bytes, &[8u8; 32]).is_err(), "wrong key");
        for i in [0, 9, 20, 50, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode_entry(&bad, &key).is_err(), "flipped byte {i}");
        }
        assert!(decode_entry(&bytes[..bytes.len() - 5], &key).is_err());
        assert!(decode_entry(&[], &key).is_err());
    }

    #[test]
    fn hit_miss_variant_and_corrupt_file() {
        let root = std::env::temp_dir().join(format!("napctl-cache-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cache = FeatureCache::new(Some(root.clone()), [1; 32]);
        let content = content_hash(b"image bytes");
        assert_eq!(cache.get(&content, ""), None);
        cache.put(&content, "", &sample());
        assert_eq!(cache.get(&content, ""), Some(sample()));
        assert_eq!(cache.get(&content, "blur"), None, "variants are separate");
        assert_eq!(cache.get(&content_hash(b"other bytes"), ""), None);
        // Another bundle does not see the entry.
        let other = FeatureCache::new(Some(root.clone()), [2; 32]);
        assert_eq!(other.get(&content, ""), None);
        // Damage every entry on disk: read as a miss with a warning, then rewritten.
        for e in std::fs::read_dir(cache.dir().unwrap()).unwrap() {
            std::fs::write(e.unwrap().path(), b"NAPFEAT\0garbage").unwrap();
        }
        assert_eq!(cache.get(&content, ""), None);
        assert_eq!(cache.stats().corrupt, 1);
        cache.put(&content, "", &sample());
        assert_eq!(cache.get(&content, ""), Some(sample()));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses), (2, 4));
        assert_eq!(FeatureCache::disabled().get(&content, ""), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
