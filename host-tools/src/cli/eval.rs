//! `napctl eval`: every method on ID against OOD image sets, as the paper's tables, JSON and
//! figures.

use super::features::{CacheOptions, Session};
use super::shared::write_file;
use anyhow::{Result, bail};
use nap_core::score::dice::DEFAULT_SPARSITY;
use nap_core::score::{Method, Params};
use nap_runtime::bundle::{DiceSpec, VimSpec};
use napctl::bundle::calibrate::{dice_spec, react_clip};
use napctl::bundle::vim;
use napctl::eval::corrupt::Corruption;
use napctl::eval::extract::FrameSet;
use napctl::eval::features::Features;
use napctl::eval::{AtThreshold, EVAL_METHODS, ScoredSet, evaluate, plots, sweep_table};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `napctl eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// The bundle; NAP-E/R/A/M use its fusion weights, ReAct its clip (or the 90th
    /// percentile of the ID pooled activations when it has none).
    bundle: PathBuf,
    /// The in-distribution image folder.
    #[arg(long, required = true)]
    id: PathBuf,
    /// An out-of-distribution image folder; repeat for several sets.
    #[arg(long, required = true)]
    ood: Vec<PathBuf>,
    /// Another bundle to compare with at its own threshold, on the same frames (the bundle
    /// before a re-calibration, say); repeat for several. For every bundle that has a threshold,
    /// the share of each set's frames its deciding method flags is printed (and written to the
    /// JSON as `at_threshold`).
    #[arg(long, value_name = "BUNDLE")]
    compare: Vec<PathBuf>,
    /// Also write the results as JSON (values in percent) to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write figures (PNG and SVG) into this folder: score histograms, ROC curves and a
    /// per-channel max-vs-mean scatter.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Channel of the max-vs-mean scatter (default: the channel whose peak-to-mean ratio
    /// differs most between ID and OOD).
    #[arg(long)]
    channel: Option<usize>,
    /// Add tables of each fused method's FPR95 and AUROC for w = 0, 0.1, ..., 1, per OOD set
    /// and averaged.
    #[arg(long)]
    sweep_w: bool,
    /// Also evaluate against the pseudo-OOD sets `calibrate` makes from the ID images
    /// without OOD folders (one set per corruption).
    #[arg(long)]
    pseudo_ood: bool,
    /// Corruptions making the pseudo-OOD sets, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = Corruption::ALL)]
    corruptions: Vec<Corruption>,
    /// ViM's subspace dimension when the bundle has no ViM statistics and they are fit to the
    /// ID images (default: as `calibrate`).
    #[arg(long)]
    vim_dims: Option<usize>,
    #[command(flatten)]
    cache: CacheOptions,
}

impl EvalArgs {
    /// Runs `napctl eval`.
    pub fn run(self) -> Result<ExitCode> {
        evaluate_bundle(&Evaluation {
            bundle: &self.bundle,
            id: &self.id,
            ood: &self.ood,
            compare: &self.compare,
            pseudo_ood: if self.pseudo_ood {
                &self.corruptions
            } else {
                &[]
            },
            sweep_w: self.sweep_w,
            json: self.json.as_deref(),
            plots: self.plots.as_deref(),
            channel: self.channel,
            vim_dims: self.vim_dims,
            cache: &self.cache,
        })?;
        Ok(ExitCode::SUCCESS)
    }
}

/// One evaluation: a bundle on its image sets, and where the results go besides stdout.
pub struct Evaluation<'a> {
    /// The bundle.
    pub bundle: &'a Path,
    /// The ID image folder.
    pub id: &'a Path,
    /// The OOD image folders.
    pub ood: &'a [PathBuf],
    /// Bundles compared with this one at their own thresholds.
    pub compare: &'a [PathBuf],
    /// Corruptions making extra pseudo-OOD sets from the ID images (none: no such sets).
    pub pseudo_ood: &'a [Corruption],
    /// Add the w sweep tables.
    pub sweep_w: bool,
    /// Where the JSON report goes.
    pub json: Option<&'a Path>,
    /// Where the figures go.
    pub plots: Option<&'a Path>,
    /// The scatter's channel (default: the most telling one).
    pub channel: Option<usize>,
    /// ViM's subspace dimension where it is fit here, or the default.
    pub vim_dims: Option<usize>,
    /// The feature cache and worker pool.
    pub cache: &'a CacheOptions,
}

/// Evaluates every method and prints the tables; writes the JSON and the figures when asked.
pub fn evaluate_bundle(e: &Evaluation) -> Result<()> {
    let session = Session::open(e.bundle, e.cache)?;
    let compared = e
        .compare
        .iter()
        .map(|path| {
            let other = Session::open(path, e.cache)?;
            if other.bundle.manifest.scorer.threshold.is_none() {
                bail!(
                    "--compare {}: the bundle has no threshold (napctl calibrate sets one)",
                    path.display()
                );
            }
            Ok(other)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut sets = vec![FrameSet::folder(e.id)?];
    for dir in e.ood {
        sets.push(FrameSet::folder(dir)?);
    }
    let pseudo = sets[0].pseudo_ood(e.pseudo_ood);
    sets.extend(pseudo);
    let features = session.features(&sets)?;
    let scoring = Scoring::of(&session, &features[0], e.vim_dims, true)?;
    let (params, dice) = (scoring.params, &scoring.dice);
    let scored = score_sets(&session, &sets, &features, &scoring)?;
    let (id, oods) = scored.split_first().expect("the ID set is first");
    let w = params.weights;
    println!(
        "Fusion weights w: NAP-E {} NAP-R {} NAP-A {} NAP-M {} NAP-D {}; ReAct c {:.4}; ASH p {}; \
         DICE sparsity {}%",
        w.nap_e,
        w.nap_r,
        w.nap_a,
        w.nap_m,
        w.nap_d,
        params.react_clip.unwrap_or_default(),
        params.ash_percentile,
        dice.sparsity
    );
    println!("FPR95 at TPR 95%; ID+ = NAP paper (ID positive), OOD+ = OpenOOD; all in percent.\n");
    let methods: Vec<Method> = EVAL_METHODS
        .into_iter()
        .filter(|&m| m != Method::Vim || scoring.vim.is_some())
        .collect();
    let mut report = evaluate(id, oods, &methods, &params.weights)?;
    print!("{}", report.table(&methods));
    report.at_threshold = at_thresholds(e, &session, &params, &sets, &scored, &compared)?;
    if !report.at_threshold.is_empty() {
        println!("Frames flagged OOD at each bundle's own threshold (deciding method), percent:");
        print!("{}", AtThreshold::table(&report.at_threshold));
        println!();
    }
    if e.sweep_w {
        println!(
            "FPR95 (ID+) / AUROC as w varies (w = 0: S_NAP alone, w = 1: the logit score alone):\n"
        );
        print!("{}", sweep_table(id, oods)?);
        println!();
    }
    if let Some(path) = e.json {
        write_file(path, serde_json::to_string_pretty(&report)? + "\n")?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = e.plots {
        let channels = session.bundle.manifest.pre_pool.channels as usize;
        if let Some(c) = e.channel
            && c >= channels
        {
            bail!("--channel {c} is out of range: the pre-pool tensor has {channels} channels");
        }
        let inputs = plots::PlotInputs {
            id,
            oods,
            id_features: &features[0],
            ood_features: &features[1..],
            weights: &params.weights,
            eps: params.eps,
            channel: e.channel,
        };
        let written = plots::write_all(dir, &inputs)?;
        eprintln!("wrote {} figure(s) to {}", written.len(), dir.display());
    }
    Ok(())
}

/// What a bundle scores with: its parameters and ID statistics, with what calibration would
/// store taken from the ID features where the bundle has none (said on stdout when `say`).
struct Scoring {
    params: Params,
    dice: DiceSpec,
    /// `None` when ViM could not be fit on the ID images (it is then left out).
    vim: Option<VimScoring>,
}

/// ViM's statistics, and the ID frames' out-of-sample virtual logits when they were fit here.
struct VimScoring {
    spec: VimSpec,
    cross_fit_id: Option<Vec<f32>>,
}

impl Scoring {
    fn of(
        session: &Session,
        id: &[Features],
        vim_dims: Option<usize>,
        say: bool,
    ) -> Result<Scoring> {
        let say = |text: String| {
            if say {
                println!("{text}");
            }
        };
        let mut params = session.bundle.manifest.scorer.params;
        if params.react_clip.is_none() {
            let c = react_clip(id)?;
            say(format!(
                "The bundle has no ReAct clip: using c = {c:.4}, the 90th percentile of the ID \
                 pooled activations (napctl calibrate stores one)."
            ));
            params.react_clip = Some(c);
        }
        let dice = match &session.bundle.manifest.dice {
            Some(dice) => dice.clone(),
            None => {
                say(format!(
                    "The bundle has no DICE statistics: using the ID images' mean pooled feature \
                     at sparsity {DEFAULT_SPARSITY}% (napctl calibrate stores them)."
                ));
                dice_spec(&session.head()?, id, DEFAULT_SPARSITY)?
            }
        };
        let vim = match &session.bundle.manifest.vim {
            Some(vim) => Some(VimScoring {
                spec: vim.clone(),
                cross_fit_id: None,
            }),
            None => match vim::calibration(&session.head()?, id, vim_dims) {
                Ok(vim) => {
                    say(format!(
                        "The bundle has no ViM subspace: fitting a {}-dimensional one to these \
                         ID images ({:.1}% of their second moment); each ID image is scored by \
                         the fit to the other half (napctl calibrate --method ViM stores one).",
                        vim.fit.spec.dims(),
                        100.0 * vim.fit.captured
                    ));
                    Some(VimScoring {
                        spec: vim.fit.spec,
                        cross_fit_id: Some(vim.id_logits),
                    })
                }
                Err(e) => {
                    say(format!("ViM left out: {e}"));
                    None
                }
            },
        };
        Ok(Scoring { params, dice, vim })
    }
}

/// Every method's components for every frame of every set.
fn score_sets(
    session: &Session,
    sets: &[FrameSet],
    features: &[Vec<Features>],
    scoring: &Scoring,
) -> Result<Vec<ScoredSet>> {
    let head = session.head()?;
    sets.iter()
        .zip(features)
        .enumerate()
        .map(|(i, (set, f))| {
            let vim_logits = match &scoring.vim {
                None => vec![f32::NAN; f.len()],
                Some(VimScoring {
                    cross_fit_id: Some(id),
                    ..
                }) if i == 0 => id.clone(),
                Some(scoring) => vim::virtual_logits(&scoring.spec, &head.dense_inputs(f)?),
            };
            Ok(ScoredSet {
                name: set.name.clone(),
                frames: head.components(f, &scoring.dice, &vim_logits, &scoring.params)?,
            })
        })
        .collect()
}

/// The evaluated bundle's verdicts at its threshold (when it has one), then each compared
/// bundle's, on the same frames.
fn at_thresholds(
    e: &Evaluation,
    session: &Session,
    params: &Params,
    sets: &[FrameSet],
    scored: &[ScoredSet],
    compared: &[Session],
) -> Result<Vec<AtThreshold>> {
    let row = |path: &Path, session: &Session, params: &Params, scored: &[ScoredSet]| {
        let scorer = &session.bundle.manifest.scorer;
        scorer.threshold.map(|threshold| {
            AtThreshold::count(
                path.display().to_string(),
                session.sha256.clone(),
                scorer.method,
                &params.weights,
                threshold,
                scored,
            )
        })
    };
    let mut rows: Vec<AtThreshold> = row(e.bundle, session, params, scored).into_iter().collect();
    for (path, other) in e.compare.iter().zip(compared) {
        let features = other.features(sets)?;
        let scoring = Scoring::of(other, &features[0], e.vim_dims, false)?;
        let scored = score_sets(other, sets, &features, &scoring)?;
        rows.extend(row(path, other, &scoring.params, &scored));
    }
    Ok(rows)
}
