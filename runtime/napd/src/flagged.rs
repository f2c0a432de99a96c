//! Flagged-frame capture (`--capture DIR`): every OOD frame saved with a JSON sidecar, so an
//! engineer can see what was flagged (`napctl review`) and re-calibrate from it.
//!
//! Saving runs on its own thread behind a small bounded queue: a slow or full disk never holds
//! up scoring. A frame is skipped, and counted, when the per-minute cap is reached or the queue
//! is full; a failed write (a full disk) is counted and logged. The folder is kept under its
//! size cap by deleting the oldest captures first; files napd did not write are never touched.
//!
//! Each capture is `STEM.jpg` or `STEM.png` plus `STEM.json`, with `STEM` =
//! `<unix milliseconds, 13 digits>-<frame number, 10 digits>`, so names sort by time. Encoded
//! frames (a `dir:` replay's JPEG or PNG files) are saved byte for byte, exactly what was
//! scored; raw frames are saved as PNG, losslessly.

use crate::source::Pixels;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Flagged frames waiting for the disk; more are skipped (and counted). Small, because a raw
/// frame can be megabytes.
pub const QUEUE: usize = 8;

/// Where captures go and how much they may take.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureOptions {
    /// The capture folder (created if missing).
    pub dir: PathBuf,
    /// The most bytes the captures in the folder may take; the oldest go first.
    pub max_bytes: u64,
    /// The most frames saved in any 60 seconds; 0: no limit.
    pub max_per_min: u32,
}

/// One OOD frame to save, with what its sidecar says.
#[derive(Debug)]
pub struct FlaggedFrame {
    /// The frame's number in the run.
    pub seq: u64,
    /// The frame's name, as in the log.
    pub frame: String,
    /// When the verdict was made.
    pub time: SystemTime,
    /// The deciding score.
    pub score: f32,
    /// The threshold it fell below.
    pub threshold: f32,
    /// The classifier's top class.
    pub top1: usize,
    /// The frame as the source delivered it.
    pub pixels: Pixels,
}

/// The sidecar saved beside each captured frame.
#[derive(Serialize)]
struct Sidecar<'a> {
    seq: u64,
    frame: &'a str,
    /// RFC 3339, UTC, milliseconds.
    time: String,
    score: f32,
    threshold: f32,
    top1: usize,
    /// SHA-256 of the bundle file that decided.
    bundle_sha256: &'a str,
    /// The image file beside this sidecar.
    image: &'a str,
}

/// What the capture did, for the stats and final log objects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CaptureCounts {
    /// Frames saved.
    pub saved: u64,
    /// Frames skipped by the per-minute cap.
    pub skipped_rate: u64,
    /// Frames skipped because the queue was full (the disk is slower than the OOD frames).
    pub skipped_queue: u64,
    /// Frames whose writing failed (a full disk, a read-only folder).
    pub failed: u64,
    /// Older captures deleted to stay under the size cap.
    pub evicted: u64,
    /// Captures in the folder now.
    pub files: u64,
    /// Bytes they take.
    pub bytes: u64,
}

/// A change in whether captures can be written, for the log.
#[derive(Clone, Debug, PartialEq)]
pub enum CaptureEvent {
    /// Writing frame `seq` failed, after the last write succeeded (later failures are counted
    /// only).
    Failed {
        /// The frame.
        seq: u64,
        /// Why.
        error: String,
    },
    /// Frame `seq` was written after failures.
    Recovered {
        /// The frame.
        seq: u64,
    },
}

/// What the writer thread counts.
#[derive(Default)]
struct Counters {
    saved: AtomicU64,
    failed: AtomicU64,
    evicted: AtomicU64,
    files: AtomicU64,
    bytes: AtomicU64,
}

/// The pipeline's side of the capture: the cap, the queue, and the counts.
pub struct Capture {
    queue: Option<Sender<FlaggedFrame>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    events: Receiver<CaptureEvent>,
    max_per_min: u32,
    /// When the frames accepted in the last minute were offered.
    recent: VecDeque<Instant>,
    skipped_rate: u64,
    skipped_queue: u64,
}

/// What became of an offered frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    /// On its way to the disk.
    Queued,
    /// Over the per-minute cap.
    OverRate,
    /// The queue was full.
    QueueFull,
}

impl Capture {
    /// Opens the capture folder (creating it), takes stock of the captures already there, and
    /// starts the writer. `bundle_sha256` goes into every sidecar.
    pub fn open(options: &CaptureOptions, bundle_sha256: &str) -> Result<Capture, String> {
        let dir = &options.dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("capture folder {}: {e}", dir.display()))?;
        let (events, events_rx) = crossbeam_channel::unbounded();
        let store = Store::open(dir, options.max_bytes, bundle_sha256, events)
            .map_err(|e| format!("capture folder {}: {e}", dir.display()))?;
        let (queue, frames) = crossbeam_channel::bounded(QUEUE);
        let mut capture = Capture::unstarted(queue, options.max_per_min, store.counters.clone());
        let writer = std::thread::Builder::new()
            .name("napd-capture".into())
            .spawn(move || store.run(&frames))
            .map_err(|e| format!("starting the capture writer: {e}"))?;
        capture.writer = Some(writer);
        capture.events = events_rx;
        Ok(capture)
    }

    fn unstarted(queue: Sender<FlaggedFrame>, max_per_min: u32, counters: Arc<Counters>) -> Self {
        Capture {
            queue: Some(queue),
            writer: None,
            counters,
            events: crossbeam_channel::never(),
            max_per_min,
            recent: VecDeque::new(),
            skipped_rate: 0,
            skipped_queue: 0,
        }
    }

    /// Hands an OOD frame to the writer, unless the per-minute cap or the queue says no
    /// (counted). Never waits.
    pub fn offer(&mut self, frame: FlaggedFrame, now: Instant) -> Offered {
        if self.max_per_min > 0 {
            while self
                .recent
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(60))
            {
                self.recent.pop_front();
            }
            if self.recent.len() >= self.max_per_min as usize {
                self.skipped_rate += 1;
                return Offered::OverRate;
            }
        }
        let Some(queue) = &self.queue else {
            self.skipped_queue += 1;
            return Offered::QueueFull;
        };
        match queue.try_send(frame) {
            Ok(()) => {
                if self.max_per_min > 0 {
                    self.recent.push_back(now);
                }
                Offered::Queued
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.skipped_queue += 1;
                Offered::QueueFull
            }
        }
    }

    /// Changes in writability since the last call.
    pub fn events(&self) -> Vec<CaptureEvent> {
        self.events.try_iter().collect()
    }

    /// The counts so far.
    pub fn counts(&self) -> CaptureCounts {
        let c = &self.counters;
        CaptureCounts {
            saved: c.saved.load(Ordering::Relaxed),
            skipped_rate: self.skipped_rate,
            skipped_queue: self.skipped_queue,
            failed: c.failed.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            files: c.files.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
        }
    }

    /// Lets the writer save what is queued, then stops it; gives the final counts and the
    /// events not yet taken.
    pub fn finish(mut self) -> (CaptureCounts, Vec<CaptureEvent>) {
        self.queue = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        (self.counts(), self.events())
    }
}

/// One capture in the folder: its stem and the bytes its files take.
#[derive(Debug, PartialEq)]
struct Kept {
    stem: String,
    bytes: u64,
}

/// The writer's side: the folder and what is in it, oldest first.
struct Store {
    dir: PathBuf,
    max_bytes: u64,
    bundle_sha256: String,
    kept: VecDeque<Kept>,
    total: u64,
    counters: Arc<Counters>,
    events: Sender<CaptureEvent>,
    failing: bool,
}

impl Store {
    /// Takes stock of the captures already in `dir` (from an earlier run: they count against
    /// the cap and are the first to go).
    fn open(
        dir: &Path,
        max_bytes: u64,
        bundle_sha256: &str,
        events: Sender<CaptureEvent>,
    ) -> io::Result<Store> {
        // The key spells the stem digit for digit, so one entry per capture, oldest first.
        let mut found: BTreeMap<Key, Kept> = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some((stem, key)) = name.to_str().and_then(capture_stem) else {
                continue;
            };
            let bytes = entry.metadata()?.len();
            found
                .entry(key)
                .or_insert_with(|| Kept {
                    stem: stem.to_string(),
                    bytes: 0,
                })
                .bytes += bytes;
        }
        let kept: VecDeque<Kept> = found.into_values().collect();
        let total = kept.iter().map(|k| k.bytes).sum();
        let mut store = Store {
            dir: dir.to_path_buf(),
            max_bytes,
            bundle_sha256: bundle_sha256.to_string(),
            kept,
            total,
            counters: Arc::default(),
            events,
            failing: false,
        };
        store.evict();
        Ok(store)
    }

    /// Saves frames until the queue closes.
    fn run(mut self, frames: &Receiver<FlaggedFrame>) {
        for frame in frames {
            self.save(&frame);
        }
    }

    fn save(&mut self, frame: &FlaggedFrame) {
        match self.write(frame) {
            Ok(kept) => {
                self.total += kept.bytes;
                self.kept.push_back(kept);
                self.counters.saved.fetch_add(1, Ordering::Relaxed);
                if std::mem::replace(&mut self.failing, false) {
                    let _ = self.events.send(CaptureEvent::Recovered { seq: frame.seq });
                }
                self.evict();
            }
            Err(e) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut self.failing, true) {
                    let _ = self.events.send(CaptureEvent::Failed {
                        seq: frame.seq,
                        error: e,
                    });
                }
            }
        }
    }

    /// Writes the image and then its sidecar; on any failure removes what was written.
    fn write(&self, frame: &FlaggedFrame) -> Result<Kept, String> {
        let (image, extension) = image_file(&frame.pixels)?;
        let millis = frame
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let stem = format!("{millis:013}-{:010}", frame.seq);
        let image_name = format!("{stem}.{extension}");
        let sidecar = serde_json::to_vec_pretty(&Sidecar {
            seq: frame.seq,
            frame: &frame.frame,
            time: humantime::format_rfc3339_millis(frame.time).to_string(),
            score: frame.score,
            threshold: frame.threshold,
            top1: frame.top1,
            bundle_sha256: &self.bundle_sha256,
            image: &image_name,
        })
        .map_err(|e| e.to_string())?;
        let image_path = self.dir.join(&image_name);
        let sidecar_path = self.dir.join(format!("{stem}.json"));
        let written = std::fs::write(&image_path, &image)
            .and_then(|()| std::fs::write(&sidecar_path, &sidecar));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&image_path);
            let _ = std::fs::remove_file(&sidecar_path);
            return Err(format!("writing {}: {e}", image_path.display()));
        }
        Ok(Kept {
            stem,
            bytes: (image.len() + sidecar.len()) as u64,
        })
    }

    /// Deletes the oldest captures until the folder is under its cap.
    fn evict(&mut self) {
        while self.total > self.max_bytes {
            let Some(old) = self.kept.pop_front() else {
                break;
            };
            self.total -= old.bytes;
            for extension in EXTENSIONS {
                let _ = std::fs::remove_file(self.dir.join(format!("{}.{extension}", old.stem)));
            }
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .files
            .store(self.kept.len() as u64, Ordering::Relaxed);
        self.counters.bytes.store(self.total, Ordering::Relaxed);
    }
}

/// The extensions of a capture's files: its sidecar and its image.
const EXTENSIONS: [&str; 3] = ["json", "jpg", "png"];

/// The time and frame number a capture's name holds: its place in the age order.
type Key = (u64, u64);

/// The stem and age of a file name napd's capture writes, `None` for any other file.
fn capture_stem(name: &str) -> Option<(&str, Key)> {
    let (stem, extension) = name.rsplit_once('.')?;
    if !EXTENSIONS.contains(&extension) {
        return None;
    }
    let (millis, seq) = stem.split_once('-')?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(millis, 13) && digits(seq, 10)) {
        return None;
    }
    Some((stem, (millis.parse().ok()?, seq.parse().ok()?)))
}

/// The bytes of a frame's image file and its extension: an encoded frame as it came, a raw one
/// as PNG.
fn image_file(pixels: &Pixels) -> Result<(Vec<u8>, &'static str), String> {
    let Some(rgb) = pixels.to_rgb8() else {
        let Pixels::Encoded(bytes) = pixels else {
            unreachable!("only encoded frames have no RGB8 conversion")
        };
        return match image::guess_format(bytes) {
            Ok(image::ImageFormat::Jpeg) => Ok((bytes.clone(), "jpg")),
            Ok(image::ImageFormat::Png) => Ok((bytes.clone(), "png")),
            _ => Err("the frame is neither JPEG nor PNG".into()),
        };
    };
    let rgb = rgb.map_err(|e| e.to_string())?;
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new_with_quality(
            &mut png,
            image::codecs::png::CompressionType::Fast,
            image::codecs::png::FilterType::Adaptive,
        ),
        &rgb.pixels,
        rgb.width,
        rgb.height,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| e.to_string())?;
    Ok((png, "png"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::PixelFormat;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("napd-flagged-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn raw(seq: u64, side: u32) -> FlaggedFrame {
        FlaggedFrame {
            seq,
            frame: format!("stream:{seq}"),
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_000 + seq),
            score: -1.5,
            threshold: 2.0,
            top1: 7,
            pixels: Pixels::Raw {
                width: side,
                height: side,
                format: PixelFormat::Rgb8,
                data: (0..side * side * 3)
                    .map(|i| (i * 7 + seq as u32) as u8)
                    .collect(),
            },
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_raw_frame_is_saved_as_png_with_its_sidecar() {
        let dir = tmp("raw");
        let options = CaptureOptions {
            dir: dir.clone(),
            max_bytes: 1 << 20,
            max_per_min: 0,
        };
        let mut capture = Capture::open(&options, "ab12").unwrap();
        let frame = raw(3, 5);
        let Pixels::Raw { data, .. } = &frame.pixels else {
            unreachable!()
        };
        let data = data.clone();
        assert_eq!(capture.offer(frame, Instant::now()), Offered::Queued);
        let (counts, events) = capture.finish();
        assert_eq!((counts.saved, counts.files, counts.failed), (1, 1, 0));
        assert!(events.is_empty());
        let stem = "1764000000003-0000000003";
        assert_eq!(names(&dir), [format!("{stem}.json"), format!("{stem}.png")]);
        let png = image::open(dir.join(format!("{stem}.png"))).unwrap();
        assert_eq!(png.to_rgb8().into_raw(), data);
        let sidecar: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.json"))).unwrap())
                .unwrap();
        assert_eq!(sidecar["seq"], 3);
        assert_eq!(sidecar["frame"], "stream:3");
        assert_eq!(sidecar["time"], "2025-11-24T16:00:00.003Z");
        assert_eq!(sidecar["score"], -1.5);
        assert_eq!(sidecar["threshold"], 2.0);
        assert_eq!(sidecar["top1"], 7);
        assert_eq!(sidecar["bundle_sha256"], "ab12");
        assert_eq!(sidecar["image"], format!("{stem}.png"));
        let bytes: u64 = names(&dir)
            .iter()
            .map(|n| std::fs::metadata(dir.join(n)).unwrap().len())
            .sum();
        assert_eq!(counts.bytes, bytes);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_oldest_captures_go_first_and_other_files_stay() {
        let dir = tmp("evict");
        std::fs::create_dir_all(&dir).unwrap();
        // An earlier run's capture, older than anything this run writes, and a user's file.
        std::fs::write(dir.join("0000000000001-0000000000.json"), [b' '; 2000]).unwrap();
        std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
        let mut store = Store::open(&dir, 4000, "ab12", crossbeam_channel::unbounded().0).unwrap();
        assert_eq!((store.kept.len(), store.total), (1, 2000));
        for seq in 0..6 {
            store.save(&raw(seq, 16));
        }
        let c = &store.counters;
        let (saved, evicted) = (
            c.saved.load(Ordering::Relaxed),
            c.evicted.load(Ordering::Relaxed),
        );
        assert_eq!(saved, 6);
        let kept: Vec<String> = store.kept.iter().map(|k| k.stem.clone()).collect();
        assert_eq!(evicted as usize + kept.len(), 7);
        assert!(store.total <= 4000, "{} bytes kept", store.total);
        // The newest survive, in order; the earlier run's went first.
        let newest: Vec<String> = (6 - kept.len() as u64..6)
            .map(|s| format!("{:013}-{s:010}", 1_764_000_000_000 + s))
            .collect();
        assert_eq!(kept, newest);
        let mut expected: Vec<String> = kept
            .iter()
            .flat_map(|s| [format!("{s}.json"), format!("{s}.png")])
            .collect();
        expected.push("notes.txt".into());
        expected.sort();
        assert_eq!(names(&dir), expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_is_counted_and_reported_once_until_it_recovers() {
        let dir = tmp("fail");
        std::fs::create_dir_all(&dir).unwrap();
        let (tx, events) = crossbeam_channel::unbounded();
        let mut store = Store::open(&dir, 1 << 20, "ab12", tx).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        store.save(&raw(0, 4));
        store.save(&raw(1, 4));
        std::fs::create_dir_all(&dir).unwrap();
        store.save(&raw(2, 4));
        let c = &store.counters;
        assert_eq!(c.failed.load(Ordering::Relaxed), 2);
        assert_eq!(c.saved.load(Ordering::Relaxed), 1);
        let events: Vec<CaptureEvent> = events.try_iter().collect();
        assert!(
            matches!(&events[..], [CaptureEvent::Failed { seq: 0, error }, CaptureEvent::Recovered { seq: 2 }] if error.contains("No such file")),
            "{events:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_per_minute_cap_and_a_full_queue_skip_frames_and_count_them() {
        let (queue, frames) = crossbeam_channel::bounded(2);
        let mut capture = Capture::unstarted(queue, 3, Arc::default());
        let t0 = Instant::now();
        let offers: Vec<Offered> = (0..5).map(|s| capture.offer(raw(s, 2), t0)).collect();
        // Two fit the queue, the third is over it; the cap (3 a minute) counts only queued ones.
        assert_eq!(
            offers,
            [
                Offered::Queued,
                Offered::Queued,
                Offered::QueueFull,
                Offered::QueueFull,
                Offered::QueueFull
            ]
        );
        frames.try_recv().unwrap();
        frames.try_recv().unwrap();
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(capture.offer(raw(5, 2), t1), Offered::Queued);
        assert_eq!(capture.offer(raw(6, 2), t1), Offered::OverRate);
        frames.try_recv().unwrap();
        // A minute after the first two, their places free up.
        let t2 = t0 + Duration::from_secs(60);
        assert_eq!(capture.offer(raw(7, 2), t2), Offered::Queued);
        assert_eq!(capture.offer(raw(8, 2), t2), Offered::Queued);
        assert_eq!(capture.offer(raw(9, 2), t2), Offered::OverRate);
        let counts = capture.counts();
        assert_eq!((counts.skipped_queue, counts.skipped_rate), (3, 2));
    }

    #[test]
    fn only_names_the_capture_writes_are_its_own() {
        assert_eq!(
            capture_stem("1764000000003-0000000003.jpg"),
            Some(("1764000000003-0000000003", (1_764_000_000_003, 3)))
        );
        for other in [
            "1764000000003-0000000003.txt",
            "1764000000003-3.jpg",
            "x764000000003-0000000003.png",
            "1764000000003_0000000003.json",
            "notes.json",
            ".json",
        ] {
            assert_eq!(capture_stem(other), None, "{other}");
        }
    }
}
