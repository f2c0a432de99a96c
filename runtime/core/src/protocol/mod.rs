//! The wire protocol between the runtime and the sensor controller.
//!
//! Both ends use this module: the runtime (aarch64 Linux, over a UART or SPI link) and the
//! controller firmware (Cortex-M, `no_std`, no allocator). [`encode`] turns a [`Message`] into one
//! frame of at most [`MAX_FRAME_LEN`] bytes; [`FrameDecoder`] turns a byte stream back into
//! messages, reporting every damaged frame as a [`FrameError`] and resynchronising at the next
//! 0x00.
//!
//! # Byte layout (for firmware writers)
//!
//! On the wire, every frame is
//!
//! ```text
//! 0x00 | COBS(raw) | 0x00                  at most MAX_FRAME_LEN = 33 bytes
//!
//! raw = version | payload | crc            at most 30 bytes
//!   version  1 byte   PROTOCOL_VERSION = 1
//!   payload  2..=25   postcard encoding of a Message (below)
//!   crc      4 bytes  CRC-32C of version + payload, little-endian
//! ```
//!
//! - **Delimiters.** 0x00 never occurs inside a frame (that is what COBS is for). The sender puts
//!   one before and one after each frame; back to back, two frames are separated by `00 00`, an
//!   empty frame, which receivers skip. The leading 0x00 costs one byte and buys this: line noise
//!   between frames, a receiver that starts listening mid-frame, or a bit flip that destroys a
//!   delimiter each cost at most the one frame they touch, never the next one as well. Receivers
//!   also accept frames with only the trailing delimiter.
//! - **COBS** (Consistent Overhead Byte Stuffing, Cheshire & Baker 1999), the standard variant:
//!   each code byte `n` (1..=255) is followed by `n - 1` data bytes and, unless `n == 255` or the
//!   frame ends there, stands for a 0x00 after them. At most 254 data bytes give one byte of
//!   overhead, so the COBS part is at most 31 bytes ([`MAX_COBS_LEN`]).
//! - **CRC-32C**: the `CRC-32/ISCSI` of the CRC catalogue (Castagnoli polynomial 0x1EDC6F41,
//!   reflected in and out, init 0xFFFFFFFF, xorout 0xFFFFFFFF, check("123456789") = 0xE3069283).
//!   It protects the version byte too, so a corrupted version reads as a CRC error, and a version
//!   error always means the peer speaks another version.
//! - **Payload**, postcard 1.x: a varint tag (the [`Message`] variant index), then the fields of
//!   that variant in declaration order. Varints (`u16`, `u32`, `u64`) are LEB128: 7 bits per byte,
//!   least significant group first, high bit set on every byte but the last (a `u32` takes 1..=5
//!   bytes, a `u64` 1..=10). `f32` is 4 bytes IEEE 754 little-endian. `bool` is 0x00 or 0x01
//!   (anything else is rejected). Field-less enums are a varint variant index.
//!
//! | tag | message              | direction     | fields                                                          |
//! |-----|----------------------|---------------|-----------------------------------------------------------------|
//! | 0   | [`Verdict`]          | to controller | `seq` u32, `timestamp_us` u64, `score` f32, `threshold` f32, `ood` bool |
//! | 1   | [`Heartbeat`]        | to controller | `seq` u32, `timestamp_us` u64                                   |
//! | 2   | [`RuntimeStatus`]    | to controller | `health` (0 Ok, 1 Degraded, 2 Fault), `code` u16                |
//! | 3   | [`Ack`]              | to runtime    | `seq` u32                                                       |
//! | 4   | [`ControllerStatus`] | to runtime    | `state` (0 Safe, 1 Armed, 2 Fault), `frames`, `ood`, `crc_errors`, `seq_gaps`: u32 |
//!
//! A receiver, for each run of bytes between two 0x00: skips it if empty; reports
//! [`FrameError::Oversize`] once if it passes 31 bytes; COBS-decodes it ([`FrameError::Cobs`]);
//! needs at least 5 bytes ([`FrameError::TooShort`]); checks the CRC ([`FrameError::Crc`]), then
//! the version ([`FrameError::Version`]); parses the payload, which must be consumed exactly
//! ([`FrameError::Payload`]).
//!
//! ## Example
//!
//! `Heartbeat { seq: 1, timestamp_us: 1000 }`: payload `01 01 e8 07` (tag 1, seq 1, 1000 as
//! LEB128 `e8 07`); raw `01 01 01 e8 07 f3 59 e6 37` (CRC-32C 0x37e659f3); COBS adds the code
//! byte `0a` (nine bytes follow, then the end); on the wire:
//!
//! ```text
//! 00 0a 01 01 01 e8 07 f3 59 e6 37 00
//! ```
//!
//! ```
//! use nap_core::protocol::{FrameDecoder, Heartbeat, MAX_FRAME_LEN, Message, encode};
//!
//! let msg = Message::Heartbeat(Heartbeat { seq: 1, timestamp_us: 1000 });
//! let mut buf = [0u8; MAX_FRAME_LEN];
//! let frame = encode(&msg, &mut buf).unwrap();
//! assert_eq!(frame, [0x00, 0x0a, 0x01, 0x01, 0x01, 0xe8, 0x07, 0xf3, 0x59, 0xe6, 0x37, 0x00]);
//!
//! let mut decoder = FrameDecoder::new();
//! let mut results = decoder.push_slice(frame);
//! assert_eq!(results.next(), Some(Ok(msg)));
//! assert_eq!(results.next(), None);
//! ```

mod frame;
mod message;

pub use frame::{
    CRC_LEN, EncodeError, FrameDecoder, FrameError, Frames, MAX_COBS_LEN, MAX_FRAME_LEN,
    MAX_MESSAGE_LEN, PROTOCOL_VERSION, decode, encode,
};
pub use message::{
    Ack, ControllerState, ControllerStatus, Direction, Health, Heartbeat, Message, RuntimeStatus,
    Verdict,
};
