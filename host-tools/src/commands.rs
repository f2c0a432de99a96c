//! `napctl eval` and `napctl calibrate`: folders to cached features to tables, plots and a
//! calibrated bundle.

use anyhow::{Context, Result, bail};
use nap_core::score::{LinearHead, Method, Params};
use nap_runtime::bundle::Bundle;
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;
use napctl::bundle::calibrate::{calibrate as calibrate_features, react_clip};
use napctl::eval::cache::{self, FeatureCache};
use napctl::eval::corrupt::Corruption;
use napctl::eval::extract::{Job, extract};
use napctl::eval::features::Features;
use napctl::eval::plots;
use napctl::eval::{Components, EVAL_METHODS, FUSED_METHODS, ScoredSet, evaluate, sweep_table};
use napctl::images;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of the per-image feature cache and the worker pool.
#[derive(clap::Args)]
pub struct CacheOptions {
    /// Cache folder (default: $XDG_CACHE_HOME/napctl, else ~/.cache/napctl, else .napcache
    /// beside the bundle).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Run the backbone on every image, reading and writing no cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Arguments of `napctl eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// The bundle; NAP-E/R/A/M use its fusion weights, ReAct its clip (or the 90th
    /// percentile of the ID pooled activations when it has none).
    pub bundle: PathBuf,
    /// The in-distribution image folder.
    #[arg(long, required = true)]
    pub id: PathBuf,
    /// An out-of-distribution image folder; repeat for several sets.
    #[arg(long, required = true)]
    pub ood: Vec<PathBuf>,
    /// Also write the results as JSON (values in percent) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write figures (PNG and SVG) into this folder: score histograms, ROC curves and a
    /// per-channel max-vs-mean scatter.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Channel of the max-vs-mean scatter (default: the channel whose peak-to-mean ratio
    /// differs most between ID and OOD).
    #[arg(long)]
    pub channel: Option<usize>,
    /// Add tables of each fused method's FPR95 and AUROC for w = 0, 0.1, ..., 1, per OOD set
    /// and averaged.
    #[arg(long)]
    pub sweep_w: bool,
    /// Also evaluate against the pseudo-OOD sets `calibrate` makes from the ID images
    /// without OOD folders (one set per corruption).
    #[arg(long)]
    pub pseudo_ood: bool,
    /// Corruptions making the pseudo-OOD sets, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = Corruption::ALL)]
    pub corruptions: Vec<Corruption>,
    #[command(flatten)]
    pub cache: CacheOptions,
}

/// Arguments of `napctl calibrate`.
#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// The bundle to calibrate (left unchanged).
    pub bundle: PathBuf,
    /// In-distribution images: the threshold, the ReAct clip and the pseudo-OOD come from them.
    #[arg(long, required = true)]
    pub id: PathBuf,
    /// Out-of-distribution folders to choose w against; repeat for several. Without any,
    /// pseudo-OOD made from the ID images is used.
    #[arg(long)]
    pub ood: Vec<PathBuf>,
    /// Share of ID images to accept, in (0, 1).
    #[arg(long, default_value_t = 0.95)]
    pub tpr: f64,
    /// The deciding method (MSP, Energy, ReAct, ASH-S, ASH-B, ASH-P, NAP, NAP-E, NAP-R,
    /// NAP-A, NAP-M).
    #[arg(long, default_value = "NAP-E", value_parser = parse_method)]
    pub method: Method,
    /// ASH pruning percentile p, in [0, 100).
    #[arg(long, default_value_t = 90.0)]
    pub ash_percentile: f32,
    /// Where to write the calibrated bundle.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Corruptions making the pseudo-OOD sets when no --ood is given, comma separated:
    /// noise, blur, jpeg, contrast, pixelate, shuffle.
    #[arg(long, value_delimiter = ',', default_values_t = Corruption::ALL)]
    pub corruptions: Vec<Corruption>,
    /// Keep the bundle's fusion weights w (the paper's defaults until calibrated) and calibrate
    /// only the threshold, ReAct's clip and ASH's percentile: for when neither OOD folders nor
    /// corrupted ID images stand for the OOD the device will meet.
    #[arg(long, conflicts_with = "ood")]
    pub keep_w: bool,
    #[command(flatten)]
    pub cache: CacheOptions,
}

/// Sizes the worker pool when `--threads` is given (the default is one worker per core).
pub fn init_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()?;
    }
    Ok(())
}

fn parse_method(s: &str) -> Result<Method, String> {
    Method::from_name(s).map_err(|e| format!("{s:?}: {e}"))
}

/// A loaded bundle with everything needed to extract features.
struct Session {
    bundle: Bundle,
    detector: Detector,
    preprocessor: Preprocessor,
    cache: FeatureCache,
}

impl Session {
    fn open(path: &Path, options: &CacheOptions) -> Result<Session> {
        init_threads(options.threads)?;
        let bundle =
            Bundle::read(path).with_context(|| format!("loading bundle {}", path.display()))?;
        let detector = Detector::new(&bundle)?;
        let preprocessor = Preprocessor::new(bundle.manifest.input)?;
        let cache = if options.no_cache {
            FeatureCache::disabled()
        } else {
            let root = options
                .cache_dir
                .clone()
                .unwrap_or_else(|| cache::default_dir(path));
            FeatureCache::new(Some(root), cache::bundle_key(&bundle))
        };
        Ok(Session {
            bundle,
            detector,
            preprocessor,
            cache,
        })
    }

    fn head(&self) -> Result<LinearHead<'_>> {
        Ok(LinearHead::new(
            &self.bundle.head_weights,
            &self.bundle.head_bias,
            self.bundle.manifest.head.features as usize,
        )?)
    }

    /// Features of every group of jobs, with one progress bar over all of them. A group whose
    /// every image fails is an error; single failures are reported and left out.
    fn features(&self, groups: &[(String, Vec<Job>)]) -> Result<Vec<Vec<Features>>> {
        let jobs: Vec<Job> = groups.iter().flat_map(|g| g.1.iter().cloned()).collect();
        let bar = indicatif::ProgressBar::new(jobs.len() as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} features {pos}/{len} [{elapsed_precise}] {bar:30} {per_sec} eta {eta}",
            )
            .expect("valid template"),
        );
        let results = extract(
            &self.detector,
            &self.preprocessor,
            &self.cache,
            &jobs,
            || bar.inc(1),
        )?;
        bar.finish_and_clear();
        let stats = self.cache.stats();
        if let Some(dir) = self.cache.dir() {
            eprintln!(
                "feature cache {}: {} hit(s), {} computed",
                dir.display(),
                stats.hits,
                stats.misses
            );
        }
        let mut results = results.into_iter().zip(&jobs);
        let mut out = Vec::new();
        for (name, group) in groups {
            let mut ok = Vec::new();
            let mut first_error = None;
            for (result, job) in results.by_ref().take(group.len()) {
                match result {
                    Ok(f) => ok.push(f),
                    Err(e) => {
                        eprintln!("napctl: {}: {e}", job.file.path.display());
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            if ok.is_empty() {
                bail!(
                    "{name}: none of its {} image(s) could be read ({})",
                    group.len(),
                    first_error.unwrap_or_default()
                );
            }
            out.push(ok);
        }
        Ok(out)
    }
}

/// The images of one folder as jobs, and the folder's set name.
fn folder_jobs(dir: &Path) -> Result<(String, Vec<Job>)> {
    let files = images::collect(&[dir.to_path_buf()])?;
    let name = files
        .first()
        .map_or_else(|| dir.display().to_string(), |f| f.set.clone());
    let jobs = files
        .into_iter()
        .map(|file| Job {
            file,
            corruption: None,
        })
        .collect();
    Ok((name, jobs))
}

/// Pseudo-OOD: ID image `i` gets corruption `i mod 6` of [`Corruption::ALL`], giving one set per
/// corruption; only the sets of `chosen` are kept. The assignment does not depend on `chosen`, so
/// every choice reuses the same cached copies.
fn pseudo_ood_jobs(id: &[Job], chosen: &[Corruption]) -> Vec<(String, Vec<Job>)> {
    Corruption::ALL
        .iter()
        .enumerate()
        .filter(|(_, c)| chosen.contains(c))
        .map(|(k, &c)| {
            let jobs = id
                .iter()
                .skip(k)
                .step_by(Corruption::ALL.len())
                .map(|j| Job {
                    file: j.file.clone(),
                    corruption: Some(c),
                })
                .collect();
            (format!("pseudo-ood-{c}"), jobs)
        })
        .filter(|(_, jobs): &(String, Vec<Job>)| !jobs.is_empty())
        .collect()
}

pub fn eval(args: EvalArgs) -> Result<ExitCode> {
    let session = Session::open(&args.bundle, &args.cache)?;
    let mut groups = vec![folder_jobs(&args.id)?];
    for dir in &args.ood {
        groups.push(folder_jobs(dir)?);
    }
    if args.pseudo_ood {
        let pseudo = pseudo_ood_jobs(&groups[0].1, &args.corruptions);
        groups.extend(pseudo);
    }
    let features = session.features(&groups)?;
    let mut params: Params = session.bundle.manifest.scorer.params;
    if params.react_clip.is_none() {
        let c = react_clip(&features[0])?;
        println!(
            "The bundle has no ReAct clip: using c = {c:.4}, the 90th percentile of the ID pooled \
             activations (napctl calibrate stores one)."
        );
        params.react_clip = Some(c);
    }
    let head = session.head()?;
    let sets: Vec<ScoredSet> = groups
        .iter()
        .zip(&features)
        .map(|((name, _), f)| {
            Ok(ScoredSet {
                name: name.clone(),
                frames: Components::of_all(f, &head, &params)?,
            })
        })
        .collect::<Result<_>>()?;
    let (id, oods) = sets.split_first().expect("the ID set is first");
    let w = params.weights;
    println!(
        "Fusion weights w: NAP-E {} NAP-R {} NAP-A {} NAP-M {}; ReAct c {:.4}; ASH p {}",
        w.nap_e,
        w.nap_r,
        w.nap_a,
        w.nap_m,
        params.react_clip.unwrap_or_default(),
        params.ash_percentile
    );
    println!("FPR95 at TPR 95%; ID+ = NAP paper (ID positive), OOD+ = OpenOOD; all in percent.\n");
    let report = evaluate(id, oods, &EVAL_METHODS, &params.weights)?;
    print!("{}", report.table(&EVAL_METHODS));
    if args.sweep_w {
        println!(
            "FPR95 (ID+) / AUROC as w varies (w = 0: S_NAP alone, w = 1: the logit score alone):\n"
        );
        print!("{}", sweep_table(id, oods)?);
        println!();
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = &args.plots {
        let channels = session.bundle.manifest.pre_pool.channels as usize;
        if let Some(c) = args.channel
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
            channel: args.channel,
        };
        let written = plots::write_all(dir, &inputs)?;
        eprintln!("wrote {} figure(s) to {}", written.len(), dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn calibrate(args: CalibrateArgs) -> Result<ExitCode> {
    if !(args.tpr > 0.0 && args.tpr < 1.0) {
        bail!("--tpr {} is outside (0, 1)", args.tpr);
    }
    if !(0.0..100.0).contains(&args.ash_percentile) {
        bail!(
            "--ash-percentile {} is outside [0, 100)",
            args.ash_percentile
        );
    }
    let session = Session::open(&args.bundle, &args.cache)?;
    let id = folder_jobs(&args.id)?;
    let pseudo = args.ood.is_empty() && !args.keep_w;
    let mut groups = vec![id.clone()];
    if pseudo {
        groups.extend(pseudo_ood_jobs(&id.1, &args.corruptions));
    } else {
        for dir in &args.ood {
            groups.push(folder_jobs(dir)?);
        }
    }
    let features = session.features(&groups)?;
    let (id_features, ood_features) = features.split_first().expect("the ID set is first");
    let head = session.head()?;
    let cal = calibrate_features(
        &head,
        session.bundle.manifest.scorer.params,
        id_features,
        ood_features,
        args.method,
        args.tpr,
        args.ash_percentile,
    )?;

    let mut bundle = session.bundle.clone();
    bundle.manifest.scorer.method = cal.method;
    bundle.manifest.scorer.params = cal.params;
    bundle.manifest.scorer.threshold = Some(cal.threshold);
    bundle
        .write(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;

    let sets: Vec<&str> = groups[1..].iter().map(|g| g.0.as_str()).collect();
    if args.keep_w {
        println!("Kept the bundle's fusion weights w (--keep-w).");
    } else if pseudo {
        println!(
            "Calibrated on ID only: w chosen against pseudo-OOD made from the {} ID images \
             ({}; one corruption per image, in turn).",
            id_features.len(),
            args.corruptions
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        println!(
            "Calibrated with OOD folders: w chosen against {}.",
            sets.join(", ")
        );
    }
    println!(
        "ReAct c = {:.4} (90th percentile of ID pooled activations); ASH p = {}",
        cal.params.react_clip.unwrap_or_default(),
        cal.params.ash_percentile
    );
    if !cal.searches.is_empty() {
        println!(
            "w search (minimize mean FPR at TPR {:.0}% over {} set(s); ties: higher AUROC):",
            100.0 * args.tpr,
            sets.len()
        );
    }
    for (m, c) in &cal.searches {
        let mark = if *m == cal.method {
            "  <- deciding"
        } else {
            ""
        };
        println!(
            "  {:<6} w = {:.3}  FPR {:6.2}%  AUROC {:6.2}%{mark}",
            m.name(),
            c.w,
            100.0 * c.fpr,
            100.0 * c.auroc
        );
    }
    if !FUSED_METHODS.contains(&cal.method) {
        println!("  ({} is not fused: w does not affect it)", cal.method);
    }
    println!(
        "Method {}: threshold {} (frames scoring below it are OOD); expected ID rejection rate \
         {:.2}% (target {:.2}%).",
        cal.method,
        cal.threshold,
        100.0 * cal.id_rejection,
        100.0 * (1.0 - args.tpr)
    );
    println!("Wrote {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
