//! `dir:PATH`: replays the JPEG and PNG files of one folder, sorted by file name.
//!
//! Without a frame rate the replay runs as fast as the workers take frames (nothing is dropped);
//! with `--fps` it behaves like a camera: frames come on schedule and old ones are dropped when
//! the workers fall behind.

use super::{Frame, Pixels, Source, SourceEvent};
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
}

impl DirSource {
    /// Lists the folder's images (not recursing), sorted by name.
    pub fn open(path: &Path, fps: Option<f64>) -> Result<DirSource, DirError> {
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
        match std::fs::read(&path) {
            Ok(bytes) => SourceEvent::Frame(Frame {
                name,
                captured: Instant::now(),
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
