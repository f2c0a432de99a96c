//! `napctl review` on what napd really captured: the shared MobileNetV2 replaying ImageNet and
//! DTD photos with `--capture`, then the page made from that folder.
//!
//! - the page lists every captured frame once, lowest score first, with its top-1 class by name;
//! - it is self-contained (every `src` a data URI, no link, script, frame or stylesheet that
//!   loads anything) and stays under the stated size: 64 KiB plus 12 KiB per thumbnail;
//! - headless Chromium renders it: the screenshot shows the histogram's bars, the threshold's
//!   line and card frames, and the photos (thousands of distinct colours).

use nap_test_support::cli::{assert_ok, run, stdout, workspace_binary};
use nap_test_support::data::shared_data_file;
use napd::Options;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

const PER_SET: usize = 12;

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// napd's capture of 12 ImageNet and 12 DTD photos at their median score; gives the folder.
fn capture() -> Option<PathBuf> {
    let frames = tmp("review_frames");
    let _ = std::fs::remove_dir_all(&frames);
    std::fs::create_dir_all(&frames).unwrap();
    for set in ["id-imagenet", "ood-dtd"] {
        nap_test_support::mobilenet::link_shared_images(&frames, set, 0..PER_SET)?;
    }
    let bundle = nap_test_support::mobilenet::float_bundle_at_median(&frames)?;
    let bundle_path = tmp("review.nap");
    bundle.write(&bundle_path).unwrap();

    let dir = tmp("review_capture");
    let _ = std::fs::remove_dir_all(&dir);
    let settings = Options {
        bundle: Some(bundle_path),
        source: Some(format!("dir:{}", frames.display())),
        capture: Some(dir.clone()),
        capture_max_per_min: Some(0),
        workers: Some(2),
        ..Options::default()
    }
    .resolve()
    .unwrap();
    let served = napd::serve(&settings, Arc::new(AtomicBool::new(false)));
    assert_eq!(served.exit_code, 0, "{served:?}");
    let summary = served.summary.unwrap();
    assert_eq!(summary.capture.unwrap().saved, summary.ood);
    Some(dir)
}

/// Every value of `attribute="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!("{attribute}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

#[test]
fn the_review_page_shows_every_captured_frame_self_contained() {
    let Some(dir) = capture() else { return };
    let labels_path = shared_data_file("mobilenetv2/imagenet_labels.txt").unwrap();
    let labels: Vec<String> = std::fs::read_to_string(&labels_path)
        .unwrap()
        .lines()
        .map(|l| l.split(',').next().unwrap().trim().to_string())
        .collect();
    let mut sidecars: Vec<Value> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    assert!(sidecars.len() >= PER_SET / 2, "{} captured", sidecars.len());
    sidecars.sort_by(|a, b| {
        a["score"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["score"].as_f64().unwrap())
    });

    let page = tmp("review.html");
    let napctl = workspace_binary("napctl", "napctl");
    let out = run(
        &napctl,
        [
            "review".as_ref(),
            dir.as_os_str(),
            "-o".as_ref(),
            page.as_os_str(),
            "--labels".as_ref(),
            labels_path.as_os_str(),
        ],
    );
    assert_ok(&out);
    let n = sidecars.len();
    assert!(
        stdout(&out).contains(&format!("{n} flagged frames, {n} in the grid")),
        "{}",
        stdout(&out)
    );
    let html = std::fs::read_to_string(&page).unwrap();

    // Every frame once, lowest score first, named by its top-1 class.
    let cards: Vec<&str> = html.split("<div class=\"card").skip(1).collect();
    assert_eq!(cards.len(), n);
    for (card, sidecar) in cards.iter().zip(&sidecars) {
        let score = format!(">{:.3}<", sidecar["score"].as_f64().unwrap());
        assert!(card.contains(&score), "{score} in {card}");
        let label = &labels[sidecar["top1"].as_u64().unwrap() as usize];
        assert!(card.contains(&format!(">{label}<")), "{label} in {card}");
        assert!(card.contains(&format!("#{} ", sidecar["seq"])));
    }

    // Self-contained: nothing the browser would fetch.
    let sources = attribute_values(&html, "src");
    assert_eq!(sources.len(), n, "one image per card");
    assert!(
        sources
            .iter()
            .all(|s| s.starts_with("data:image/jpeg;base64,"))
    );
    for forbidden in [
        "href=", "url(", "@import", "<script", "<link", "<iframe", "<object",
    ] {
        assert!(!html.contains(forbidden), "the page contains {forbidden}");
    }
    let limit = 64 * 1024 + n * 12 * 1024;
    assert!(html.len() <= limit, "{} bytes > {limit}", html.len());
    eprintln!(
        "review page: {n} frames, {} KiB (limit {} KiB)",
        html.len() / 1024,
        limit / 1024
    );

    screenshot(&page);
}

/// Headless Chromium's screenshot of the page shows the charts, the cards and the photos.
fn screenshot(page: &Path) {
    let Some(chromium) = nap_test_support::tools::require("chromium-headless-shell") else {
        return;
    };
    let shot = tmp("review.png");
    let _ = std::fs::remove_file(&shot);
    let status = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg("--window-size=1280,1200")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let image = image::open(&shot).unwrap().to_rgb8();
    let count = |rgb: [u8; 3], rows: std::ops::Range<u32>| {
        image
            .enumerate_pixels()
            .filter(|(_, y, p)| rows.contains(y) && p.0 == rgb)
            .count()
    };
    let h = image.height();
    // The histogram's and hourly chart's bars (blue), in the upper part with the charts.
    let bars = count([31, 119, 180], 0..h / 2);
    // The threshold line and the cards' frames (red).
    let red = count([214, 39, 40], 0..h);
    let colours: HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    eprintln!(
        "screenshot {}: {bars} bar pixels, {red} red, {} colours",
        shot.display(),
        colours.len()
    );
    assert!(bars > 2000, "{bars} bar pixels: no histogram");
    assert!(red > 2000, "{red} red pixels: no threshold or cards");
    assert!(colours.len() > 5000, "{} colours: no photos", colours.len());
}
