//! `raw:PATH` and `raw:-`: a stream of uncompressed frames from a file, a FIFO or stdin.
//!
//! # Stream format
//!
//! Frames follow each other with nothing in between; each is a 20-byte header, then the pixels:
//!
//! ```text
//! offset  size  field
//! 0       4     magic "NAPF" (4e 41 50 46)
//! 4       1     header version, 1
//! 5       1     pixel format: 0 RGB8, 1 BGR8, 2 GRAY8, 3 YUYV, 4 NV12 (see PixelFormat)
//! 6       2     reserved, 0
//! 8       4     width in pixels, u32 little-endian
//! 12      4     height in pixels, u32 little-endian
//! 16      4     payload length in bytes, u32 little-endian: exactly the format's frame size
//!               (RGB8/BGR8 w*h*3, GRAY8 w*h, YUYV w*h*2 with w even, NV12 w*h*3/2 with w, h even)
//! 20      len   the pixels, rows top to bottom, no padding
//! ```
//!
//! The payload length is redundant on purpose: a reader can skip a frame whose header it does not
//! understand without knowing the format. A frame is rejected (one [`SourceEvent::Bad`], the
//! stream goes on) when its header has another version, an unknown format, a non-zero reserved
//! field, a size the format cannot hold or a length that does not match; its payload is skipped
//! when its length is at most the size limit. When the magic is missing, or the length is absurd
//! (above the limit, so not worth reading), the reader scans forward to the next "NAPF". A stream
//! that ends inside a frame reports that frame as truncated, then ends.

use super::pixel::PixelFormat;
use super::{Frame, Pixels, Source, SourceEvent};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::time::Instant;

/// First bytes of every frame header.
pub const MAGIC: [u8; 4] = *b"NAPF";
/// The header version this reader understands.
pub const VERSION: u8 = 1;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 20;
/// Default limit on one frame's payload: 32 MiB, above a 4K RGB8 frame (24.9 MB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;

/// The header of one frame, as written by [`encode_frame`].
pub fn header(format: PixelFormat, width: u32, height: u32, payload_len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4] = VERSION;
    h[5] = format.code();
    h[8..12].copy_from_slice(&width.to_le_bytes());
    h[12..16].copy_from_slice(&height.to_le_bytes());
    h[16..20].copy_from_slice(&payload_len.to_le_bytes());
    h
}

/// One frame on the wire: header and pixels. `None` when the pixels do not fit the format or
/// are longer than a u32 can count.
pub fn encode_frame(
    format: PixelFormat,
    width: u32,
    height: u32,
    pixels: &[u8],
) -> Option<Vec<u8>> {
    if format.frame_len(width, height).ok()? != pixels.len() {
        return None;
    }
    let len = u32::try_from(pixels.len()).ok()?;
    let mut out = Vec::with_capacity(HEADER_LEN + pixels.len());
    out.extend_from_slice(&header(format, width, height, len));
    out.extend_from_slice(pixels);
    Some(out)
}

/// A raw frame stream reader.
pub struct RawSource<R> {
    reader: R,
    /// Bytes read but given back, consumed before `reader`.
    pushback: VecDeque<u8>,
    max_frame_bytes: usize,
    live: bool,
    /// Frames started so far: names them `stream:N`.
    index: u64,
    ended: bool,
}

enum Fill {
    Full,
    /// End of stream after this many bytes.
    Eof(usize),
}

impl<R: Read + Send> RawSource<R> {
    /// Reads frames from `reader`; `live` says whether frames come in real time (a camera pipe)
    /// rather than from a file replayed as fast as possible.
    pub fn new(reader: R, max_frame_bytes: usize, live: bool) -> Self {
        RawSource {
            reader,
            pushback: VecDeque::new(),
            max_frame_bytes,
            live,
            index: 0,
            ended: false,
        }
    }

    /// Fills `buf` from the pushback, then the reader.
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<Fill> {
        let mut n = 0;
        while n < buf.len() {
            if let Some(b) = self.pushback.pop_front() {
                buf[n] = b;
                n += 1;
                continue;
            }
            match self.reader.read(&mut buf[n..]) {
                Ok(0) => return Ok(Fill::Eof(n)),
                Ok(k) => n += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Fill::Full)
    }

    /// Discards `n` bytes; false when the stream ended first.
    fn skip(&mut self, mut n: usize) -> std::io::Result<bool> {
        let mut chunk = vec![0u8; n.min(64 * 1024)];
        while n > 0 {
            let k = n.min(chunk.len());
            if let Fill::Eof(_) = self.fill(&mut chunk[..k])? {
                return Ok(false);
            }
            n -= k;
        }
        Ok(true)
    }

    /// Scans for the next magic, starting with `seen` (bytes already read, not a header). Leaves
    /// the magic and what follows in the pushback. Returns the bytes skipped, or `None` at the
    /// end of the stream.
    fn resync(&mut self, seen: &[u8]) -> std::io::Result<Option<usize>> {
        let mut window: VecDeque<u8> = seen.iter().copied().collect();
        let mut skipped = 0usize;
        // The first byte of `seen` started the bad header: never a match by itself.
        window.pop_front();
        skipped += 1;
        loop {
            while window.len() >= MAGIC.len() {
                if window.iter().take(MAGIC.len()).eq(MAGIC.iter()) {
                    // Give the candidate header back, ahead of anything still pushed back.
                    for b in window.into_iter().rev() {
                        self.pushback.push_front(b);
                    }
                    return Ok(Some(skipped));
                }
                window.pop_front();
                skipped += 1;
            }
            let mut byte = [0u8; 1];
            match self.fill(&mut byte)? {
                Fill::Full => window.push_back(byte[0]),
                Fill::Eof(_) => return Ok(None),
            }
        }
    }

    fn read_event(&mut self) -> std::io::Result<SourceEvent> {
        let name = format!("stream:{}", self.index);
        let mut h = [0u8; HEADER_LEN];
        match self.fill(&mut h)? {
            Fill::Full => {}
            Fill::Eof(0) => return Ok(SourceEvent::End),
            Fill::Eof(n) => {
                self.index += 1;
                self.ended = true;
                return Ok(SourceEvent::Bad {
                    name,
                    error: format!(
                        "truncated header: the stream ended after {n} of {HEADER_LEN} bytes"
                    ),
                });
            }
        }
        self.index += 1;
        if h[..4] != MAGIC {
            let error = match self.resync(&h)? {
                Some(skipped) => {
                    format!("no NAPF frame header; skipped {skipped} bytes to the next one")
                }
                None => {
                    self.ended = true;
                    "no NAPF frame header before the end of the stream".to_string()
                }
            };
            return Ok(SourceEvent::Bad { name, error });
        }
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let (width, height, len) = (u32_at(8), u32_at(12), u32_at(16) as usize);
        if len > self.max_frame_bytes {
            // An absurd length is not worth reading past: look for the next header instead.
            let error = match self.resync(&h)? {
                Some(skipped) => format!(
                    "payload length {len} exceeds the limit of {} bytes; skipped {skipped} bytes to the next header",
                    self.max_frame_bytes
                ),
                None => {
                    self.ended = true;
                    format!(
                        "payload length {len} exceeds the limit of {} bytes",
                        self.max_frame_bytes
                    )
                }
            };
            return Ok(SourceEvent::Bad { name, error });
        }
        let problem = if h[4] != VERSION {
            Some(format!(
                "header version {}, this reader knows {VERSION}",
                h[4]
            ))
        } else if h[6..8] != [0, 0] {
            Some("reserved header bytes are not zero".to_string())
        } else {
            match PixelFormat::from_code(h[5]) {
                None => Some(format!("unknown pixel format code {}", h[5])),
                Some(format) => match format.frame_len(width, height) {
                    Err(e) => Some(e.to_string()),
                    Ok(expected) if expected != len => Some(format!(
                        "{format} {width}x{height} needs {expected} bytes, the header says {len}"
                    )),
                    Ok(_) => None,
                },
            }
        };
        if let Some(problem) = problem {
            if !self.skip(len)? {
                self.ended = true;
                return Ok(SourceEvent::Bad {
                    name,
                    error: format!("{problem}; the stream ended inside its payload"),
                });
            }
            return Ok(SourceEvent::Bad {
                name,
                error: problem,
            });
        }
        let format = PixelFormat::from_code(h[5]).expect("checked above");
        let mut data = vec![0u8; len];
        if let Fill::Eof(n) = self.fill(&mut data)? {
            self.ended = true;
            return Ok(SourceEvent::Bad {
                name,
                error: format!("truncated frame: the stream ended after {n} of {len} pixel bytes"),
            });
        }
        Ok(SourceEvent::Frame(Frame {
            name,
            captured: Instant::now(),
            pts: None,
            pixels: Pixels::Raw {
                width,
                height,
                format,
                data,
            },
        }))
    }
}

impl<R: Read + Send> Source for RawSource<R> {
    fn next_event(&mut self) -> SourceEvent {
        if self.ended {
            return SourceEvent::End;
        }
        match self.read_event() {
            Ok(event) => event,
            Err(e) => {
                self.ended = true;
                SourceEvent::Failed(format!("reading the raw stream: {e}"))
            }
        }
    }

    fn is_live(&self) -> bool {
        self.live
    }
}
