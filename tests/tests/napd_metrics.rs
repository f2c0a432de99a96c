//! napd's Prometheus metrics, read by the real tools: `promtool check metrics` accepts the
//! page, and a real Prometheus server scraping napd (raw frames of ImageNet and DTD photos on
//! its stdin, one malformed) answers queries with the counts napd's final log gives.

use nap_runtime::preprocess::decode;
use nap_test_support::broker::free_port;
use nap_test_support::data::shared_data_file;
use nap_test_support::http;
use nap_test_support::tools::require;
use napctl::images;
use napd::source::PixelFormat;
use napd::source::raw::{encode_frame, header};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PER_SET: usize = 6;

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// A Prometheus server scraping `target` every second, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Prometheus {
    fn start(program: &Path, dir: &Path, target: &str) -> Prometheus {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: napd\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(program)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap();
        Prometheus { child, addr }
    }

    /// The value of an instant query that names one series, once it has one.
    fn query(&self, query: &str) -> Option<f64> {
        let (status, body) = http::get(&self.addr, &format!("/api/v1/query?query={query}")).ok()?;
        if status != 200 {
            return None;
        }
        let answer: Value = serde_json::from_str(&body).ok()?;
        answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }

    /// Waits up to a minute for `query` to give `expected`; gives the last value seen.
    fn wait_for(&self, query: &str, expected: f64) -> Option<f64> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = None;
        while Instant::now() < deadline {
            seen = self.query(query);
            if seen == Some(expected) {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        seen
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The log's objects so far.
fn log_objects(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn prometheus_scrapes_the_counts_napd_logs_and_promtool_accepts_the_page() {
    if shared_data_file("images").is_none() {
        return;
    }
    let (Some(prometheus), Some(promtool)) = (require("prometheus"), require("promtool")) else {
        return;
    };
    let frames = tmp("metrics_frames");
    let _ = std::fs::remove_dir_all(&frames);
    std::fs::create_dir_all(&frames).unwrap();
    for set in ["id-imagenet", "ood-dtd"] {
        nap_test_support::mobilenet::link_shared_images(&frames, set, 0..PER_SET).unwrap();
    }
    let bundle = nap_test_support::mobilenet::float_bundle_at_median(&frames).unwrap();
    let bundle_path = tmp("metrics.nap");
    bundle.write(&bundle_path).unwrap();

    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let server = Prometheus::start(&prometheus, &tmp("metrics_prometheus"), &target);
    let log = tmp("metrics.jsonl");
    let _ = std::fs::remove_file(&log);
    let mut napd = Command::new(nap_test_support::cli::workspace_binary("napd", "napd"))
        .args([
            "--bundle",
            bundle_path.to_str().unwrap(),
            "--source",
            "raw:-",
        ])
        .args([
            "--metrics",
            &target,
            "--overflow",
            "block",
            "--stats-ms",
            "200",
        ])
        .args(["--log", &format!("jsonl:{}", log.display())])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();

    // Every photo as a raw RGB8 frame, and one frame whose header names no pixel format.
    let mut stdin = napd.stdin.take().unwrap();
    let files = images::collect(std::slice::from_ref(&frames)).unwrap();
    for (i, f) in files.iter().enumerate() {
        let img = decode(&std::fs::read(&f.path).unwrap()).unwrap();
        let frame = encode_frame(PixelFormat::Rgb8, img.width(), img.height(), img.as_raw());
        stdin.write_all(&frame.unwrap()).unwrap();
        if i == 3 {
            let mut bad = header(PixelFormat::Rgb8, 4, 4, 48).to_vec();
            bad[5] = 99;
            bad.extend([7u8; 48]);
            stdin.write_all(&bad).unwrap();
        }
    }
    stdin.flush().unwrap();
    let n = files.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while log_objects(&log)
        .iter()
        .filter(|o| o["type"] == "verdict")
        .count()
        < n
    {
        assert!(Instant::now() < deadline, "napd did not score {n} frames");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The page passes promtool's checks.
    let (status, page) = http::get(&target, "/metrics").unwrap();
    assert_eq!(status, 200);
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{page}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(http::get(&target, "/other").unwrap().0, 404);

    // Prometheus sees every verdict and the rejected frame, as napd's final log counts them.
    let verdicts = server.wait_for("nap_frames_total{outcome=\"verdict\"}", n as f64);
    let rejected = server.wait_for("nap_frames_total{outcome=\"rejected\"}", 1.0);
    let ood = server.query("nap_ood_verdicts_total");
    let info = server.query("nap_bundle_info{method=\"NAP-E\"}");
    drop(stdin);
    assert!(napd.wait().unwrap().success());
    let objects = log_objects(&log);
    let last = objects.last().unwrap();
    assert_eq!(last["type"], "final");
    assert_eq!(verdicts, last["verdicts"].as_f64(), "{last}");
    assert_eq!(rejected, last["bad"].as_f64(), "{last}");
    assert_eq!(ood, last["ood"].as_f64(), "{last}");
    assert_eq!(info, Some(1.0));
    eprintln!(
        "prometheus: {n} verdicts, {} OOD, 1 rejected, as napd logged",
        last["ood"]
    );
}

#[test]
fn a_metrics_port_in_use_is_logged_and_scoring_goes_on() {
    let Some(images) = shared_data_file("images/id-imagenet") else {
        return;
    };
    let Some(mut bundle) = nap_test_support::mobilenet::float_bundle() else {
        return;
    };
    bundle.manifest.scorer.threshold = Some(0.0);
    let bundle_path = tmp("metrics_busy.nap");
    bundle.write(&bundle_path).unwrap();
    let frames = tmp("metrics_busy_frames");
    let _ = std::fs::remove_dir_all(&frames);
    std::fs::create_dir_all(&frames).unwrap();
    for f in &images::collect(&[images]).unwrap()[..3] {
        std::os::unix::fs::symlink(&f.path, frames.join(&f.name)).unwrap();
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let log = tmp("metrics_busy.jsonl");
    let _ = std::fs::remove_file(&log);
    let out = Command::new(nap_test_support::cli::workspace_binary("napd", "napd"))
        .args(["--bundle", bundle_path.to_str().unwrap()])
        .args(["--source", &format!("dir:{}", frames.display())])
        .args([
            "--metrics",
            &addr,
            "--log",
            &format!("jsonl:{}", log.display()),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("going on without metrics"), "{stderr}");
    let objects = log_objects(&log);
    assert!(
        objects
            .iter()
            .any(|o| o["type"] == "metrics" && o["event"] == "failed"),
        "the failure is logged"
    );
    assert_eq!(objects.last().unwrap()["verdicts"], 3);
}
