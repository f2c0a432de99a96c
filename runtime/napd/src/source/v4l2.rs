//! `v4l2:/dev/videoN`: frames from a V4L2 capture device (cargo feature `v4l2`, Linux).
//!
//! The device keeps its configured size; napd asks for YUYV and takes what the driver grants
//! among YUYV, NV12, RGB3, BGR3, GREY (converted on the workers like raw frames) and MJPG
//! (decoded like files). Rows padded to a larger stride are repacked. Capture runs on its own
//! thread with memory-mapped buffers, which is what makes this a live source: frames keep coming
//! at the camera's rate and the queue drops the oldest when the workers fall behind.

use super::pixel::PixelFormat;
use super::{Frame, Pixels, Source, SourceEvent};
use crossbeam_channel::Receiver;
use std::path::Path;
use std::time::{Duration, Instant};
use v4l::FourCC;
use v4l::buffer::Type;
use v4l::io::traits::CaptureStream;
use v4l::prelude::*;
use v4l::video::Capture;

/// How a granted fourcc is turned into [`Pixels`].
#[derive(Clone, Copy, Debug)]
enum Layout {
    Raw(PixelFormat),
    Mjpeg,
}

fn layout_of(fourcc: FourCC) -> Option<Layout> {
    Some(match &fourcc.repr {
        b"YUYV" => Layout::Raw(PixelFormat::Yuyv),
        b"NV12" => Layout::Raw(PixelFormat::Nv12),
        b"RGB3" => Layout::Raw(PixelFormat::Rgb8),
        b"BGR3" => Layout::Raw(PixelFormat::Bgr8),
        b"GREY" => Layout::Raw(PixelFormat::Gray8),
        b"MJPG" | b"JPEG" => Layout::Mjpeg,
        _ => return None,
    })
}

/// Bytes per pixel of a row of the (first) plane.
fn row_bytes(format: PixelFormat, width: u32) -> usize {
    let w = width as usize;
    match format {
        PixelFormat::Rgb8 | PixelFormat::Bgr8 => w * 3,
        PixelFormat::Yuyv => w * 2,
        PixelFormat::Gray8 | PixelFormat::Nv12 => w,
    }
}

/// Copies a padded frame into a packed one; `None` if the buffer is too short.
fn repack(
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: usize,
    buf: &[u8],
) -> Option<Vec<u8>> {
    let row = row_bytes(format, width);
    let rows = match format {
        // The chroma plane has half as many rows, each as long as a luma row.
        PixelFormat::Nv12 => height as usize + height as usize / 2,
        _ => height as usize,
    };
    let stride = stride.max(row);
    let mut out = Vec::with_capacity(row * rows);
    for r in 0..rows {
        out.extend_from_slice(buf.get(r * stride..r * stride + row)?);
    }
    Some(out)
}

/// A V4L2 capture device.
pub struct V4l2Source {
    frames: Receiver<SourceEvent>,
}

impl V4l2Source {
    /// Opens the device, negotiates a format and starts capturing.
    pub fn open(path: &Path, max_frame_bytes: usize) -> Result<V4l2Source, String> {
        let fail = |what: &str, e: std::io::Error| format!("{}: {what}: {e}", path.display());
        let dev = Device::with_path(path).map_err(|e| fail("open", e))?;
        let mut wanted = dev.format().map_err(|e| fail("reading the format", e))?;
        wanted.fourcc = FourCC::new(b"YUYV");
        let granted = dev
            .set_format(&wanted)
            .map_err(|e| fail("setting the format", e))?;
        let layout = layout_of(granted.fourcc).ok_or_else(|| {
            format!(
                "{}: the device offers {}, napd reads YUYV, NV12, RGB3, BGR3, GREY or MJPG",
                path.display(),
                granted.fourcc
            )
        })?;
        let (width, height, stride) = (granted.width, granted.height, granted.stride as usize);
        if let Layout::Raw(f) = layout {
            let len = f
                .frame_len(width, height)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if len > max_frame_bytes {
                return Err(format!(
                    "{}: {width}x{height} {f} frames are {len} bytes, above the limit of {max_frame_bytes}",
                    path.display()
                ));
            }
        }
        let mut stream = MmapStream::with_buffers(&dev, Type::VideoCapture, 4)
            .map_err(|e| fail("mapping buffers", e))?;
        // A camera that stops delivering must not hang the daemon silently.
        stream.set_timeout(Duration::from_secs(2));
        let (tx, rx) = crossbeam_channel::bounded(1);
        let name = path.display().to_string();
        std::thread::Builder::new()
            .name("napd-v4l2".into())
            .spawn(move || {
                // The device handle lives as long as the stream: the thread owns both.
                let _dev = dev;
                let mut index = 0u64;
                loop {
                    let event = match stream.next() {
                        Ok((buf, meta)) => {
                            let captured = Instant::now();
                            let used = (meta.bytesused as usize).min(buf.len());
                            let frame_name = format!("{name}:{index}");
                            index += 1;
                            let pixels = match layout {
                                Layout::Mjpeg => Some(Pixels::Encoded(buf[..used].to_vec())),
                                Layout::Raw(format) => {
                                    repack(format, width, height, stride, &buf[..used]).map(
                                        |data| Pixels::Raw {
                                            width,
                                            height,
                                            format,
                                            data,
                                        },
                                    )
                                }
                            };
                            match pixels {
                                Some(pixels) => SourceEvent::Frame(Frame {
                                    name: frame_name,
                                    captured,
                                    pts: None,
                                    pixels,
                                }),
                                None => SourceEvent::Bad {
                                    name: frame_name,
                                    error: format!("short buffer: {used} bytes"),
                                },
                            }
                        }
                        Err(e) => SourceEvent::Failed(format!("{name}: capture: {e}")),
                    };
                    let failed = matches!(event, SourceEvent::Failed(_));
                    if tx.send(event).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| format!("{}: starting capture: {e}", path.display()))?;
        Ok(V4l2Source { frames: rx })
    }
}

impl Source for V4l2Source {
    fn next_event(&mut self) -> SourceEvent {
        self.frames
            .recv()
            .unwrap_or_else(|_| SourceEvent::Failed("the capture thread ended".into()))
    }

    fn is_live(&self) -> bool {
        true
    }
}
