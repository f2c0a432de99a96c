//! The review page: one HTML file with everything inline (styles, SVG charts, thumbnails as data
//! URIs), no script and no link out, so it shows the same offline, from a mail attachment or a
//! ticket, and leaks nothing about who opens it.

use super::Captured;
use crate::eval::plots::register_font;
use plotters::prelude::*;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Charts' size in CSS pixels.
const CHART: (u32, u32) = (560, 240);
const BARS: RGBColor = RGBColor(31, 119, 180);
const THRESHOLD: RGBColor = RGBColor(214, 39, 40);
const NEW_THRESHOLD: RGBColor = RGBColor(44, 160, 44);

/// What the page shows besides the frames.
pub struct PageOptions<'a> {
    /// The heading: the folder, usually.
    pub title: &'a str,
    /// Class names by index, if known.
    pub labels: Option<&'a [String]>,
    /// Another decision to show beside the one the frames were flagged by.
    pub compare: Option<&'a Comparison<'a>>,
    /// Frames in the folder whose sidecars were left out.
    pub skipped: usize,
}

/// Another decision on the same frames: a new threshold for the captured scores, or a
/// re-calibrated bundle that scored the frames again.
pub struct Comparison<'a> {
    /// What decides, for the page: `the new threshold`, or the bundle's file name.
    pub name: &'a str,
    /// The threshold: frames scoring below it would still be flagged.
    pub threshold: f32,
    /// Each frame's score under it, in the order of the page's frames (`None`: the frame could
    /// not be scored again).
    pub scores: &'a [Option<f32>],
    /// The scores are a bundle's new ones (shown in a histogram of their own), not the
    /// captured ones.
    pub rescored: bool,
}

impl Comparison<'_> {
    /// Frames it would still flag: those scoring below its threshold, and those it could not
    /// score again.
    pub fn still_flagged(&self) -> usize {
        self.scores
            .iter()
            .filter(|s| s.is_none_or(|s| s < self.threshold))
            .count()
    }
}

/// A frame of the grid: the capture, its thumbnail (a data URI) and its score under the
/// comparison, if any.
pub struct Tile<'a> {
    /// The capture.
    pub frame: &'a Captured,
    /// The thumbnail, or why there is none.
    pub thumbnail: Result<String, String>,
    /// The frame's score under [`PageOptions::compare`].
    pub new_score: Option<f32>,
}

/// The page for `frames` (all of them count in the charts); `tiles` are the frames the grid
/// shows, lowest score first.
pub fn render(frames: &[Captured], tiles: &[Tile<'_>], options: &PageOptions<'_>) -> String {
    let mut html = String::with_capacity(4096 + tiles.len() * 9000);
    let title = escape(options.title);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Flagged frames: {title}</title><style>{STYLE}</style></head><body>\n\
         <h1>Flagged frames: {title}</h1>\n"
    );
    html.push_str(&summary(frames, tiles.len(), options));
    let mut marks: Vec<Mark> = thresholds(frames)
        .into_iter()
        .map(|t| (f64::from(t), THRESHOLD, format!("threshold {t:.2}")))
        .collect();
    let new_mark = |c: &Comparison| {
        (
            f64::from(c.threshold),
            NEW_THRESHOLD,
            format!("new {:.2}", c.threshold),
        )
    };
    if let Some(c) = options.compare.filter(|c| !c.rescored) {
        marks.push(new_mark(c));
    }
    let scores: Vec<f64> = frames.iter().map(|f| f64::from(f.sidecar.score)).collect();
    html.push_str("<section class=\"charts\">\n<figure>");
    html.push_str(&score_histogram(&scores, &marks));
    html.push_str("<figcaption>Scores of the flagged frames; a frame is flagged when its score is below the threshold.</figcaption></figure>\n<figure>");
    if let Some(c) = options.compare.filter(|c| c.rescored) {
        let scores: Vec<f64> = c.scores.iter().flatten().map(|&s| f64::from(s)).collect();
        html.push_str(&score_histogram(&scores, &[new_mark(c)]));
        let _ = write!(
            html,
            "<figcaption>The same frames scored by {}; those below its threshold would still be flagged.</figcaption></figure>\n<figure>",
            escape(c.name)
        );
    }
    html.push_str(&hourly_counts(frames));
    html.push_str("<figcaption>Frames flagged per hour (UTC).</figcaption></figure>\n</section>\n");
    let _ = writeln!(
        html,
        "<h2>{} lowest scores first</h2>\n<section class=\"grid\">",
        if tiles.len() < frames.len() {
            format!("The {} frames with the", tiles.len())
        } else {
            "All frames,".to_string()
        }
    );
    for tile in tiles {
        html.push_str(&card(tile, options));
    }
    html.push_str("</section>\n</body></html>\n");
    html
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}\
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:24px 0 12px}\
.summary{margin:0;color:#444}.summary b{color:#222}\
.charts{display:flex;flex-wrap:wrap;gap:16px;margin-top:16px}\
figure{margin:0;background:#fff;border:1px solid #ddd;padding:8px}\
figcaption{font-size:13px;color:#555}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px}\
.card{background:#fff;border:2px solid #d62728;padding:6px;font-size:13px}\
.card.passes{border-color:#2ca02c}\
.card img{display:block;margin:0 auto 4px;max-width:100%}\
.card .score{font-weight:bold;font-size:15px}.card .label,.card .time,.card .name{color:#555;\
overflow:hidden;text-overflow:ellipsis;white-space:nowrap}.missing{color:#a00}";

/// The line under the heading: how many, when, which bundles and thresholds.
fn summary(frames: &[Captured], shown: usize, options: &PageOptions<'_>) -> String {
    let mut s = format!(
        "<p class=\"summary\"><b>{}</b> flagged frames",
        frames.len()
    );
    let times = frames.iter().map(|f| f.time);
    if let (Some(first), Some(last)) = (times.clone().min(), times.max()) {
        let _ = write!(s, ", from <b>{}</b> to <b>{}</b>", utc(first), utc(last));
    }
    let _ = write!(s, "; {shown} shown");
    if options.skipped > 0 {
        let _ = write!(
            s,
            "; <span class=\"missing\">{} unreadable sidecars left out</span>",
            options.skipped
        );
    }
    let mut bundles: Vec<&str> = frames
        .iter()
        .map(|f| f.sidecar.bundle_sha256.as_str())
        .collect();
    bundles.sort_unstable();
    bundles.dedup();
    let bundles: Vec<String> = bundles
        .iter()
        .map(|b| format!("<code>{}</code>", escape(&b[..b.len().min(16)])))
        .collect();
    let thresholds: Vec<String> = thresholds(frames)
        .iter()
        .map(|t| format!("{t:.3}"))
        .collect();
    let _ = write!(
        s,
        ".<br>Bundle (SHA-256) {}; threshold {}",
        bundles.join(", "),
        thresholds.join(", ")
    );
    if let Some(c) = options.compare {
        let t = c.threshold;
        let still = c.still_flagged();
        let _ = write!(
            s,
            ".<br>Under {} (threshold <b>{t:.3}</b>), <b>{still}</b> of {} would still be flagged (green frames would pass)",
            escape(c.name),
            frames.len()
        );
        let unscored = c.scores.iter().filter(|s| s.is_none()).count();
        if unscored > 0 {
            let _ = write!(
                s,
                "; <span class=\"missing\">{unscored} could not be scored again and count as flagged</span>"
            );
        }
    }
    s.push_str(".</p>\n");
    s
}

/// The thresholds the frames were flagged at, each once, in order (one, unless the bundle or
/// its calibration changed during the capture).
fn thresholds(frames: &[Captured]) -> Vec<f32> {
    let mut thresholds: Vec<f32> = frames.iter().map(|f| f.sidecar.threshold).collect();
    thresholds.sort_by(f32::total_cmp);
    thresholds.dedup();
    thresholds
}

/// One frame of the grid.
fn card(tile: &Tile<'_>, options: &PageOptions<'_>) -> String {
    let c = &tile.frame.sidecar;
    let compare = options.compare;
    let passes = compare.is_some_and(|cmp| tile.new_score.is_some_and(|s| s >= cmp.threshold));
    let score = match (compare.filter(|cmp| cmp.rescored), tile.new_score) {
        (Some(_), Some(new)) => format!("{:.3} &rarr; {new:.3}", c.score),
        (Some(_), None) => format!("{:.3} &rarr; ?", c.score),
        (None, _) => format!("{:.3}", c.score),
    };
    let label = options
        .labels
        .and_then(|l| l.get(c.top1))
        .map_or_else(|| format!("class {}", c.top1), |name| escape(name));
    let picture = match &tile.thumbnail {
        Ok(uri) => format!("<img src=\"{uri}\" alt=\"frame {}\">", c.seq),
        Err(why) => format!("<div class=\"missing\">{}</div>", escape(why)),
    };
    format!(
        "<div class=\"card{}\">{picture}<div class=\"score\">{score}</div>\
         <div class=\"label\" title=\"top-1 class {}\">{label}</div>\
         <div class=\"time\">{}</div><div class=\"name\" title=\"{name}\">#{} {name}</div></div>\n",
        if passes { " passes" } else { "" },
        c.top1,
        utc(tile.frame.time),
        c.seq,
        name = escape(&c.frame),
    )
}

/// `2026-12-03 10:21:53Z`.
fn utc(time: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(time).to_string();
    s.replacen('T', " ", 1)
}

/// Text safe inside HTML elements and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A vertical line on a histogram: where, its colour and its legend.
type Mark = (f64, RGBColor, String);

/// A histogram of `scores` with `marks` (thresholds) as vertical lines, as SVG.
fn score_histogram(scores: &[f64], marks: &[Mark]) -> String {
    let values = scores.iter().copied().chain(marks.iter().map(|m| m.0));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo, hi) = if lo.is_finite() {
        let pad = ((hi - lo) * 0.05).max(0.5);
        (lo - pad, hi + pad)
    } else {
        (0.0, 1.0)
    };
    const BINS: usize = 30;
    let width = (hi - lo) / BINS as f64;
    let mut counts = [0u32; BINS];
    for s in scores {
        counts[(((s - lo) / width) as usize).min(BINS - 1)] += 1;
    }
    let bars: Vec<Bar> = counts
        .iter()
        .enumerate()
        .map(|(i, &n)| (lo + i as f64 * width, lo + (i + 1) as f64 * width, n))
        .collect();
    svg(|root| {
        let x_axis = XAxis {
            range: lo..hi,
            desc: "score",
            labels: 10,
            label: &|x| format!("{x:.1}"),
        };
        let (mut chart, top) = bar_chart(root, x_axis, &bars)?;
        for (x, colour, text) in marks {
            chart
                .draw_series(LineSeries::new(
                    [(*x, 0.0), (*x, top)],
                    colour.stroke_width(3),
                ))
                .map_err(|e| e.to_string())?
                .label(text.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())
    })
}

/// Frames flagged in each UTC hour from the first to the last, as an SVG bar chart.
fn hourly_counts(frames: &[Captured]) -> String {
    let hour = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 3600)
    };
    let hours: Vec<u64> = frames.iter().map(|f| hour(f.time)).collect();
    let first = hours.iter().copied().min().unwrap_or(0);
    let last = hours.iter().copied().max().unwrap_or(0);
    // Hours more than a month after the first are left out: their bars would be too thin to see.
    let span = (last - first + 1).min(24 * 31) as usize;
    let mut counts = vec![0u32; span];
    for h in hours {
        if let Some(c) = counts.get_mut((h - first) as usize) {
            *c += 1;
        }
    }
    let label = move |x: &f64| {
        let t = UNIX_EPOCH + std::time::Duration::from_secs((first + x.max(0.0) as u64) * 3600);
        let s = humantime::format_rfc3339_seconds(t).to_string();
        format!("{} {}h", &s[5..10], &s[11..13])
    };
    let bars: Vec<Bar> = counts
        .iter()
        .enumerate()
        .map(|(i, &n)| (i as f64 + 0.1, i as f64 + 0.9, n))
        .collect();
    svg(|root| {
        let x_axis = XAxis {
            range: 0.0..span as f64,
            desc: "hour (UTC)",
            labels: span.min(8),
            label: &label,
        };
        bar_chart(root, x_axis, &bars).map(drop)
    })
}

/// A bar from x to x, and its count.
type Bar = (f64, f64, u32);

/// A chart's x axis.
struct XAxis<'a> {
    range: std::ops::Range<f64>,
    desc: &'a str,
    labels: usize,
    label: &'a dyn Fn(&f64) -> String,
}

type BarChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Bars of frame counts over `x`, with whole-number y labels; gives the chart (for more
/// series) and the top of its y axis.
fn bar_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    x: XAxis<'_>,
    bars: &[Bar],
) -> Result<(BarChart<'a, 'b>, f64), String> {
    let top = f64::from(bars.iter().map(|b| b.2).max().unwrap_or(0).max(1)) * 1.15;
    let mut chart = ChartBuilder::on(root)
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(40)
        .build_cartesian_2d(x.range, 0.0..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(x.desc)
        .x_labels(x.labels)
        .x_label_formatter(x.label)
        .y_desc("frames")
        .y_labels(top.min(6.0) as usize + 1)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(
            bars.iter()
                .map(|&(x0, x1, n)| Rectangle::new([(x0, 0.0), (x1, f64::from(n))], BARS.filled())),
        )
        .map_err(|e| e.to_string())?;
    Ok((chart, top))
}

/// An SVG drawn by `draw`, inline; a drawing error becomes a line of text in its place.
fn svg(
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> String {
    register_font();
    let mut out = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut out, CHART).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    match drawn {
        Ok(()) => out,
        Err(e) => format!("<p class=\"missing\">chart failed: {}</p>", escape(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::Sidecar;
    use std::path::PathBuf;
    use std::time::Duration;

    fn captured(seq: u64, score: f32, frame: &str) -> Captured {
        Captured {
            sidecar: Sidecar {
                seq,
                frame: frame.into(),
                time: String::new(),
                score,
                threshold: 1.0,
                top1: 2,
                bundle_sha256: "0123456789abcdef0123".into(),
                image: String::new(),
            },
            time: UNIX_EPOCH + Duration::from_secs(1_764_000_000 + seq * 1000),
            image: PathBuf::new(),
        }
    }

    #[test]
    fn names_from_sidecars_cannot_inject_markup() {
        let frames = [captured(0, -1.0, "<script>alert(1)</script>\"x.jpg")];
        let tiles = [Tile {
            frame: &frames[0],
            thumbnail: Err("<b>gone</b>".into()),
            new_score: None,
        }];
        let labels = ["<i>tench</i>".to_string(), "x".into(), "a&b".into()];
        let page = render(
            &frames,
            &tiles,
            &PageOptions {
                title: "<dir>",
                labels: Some(&labels),
                compare: None,
                skipped: 0,
            },
        );
        assert!(!page.contains("<script"));
        assert!(!page.contains("<b>gone"));
        assert!(!page.contains("<dir>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;x.jpg"));
        assert!(page.contains(">a&amp;b<"), "the top-1 label by name");
    }

    /// The page for two frames scored -1 and 0.5 compared with threshold 0 at `scores`.
    fn compared(scores: &[Option<f32>], rescored: bool) -> String {
        let frames = [captured(0, -1.0, "a"), captured(1, 0.5, "b")];
        let tiles: Vec<Tile<'_>> = frames
            .iter()
            .zip(scores)
            .map(|(frame, &new_score)| Tile {
                frame,
                thumbnail: Err("none".into()),
                new_score,
            })
            .collect();
        render(
            &frames,
            &tiles,
            &PageOptions {
                title: "t",
                labels: None,
                compare: Some(&Comparison {
                    name: "new.nap",
                    threshold: 0.0,
                    scores,
                    rescored,
                }),
                skipped: 1,
            },
        )
    }

    #[test]
    fn a_new_threshold_marks_the_frames_it_would_pass() {
        let page = compared(&[Some(-1.0), Some(0.5)], false);
        assert_eq!(page.matches("class=\"card passes\"").count(), 1);
        assert_eq!(page.matches("class=\"card\"").count(), 1);
        assert!(page.contains("<b>1</b> of 2 would still be flagged"));
        assert!(page.contains("1 unreadable sidecars left out"));
        assert!(page.contains("class 2"));
        assert!(page.contains("2025-11-24 16:00:00Z"));
        assert_eq!(page.matches("<svg").count(), 2);
    }

    #[test]
    fn a_rescoring_bundle_shows_old_and_new_scores_and_its_own_histogram() {
        let page = compared(&[Some(0.25), None], true);
        // The first frame now passes, the second could not be scored and stays flagged.
        assert_eq!(page.matches("class=\"card passes\"").count(), 1);
        assert!(page.contains(">-1.000 &rarr; 0.250<"));
        assert!(page.contains(">0.500 &rarr; ?<"));
        assert!(page.contains("<b>1</b> of 2 would still be flagged"));
        assert!(page.contains("1 could not be scored again"));
        assert_eq!(page.matches("<svg").count(), 3);
    }
}
