//! napd's `raw:` frame stream reader under arbitrary bytes. Shared by the `raw_stream` fuzz
//! target and its corpus replay test, so both check exactly the same thing.

use napd::source::raw::{RawSource, encode_frame};
use napd::source::{Pixels, Source, SourceEvent};
use std::io::Read;

/// What [`check_raw_stream`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RawRun {
    /// Frames delivered.
    pub frames: usize,
    /// Frames rejected (`Bad` events).
    pub rejected: usize,
}

/// Hands out the stream in pieces of 1 to 16 bytes, as a pipe may.
struct Trickle<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self
            .sizes
            .get(self.turn % self.sizes.len().max(1))
            .map_or(buf.len(), |s| usize::from(s % 16) + 1);
        self.turn += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Reads `input` as a raw frame stream and panics when an invariant fails. The first byte
/// chooses the frame size limit (up to 64 KiB, so a declared size past it is tested) and the
/// first 8 bytes how the stream is cut into reads. Then:
///
/// 1. every event consumes input: the reader ends, with `End` (never `Failed`: the bytes come
///    from memory), after at most one event per input byte, and stays ended;
/// 2. events are named `stream:0`, `stream:1`, ... in order;
/// 3. a delivered frame has exactly its format's size, within the limit, appears in the input
///    byte for byte (header and pixels), and converts to RGB8 of `width * height * 3` bytes.
pub fn check_raw_stream(input: &[u8]) -> RawRun {
    let limit = 64 + usize::from(input.first().copied().unwrap_or(0)) * 256;
    let reader = Trickle {
        data: input,
        sizes: &input[..input.len().min(8)],
        turn: 0,
    };
    let mut source = RawSource::new(reader, limit, false);
    let mut run = RawRun::default();
    for index in 0..=input.len() {
        match source.next_event() {
            SourceEvent::Frame(frame) => {
                assert_eq!(frame.name, format!("stream:{index}"));
                let Pixels::Raw {
                    width,
                    height,
                    format,
                    data,
                } = &frame.pixels
                else {
                    panic!("a raw stream delivered an encoded frame");
                };
                assert!(
                    data.len() <= limit,
                    "{} bytes past the limit {limit}",
                    data.len()
                );
                let wire = encode_frame(*format, *width, *height, data)
                    .expect("a delivered frame has its format's size");
                assert!(
                    input.windows(wire.len()).any(|w| w == wire),
                    "frame {index} is not in the input"
                );
                let rgb = frame
                    .pixels
                    .to_rgb8()
                    .expect("raw pixels convert")
                    .expect("a frame of its format's size converts");
                assert_eq!(rgb.pixels.len(), *width as usize * *height as usize * 3);
                run.frames += 1;
            }
            SourceEvent::Bad { name, error } => {
                assert_eq!(name, format!("stream:{index}"));
                assert!(!error.is_empty());
                run.rejected += 1;
            }
            SourceEvent::End => {
                assert!(matches!(source.next_event(), SourceEvent::End));
                return run;
            }
            SourceEvent::Failed(e) => panic!("reading from memory failed: {e}"),
            SourceEvent::Lost(_) | SourceEvent::Resumed => panic!("a raw stream is never lost"),
        }
    }
    panic!("more events than input bytes: the reader does not advance");
}
