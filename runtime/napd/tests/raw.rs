//! The raw frame stream and the pixel conversions: well-formed streams give exactly the frames
//! written; malformed headers, truncated frames and absurd sizes are rejected one frame at a time
//! and the stream goes on; YUV conversions round-trip within their stated tolerance.

use napd::source::pixel::{from_rgb8, to_rgb8};
use napd::source::raw::{HEADER_LEN, RawSource, encode_frame, header};
use napd::source::{PixelFormat, Pixels, Source, SourceEvent};
use proptest::prelude::*;
use std::io::Cursor;

const LIMIT: usize = 1 << 20;

fn events(bytes: Vec<u8>) -> Vec<SourceEvent> {
    events_under(bytes, LIMIT)
}

/// Every event of the stream, the End included, under a frame size limit.
fn events_under(bytes: Vec<u8>, limit: usize) -> Vec<SourceEvent> {
    let mut source = RawSource::new(Cursor::new(bytes), limit, false);
    let mut out = Vec::new();
    loop {
        let e = source.next_event();
        let end = matches!(e, SourceEvent::End | SourceEvent::Failed(_));
        out.push(e);
        if end {
            return out;
        }
        assert!(out.len() < 10_000, "the source does not end");
    }
}

/// A short description of each event: `F:WxH` for frames, `B:error` for rejects, `E` for end.
fn shapes(events: &[SourceEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            SourceEvent::Frame(f) => match &f.pixels {
                Pixels::Raw {
                    width,
                    height,
                    format,
                    ..
                } => format!("F:{width}x{height}:{format}"),
                Pixels::Encoded(_) => "F:encoded".into(),
            },
            SourceEvent::Bad { error, .. } => format!("B:{error}"),
            SourceEvent::End => "E".into(),
            SourceEvent::Failed(e) => format!("X:{e}"),
            SourceEvent::Lost(e) => format!("L:{e}"),
            SourceEvent::Resumed => "R".into(),
        })
        .collect()
}

fn gradient(w: u32, h: u32) -> Vec<u8> {
    (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            [
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x + y) % 256) as u8,
            ]
        })
        .collect()
}

fn frame(format: PixelFormat, w: u32, h: u32) -> Vec<u8> {
    let pixels = from_rgb8(format, w, h, &gradient(w, h)).unwrap();
    encode_frame(format, w, h, &pixels).unwrap()
}

#[test]
fn every_format_reads_back_with_its_name_and_pixels() {
    let mut stream = Vec::new();
    for f in PixelFormat::ALL {
        stream.extend(frame(f, 8, 6));
    }
    let ev = events(stream);
    assert_eq!(
        shapes(&ev),
        [
            "F:8x6:RGB8",
            "F:8x6:BGR8",
            "F:8x6:GRAY8",
            "F:8x6:YUYV",
            "F:8x6:NV12",
            "E"
        ]
    );
    let SourceEvent::Frame(f) = &ev[0] else {
        unreachable!()
    };
    assert_eq!(f.name, "stream:0");
    assert_eq!(f.pixels.to_rgb8().unwrap().unwrap().pixels, gradient(8, 6));
    let SourceEvent::Frame(f) = &ev[4] else {
        unreachable!()
    };
    assert_eq!(f.name, "stream:4");
}

#[test]
fn bgr_and_gray_convert_exactly() {
    let rgb = gradient(5, 3);
    let bgr = from_rgb8(PixelFormat::Bgr8, 5, 3, &rgb).unwrap();
    assert_eq!(bgr[..3], [rgb[2], rgb[1], rgb[0]]);
    assert_eq!(to_rgb8(PixelFormat::Bgr8, 5, 3, &bgr).unwrap(), rgb);
    let gray = to_rgb8(PixelFormat::Gray8, 2, 1, &[7, 200]).unwrap();
    assert_eq!(gray, [7, 7, 7, 200, 200, 200]);
}

#[test]
fn yuv_round_trips_within_tolerance() {
    // Smooth content: chroma subsampling loses little. Flat colours must be nearly exact.
    for format in [PixelFormat::Yuyv, PixelFormat::Nv12] {
        let rgb = gradient(64, 48);
        let back = to_rgb8(format, 64, 48, &from_rgb8(format, 64, 48, &rgb).unwrap()).unwrap();
        let mean = rgb
            .iter()
            .zip(&back)
            .map(|(a, b)| a.abs_diff(*b) as f64)
            .sum::<f64>()
            / rgb.len() as f64;
        assert!(mean < 3.0, "{format}: mean abs error {mean}");
        for colour in [[0u8, 0, 0], [255, 255, 255], [200, 30, 90], [12, 180, 240]] {
            let flat: Vec<u8> = colour.iter().copied().cycle().take(4 * 2 * 3).collect();
            let back = to_rgb8(format, 4, 2, &from_rgb8(format, 4, 2, &flat).unwrap()).unwrap();
            for (a, b) in flat.iter().zip(&back) {
                assert!(a.abs_diff(*b) <= 2, "{format} {colour:?}: {a} -> {b}");
            }
        }
    }
}

#[test]
fn odd_sizes_and_wrong_lengths_are_refused() {
    assert!(PixelFormat::Yuyv.frame_len(3, 2).is_err());
    assert!(PixelFormat::Nv12.frame_len(4, 3).is_err());
    assert!(PixelFormat::Rgb8.frame_len(0, 3).is_err());
    assert_eq!(PixelFormat::Nv12.frame_len(4, 2), Ok(12));
    assert!(to_rgb8(PixelFormat::Rgb8, 2, 2, &[0; 11]).is_err());
    assert!(encode_frame(PixelFormat::Rgb8, 2, 2, &[0; 11]).is_none());
}

#[test]
fn a_bad_header_rejects_one_frame_and_the_stream_goes_on() {
    let good = frame(PixelFormat::Rgb8, 4, 2);
    let mut bad_version = frame(PixelFormat::Rgb8, 4, 2);
    bad_version[4] = 9;
    let mut bad_format = frame(PixelFormat::Rgb8, 4, 2);
    bad_format[5] = 77;
    let mut reserved = frame(PixelFormat::Rgb8, 4, 2);
    reserved[6] = 1;
    let mut wrong_len = header(PixelFormat::Rgb8, 4, 2, 10).to_vec();
    wrong_len.extend([1u8; 10]);
    let mut odd = header(PixelFormat::Yuyv, 3, 2, 12).to_vec();
    odd.extend([1u8; 12]);
    let stream = [
        good.clone(),
        bad_version,
        good.clone(),
        bad_format,
        reserved,
        wrong_len,
        odd,
        good,
    ]
    .concat();
    let s = shapes(&events(stream));
    assert_eq!(s.len(), 9, "{s:?}");
    assert_eq!(s[0], "F:4x2:RGB8");
    assert!(s[1].starts_with("B:header version 9"), "{}", s[1]);
    assert_eq!(s[2], "F:4x2:RGB8");
    assert!(
        s[3].starts_with("B:unknown pixel format code 77"),
        "{}",
        s[3]
    );
    assert!(s[4].starts_with("B:reserved"), "{}", s[4]);
    assert!(
        s[5].contains("needs 24 bytes, the header says 10"),
        "{}",
        s[5]
    );
    assert!(s[6].contains("even"), "{}", s[6]);
    assert_eq!(s[7], "F:4x2:RGB8");
    assert_eq!(s[8], "E");
}

#[test]
fn garbage_and_absurd_sizes_resynchronise_at_the_next_header() {
    let good = frame(PixelFormat::Gray8, 4, 4);
    let garbage = b"this is not a frame header at all, NAP is close but no".to_vec();
    let mut absurd = header(PixelFormat::Rgb8, 100_000, 100_000, u32::MAX).to_vec();
    absurd.extend([0u8; 50]);
    let stream = [garbage, good.clone(), absurd, good.clone()].concat();
    let s = shapes(&events(stream));
    assert!(s[0].starts_with("B:no NAPF frame header; skipped"), "{s:?}");
    assert_eq!(s[1], "F:4x4:GRAY8");
    assert!(s[2].contains("exceeds the limit"), "{s:?}");
    assert_eq!(s[3], "F:4x4:GRAY8");
    assert_eq!(s[4], "E");
    assert_eq!(s.len(), 5);
}

#[test]
fn truncation_rejects_the_last_frame_then_ends() {
    let good = frame(PixelFormat::Rgb8, 4, 2);
    // Cut inside the payload.
    let cut = [good.clone(), good[..HEADER_LEN + 5].to_vec()].concat();
    let s = shapes(&events(cut));
    assert_eq!(s[0], "F:4x2:RGB8");
    assert!(s[1].starts_with("B:truncated frame"), "{s:?}");
    assert_eq!(s[2..], ["E"]);
    // Cut inside the header.
    let s = shapes(&events([good.clone(), good[..7].to_vec()].concat()));
    assert!(s[1].starts_with("B:truncated header"), "{s:?}");
    assert_eq!(s[2..], ["E"]);
    // An empty stream ends at once.
    assert_eq!(shapes(&events(Vec::new())), ["E"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Any byte soup ends cleanly, never panics, and every event is accounted for.
    #[test]
    fn random_streams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), splice in any::<bool>()) {
        let mut stream = bytes;
        if splice {
            // Mix real frames in, so the parser's frame path runs too.
            let mut s = frame(PixelFormat::Yuyv, 4, 2);
            s.extend(stream);
            stream = s;
        }
        let ev = events(stream);
        prop_assert!(matches!(ev.last(), Some(SourceEvent::End)));
    }
}

#[test]
fn a_frame_at_the_size_limit_is_read_and_one_past_it_rejected() {
    // GRAY8 4x4 is 16 bytes: read under a 16-byte limit, rejected unread under 15.
    let stream = [
        frame(PixelFormat::Gray8, 4, 4),
        frame(PixelFormat::Gray8, 2, 2),
    ]
    .concat();
    let at = shapes(&events_under(stream.clone(), 16));
    assert_eq!(at, ["F:4x4:GRAY8", "F:2x2:GRAY8", "E"]);
    let past = shapes(&events_under(stream, 15));
    assert!(
        past[0].contains("payload length 16 exceeds the limit of 15"),
        "{past:?}"
    );
    assert_eq!(past[1..], ["F:2x2:GRAY8", "E"]);
}
