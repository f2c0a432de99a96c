//! Figures of `napctl eval --plots`, each as PNG and SVG: score histograms of ID vs every OOD set
//! for Energy, NAP and NAP-E (the NAP paper's Figure 2), ROC curves of every method per OOD set,
//! and one channel's per-image max vs mean (Figure 1).
//!
//! Text is drawn with a bundled font (DejaVu Sans, see `assets/`), so rendering needs no system
//! font or fontconfig.

use super::components::{EVAL_METHODS, scores};
use super::features::Features;
use super::report::ScoredSet;
use nap_core::score::{FusionWeights, Method};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// Width and height of every figure, in pixels.
pub const SIZE: (u32, u32) = (900, 600);

/// The methods whose score histograms are drawn.
pub const HISTOGRAM_METHODS: [Method; 3] = [Method::Energy, Method::Nap, Method::NapE];

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Makes the bundled font the one figures' text is laid out with (once per process).
pub fn register_font() {
    REGISTER.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            eprintln!("napctl: warning: the bundled font did not load; figures will lack text");
        }
    });
}

/// Everything the figures are drawn from.
pub struct PlotInputs<'a> {
    /// ID scores' components.
    pub id: &'a ScoredSet,
    /// Each OOD set's components.
    pub oods: &'a [ScoredSet],
    /// ID features (for the channel scatter).
    pub id_features: &'a [Features],
    /// Each OOD set's features, in `oods` order.
    pub ood_features: &'a [Vec<Features>],
    /// Fusion weights of the fused methods.
    pub weights: &'a FusionWeights,
    /// NAP's eps, for choosing the scatter's channel.
    pub eps: f32,
    /// The scatter's channel; `None` picks [`most_telling_channel`].
    pub channel: Option<usize>,
}

/// Why a figure could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Drawing failed.
    #[error("drawing {0}: {1}")]
    Draw(PathBuf, String),
    /// The file could not be written.
    #[error("writing {0}: {1}")]
    Io(PathBuf, String),
}

enum Figure {
    Histogram(Method),
    Roc(usize),
    Scatter(usize),
}

type Drawn = Result<(), String>;

/// A chart with f64 axes, as every figure has.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

trait OrString<T> {
    fn s(self) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> OrString<T> for Result<T, E> {
    fn s(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// The colour of the i-th set: ID first.
fn colour(i: usize) -> RGBColor {
    const C: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    C[i % C.len()]
}

/// The channel whose mean peak-to-mean ratio `max / (mean + eps)` is highest on ID relative to
/// all OOD frames: the kind of channel the paper's Figure 1 shows.
pub fn most_telling_channel(id: &[Features], oods: &[Vec<Features>], eps: f32) -> usize {
    let channels = id.first().map_or(0, |f| f.pooled.len());
    let mean_ratio = |set: &mut dyn Iterator<Item = &Features>, j: usize| {
        let (mut sum, mut n) = (0.0f64, 0usize);
        for f in set {
            sum += f64::from(f.max[j] / (f.pooled[j] + eps));
            n += 1;
        }
        sum / n.max(1) as f64
    };
    (0..channels)
        .map(|j| {
            let id_r = mean_ratio(&mut id.iter(), j);
            let ood_r = mean_ratio(&mut oods.iter().flatten(), j);
            (j, id_r - ood_r)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(j, _)| j)
}

/// Draws every figure into `dir` (created if needed); returns the files written.
pub fn write_all(dir: &Path, inputs: &PlotInputs<'_>) -> Result<Vec<PathBuf>, PlotError> {
    register_font();
    std::fs::create_dir_all(dir).map_err(|e| PlotError::Io(dir.into(), e.to_string()))?;
    let mut figures: Vec<(String, Figure)> = HISTOGRAM_METHODS
        .iter()
        .map(|&m| (format!("hist-{m}"), Figure::Histogram(m)))
        .collect();
    for (i, set) in inputs.oods.iter().enumerate() {
        figures.push((format!("roc-{}", file_safe(&set.name)), Figure::Roc(i)));
    }
    let channel = inputs.channel.unwrap_or_else(|| {
        most_telling_channel(inputs.id_features, inputs.ood_features, inputs.eps)
    });
    figures.push((format!("channel-{channel}"), Figure::Scatter(channel)));

    let mut written = Vec::new();
    for (stem, figure) in &figures {
        let svg = dir.join(format!("{stem}.svg"));
        {
            let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
            draw(&root, figure, inputs)
                .and_then(|()| root.present().s())
                .map_err(|e| PlotError::Draw(svg.clone(), e))?;
        }
        written.push(svg);

        let png = dir.join(format!("{stem}.png"));
        let mut pixels = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
            draw(&root, figure, inputs)
                .and_then(|()| root.present().s())
                .map_err(|e| PlotError::Draw(png.clone(), e))?;
        }
        image::RgbImage::from_raw(SIZE.0, SIZE.1, pixels)
            .expect("the buffer has width * height * 3 bytes")
            .save(&png)
            .map_err(|e| PlotError::Io(png.clone(), e.to_string()))?;
        written.push(png);
    }
    Ok(written)
}

/// A set name usable in a file name.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A chart of the figures' common frame: the title, and x and y axes over these ranges with
/// these descriptions.
fn chart<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: String,
    (x, x_desc): (Range<f64>, &str),
    (y, y_desc): (Range<f64>, &str),
) -> Result<Chart<'a, DB>, String> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .s()?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .s()?;
    Ok(chart)
}

/// The series' legend, on a white box with a black border.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    position: SeriesLabelPosition,
    font_size: u32,
) -> Drawn {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", font_size))
        .draw()
        .s()
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    figure: &Figure,
    inputs: &PlotInputs<'_>,
) -> Drawn {
    root.fill(&WHITE).s()?;
    match *figure {
        Figure::Histogram(m) => histogram(root, m, inputs),
        Figure::Roc(i) => roc(root, i, inputs),
        Figure::Scatter(j) => scatter(root, j, inputs),
    }
}

fn histogram<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    method: Method,
    inputs: &PlotInputs<'_>,
) -> Drawn {
    let w = inputs.weights.of(method);
    let mut sets = vec![(
        inputs.id.name.as_str(),
        scores(&inputs.id.frames, method, w),
    )];
    for o in inputs.oods {
        sets.push((o.name.as_str(), scores(&o.frames, method, w)));
    }
    let all = sets.iter().flat_map(|s| s.1.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let (lo, hi) = if lo < hi {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    };
    const BINS: usize = 40;
    let width = (hi - lo) / BINS as f64;
    let shares: Vec<Vec<f64>> = sets
        .iter()
        .map(|(_, s)| {
            let mut counts = vec![0.0; BINS];
            for &x in s {
                let b = (((x - lo) / width) as usize).min(BINS - 1);
                counts[b] += 1.0;
            }
            counts.iter().map(|c| c / s.len().max(1) as f64).collect()
        })
        .collect();
    let top = shares.iter().flatten().fold(0.0f64, |a, &b| a.max(b)) * 1.1;
    let title = if method.recipe().fused {
        format!("{method} score (w = {w}): ID vs OOD")
    } else {
        format!("{method} score: ID vs OOD")
    };
    let mut chart = chart(
        root,
        title,
        (
            lo..hi,
            &format!("{method} score (higher = more in-distribution)"),
        ),
        (0.0..top.max(1e-9), "share of frames"),
    )?;
    for (i, ((name, s), share)) in sets.iter().zip(&shares).enumerate() {
        let c = colour(i);
        chart
            .draw_series(share.iter().enumerate().map(|(b, &h)| {
                let x0 = lo + b as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, h)], c.mix(0.35).filled())
            }))
            .s()?
            .label(format!("{name} (n = {})", s.len()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::MiddleRight, 16)
}

/// ROC points (FPR = share of OOD accepted, TPR = share of ID accepted) as the threshold falls
/// through every distinct score, from (0, 0) to (1, 1).
pub fn roc_points(id: &[f64], ood: &[f64]) -> Vec<(f64, f64)> {
    let mut all: Vec<(f64, bool)> = id
        .iter()
        .map(|&s| (s, true))
        .chain(ood.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (n_id, n_ood) = (id.len().max(1) as f64, ood.len().max(1) as f64);
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut points = vec![(0.0, 0.0)];
    for (i, &(s, is_id)) in all.iter().enumerate() {
        if is_id {
            tp += 1;
        } else {
            fp += 1;
        }
        if all.get(i + 1).is_none_or(|next| next.0 != s) {
            points.push((fp as f64 / n_ood, tp as f64 / n_id));
        }
    }
    points
}

fn roc<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    ood_index: usize,
    inputs: &PlotInputs<'_>,
) -> Drawn {
    let ood = &inputs.oods[ood_index];
    let mut chart = chart(
        root,
        format!("ROC: {} (ID) vs {} (OOD)", inputs.id.name, ood.name),
        (0.0..1.0, "FPR (share of OOD accepted)"),
        (0.0..1.0, "TPR (share of ID accepted)"),
    )?;
    for (i, &m) in EVAL_METHODS.iter().enumerate() {
        let w = inputs.weights.of(m);
        let points = roc_points(&scores(&inputs.id.frames, m, w), &scores(&ood.frames, m, w));
        let c = Palette99::pick(i).to_rgba();
        let stroke = if m.recipe().fused || m == Method::Nap {
            c.stroke_width(3)
        } else {
            c.stroke_width(1)
        };
        chart
            .draw_series(LineSeries::new(points, stroke))
            .s()?
            .label(m.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
    }
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.95), (1.0, 0.95)],
            BLACK.mix(0.3).stroke_width(1),
        ))
        .s()?
        .label("TPR 95%");
    legend(&mut chart, SeriesLabelPosition::LowerRight, 15)
}

fn scatter<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    channel: usize,
    inputs: &PlotInputs<'_>,
) -> Drawn {
    let point = |f: &Features| {
        (
            f64::from(f.pooled.get(channel).copied().unwrap_or(0.0)),
            f64::from(f.max.get(channel).copied().unwrap_or(0.0)),
        )
    };
    let mut sets: Vec<(&str, Vec<(f64, f64)>)> = vec![(
        inputs.id.name.as_str(),
        inputs.id_features.iter().map(point).collect(),
    )];
    for (o, f) in inputs.oods.iter().zip(inputs.ood_features) {
        sets.push((o.name.as_str(), f.iter().map(point).collect()));
    }
    let (mx, my) = sets
        .iter()
        .flat_map(|s| s.1.iter())
        .fold((0.0f64, 0.0f64), |(a, b), &(x, y)| (a.max(x), b.max(y)));
    let mut chart = chart(
        root,
        format!("Channel {channel}: per-image max vs mean of the pre-pool activation"),
        (0.0..(mx * 1.05).max(1e-6), "mean over the plane"),
        (0.0..(my * 1.05).max(1e-6), "max over the plane"),
    )?;
    for (i, (name, points)) in sets.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| Circle::new(p, 3, c.mix(0.6).filled())),
            )
            .s()?
            .label(format!("{name} (n = {})", points.len()))
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::MiddleRight, 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Components;

    #[test]
    fn roc_points_by_hand() {
        // ID 3, 1; OOD 2, 0: thresholds 3, 2, 1, 0.
        let p = roc_points(&[3.0, 1.0], &[2.0, 0.0]);
        assert_eq!(
            p,
            [(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
        // A tie of one ID and one OOD frame is one diagonal step.
        assert_eq!(roc_points(&[1.0], &[1.0]), [(0.0, 0.0), (1.0, 1.0)]);
    }

    #[test]
    fn figures_are_valid_images_of_the_documented_size() {
        let frame = |k: f32| Features {
            pooled: vec![k, 1.0, 0.5],
            max: vec![4.0 * k, 2.0, 0.6],
        };
        let comps = |k: f32| Components {
            nap: k,
            lse: 2.0 * k,
            msp: 0.1 * k,
            max_logit: k,
            gen_score: -k,
            react: k,
            ash_s: k,
            ash_b: k,
            ash_p: k,
            scale: k,
            dice: k,
            vim: k,
        };
        let id = ScoredSet {
            name: "id".into(),
            frames: (1..20).map(|i| comps(i as f32)).collect(),
        };
        let oods = vec![ScoredSet {
            name: "ood set".into(),
            frames: (0..10).map(|i| comps(i as f32 * 0.5 + 0.1)).collect(),
        }];
        let id_features: Vec<_> = (1..20).map(|i| frame(i as f32)).collect();
        let ood_features = vec![(0..10).map(|i| frame(0.3 * i as f32)).collect::<Vec<_>>()];
        let dir = std::env::temp_dir().join(format!("napctl-plots-{}", std::process::id()));
        let written = write_all(
            &dir,
            &PlotInputs {
                id: &id,
                oods: &oods,
                id_features: &id_features,
                ood_features: &ood_features,
                weights: &FusionWeights::default(),
                eps: 1.0,
                channel: None,
            },
        )
        .unwrap();
        // 3 histograms, 1 ROC, 1 scatter; each as SVG and PNG.
        assert_eq!(written.len(), 10, "{written:?}");
        assert!(dir.join("roc-ood_set.png").exists());
        // Channel 0 is the one whose peak stands out on ID.
        assert!(dir.join("channel-0.svg").exists());
        for path in &written {
            if path.extension().unwrap() == "png" {
                let img = image::open(path).unwrap().to_rgb8();
                assert_eq!(img.dimensions(), SIZE, "{}", path.display());
                let distinct: std::collections::HashSet<_> = img.pixels().collect();
                assert!(distinct.len() > 10, "{} is nearly blank", path.display());
                // Text is drawn: the bundled font rendered some dark pixels.
                assert!(img.pixels().any(|p| p[0] < 60 && p[1] < 60 && p[2] < 60));
            } else {
                let svg = std::fs::read_to_string(path).unwrap();
                assert!(svg.starts_with("<svg"), "{}", path.display());
                assert!(svg.contains("width=\"900\"") && svg.contains("height=\"600\""));
                assert!(svg.trim_end().ends_with("</svg>"));
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
