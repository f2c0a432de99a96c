//! Decoder invariants, shared by the `frame_decoder` fuzz target and the corpus replay test so
//! that both check exactly the same thing.

use nap_core::protocol::{
    FrameDecoder, FrameError, MAX_COBS_LEN, MAX_FRAME_LEN, Message, decode, encode,
};

/// What [`check_stream`] saw in its input.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    /// Messages decoded.
    pub messages: usize,
    /// Errors reported.
    pub errors: usize,
}

/// Feeds arbitrary bytes through [`FrameDecoder`] and panics if any invariant fails:
///
/// 1. Framing: each non-empty run of bytes between delimiters yields exactly one result, equal to
///    [`decode`] of the run; a run passing [`MAX_COBS_LEN`] yields one `Oversize` at the byte
///    that passes the limit and nothing at its delimiter; empty runs and an unterminated tail
///    within the limit yield nothing. The decoder is idle exactly after a 0x00.
/// 2. Chunking: [`FrameDecoder::push_slice`] over chunks (sizes derived from the first input
///    byte) yields the same results as byte-wise [`FrameDecoder::push`], and its
///    [`remainder`](nap_core::protocol::Frames::remainder) is right after each result.
/// 3. Round trip: every decoded message encodes into at most [`MAX_FRAME_LEN`] bytes, and that
///    frame decodes (one-shot and streaming) to a message with byte-identical encoding (so NaN
///    floats compare by bits).
pub fn check_stream(input: &[u8]) -> StreamStats {
    let mut stats = StreamStats::default();

    let mut decoder = FrameDecoder::new();
    let mut run_start = 0;
    for (i, &byte) in input.iter().enumerate() {
        let got = decoder.push(byte);
        let run = &input[run_start..i];
        let expected = if byte == 0 {
            run_start = i + 1;
            (!run.is_empty() && run.len() <= MAX_COBS_LEN).then(|| decode(run))
        } else {
            (run.len() == MAX_COBS_LEN).then_some(Err(FrameError::Oversize))
        };
        assert!(
            same_option(&got, &expected),
            "byte {i}: decoder gave {got:?}, expected {expected:?}"
        );
        assert_eq!(decoder.is_idle(), byte == 0, "byte {i}: is_idle");
        match got {
            Some(Ok(msg)) => {
                stats.messages += 1;
                check_round_trip(&msg);
            }
            Some(Err(_)) => stats.errors += 1,
            None => {}
        }
    }

    let seed = input.first().copied().unwrap_or(0) as usize;
    let mut bytewise = FrameDecoder::new();
    let mut chunked = FrameDecoder::new();
    let mut rest = input;
    let mut k = 0usize;
    while !rest.is_empty() {
        let len = (1 + (seed ^ k.wrapping_mul(37)) % 64).min(rest.len());
        k += 1;
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        let mut frames = chunked.push_slice(chunk);
        for (j, &byte) in chunk.iter().enumerate() {
            if let Some(want) = bytewise.push(byte) {
                let got = frames.next();
                assert!(
                    got.as_ref().is_some_and(|got| same_result(got, &want)),
                    "chunked decoder gave {got:?}, byte-wise {want:?}"
                );
                assert_eq!(
                    frames.remainder(),
                    &chunk[j + 1..],
                    "remainder after a result"
                );
            }
        }
        assert!(
            frames.next().is_none(),
            "chunked decoder gave an extra result"
        );
        assert!(frames.remainder().is_empty());
    }

    stats
}

/// Encodes `msg`, checks the length bound, and checks that the frame decodes back to it.
fn check_round_trip(msg: &Message) {
    let (frame, len) = encoded(msg);
    let frame = &frame[..len];
    let again = decode(frame).expect("an encoded message must decode");
    assert!(same_message(msg, &again), "{msg:?} came back as {again:?}");

    let mut decoder = FrameDecoder::new();
    let mut results = decoder.push_slice(frame);
    let first = results.next();
    assert!(
        matches!(&first, Some(Ok(m)) if same_message(msg, m)),
        "streaming decode of {msg:?} gave {first:?}"
    );
    assert!(results.next().is_none());
}

fn encoded(msg: &Message) -> ([u8; MAX_FRAME_LEN], usize) {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let len = encode(msg, &mut buf)
        .expect("every message fits MAX_FRAME_LEN")
        .len();
    (buf, len)
}

fn same_message(a: &Message, b: &Message) -> bool {
    let (fa, la) = encoded(a);
    let (fb, lb) = encoded(b);
    fa[..la] == fb[..lb]
}

fn same_result(a: &Result<Message, FrameError>, b: &Result<Message, FrameError>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => same_message(a, b),
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

fn same_option(
    a: &Option<Result<Message, FrameError>>,
    b: &Option<Result<Message, FrameError>>,
) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_result(a, b),
        (None, None) => true,
        _ => false,
    }
}
