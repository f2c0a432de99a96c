//! Frame sources: where camera frames enter `napd`.
//!
//! A source yields [`SourceEvent`]s in capture order: a [`Frame`] to score, a frame that could
//! not be read ([`SourceEvent::Bad`]: logged and skipped, the daemon keeps going), or the end of
//! the stream. Sources do no decoding or colour conversion: that work happens on the worker
//! threads ([`Pixels::to_rgb8`]), so a slow conversion never stalls capture.
//!
//! - [`dir`]: replays the images of a folder in name order, optionally paced at a frame rate.
//! - [`raw`]: a stream of raw frames, each behind a small header (the format is documented there).
//! - `v4l2` (cargo feature `v4l2`, Linux): a V4L2 capture device.
//! - `gst` (cargo feature `gstreamer`): any GStreamer pipeline (CSI and RTSP cameras, files).

pub mod dir;
#[cfg(feature = "gstreamer")]
pub mod gst;
pub mod pixel;
pub mod raw;
#[cfg(all(feature = "v4l2", target_os = "linux"))]
pub mod v4l2;

pub use pixel::{PixelError, PixelFormat};

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

/// The pixels of one frame, as the source delivered them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pixels {
    /// An encoded image file (JPEG or PNG).
    Encoded(Vec<u8>),
    /// Uncompressed pixels in a known layout.
    Raw {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Memory layout of `data`.
        format: PixelFormat,
        /// The pixel bytes, exactly `format.frame_len(width, height)` of them.
        data: Vec<u8>,
    },
}

/// A frame converted to packed RGB8 (`width * height * 3` bytes, rows top to bottom).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rgb8Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `R G B` per pixel.
    pub pixels: Vec<u8>,
}

impl Pixels {
    /// Converts raw pixels to packed RGB8 (`None` for encoded frames, which the preprocessor
    /// decodes itself).
    pub fn to_rgb8(&self) -> Option<Result<Rgb8Frame, PixelError>> {
        match self {
            Pixels::Encoded(_) => None,
            Pixels::Raw {
                width,
                height,
                format,
                data,
            } => Some(
                pixel::to_rgb8(*format, *width, *height, data).map(|pixels| Rgb8Frame {
                    width: *width,
                    height: *height,
                    pixels,
                }),
            ),
        }
    }
}

/// One captured frame.
#[derive(Clone, Debug)]
pub struct Frame {
    /// What the log calls it: the file name, or `stream:N` for the N-th frame of a stream.
    pub name: String,
    /// When the source got it: the start of its latency.
    pub captured: Instant,
    /// The stream's own timestamp, where the source has one (a GStreamer buffer's PTS), so a
    /// verdict can be found again in the recording.
    pub pts: Option<std::time::Duration>,
    /// The frame itself.
    pub pixels: Pixels,
}

/// What a source produced next.
#[derive(Debug)]
pub enum SourceEvent {
    /// A frame to score.
    Frame(Frame),
    /// One frame could not be read; the source can go on.
    Bad {
        /// The frame's name, as [`Frame::name`].
        name: String,
        /// Why it was rejected.
        error: String,
    },
    /// The source has no more frames (end of folder or stream).
    End,
    /// A live source lost its input and is reconnecting; frames resume with [`SourceEvent::Resumed`].
    Lost(String),
    /// A lost source is back.
    Resumed,
    /// The source broke and cannot go on (device gone, folder unreadable).
    Failed(String),
}

/// A producer of frames, driven by one thread.
pub trait Source: Send {
    /// The next frame, blocking until one arrives.
    fn next_event(&mut self) -> SourceEvent;

    /// True for sources that produce frames in real time whether or not anyone keeps up (a
    /// camera, a paced replay): when the workers fall behind, old frames are dropped. A file
    /// replayed as fast as possible instead waits for the workers.
    fn is_live(&self) -> bool;
}

/// Which source to open, as written on the command line (`dir:PATH`, `raw:PATH`, `raw:-`,
/// `v4l2:/dev/videoN`, `gst:PIPELINE`).
#[derive(Clone, Debug, PartialEq)]
pub enum SourceSpec {
    /// Every image of a folder, in name order.
    Dir(PathBuf),
    /// Raw frames from a file or FIFO.
    RawPath(PathBuf),
    /// Raw frames from standard input.
    RawStdin,
    /// A V4L2 capture device.
    V4l2(PathBuf),
    /// A GStreamer pipeline, as written for `gst-launch-1.0`.
    Gst(String),
    /// An RTSP camera, `rtsp://HOST[:PORT]/PATH`: reconnected when lost.
    Rtsp(String),
}

/// A source specification that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "source {given:?}: {reason} (expected dir:PATH, raw:PATH, raw:-, v4l2:/dev/videoN, gst:PIPELINE or rtsp://HOST[:PORT]/PATH)"
)]
pub struct SourceSpecError {
    given: String,
    reason: &'static str,
}

impl FromStr for SourceSpec {
    type Err = SourceSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| SourceSpecError {
            given: s.to_string(),
            reason,
        };
        let (kind, rest) = s.split_once(':').ok_or_else(|| err("no kind: prefix"))?;
        if rest.is_empty() {
            return Err(err("empty path"));
        }
        match kind {
            "dir" => Ok(SourceSpec::Dir(rest.into())),
            "raw" if rest == "-" => Ok(SourceSpec::RawStdin),
            "raw" => Ok(SourceSpec::RawPath(rest.into())),
            "v4l2" => Ok(SourceSpec::V4l2(rest.into())),
            "gst" if rest.trim().is_empty() => Err(err("empty pipeline")),
            "gst" => Ok(SourceSpec::Gst(rest.to_string())),
            "rtsp" | "rtsps" => match rest.strip_prefix("//") {
                Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
                    Ok(SourceSpec::Rtsp(s.to_string()))
                }
                _ => Err(err("expected rtsp://HOST[:PORT]/PATH")),
            },
            _ => Err(err("unknown kind")),
        }
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Dir(p) => write!(f, "dir:{}", p.display()),
            SourceSpec::RawPath(p) => write!(f, "raw:{}", p.display()),
            SourceSpec::RawStdin => write!(f, "raw:-"),
            SourceSpec::V4l2(p) => write!(f, "v4l2:{}", p.display()),
            SourceSpec::Gst(description) => write!(f, "gst:{description}"),
            SourceSpec::Rtsp(url) => f.write_str(url),
        }
    }
}

/// Options that shape a source.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceOptions {
    /// Pace a folder replay at this many frames per second (`None`: as fast as the workers go).
    pub fps: Option<f64>,
    /// Largest raw frame accepted, in bytes; bigger declared sizes are rejected as absurd.
    pub max_frame_bytes: usize,
    /// Wait between attempts to reach a lost rtsp:// camera again.
    pub reconnect: std::time::Duration,
    /// The jitter buffer of an rtsp:// source.
    pub rtsp_latency: std::time::Duration,
}

/// Opens the source a spec names.
pub fn open(spec: &SourceSpec, options: &SourceOptions) -> Result<Box<dyn Source>, String> {
    match spec {
        SourceSpec::Dir(path) => Ok(Box::new(
            dir::DirSource::open(path, options.fps, options.max_frame_bytes)
                .map_err(|e| e.to_string())?,
        )),
        SourceSpec::RawPath(path) => {
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let live = !file.metadata().map(|m| m.is_file()).unwrap_or(false);
            Ok(Box::new(raw::RawSource::new(
                std::io::BufReader::new(file),
                options.max_frame_bytes,
                live,
            )))
        }
        SourceSpec::RawStdin => Ok(Box::new(raw::RawSource::new(
            std::io::BufReader::new(std::io::stdin()),
            options.max_frame_bytes,
            true,
        ))),
        #[cfg(all(feature = "v4l2", target_os = "linux"))]
        SourceSpec::V4l2(path) => Ok(Box::new(
            v4l2::V4l2Source::open(path, options.max_frame_bytes)?,
        )),
        #[cfg(not(all(feature = "v4l2", target_os = "linux")))]
        SourceSpec::V4l2(_) => Err(
            "v4l2 sources need a Linux build with the `v4l2` cargo feature (cargo build --features v4l2)"
                .into(),
        ),
        #[cfg(feature = "gstreamer")]
        SourceSpec::Gst(description) => Ok(Box::new(gst::GstSource::open(
            description,
            options.max_frame_bytes,
        )?)),
        #[cfg(feature = "gstreamer")]
        SourceSpec::Rtsp(url) => Ok(Box::new(gst::GstSource::rtsp(url, options)?)),
        #[cfg(not(feature = "gstreamer"))]
        SourceSpec::Gst(_) | SourceSpec::Rtsp(_) => Err(
            "gst: and rtsp:// sources need a build with the `gstreamer` cargo feature (cargo build --features gstreamer)"
                .into(),
        ),
    }
}
