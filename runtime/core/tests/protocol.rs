//! Wire protocol: golden frames, round trips, size bound, and the decoder against damaged input.

use nap_core::protocol::{
    Ack, CRC_LEN, ControllerState, ControllerStatus, Direction, EncodeError, FrameDecoder,
    FrameError, Health, Heartbeat, MAX_COBS_LEN, MAX_FRAME_LEN, MAX_MESSAGE_LEN, Message,
    PROTOCOL_VERSION, RuntimeStatus, Verdict, decode, encode,
};
use proptest::prelude::*;

type Result = core::result::Result<Message, FrameError>;

fn frame(msg: &Message) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    encode(msg, &mut buf).unwrap().to_vec()
}

/// Bit-exact message comparison (NaN scores included): compare the encodings.
fn same(a: &Message, b: &Message) -> bool {
    frame(a) == frame(b)
}

fn results(bytes: &[u8]) -> Vec<Result> {
    FrameDecoder::new().push_slice(bytes).collect()
}

/// Builds a frame by hand from the documented layout, with any version byte and payload.
fn raw_frame(version: u8, payload: &[u8]) -> Vec<u8> {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let mut raw = vec![version];
    raw.extend_from_slice(payload);
    let crc = CRC.checksum(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    let mut out = vec![0u8; cobs::max_encoding_length(raw.len()) + 2];
    let n = cobs::encode(&raw, &mut out[1..]);
    out.truncate(n + 2);
    out
}

/// Non-empty runs of bytes between 0x00 delimiters.
fn runs(bytes: &[u8]) -> usize {
    bytes.split(|&b| b == 0).filter(|r| !r.is_empty()).count()
}

fn verdict(seq: u32) -> Message {
    Verdict {
        seq,
        timestamp_us: 1_000 * u64::from(seq),
        score: 3.25,
        threshold: 2.0,
        ood: false,
    }
    .into()
}

fn max_verdict() -> Message {
    Verdict {
        seq: u32::MAX,
        timestamp_us: u64::MAX,
        score: f32::MAX,
        threshold: f32::NAN,
        ood: true,
    }
    .into()
}

/// One message of each kind, small and large values.
fn samples() -> Vec<Message> {
    vec![
        Heartbeat {
            seq: 1,
            timestamp_us: 1000,
        }
        .into(),
        verdict(42),
        max_verdict(),
        Verdict {
            seq: 0,
            timestamp_us: 0,
            score: 0.0,
            threshold: 0.0,
            ood: false,
        }
        .into(),
        RuntimeStatus {
            health: Health::Fault,
            code: u16::MAX,
        }
        .into(),
        Ack { seq: 0 }.into(),
        Ack { seq: 0x8000_0000 }.into(),
        ControllerStatus {
            state: ControllerState::Fault,
            frames: u32::MAX,
            ood: 0,
            crc_errors: 255,
            seq_gaps: 1 << 21,
        }
        .into(),
    ]
}

/// The encodings of existing messages are the protocol: these bytes were computed independently
/// (a few lines of Python following the layout in the module docs). If this test fails, the wire
/// format changed: bump PROTOCOL_VERSION and update the firmware.
#[test]
fn golden_frames() {
    let cases: [(Message, &[u8]); 6] = [
        (
            Verdict {
                seq: 7,
                timestamp_us: 123_456_789,
                score: 1.5,
                threshold: -0.25,
                ood: true,
            }
            .into(),
            &[
                0x00, 0x02, 0x01, 0x06, 0x07, 0x95, 0x9a, 0xef, 0x3a, 0x01, 0x03, 0xc0, 0x3f, 0x01,
                0x08, 0x80, 0xbe, 0x01, 0xed, 0xe7, 0x06, 0xf8, 0x00,
            ],
        ),
        (
            Heartbeat {
                seq: 1,
                timestamp_us: 1000,
            }
            .into(),
            &[
                0x00, 0x0a, 0x01, 0x01, 0x01, 0xe8, 0x07, 0xf3, 0x59, 0xe6, 0x37, 0x00,
            ],
        ),
        (
            RuntimeStatus {
                health: Health::Degraded,
                code: 300,
            }
            .into(),
            &[
                0x00, 0x0a, 0x01, 0x02, 0x01, 0xac, 0x02, 0x0e, 0x63, 0xa8, 0xd1, 0x00,
            ],
        ),
        (
            Ack { seq: 0 }.into(),
            &[0x00, 0x03, 0x01, 0x03, 0x05, 0x9d, 0x99, 0xc2, 0xf1, 0x00],
        ),
        (
            ControllerStatus {
                state: ControllerState::Armed,
                frames: 10,
                ood: 2,
                crc_errors: 1,
                seq_gaps: 0,
            }
            .into(),
            &[
                0x00, 0x07, 0x01, 0x04, 0x01, 0x0a, 0x02, 0x01, 0x05, 0x63, 0x94, 0x37, 0x4c, 0x00,
            ],
        ),
        (
            Verdict {
                seq: u32::MAX,
                timestamp_us: u64::MAX,
                score: 0.0,
                threshold: 0.0,
                ood: false,
            }
            .into(),
            &[
                0x00, 0x02, 0x01, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 0xff, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x05,
                0x96, 0xf8, 0xd2, 0xa4, 0x00,
            ],
        ),
    ];
    assert_eq!(PROTOCOL_VERSION, 1);
    for (msg, bytes) in cases {
        assert_eq!(frame(&msg), bytes, "{msg:?}");
        assert_eq!(decode(bytes), Ok(msg));
        assert_eq!(results(bytes), [Ok(msg)]);
    }
}

/// MAX_MESSAGE_LEN is the exact maximum over all variants at their largest values, and
/// MAX_FRAME_LEN bounds (and is reached by) the largest frame.
#[test]
fn max_frame_len_is_tight() {
    let largest: [Message; 5] = [
        max_verdict(),
        Heartbeat {
            seq: u32::MAX,
            timestamp_us: u64::MAX,
        }
        .into(),
        RuntimeStatus {
            health: Health::Fault,
            code: u16::MAX,
        }
        .into(),
        Ack { seq: u32::MAX }.into(),
        ControllerStatus {
            state: ControllerState::Fault,
            frames: u32::MAX,
            ood: u32::MAX,
            crc_errors: u32::MAX,
            seq_gaps: u32::MAX,
        }
        .into(),
    ];
    let mut buf = [0u8; 64];
    let sizes: Vec<usize> = largest
        .iter()
        .map(|m| postcard::to_slice(m, &mut buf).unwrap().len())
        .collect();
    assert_eq!(sizes, [25, 16, 5, 6, 22]);
    assert_eq!(sizes.iter().max(), Some(&MAX_MESSAGE_LEN));
    let frame_lens: Vec<usize> = largest.iter().map(|m| frame(m).len()).collect();
    assert_eq!(frame_lens.iter().max(), Some(&MAX_FRAME_LEN));
    assert_eq!(MAX_FRAME_LEN, 33);
    assert_eq!(MAX_COBS_LEN, MAX_FRAME_LEN - 2);
}

#[test]
fn encode_reports_buffer_too_small() {
    for msg in samples() {
        let needed = frame(&msg).len();
        let mut buf = vec![0u8; needed];
        for len in 0..needed {
            assert_eq!(
                encode(&msg, &mut buf[..len]),
                Err(EncodeError::BufferTooSmall { needed })
            );
        }
        assert_eq!(encode(&msg, &mut buf).unwrap().len(), needed);
    }
}

#[test]
fn directions() {
    assert_eq!(verdict(1).direction(), Direction::ToController);
    assert_eq!(
        Message::from(Ack { seq: 1 }).direction(),
        Direction::ToRuntime
    );
}

fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![any::<f32>(), any::<u32>().prop_map(f32::from_bits)]
}

fn any_u32() -> impl Strategy<Value = u32> {
    prop_oneof![0..300u32, any::<u32>()]
}

fn any_u64() -> impl Strategy<Value = u64> {
    prop_oneof![0..300u64, any::<u64>()]
}

fn any_message() -> impl Strategy<Value = Message> {
    let health = prop_oneof![
        Just(Health::Ok),
        Just(Health::Degraded),
        Just(Health::Fault)
    ];
    let state = prop_oneof![
        Just(ControllerState::Safe),
        Just(ControllerState::Armed),
        Just(ControllerState::Fault)
    ];
    prop_oneof![
        (any_u32(), any_u64(), any_f32(), any_f32(), any::<bool>()).prop_map(
            |(seq, timestamp_us, score, threshold, ood)| Verdict {
                seq,
                timestamp_us,
                score,
                threshold,
                ood
            }
            .into()
        ),
        (any_u32(), any_u64())
            .prop_map(|(seq, timestamp_us)| Heartbeat { seq, timestamp_us }.into()),
        (health, any::<u16>()).prop_map(|(health, code)| RuntimeStatus { health, code }.into()),
        any_u32().prop_map(|seq| Ack { seq }.into()),
        (state, any_u32(), any_u32(), any_u32(), any_u32()).prop_map(
            |(state, frames, ood, crc_errors, seq_gaps)| ControllerStatus {
                state,
                frames,
                ood,
                crc_errors,
                seq_gaps
            }
            .into()
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// encode -> decode gives the message back, bit for bit, and the frame follows the documented
    /// layout (rebuilt here from postcard, the crc crate and the cobs crate).
    #[test]
    fn round_trip(msg in any_message()) {
        let bytes = frame(&msg);
        prop_assert!(bytes.len() <= MAX_FRAME_LEN);
        let mut payload = [0u8; MAX_MESSAGE_LEN];
        let payload = postcard::to_slice(&msg, &mut payload).unwrap();
        prop_assert_eq!(&bytes, &raw_frame(PROTOCOL_VERSION, payload));

        let back = decode(&bytes).unwrap();
        prop_assert!(same(&back, &msg));
        let streamed = results(&bytes);
        prop_assert_eq!(streamed.len(), 1);
        prop_assert!(same(streamed[0].as_ref().unwrap(), &msg));
        if !matches!(msg, Message::Verdict(v) if v.score.is_nan() || v.threshold.is_nan()) {
            prop_assert_eq!(back, msg);
        }
    }

    /// A stream of frames, cut into arbitrary chunks, gives all messages back in order.
    #[test]
    fn stream_round_trip(
        msgs in proptest::collection::vec(any_message(), 0..20),
        cuts in proptest::collection::vec(1usize..40, 1..10),
    ) {
        let stream: Vec<u8> = msgs.iter().flat_map(frame).collect();
        let mut decoder = FrameDecoder::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at((*cut).min(rest.len()));
            got.extend(decoder.push_slice(chunk));
            rest = tail;
        }
        prop_assert_eq!(got.len(), msgs.len());
        for (g, m) in got.iter().zip(&msgs) {
            prop_assert!(same(g.as_ref().unwrap(), m));
        }
    }
}

/// Every single-bit flip anywhere in a frame (delimiters included) is rejected, and with the
/// leading delimiter it costs exactly that frame: the flipped bytes give one error per non-empty
/// run between 0x00s, then the next two frames decode.
#[test]
fn single_bit_flips_are_rejected() {
    let a = verdict(1000);
    let b = Message::from(Heartbeat {
        seq: 1001,
        timestamp_us: 7,
    });
    let tail = [frame(&a), frame(&b)].concat();
    let mut flips = 0;
    for msg in samples() {
        let good = frame(&msg);
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let got = results(&[&bad[..], &tail].concat());
            let errors = runs(&bad);
            assert!(errors >= 1, "{msg:?} bit {bit}: the flip left no run");
            assert_eq!(got.len(), errors + 2, "{msg:?} bit {bit}: {got:?}");
            assert!(
                got[..errors].iter().all(|r| r.is_err()),
                "{msg:?} bit {bit}: {got:?}"
            );
            assert_eq!(got[errors..], [Ok(a), Ok(b)], "{msg:?} bit {bit}");
            flips += 1;
        }
    }
    assert!(flips > 1000);
}

/// The same with a sender that writes only the trailing delimiter (as many COBS senders do):
/// still no false message, but a flipped delimiter merges the frame with the next one, so the
/// decoder is back in sync at the latest with the frame after that.
#[test]
fn single_bit_flips_with_trailing_delimiters_only() {
    let a = verdict(1000);
    let b = Message::from(Ack { seq: 3 });
    let tail = [&frame(&a)[1..], &frame(&b)[1..]].concat();
    for msg in samples() {
        let good = frame(&msg)[1..].to_vec();
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let got = results(&[&bad[..], &tail].concat());
            let delimiter_hit = bit / 8 == good.len() - 1;
            let (oks, errs): (Vec<_>, Vec<_>) = got.iter().partition(|r| r.is_ok());
            let want: Vec<Result> = if delimiter_hit {
                vec![Ok(b)]
            } else {
                vec![Ok(a), Ok(b)]
            };
            assert_eq!(oks.into_iter().cloned().collect::<Vec<_>>(), want);
            assert_eq!(
                errs.len(),
                if delimiter_hit { 1 } else { runs(&bad) },
                "{msg:?} bit {bit}: {got:?}"
            );
            assert_eq!(got.last(), Some(&Ok(b)));
        }
    }
}

/// SplitMix64: a fixed-seed generator, so the noise test is deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

/// Random noise between valid frames (including long runs without a zero, noise made of valid
/// COBS, bytes of real frames) never yields a message that was not sent, and, thanks to the
/// leading delimiter, every frame sent is received. A noise run could in principle contain a
/// valid frame (CRC-32 makes that about 2^-32 per run); the seed is fixed, so the test is
/// deterministic.
#[test]
fn noise_between_frames_yields_only_sent_messages() {
    let mut rng = Rng(0x5eed_0123_4567_89ab);
    let mut stream = Vec::new();
    let mut sent = Vec::new();
    for i in 0..3000u32 {
        let noise_len = rng.below(80);
        let zero_every = [2u64, 8, 40, u64::MAX][rng.below(4)];
        for _ in 0..noise_len {
            let byte = match rng.below(4) {
                // A byte of a real frame: noise that looks like traffic.
                0 => {
                    let f = frame(&verdict(rng.next() as u32));
                    f[rng.below(f.len() as u64)]
                }
                _ if rng.below(zero_every) == 0 => 0,
                _ => 1 + rng.below(255) as u8,
            };
            stream.push(byte);
        }
        let msg = match i % 3 {
            0 => verdict(i),
            1 => Heartbeat {
                seq: i,
                timestamp_us: rng.next(),
            }
            .into(),
            _ => Ack { seq: i }.into(),
        };
        stream.extend(frame(&msg));
        sent.push(msg);
    }
    let got = results(&stream);
    let oks: Vec<Message> = got.iter().filter_map(|r| r.ok()).collect();
    assert_eq!(oks, sent);
    let errors = got.len() - oks.len();
    assert!(
        errors > 1000,
        "the noise should produce errors, got {errors}"
    );
    assert!(got.contains(&Err(FrameError::Oversize)));
}

/// A frame cut short (sender reset, cable pulled) is reported once when the next frame's leading
/// delimiter arrives, and the next frame decodes.
#[test]
fn truncated_frames() {
    let next = verdict(77);
    for msg in samples() {
        let good = frame(&msg);
        for cut in 1..good.len() - 1 {
            let part = &good[..cut];
            assert_eq!(results(part), [], "no result before a delimiter");
            let got = results(&[part, &frame(&next)].concat());
            if cut == 1 {
                // Only the leading delimiter arrived: an empty frame, skipped.
                assert_eq!(got, [Ok(next)]);
                continue;
            }
            assert_eq!(got.len(), 2, "{msg:?} cut {cut}: {got:?}");
            assert!(
                matches!(
                    got[0],
                    Err(FrameError::Cobs | FrameError::TooShort | FrameError::Crc)
                ),
                "{msg:?} cut {cut}: {got:?}"
            );
            assert_eq!(got[1], Ok(next));
        }
    }
}

/// Runs longer than MAX_COBS_LEN give one Oversize, reported when the limit is passed, and
/// nothing more until the next delimiter; a frame of exactly MAX_COBS_LEN bytes is fine.
#[test]
fn oversize_runs() {
    let next = Message::from(Ack { seq: 9 });
    // The largest frame sits exactly at the limit.
    let biggest = frame(&max_verdict());
    assert_eq!(biggest.len() - 2, MAX_COBS_LEN);
    assert!(same(&decode(&biggest).unwrap(), &max_verdict()));

    for len in [
        MAX_COBS_LEN + 1,
        MAX_COBS_LEN + 2,
        100,
        255,
        256,
        1000,
        100_000,
    ] {
        let run: Vec<u8> = (0..len).map(|i| (i % 255) as u8 + 1).collect();
        let mut decoder = FrameDecoder::new();
        for (i, &byte) in run.iter().enumerate() {
            let want = (i == MAX_COBS_LEN).then_some(Err(FrameError::Oversize));
            assert_eq!(decoder.push(byte), want, "len {len} byte {i}");
        }
        assert_eq!(
            decoder.push(0),
            None,
            "the oversize run's delimiter says nothing more"
        );
        assert_eq!(
            decoder.push_slice(&frame(&next)).collect::<Vec<_>>(),
            [Ok(next)]
        );

        // A valid frame glued to the end of a long run is lost with it, the next one is not.
        let got = results(&[&run[..], &frame(&next)[1..], &frame(&next)].concat());
        assert_eq!(got, [Err(FrameError::Oversize), Ok(next)]);
    }
    assert_eq!(decode(&[1; MAX_COBS_LEN + 1]), Err(FrameError::Oversize));
}

/// Frames with a correct CRC but a wrong version, or a bad payload, get the specific error.
#[test]
fn intact_frames_with_bad_contents() {
    let mut payload = [0u8; MAX_MESSAGE_LEN];
    let heartbeat = postcard::to_slice(
        &Message::from(Heartbeat {
            seq: 5,
            timestamp_us: 6,
        }),
        &mut payload,
    )
    .unwrap()
    .to_vec();
    assert_eq!(
        results(&raw_frame(PROTOCOL_VERSION, &heartbeat)),
        [Ok(Heartbeat {
            seq: 5,
            timestamp_us: 6
        }
        .into())]
    );
    for version in (0..=255u8).filter(|&v| v != PROTOCOL_VERSION) {
        let bytes = raw_frame(version, &heartbeat);
        assert_eq!(results(&bytes), [Err(FrameError::Version(version))]);
        assert_eq!(decode(&bytes), Err(FrameError::Version(version)));
    }

    let payload_errors: [&[u8]; 7] = [
        &[],                                   // no message at all
        &[5],                                  // unknown tag
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80], // unterminated varint tag
        &[3],                                  // Ack without its seq
        &[3, 0xff, 0xff, 0xff, 0xff, 0x1f],    // seq overflows u32
        &[0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2], // Verdict with bool = 2
        &[3, 1, 0],                            // trailing byte after Ack
    ];
    for payload in payload_errors {
        assert_eq!(
            results(&raw_frame(PROTOCOL_VERSION, payload)),
            [Err(FrameError::Payload)],
            "{payload:?}"
        );
    }
    // Health 3 does not exist.
    assert_eq!(
        results(&raw_frame(PROTOCOL_VERSION, &[2, 3, 0])),
        [Err(FrameError::Payload)]
    );
}

#[test]
fn short_and_malformed_frames() {
    // Decoded lengths 0..=4 are shorter than version + CRC.
    for len in 0..1 + CRC_LEN {
        let raw = vec![0xaa; len];
        let mut enc = vec![0u8; cobs::max_encoding_length(len)];
        let n = cobs::encode(&raw, &mut enc);
        enc.truncate(n);
        enc.push(0);
        assert_eq!(results(&enc), [Err(FrameError::TooShort)], "len {len}");
    }
    // A COBS code pointing past the end of the frame.
    assert_eq!(results(&[0x05, 1, 2, 0]), [Err(FrameError::Cobs)]);
    assert_eq!(decode(&[0x05, 1, 2]), Err(FrameError::Cobs));
    // One-shot decode: empty, interior zero.
    assert_eq!(decode(&[]), Err(FrameError::TooShort));
    assert_eq!(decode(&[0, 0]), Err(FrameError::TooShort));
    let good = frame(&verdict(3));
    let mut split = good.clone();
    split[5] = 0;
    assert_eq!(decode(&split), Err(FrameError::Cobs));
    // Without delimiters, or with only one, the one-shot decoder still takes a frame.
    assert_eq!(decode(&good[1..good.len() - 1]), Ok(verdict(3)));
    assert_eq!(decode(&good[1..]), Ok(verdict(3)));
}

#[test]
fn empty_frames_are_skipped() {
    assert_eq!(results(&[0; 100]), []);
    let f = frame(&verdict(5));
    assert_eq!(
        results(&[&[0u8; 7][..], &f, &[0; 3], &f].concat()),
        [Ok(verdict(5)); 2]
    );
}

#[test]
fn resync_and_reset() {
    let f = frame(&verdict(8));
    let mut decoder = FrameDecoder::new();
    assert!(decoder.is_idle());

    // resync: the rest of the current frame is dropped silently.
    decoder.push_slice(&f[..6]).for_each(drop);
    assert!(!decoder.is_idle());
    decoder.resync();
    assert_eq!(decoder.push_slice(&f[6..]).collect::<Vec<_>>(), []);
    assert!(decoder.is_idle());
    assert_eq!(decoder.push_slice(&f).collect::<Vec<_>>(), [Ok(verdict(8))]);

    // resync right after a delimiter drops the next frame's first run (here: none, since our
    // frames start with a delimiter themselves).
    decoder.resync();
    assert_eq!(decoder.push_slice(&f).collect::<Vec<_>>(), [Ok(verdict(8))]);

    // reset: the partial frame is forgotten and the next byte starts a new one.
    decoder.push_slice(&f[..6]).for_each(drop);
    decoder.reset();
    assert!(decoder.is_idle());
    assert_eq!(
        decoder.push_slice(&f[1..]).collect::<Vec<_>>(),
        [Ok(verdict(8))]
    );
}

#[test]
fn push_slice_stops_where_it_is_dropped() {
    let two = [frame(&verdict(1)), frame(&verdict(2))].concat();
    let mut decoder = FrameDecoder::new();
    let rest = {
        let mut it = decoder.push_slice(&two);
        assert_eq!(it.next(), Some(Ok(verdict(1))));
        it.remainder()
    };
    assert_eq!(rest, &two[frame(&verdict(1)).len()..]);
    assert_eq!(
        decoder.push_slice(rest).collect::<Vec<_>>(),
        [Ok(verdict(2))]
    );
}

#[test]
fn errors_display() {
    assert_eq!(
        FrameError::Version(7).to_string(),
        "unsupported protocol version 7 (expected 1)"
    );
    assert_eq!(
        EncodeError::BufferTooSmall { needed: 12 }.to_string(),
        "output buffer too small: the frame needs 12 bytes"
    );
}
