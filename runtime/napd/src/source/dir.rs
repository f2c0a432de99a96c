//! `dir:PATH`: replays the JPEG and PNG files of one folder, sorted by file name.
//!
//! Without a frame rate the replay runs as fast as the workers take frames (nothing is dropped);
//! with `--fps` it behaves like a camera: frames come on schedule and old ones are dropped when
//! the workers fall behind.

use super::{Frame, Pixels, Source, SourceEvent};
use nap_runtime::limits::read_capped;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// True for the file names replayed: `.jpg`, `.jpeg`, `.png`, any case (the same rule as
/// `napctl score`, so both see the same frames).
pub fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["jpg", "jpeg", "png"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// Why a folder cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// The folder could not be listed.
    #[error("{path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No image in it.
    #[error("{0}: no .jpg, .jpeg or .png file in this folder")]
    Empty(PathBuf),
    /// A frame rate that is not a positive finite number.
    #[error("--fps must be a positive number, got {0}")]
    BadFps(f64),
}

/// A folder replay.
pub struct DirSource {
    files: std::vec::IntoIter<PathBuf>,
    period: Option<Duration>,
    next_due: Option<Instant>,
    max_frame_bytes: u64,
}

impl DirSource {
    /// Lists the folder's images (not recursing), sorted by name; a file larger than
    /// `max_frame_bytes` will be rejected unread.
    pub fn open(
        path: &Path,
        fps: Option<f64>,
        max_frame_bytes: usize,
    ) -> Result<DirSource, DirError> {
        let period = match fps {
            None => None,
            Some(f) if f.is_finite() && f > 0.0 && f <= 1e6 => {
                Some(Duration::from_secs_f64(1.0 / f))
            }
            Some(f) => return Err(DirError::BadFps(f)),
        };
        let io = |source| DirError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io)? {
            let p = entry.map_err(io)?.path();
            if p.is_file() && is_image(&p) {
                files.push(p);
            }
        }
        if files.is_empty() {
            return Err(DirError::Empty(path.to_path_buf()));
        }
        files.sort();
        Ok(DirSource {
            files: files.into_iter(),
            period,
            next_due: None,
            max_frame_bytes: max_frame_bytes as u64,
        })
    }

    /// How many frames are left.
    pub fn remaining(&self) -> usize {
        self.files.len()
    }
}

impl Source for DirSource {
    fn next_event(&mut self) -> SourceEvent {
        let Some(path) = self.files.next() else {
            return SourceEvent::End;
        };
        if let Some(period) = self.period {
            let now = Instant::now();
            let due = self.next_due.unwrap_or(now);
            if due > now {
                std::thread::sleep(due - now);
            }
            // A late frame does not make the next ones come in a burst.
            self.next_due = Some(due.max(now) + period);
        }
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        match read_capped(&path, self.max_frame_bytes) {
            Ok(bytes) => SourceEvent::Frame(Frame {
                name,
                captured: Instant::now(),
                pts: None,
                pixels: Pixels::Encoded(bytes),
            }),
            Err(e) => SourceEvent::Bad {
                name,
                error: format!("{}: {e}", path.display()),
            },
        }
    }

    fn is_live(&self) -> bool {
        self.period.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_at_the_frame_size_limit_is_read_and_one_past_it_rejected_unread() {
        let dir = std::env::temp_dir().join(format!("napd-dir-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.jpg"), [1u8; 100]).unwrap();
        std::fs::write(dir.join("b.jpg"), [2u8; 101]).unwrap();
        let mut source = DirSource::open(&dir, None, 100).unwrap();
        match source.next_event() {
            SourceEvent::Frame(f) => assert_eq!(f.pixels, Pixels::Encoded(vec![1u8; 100])),
            e => panic!("{e:?}"),
        }
        match source.next_event() {
            SourceEvent::Bad { name, error } => {
                assert_eq!(name, "b.jpg");
                assert!(
                    error.ends_with("101 bytes, more than the limit of 100"),
                    "{error}"
                );
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(source.next_event(), SourceEvent::End));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
