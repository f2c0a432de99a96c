//! Framing: version byte, postcard payload, CRC-32C, COBS, 0x00 delimiters.

use core::fmt;

use crc::{CRC_32_ISCSI, Crc};

use super::message::Message;

/// The protocol version carried in the first byte of every frame.
///
/// Bump it for every change to the encoding of an existing message; a receiver reports frames of
/// another version as [`FrameError::Version`] (after their CRC checked out).
pub const PROTOCOL_VERSION: u8 = 1;

/// The largest postcard encoding of any [`Message`], in bytes.
///
/// [`Message::Verdict`] with both integers at their maximum: tag 1 + seq varint 5 + timestamp
/// varint 10 + two f32 4 + 4 + bool 1 = 25. A test checks every variant at its largest values.
pub const MAX_MESSAGE_LEN: usize = 25;

/// Bytes of the CRC-32 trailer.
pub const CRC_LEN: usize = 4;

/// The largest frame before COBS: version 1 + message + CRC.
const MAX_RAW_LEN: usize = 1 + MAX_MESSAGE_LEN + CRC_LEN;

/// The most COBS bytes between two delimiters in a valid frame; also the receive buffer of
/// [`FrameDecoder`]. Longer runs are reported as [`FrameError::Oversize`].
pub const MAX_COBS_LEN: usize = cobs::max_encoding_length(MAX_RAW_LEN);

/// The most bytes [`encode`] writes for any message, both delimiters included: a buffer of this
/// size never gives [`EncodeError::BufferTooSmall`].
pub const MAX_FRAME_LEN: usize = MAX_COBS_LEN + 2;

/// The frame checksum: CRC-32C (Castagnoli, the `CRC-32/ISCSI` of the CRC catalogue: poly
/// 0x1EDC6F41 reflected, init and xorout 0xFFFFFFFF; check value 0xE3069283 for "123456789").
///
/// Chosen over CRC-32/ISO-HDLC (Ethernet, zlib) for its larger Hamming distance on short
/// messages (HD 6 up to 5243 data bits, against 268 bits for the Ethernet polynomial), and
/// because aarch64 has an instruction for it. A `static`, so its 1 KiB table sits in flash once.
static CRC: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// Why [`encode`] could not write a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncodeError {
    /// The output buffer is shorter than the frame; `needed` is the frame's exact length.
    BufferTooSmall {
        /// Length of the complete frame, delimiters included.
        needed: usize,
    },
    /// The message did not fit the frame buffer during serialization. Cannot happen for the
    /// messages of this module (their size is bounded by [`MAX_MESSAGE_LEN`], checked in
    /// tests); kept so that a bug shows up as an error and never as a panic.
    Serialize,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: the frame needs {needed} bytes")
            }
            EncodeError::Serialize => f.write_str("message serialization failed"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Why received bytes did not yield a [`Message`]. Each variant names the first check that
/// failed, in the order the receiver applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// More than [`MAX_COBS_LEN`] bytes without a delimiter: the bytes up to the next 0x00 are
    /// dropped, and this is reported once, as soon as the limit is passed.
    Oversize,
    /// Not valid COBS (a length code points past the end of the frame).
    Cobs,
    /// Decoded frame shorter than version byte + CRC.
    TooShort,
    /// Checksum mismatch: the frame was corrupted on the way.
    Crc,
    /// Intact frame (CRC passed) of an unsupported protocol version.
    Version(u8),
    /// Intact frame of our version whose payload is not a [`Message`], or has trailing bytes.
    Payload,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Oversize => write!(f, "frame longer than {MAX_COBS_LEN} bytes"),
            FrameError::Cobs => f.write_str("malformed COBS encoding"),
            FrameError::TooShort => f.write_str("frame too short"),
            FrameError::Crc => f.write_str("CRC mismatch"),
            FrameError::Version(v) => write!(
                f,
                "unsupported protocol version {v} (expected {PROTOCOL_VERSION})"
            ),
            FrameError::Payload => f.write_str("payload is not a valid message"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Writes `msg` as one complete frame (`0x00`, COBS bytes, `0x00`) at the start of `out` and
/// returns the written bytes, ready to send.
///
/// At most [`MAX_FRAME_LEN`] bytes; with a buffer that long this cannot fail.
pub fn encode<'a>(msg: &Message, out: &'a mut [u8]) -> Result<&'a [u8], EncodeError> {
    let mut raw = [0u8; MAX_RAW_LEN];
    raw[0] = PROTOCOL_VERSION;
    let payload_len = postcard::to_slice(msg, &mut raw[1..1 + MAX_MESSAGE_LEN])
        .map_err(|_| EncodeError::Serialize)?
        .len();
    let crc_at = 1 + payload_len;
    let crc = CRC.checksum(&raw[..crc_at]);
    raw[crc_at..crc_at + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
    let raw = &raw[..crc_at + CRC_LEN];

    let mut frame = [0u8; MAX_FRAME_LEN];
    let cobs_len = cobs::try_encode(raw, &mut frame[1..MAX_FRAME_LEN - 1])
        .map_err(|_| EncodeError::Serialize)?;
    let len = cobs_len + 2;
    frame[0] = 0;
    frame[len - 1] = 0;
    let out = out
        .get_mut(..len)
        .ok_or(EncodeError::BufferTooSmall { needed: len })?;
    out.copy_from_slice(&frame[..len]);
    Ok(out)
}

/// Decodes one complete frame given as a slice (for links that deliver whole frames).
///
/// One leading and one trailing 0x00 are stripped if present; any other 0x00 makes the frame
/// invalid ([`FrameError::Cobs`]). For bytes without 0x00 this is exactly the result
/// [`FrameDecoder`] gives when they are followed by a delimiter, except that an empty frame gives
/// [`FrameError::TooShort`] here where the stream decoder skips it.
pub fn decode(frame: &[u8]) -> Result<Message, FrameError> {
    let frame = frame.strip_prefix(&[0]).unwrap_or(frame);
    let frame = frame.strip_suffix(&[0]).unwrap_or(frame);
    if frame.len() > MAX_COBS_LEN {
        return Err(FrameError::Oversize);
    }
    if frame.contains(&0) {
        return Err(FrameError::Cobs);
    }
    let mut buf = [0u8; MAX_COBS_LEN];
    let buf = &mut buf[..frame.len()];
    buf.copy_from_slice(frame);
    decode_in_place(buf)
}

/// Checks and parses the COBS bytes of one frame (no 0x00 in `buf`), overwriting `buf`.
fn decode_in_place(buf: &mut [u8]) -> Result<Message, FrameError> {
    if buf.is_empty() {
        return Err(FrameError::TooShort);
    }
    let n = cobs::decode_in_place(buf).map_err(|_| FrameError::Cobs)?;
    let raw = buf.get(..n).ok_or(FrameError::Cobs)?;
    if raw.len() < 1 + CRC_LEN {
        return Err(FrameError::TooShort);
    }
    let (body, crc) = raw.split_at(raw.len() - CRC_LEN);
    let mut crc_bytes = [0u8; CRC_LEN];
    crc_bytes.copy_from_slice(crc);
    if CRC.checksum(body) != u32::from_le_bytes(crc_bytes) {
        return Err(FrameError::Crc);
    }
    let (&version, payload) = body.split_first().ok_or(FrameError::TooShort)?;
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version(version));
    }
    match postcard::take_from_bytes::<Message>(payload) {
        Ok((msg, [])) => Ok(msg),
        _ => Err(FrameError::Payload),
    }
}

/// Streaming receiver for a byte link (UART, SPI, socket): push bytes as they arrive, get a
/// result at each frame's end.
///
/// Fixed `MAX_COBS_LEN`-byte buffer, no allocation, never panics on any input. Yields exactly
/// one result per non-empty run of bytes between delimiters (an [`FrameError::Oversize`] run
/// reports as soon as it passes the limit, and its delimiter then yields nothing); empty frames
/// (0x00 0x00) yield nothing. After any error it is in sync again at the next 0x00.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: [u8; MAX_COBS_LEN],
    len: usize,
    discarding: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// An empty decoder. `const`, so it can live in a `static` on the controller.
    pub const fn new() -> Self {
        Self {
            buf: [0; MAX_COBS_LEN],
            len: 0,
            discarding: false,
        }
    }

    /// Feeds one received byte. Returns `Some` when the byte ends a frame (or makes the current
    /// one oversize), `None` while a frame is in progress or for an empty frame.
    pub fn push(&mut self, byte: u8) -> Option<Result<Message, FrameError>> {
        if byte == 0 {
            let len = core::mem::take(&mut self.len);
            if core::mem::take(&mut self.discarding) || len == 0 {
                return None;
            }
            return Some(decode_in_place(&mut self.buf[..len]));
        }
        if self.discarding {
            return None;
        }
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
                None
            }
            None => {
                self.len = 0;
                self.discarding = true;
                Some(Err(FrameError::Oversize))
            }
        }
    }

    /// Feeds a slice; the returned iterator pushes bytes only as it is advanced and yields each
    /// result. Bytes it has not reached when dropped are not consumed: see [`Frames::remainder`].
    pub fn push_slice<'d, 'b>(&'d mut self, bytes: &'b [u8]) -> Frames<'d, 'b> {
        Frames {
            decoder: self,
            bytes: bytes.iter(),
        }
    }

    /// Drops the bytes received up to the next 0x00 without reporting them: call it after the
    /// link reported a lost byte (UART overrun, framing or parity error).
    pub fn resync(&mut self) {
        self.len = 0;
        self.discarding = true;
    }

    /// Forgets any partial frame: the next byte starts a new frame.
    pub fn reset(&mut self) {
        self.len = 0;
        self.discarding = false;
    }

    /// `true` when no partial frame is held (the last byte was a delimiter, or nothing came yet).
    pub fn is_idle(&self) -> bool {
        self.len == 0 && !self.discarding
    }
}

/// Iterator returned by [`FrameDecoder::push_slice`].
#[derive(Debug)]
pub struct Frames<'d, 'b> {
    decoder: &'d mut FrameDecoder,
    bytes: core::slice::Iter<'b, u8>,
}

impl<'b> Frames<'_, 'b> {
    /// The bytes not pushed yet.
    pub fn remainder(&self) -> &'b [u8] {
        self.bytes.as_slice()
    }
}

impl Iterator for Frames<'_, '_> {
    type Item = Result<Message, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        for &byte in &mut self.bytes {
            if let Some(result) = self.decoder.push(byte) {
                return Some(result);
            }
        }
        None
    }
}

impl core::iter::FusedIterator for Frames<'_, '_> {}
