//! How large untrusted files may be, and reading a file within such a limit: a device refuses a
//! wrong file by its size before it holds it in memory.

use std::io::Read;
use std::path::Path;

/// Largest bundle file read: 512 MiB, well above the largest float CNN an edge device runs
/// (MobileNetV2's float bundle is 14 MB, ResNet-50's about 100 MB).
pub const MAX_BUNDLE_BYTES: u64 = 512 << 20;

/// A file that could not be read within its limit.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file is larger than the limit (or grew past it while being read).
    #[error("{size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Its size, or what was read of it before the limit was passed.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Opening or reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads a whole file of at most `limit` bytes.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > limit {
        return Err(ReadError::TooLarge { size, limit });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_at_the_limit_is_read_and_one_past_it_refused() {
        let dir = std::env::temp_dir().join(format!("nap-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, vec![7u8; 1000]).unwrap();
        assert_eq!(read_capped(&path, 1000).unwrap().len(), 1000);
        let e = read_capped(&path, 999).unwrap_err();
        assert_eq!(e.to_string(), "1000 bytes, more than the limit of 999");
        assert!(matches!(
            read_capped(&dir.join("missing"), 10),
            Err(ReadError::Io(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
