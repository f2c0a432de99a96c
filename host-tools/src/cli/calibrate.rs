//! `napctl calibrate`: a bundle's ReAct clip, ASH percentile, fusion weights w and threshold,
//! chosen on ID images (against OOD or pseudo-OOD sets) and written into a new bundle.

use super::features::{CacheOptions, Session};
use super::shared::write_bundle;
use anyhow::{Result, bail};
use nap_core::score::Method;
use nap_core::score::dice::DEFAULT_SPARSITY;
use napctl::bundle::calibrate::{Calibration as Chosen, Deciding, Settings, calibrate};
use napctl::bundle::vim::{self, DimsChoice};
use napctl::eval::FUSED_METHODS;
use napctl::eval::corrupt::Corruption;
use napctl::eval::extract::FrameSet;
use napctl::review::FieldFrames;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `napctl calibrate`.
#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// The bundle to calibrate (left unchanged).
    bundle: PathBuf,
    /// In-distribution image folders: the threshold, the ReAct clip and the pseudo-OOD come
    /// from them. Repeat to add frames gathered in the field (frames from `napd --capture`
    /// moved here, sidecars and all, once reviewed as familiar) to the original set.
    #[arg(long, required = true)]
    id: Vec<PathBuf>,
    /// Out-of-distribution folders to choose w against; repeat for several. Without any,
    /// pseudo-OOD made from the ID images is used.
    #[arg(long)]
    ood: Vec<PathBuf>,
    /// Share of ID images to accept, in (0, 1).
    #[arg(long, default_value_t = 0.95)]
    tpr: f64,
    /// The deciding method (MSP, MaxLogit, Energy, GEN, ReAct, ASH-S, ASH-B, ASH-P, SCALE, DICE,
    /// ViM, NAP, NAP-E, NAP-R, NAP-A, NAP-M, NAP-D), or auto: the one with the lowest mean FPR
    /// against the OOD (or pseudo-OOD) sets, the criterion w is chosen by. The report ranks
    /// them either way.
    #[arg(long, default_value = "NAP-E", value_parser = parse_deciding)]
    method: Deciding,
    /// ASH pruning percentile p, in [0, 100).
    #[arg(long, default_value_t = 90.0)]
    ash_percentile: f32,
    /// DICE's sparsity: the share of head weights it drops, in percent, in [0, 100). DICE and
    /// NAP-D need the ID mean calibration stores with it.
    #[arg(long, default_value_t = DEFAULT_SPARSITY)]
    dice_sparsity: f32,
    /// ViM's principal subspace dimension D. Default: the one of 1, 2, 4, ... and the paper's
    /// (1000 from 1500 features, 512 from 768, half the features below), under a quarter of the
    /// ID images, with the lowest mean FPR against the OOD or pseudo-OOD sets; with --keep-w,
    /// the paper's but at most one per 32 ID images. The bundle stores the subspace (D x
    /// features floats) only when ViM decides.
    #[arg(long)]
    vim_dims: Option<usize>,
    /// Where to write the calibrated bundle.
    #[arg(short, long)]
    output: PathBuf,
    /// Corruptions making the pseudo-OOD sets when no --ood is given, comma separated:
    /// noise, blur, jpeg, contrast, pixelate, shuffle.
    #[arg(long, value_delimiter = ',', default_values_t = Corruption::ALL)]
    corruptions: Vec<Corruption>,
    /// Keep the bundle's fusion weights w (the paper's defaults until calibrated) and calibrate
    /// only the threshold, ReAct's clip and ASH's percentile: for when neither OOD folders nor
    /// corrupted ID images stand for the OOD the device will meet.
    #[arg(long, conflicts_with = "ood")]
    keep_w: bool,
    #[command(flatten)]
    cache: CacheOptions,
}

fn parse_deciding(s: &str) -> Result<Deciding, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(Deciding::Auto);
    }
    Method::from_name(s)
        .map(Deciding::Method)
        .map_err(|e| format!("{s:?}: {e}, or auto"))
}

impl CalibrateArgs {
    /// Runs `napctl calibrate`.
    pub fn run(self) -> Result<ExitCode> {
        if self.keep_w && self.method == Deciding::Auto {
            bail!("--method auto compares methods against pseudo-OOD sets, which --keep-w skips");
        }
        let against = if self.keep_w {
            Against::Nothing
        } else if self.ood.is_empty() {
            Against::PseudoOod(&self.corruptions)
        } else {
            Against::Ood(&self.ood)
        };
        calibrate_bundle(&Calibration {
            bundle: &self.bundle,
            id: &self.id,
            against,
            tpr: self.tpr,
            method: self.method,
            ash_percentile: self.ash_percentile,
            dice_sparsity: self.dice_sparsity,
            vim_dims: self.vim_dims,
            output: &self.output,
            cache: &self.cache,
        })?;
        Ok(ExitCode::SUCCESS)
    }
}

/// What the fusion weights w are chosen against.
pub enum Against<'a> {
    /// Real OOD image folders.
    Ood(&'a [PathBuf]),
    /// Pseudo-OOD copies of the ID images, one set per corruption.
    PseudoOod(&'a [Corruption]),
    /// Nothing: the bundle's w stay (`--keep-w`).
    Nothing,
}

/// One calibration: a bundle, its ID images, what w is chosen against, the settings, and where
/// the calibrated bundle goes.
pub struct Calibration<'a> {
    /// The bundle to calibrate (left unchanged).
    pub bundle: &'a Path,
    /// The ID image folders.
    pub id: &'a [PathBuf],
    /// What w is chosen against.
    pub against: Against<'a>,
    /// Share of ID images to accept.
    pub tpr: f64,
    /// The deciding method, or auto.
    pub method: Deciding,
    /// ASH's pruning percentile.
    pub ash_percentile: f32,
    /// DICE's sparsity, percent.
    pub dice_sparsity: f32,
    /// ViM's subspace dimension, or the default.
    pub vim_dims: Option<usize>,
    /// Where the calibrated bundle goes.
    pub output: &'a Path,
    /// The feature cache and worker pool.
    pub cache: &'a CacheOptions,
}

/// Calibrates, writes the calibrated bundle and reports what was chosen.
pub fn calibrate_bundle(c: &Calibration) -> Result<()> {
    if !(c.tpr > 0.0 && c.tpr < 1.0) {
        bail!("--tpr {} is outside (0, 1)", c.tpr);
    }
    if !(0.0..100.0).contains(&c.ash_percentile) {
        bail!("--ash-percentile {} is outside [0, 100)", c.ash_percentile);
    }
    if !(0.0..100.0).contains(&c.dice_sparsity) {
        bail!("--dice-sparsity {} is outside [0, 100)", c.dice_sparsity);
    }
    let session = Session::open(c.bundle, c.cache)?;
    let id = FrameSet::folders(c.id)?;
    let field = FieldFrames::count(&id, &session.sha256);
    let against = match c.against {
        Against::Ood(dirs) => dirs
            .iter()
            .map(|d| FrameSet::folder(d))
            .collect::<Result<_, _>>()?,
        Against::PseudoOod(corruptions) => id.pseudo_ood(corruptions),
        Against::Nothing => Vec::new(),
    };
    let sets: Vec<FrameSet> = std::iter::once(id).chain(against).collect();
    let features = session.features(&sets)?;
    let (id_features, ood_features) = features.split_first().expect("the ID set is first");
    let head = session.head()?;
    let cal = calibrate(
        &head,
        session.bundle.manifest.scorer.params,
        id_features,
        ood_features,
        Settings {
            deciding: c.method,
            tpr: c.tpr,
            ash_percentile: c.ash_percentile,
            dice_sparsity: c.dice_sparsity,
            vim_dims: c.vim_dims,
        },
    )?;

    let mut bundle = session.bundle.clone();
    bundle.manifest.scorer.method = cal.method;
    bundle.manifest.scorer.params = cal.params;
    bundle.manifest.scorer.threshold = Some(cal.threshold);
    bundle.manifest.scorer.tpr = Some(c.tpr as f32);
    bundle.manifest.dice = Some(cal.dice.clone());
    bundle.manifest.vim = match &cal.vim {
        Ok(vim) if cal.method == Method::Vim => Some(vim.fit.spec.clone()),
        _ => None,
    };
    write_bundle(&bundle, c.output)?;

    if field.captured > 0 {
        println!(
            "{} of the {} ID images are frames napd captured in the field ({} flagged by this \
             bundle, {} by other bundles).",
            field.captured,
            sets[0].jobs.len(),
            field.by_this_bundle,
            field.captured - field.by_this_bundle
        );
    }
    let names: Vec<&str> = sets[1..].iter().map(|s| s.name.as_str()).collect();
    match c.against {
        Against::Nothing => println!("Kept the bundle's fusion weights w (--keep-w)."),
        Against::PseudoOod(corruptions) => println!(
            "Calibrated on ID only: w chosen against pseudo-OOD made from the {} ID images \
             ({}; one corruption per image, in turn).",
            id_features.len(),
            corruptions
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Against::Ood(_) => println!(
            "Calibrated with OOD folders: w chosen against {}.",
            names.join(", ")
        ),
    }
    println!(
        "ReAct c = {:.4} (90th percentile of ID pooled activations); ASH p = {}; DICE: mean \
         pooled feature of the {} ID images, sparsity {}%",
        cal.params.react_clip.unwrap_or_default(),
        cal.params.ash_percentile,
        id_features.len(),
        cal.dice.sparsity
    );
    report_vim(&cal);
    if !cal.searches.is_empty() {
        println!(
            "w search (minimize mean FPR at TPR {:.0}% over {} set(s); ties: higher AUROC):",
            100.0 * c.tpr,
            names.len()
        );
    }
    for (m, choice) in &cal.searches {
        let mark = if *m == cal.method {
            "  <- deciding"
        } else {
            ""
        };
        println!(
            "  {:<6} w = {:.3}  FPR {:6.2}%  AUROC {:6.2}%{mark}",
            m.name(),
            choice.w,
            100.0 * choice.fpr,
            100.0 * choice.auroc
        );
    }
    if !FUSED_METHODS.contains(&cal.method) && !cal.searches.is_empty() {
        println!("  ({} is not fused: w does not affect it)", cal.method);
    }
    report_ranking(&cal, c.method, c.tpr);
    println!(
        "Method {}: threshold {} (frames scoring below it are OOD); expected ID rejection rate \
         {:.2}% (target {:.2}%).",
        cal.method,
        cal.threshold,
        100.0 * cal.id_rejection,
        100.0 * (1.0 - c.tpr)
    );
    println!("Wrote {}", c.output.display());
    Ok(())
}

/// ViM's fit: its subspace and how its dimension was chosen, or why ViM was left out.
fn report_vim(cal: &Chosen) {
    let vim = match &cal.vim {
        Ok(vim) => vim,
        Err(why) => return println!("ViM left out: {why}"),
    };
    let fit = &vim.fit;
    let how = match &vim.dims {
        DimsChoice::Given => "--vim-dims".to_string(),
        DimsChoice::Paper => "the paper's".to_string(),
        DimsChoice::Capped { paper } => format!(
            "not the paper's {paper}: one per {} ID images; --vim-dims sets it",
            2 * vim::FRAMES_PER_DIM
        ),
        DimsChoice::Searched(_) => {
            "the lowest mean FPR of those below; --vim-dims sets it".to_string()
        }
    };
    let stored = if cal.method == Method::Vim {
        "stored in the bundle"
    } else {
        "not stored: ViM does not decide"
    };
    println!(
        "ViM: {}-dimensional principal subspace ({how}) holding {:.1}% of the ID features' \
         second moment, alpha = {:.4}; ID scores from the fit to the other half of the images; \
         {stored}",
        fit.spec.dims(),
        100.0 * fit.captured,
        fit.spec.alpha
    );
    if let DimsChoice::Searched(tried) = &vim.dims {
        let tried: Vec<String> = tried
            .iter()
            .map(|(d, fpr, auroc)| format!("{d}: {:.2}% / {:.2}%", 100.0 * fpr, 100.0 * auroc))
            .collect();
        println!("  ViM by dimension, FPR / AUROC: {}", tried.join(", "));
    }
}

/// How many methods of the ranking the report lists.
const RANKED_SHOWN: usize = 5;

/// The methods ranked against the OOD sets, and why the deciding one decides.
fn report_ranking(cal: &Chosen, asked: Deciding, tpr: f64) {
    let Some(best) = cal.ranking.first() else {
        return;
    };
    println!(
        "Methods by mean FPR at TPR {:.0}% on the same sets (ties: higher AUROC), best {RANKED_SHOWN}:",
        100.0 * tpr
    );
    for s in cal.ranking.iter().take(RANKED_SHOWN) {
        let mark = if s.method == cal.method {
            "  <- deciding"
        } else {
            ""
        };
        println!(
            "  {:<8} FPR {:6.2}%  AUROC {:6.2}%{mark}",
            s.method.name(),
            100.0 * s.fpr,
            100.0 * s.auroc
        );
    }
    match asked {
        Deciding::Auto => println!(
            "Deciding method {} (--method auto): the lowest mean FPR on these sets.",
            cal.method
        ),
        Deciding::Method(m) if m != best.method => {
            let own = cal.ranking.iter().find(|s| s.method == m);
            println!(
                "Deciding method {m} as asked; {} does better on these sets (FPR {:.2}% vs \
                 {:.2}%): --method auto would choose it.",
                best.method,
                100.0 * best.fpr,
                100.0 * own.map_or(f64::NAN, |s| s.fpr)
            );
        }
        Deciding::Method(m) => println!("Deciding method {m}: also the best on these sets."),
    }
}
