//! `napctl review`: what a device flagged, from its capture folder (`napd --capture`), as one
//! self-contained HTML page: the frames as a grid, lowest score first, the histogram of their
//! scores against the threshold, and how many were flagged each hour.
//!
//! - this module reads the folder: each sidecar and the frame it names, skipping (and
//!   reporting) what does not parse;
//! - [`page`] renders the page, with its charts as inline SVG and its thumbnails as data URIs,
//!   so it opens anywhere, offline, and makes no request.

pub mod page;

use crate::eval::extract::FrameSet;
use anyhow::{Context, Result};
use base64::Engine;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A sidecar as napd writes it beside a captured frame.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Sidecar {
    /// The frame's number in its run.
    pub seq: u64,
    /// The frame's name (a file name, or `stream:N`).
    pub frame: String,
    /// When the verdict was made, RFC 3339.
    pub time: String,
    /// The deciding score.
    pub score: f32,
    /// The threshold it fell below.
    pub threshold: f32,
    /// The classifier's top class.
    pub top1: usize,
    /// SHA-256 of the bundle that decided.
    pub bundle_sha256: String,
    /// The image file beside the sidecar.
    pub image: String,
}

/// One captured frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Captured {
    /// What napd recorded.
    pub sidecar: Sidecar,
    /// `sidecar.time`, parsed.
    pub time: SystemTime,
    /// The frame's image file.
    pub image: PathBuf,
}

/// A capture folder's frames, in the order of their names (the order they were captured).
#[derive(Debug, Default)]
pub struct CaptureFolder {
    /// The frames.
    pub frames: Vec<Captured>,
    /// Sidecars left out, each with why (malformed, or its image is missing).
    pub skipped: Vec<(PathBuf, String)>,
}

/// Reads every sidecar (`*.json`) of a capture folder.
pub fn read_folder(dir: &Path) -> Result<CaptureFolder> {
    let mut sidecars: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading capture folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    sidecars.sort();
    let mut folder = CaptureFolder::default();
    for path in sidecars {
        match read_sidecar(dir, &path) {
            Ok(c) => folder.frames.push(c),
            Err(why) => folder.skipped.push((path, why)),
        }
    }
    Ok(folder)
}

/// The most bytes a sidecar may have: napd's are a few hundred.
const MAX_SIDECAR_BYTES: u64 = 64 * 1024;

fn read_sidecar(dir: &Path, path: &Path) -> Result<Captured, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_SIDECAR_BYTES {
        return Err(format!(
            "{len} bytes, more than a sidecar's {MAX_SIDECAR_BYTES}"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let sidecar: Sidecar = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let time = humantime::parse_rfc3339(&sidecar.time)
        .map_err(|e| format!("time {:?}: {e}", sidecar.time))?;
    if !sidecar.score.is_finite() || !sidecar.threshold.is_finite() {
        return Err("score or threshold is not a finite number".into());
    }
    // Only a plain file name beside the sidecar: a sidecar must not point the page elsewhere.
    let name = Path::new(&sidecar.image);
    if name.components().count() != 1 || name.file_name().is_none() {
        return Err(format!("image {:?} is not a file name", sidecar.image));
    }
    let image = dir.join(name);
    if !image.is_file() {
        return Err(format!("image {} is missing", image.display()));
    }
    Ok(Captured {
        sidecar,
        time,
        image,
    })
}

/// How many frames of a set napd captured, and how many of those the given bundle flagged:
/// what `calibrate` reports when field frames join an ID set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldFrames {
    /// Frames with a capture sidecar beside them.
    pub captured: usize,
    /// Those flagged by the bundle at hand (same SHA-256).
    pub by_this_bundle: usize,
}

impl FieldFrames {
    /// Counts the captured frames of `set`; `bundle_sha256` names the bundle at hand.
    pub fn count(set: &FrameSet, bundle_sha256: &str) -> FieldFrames {
        let mut counts = FieldFrames::default();
        for sidecar in set.jobs.iter().filter_map(|j| capture_record(&j.file.path)) {
            counts.captured += 1;
            counts.by_this_bundle += usize::from(sidecar.bundle_sha256 == bundle_sha256);
        }
        counts
    }
}

/// What napd recorded about `image` when it captured it: the sidecar beside it, if one is there,
/// parses and names this image.
pub fn capture_record(image: &Path) -> Option<Sidecar> {
    let captured = read_sidecar(image.parent()?, &image.with_extension("json")).ok()?;
    (captured.image == image).then_some(captured.sidecar)
}

/// A frame's thumbnail, at most `side` pixels wide and high, as a JPEG data URI.
pub fn thumbnail(image: &Path, side: u32) -> Result<String> {
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let decoded = nap_runtime::preprocess::decode(&bytes)
        .with_context(|| format!("decoding {}", image.display()))?;
    let small = image::imageops::thumbnail(&decoded, side, side);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&small)
        .with_context(|| format!("encoding the thumbnail of {}", image.display()))?;
    Ok(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&jpeg)
    ))
}

/// Class names, one per line (`imagenet_labels.txt`): the first comma-separated name of each.
pub fn read_labels(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading labels {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split(',').next().unwrap_or("").trim().to_string())
        .collect())
}
