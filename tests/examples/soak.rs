//! The soak run: napd for 30 minutes (or MINUTES) on a paced raw camera stream at 15 fps with
//! 2 workers, 1% malformed frames, a 3 s camera stall every 5 minutes, the controller link
//! dropped every 20 s and 1% garbage replies from the controller (the firmware library). Prints
//! the table, writes the samples as CSV and a plot of RSS and p99 latency over time.
//!
//! ```sh
//! cargo build --release -p napd
//! cargo run --release -p nap-tests --example soak -- [MINUTES] [OUT_DIR]
//! ```
//!
//! Exits non-zero when a goal is missed: a frame unaccounted, RSS growth after the first
//! 5 minutes above 1 MiB, the last window's p99 more than 20% above the first's, or the
//! controller armed while napd was not healthy.

use nap_test_support::mobilenet::{float_bundle_at_median, link_shared_images};
use nap_test_support::soak::{self, SoakPlan, SoakReport};
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let minutes: u64 = std::env::args()
        .nth(1)
        .map_or(30, |m| m.parse().expect("MINUTES"));
    let out = PathBuf::from(std::env::args().nth(2).unwrap_or_else(|| "soak-out".into()));
    std::fs::create_dir_all(&out).unwrap();
    let photos = out.join("photos");
    let _ = std::fs::remove_dir_all(&photos);
    std::fs::create_dir_all(&photos).unwrap();
    link_shared_images(&photos, "id-imagenet", 0..8).expect("the shared data");
    link_shared_images(&photos, "ood-dtd", 0..4).unwrap();
    let bundle_path = out.join("f32.nap");
    float_bundle_at_median(&photos)
        .expect("shared data")
        .write(&bundle_path)
        .unwrap();
    let frames = soak::photos(&photos, 12);
    let napd = nap_test_support::cli::workspace_binary("napd", "napd");
    let plan = SoakPlan {
        duration: Duration::from_secs(minutes * 60),
        ..SoakPlan::full()
    };
    println!("soak: {minutes} min, {plan:?}");
    let report = soak::run(&napd, &bundle_path, &frames, &plan, &out.join("napd.jsonl"));
    println!("{}", report.table());
    write_csv(&report, &out.join("soak.csv"));
    plot(&report, &out.join("soak.png"));

    let growth = report.rss_growth_after(300.0);
    let p99 = |i: usize| report.windows.get(i).map_or(0, |w| w.3) as f64;
    let last = report.windows.len().saturating_sub(1);
    let p99_ratio = p99(last) / p99(0).max(1.0);
    println!("RSS growth after 5 min: {growth} KiB; p99 last/first window: {p99_ratio:.3}");
    let ok = report.exit_ok
        && report.accounted() == report.offered
        && growth <= 1024
        && p99_ratio <= 1.2
        && report.armed_while_unhealthy == 0;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn write_csv(report: &SoakReport, path: &Path) {
    let mut text = String::from("kind,t_s,value\n");
    for (t, kib) in &report.rss_kib {
        text.push_str(&format!("rss_kib,{t:.1},{kib}\n"));
    }
    for (start, _, _, p99) in &report.windows {
        text.push_str(&format!("p99_us,{start:.1},{p99}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// RSS (MiB) and each window's p99 latency (ms) over the run's minutes, one above the other.
fn plot(report: &SoakReport, path: &Path) {
    napctl::eval::plots::register_font();
    let size = (900, 600);
    let mut pixels = vec![0u8; 900 * 600 * 3];
    draw(
        report,
        BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area(),
    );
    image::RgbImage::from_raw(size.0, size.1, pixels)
        .expect("width * height * 3 bytes")
        .save(path)
        .unwrap();
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn draw(report: &SoakReport, root: Area<'_>) {
    root.fill(&WHITE).unwrap();
    let (top, bottom) = root.split_vertically(300);
    let minutes = report.rss_kib.last().map_or(1.0, |s| s.0 / 60.0).max(1.0);
    let mib: Vec<(f64, f64)> = report
        .rss_kib
        .iter()
        .map(|&(t, k)| (t / 60.0, k as f64 / 1024.0))
        .collect();
    panel(
        &top,
        "napd resident memory (MiB)",
        minutes,
        &mib,
        1.1,
        BLUE,
        false,
    );
    let p99: Vec<(f64, f64)> = report
        .windows
        .iter()
        .map(|&(s, _, _, p)| (s / 60.0, p as f64 / 1000.0))
        .collect();
    panel(
        &bottom,
        "p99 latency per window (ms)",
        minutes,
        &p99,
        1.2,
        RED,
        true,
    );
    root.present().unwrap();
}

/// One chart over the run's minutes: `points` as a line (and dots), the y axis `headroom`
/// times above the highest point.
fn panel(
    area: &Area<'_>,
    caption: &str,
    minutes: f64,
    points: &[(f64, f64)],
    headroom: f64,
    color: RGBColor,
    dots: bool,
) {
    let most = points.iter().map(|p| p.1).fold(0.0, f64::max) * headroom;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..minutes, 0.0..most.max(1.0))
        .unwrap();
    chart.configure_mesh().x_desc("minutes").draw().unwrap();
    if dots {
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .unwrap();
    }
    chart
        .draw_series(LineSeries::new(points.iter().copied(), &color))
        .unwrap();
}
