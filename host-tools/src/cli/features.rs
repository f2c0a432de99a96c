//! A bundle opened for feature extraction, with its feature cache: what `eval` and `calibrate`
//! share. Features of several image sets come with one progress bar; single unreadable images
//! are reported and left out, a set with none readable is an error.

use super::shared::{Rate, init_threads, progress_bar};
use anyhow::{Context, Result, bail};
use nap_core::score::LinearHead;
use nap_runtime::bundle::{Bundle, BundleFile};
use nap_runtime::detector::Detector;
use nap_runtime::neck::Neck;
use nap_runtime::preprocess::Preprocessor;
use napctl::eval::HostHead;
use napctl::eval::cache::{self, FeatureCache};
use napctl::eval::extract::{FrameSet, Job, extract};
use napctl::eval::features::Features;
use std::path::{Path, PathBuf};

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

impl CacheOptions {
    /// The cache in `dir`, on all cores.
    pub fn in_dir(dir: PathBuf) -> Self {
        CacheOptions {
            cache_dir: Some(dir),
            no_cache: false,
            threads: None,
        }
    }
}

/// A loaded bundle with everything needed to extract features.
pub struct Session {
    /// The bundle.
    pub bundle: Bundle,
    /// SHA-256 of the bundle file, lowercase hex (as napd's log and captures name it).
    pub sha256: String,
    detector: Detector,
    /// The head's layers before its dense one, when it has any.
    neck: Option<Neck>,
    preprocessor: Preprocessor,
    cache: FeatureCache,
}

impl Session {
    /// Loads the bundle at `path` and opens its cache.
    pub fn open(path: &Path, options: &CacheOptions) -> Result<Session> {
        init_threads(options.threads)?;
        let BundleFile { bundle, sha256, .. } = BundleFile::read(path, None)
            .with_context(|| format!("loading bundle {}", path.display()))?;
        let detector = Detector::new(&bundle)?;
        let neck = Neck::load(&bundle)?;
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
            sha256,
            detector,
            neck,
            preprocessor,
            cache,
        })
    }

    /// The bundle's classifier head.
    pub fn head(&self) -> Result<HostHead<'_>> {
        let dense = LinearHead::new(
            &self.bundle.head_weights,
            &self.bundle.head_bias,
            self.bundle.manifest.head.features as usize,
        )?;
        Ok(HostHead {
            dense,
            neck: self.neck.as_ref(),
        })
    }

    /// Features of every set, in order, with one progress bar over all of them.
    pub fn features(&self, sets: &[FrameSet]) -> Result<Vec<Vec<Features>>> {
        let jobs: Vec<Job> = sets.iter().flat_map(|s| s.jobs.iter().cloned()).collect();
        let bar = progress_bar(jobs.len(), "features", Rate::Shown);
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
        for set in sets {
            let mut ok = Vec::new();
            let mut first_error = None;
            for (result, job) in results.by_ref().take(set.jobs.len()) {
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
                    "{}: none of its {} image(s) could be read ({})",
                    set.name,
                    set.jobs.len(),
                    first_error.unwrap_or_default()
                );
            }
            out.push(ok);
        }
        Ok(out)
    }
}
