//! The shared real data: where it is, and the reference scores an independent implementation
//! gave for it.
//!
//! The data lives outside the repository (read-only, never committed). One setting finds it: the
//! env var [`SHARED_DATA_ENV`], defaulting to `<workspace root>/../shared/data`. Tests that need a
//! file call [`shared_data_file`] and return early when it gives `None`, so the rest of the suite
//! runs without the data. Nothing here writes anywhere.

use std::fmt;
use std::path::{Path, PathBuf};

/// Env var naming the shared data folder (the one holding `reference/`, `images/`, ...).
pub const SHARED_DATA_ENV: &str = "NAP_SHARED_DATA";

/// The shared data folder: `$NAP_SHARED_DATA` if set and non-empty, else
/// `<workspace root>/../shared/data`. The folder may not exist.
pub fn shared_data_dir() -> PathBuf {
    match std::env::var_os(SHARED_DATA_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("../shared/data"),
    }
}

/// The workspace root: two levels above this package's folder `tests/support/`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `relative` inside the shared data folder if it exists. Otherwise prints one line saying what is
/// missing and which env var to set, and gives `None`: the caller returns without failing.
pub fn shared_data_file(relative: impl AsRef<Path>) -> Option<PathBuf> {
    let path = shared_data_dir().join(relative);
    if path.exists() {
        return Some(path);
    }
    let how = match std::env::var_os(SHARED_DATA_ENV) {
        Some(dir) if !dir.is_empty() => format!("{SHARED_DATA_ENV} is set to {dir:?}"),
        _ => format!("{SHARED_DATA_ENV} is unset, so the default was used"),
    };
    eprintln!(
        "SKIPPED: shared data file {} not found ({how}); set {SHARED_DATA_ENV} to the shared data \
         folder to run this test",
        path.display()
    );
    None
}

/// The reference scores `reference/dev_scores.tsv`, relative to the shared data folder.
pub const REFERENCE_SCORES: &str = "reference/dev_scores.tsv";

/// One image scored by the independent reference implementation (onnxruntime f32 + PIL).
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceScore {
    /// Image set: `id-imagenet`, `ood-dtd` or `ood-patterns`.
    pub set: String,
    /// File name inside `images/<set>/`.
    pub file: String,
    /// Predicted ImageNet class index.
    pub top1: u32,
    /// Negative energy, logsumexp of the logits.
    pub lse: f64,
    /// S_NAP (eps = 1).
    pub nap: f64,
    /// Max softmax probability.
    pub msp: f64,
}

/// Column header the reference file must start with.
pub const REFERENCE_HEADER: [&str; 6] = ["set", "file", "top1", "lse", "nap", "msp"];

/// Why the reference scores could not be read.
#[derive(Debug)]
pub enum ReferenceError {
    /// The file could not be read.
    Io(PathBuf, std::io::Error),
    /// The first line is not the expected header.
    Header(String),
    /// A data line is malformed; `line` counts from 1 (the header is line 1).
    Line {
        /// Line number in the file.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
}

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferenceError::Io(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            ReferenceError::Header(h) => write!(
                f,
                "header is {h:?}, expected {:?} (tab separated)",
                REFERENCE_HEADER.join("\t")
            ),
            ReferenceError::Line { line, problem } => write!(f, "line {line}: {problem}"),
        }
    }
}

impl std::error::Error for ReferenceError {}

/// Reads and parses a reference score file (see [`parse_reference_scores`]).
pub fn read_reference_scores(path: &Path) -> Result<Vec<ReferenceScore>, ReferenceError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ReferenceError::Io(path.to_path_buf(), e))?;
    parse_reference_scores(&text)
}

/// Parses `set file top1 lse nap msp`, tab separated, header first; blank lines are skipped.
/// Scores must be finite numbers.
pub fn parse_reference_scores(text: &str) -> Result<Vec<ReferenceScore>, ReferenceError> {
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l.trim_end()).unwrap_or("");
    if !header.split('\t').eq(REFERENCE_HEADER) {
        return Err(ReferenceError::Header(header.to_string()));
    }
    let mut rows = Vec::new();
    for (i, raw) in lines {
        let line = i + 1;
        let raw = raw.trim_end_matches('\r');
        if raw.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.split('\t').collect();
        let err = |problem: String| ReferenceError::Line { line, problem };
        let [set, file, top1, lse, nap, msp] = fields[..] else {
            return Err(err(format!(
                "{} tab-separated fields, expected {}",
                fields.len(),
                REFERENCE_HEADER.len()
            )));
        };
        let score = |name: &str, s: &str| -> Result<f64, ReferenceError> {
            match s.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(err(format!("{name} = {s:?} is not a finite number"))),
            }
        };
        rows.push(ReferenceScore {
            set: set.to_string(),
            file: file.to_string(),
            top1: top1
                .trim()
                .parse()
                .map_err(|_| err(format!("top1 = {top1:?} is not a class index")))?,
            lse: score("lse", lse)?,
            nap: score("nap", nap)?,
            msp: score("msp", msp)?,
        });
    }
    Ok(rows)
}

/// The rows of one set, in file order.
pub fn rows_of<'a>(rows: &'a [ReferenceScore], set: &str) -> Vec<&'a ReferenceScore> {
    rows.iter().filter(|r| r.set == set).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_bad_lines() {
        let good = "set\tfile\ttop1\tlse\tnap\tmsp\nid-imagenet\ta.JPEG\t2\t13.5\t5.8\t0.59\n\n";
        let rows = parse_reference_scores(good).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].top1, rows[0].lse, rows[0].nap), (2, 13.5, 5.8));

        let bad_header = parse_reference_scores("set file top1\n").unwrap_err();
        assert!(matches!(bad_header, ReferenceError::Header(_)));

        let short = "set\tfile\ttop1\tlse\tnap\tmsp\nid\ta\t1\t2\n";
        let e = parse_reference_scores(short).unwrap_err().to_string();
        assert!(e.starts_with("line 2: 4 tab-separated fields"), "{e}");

        let nan = "set\tfile\ttop1\tlse\tnap\tmsp\nid\ta\t1\t2\tNaN\t0.5\n";
        let e = parse_reference_scores(nan).unwrap_err().to_string();
        assert!(e.contains("nap = \"NaN\""), "{e}");

        let top1 = "set\tfile\ttop1\tlse\tnap\tmsp\nid\ta\tx\t2\t1\t0.5\n";
        assert!(parse_reference_scores(top1).is_err());
    }

    #[test]
    fn default_data_dir_is_beside_the_workspace() {
        if std::env::var_os(SHARED_DATA_ENV).is_none_or(|v| v.is_empty()) {
            assert_eq!(shared_data_dir(), workspace_root().join("../shared/data"));
        }
        assert!(workspace_root().join("Cargo.toml").exists());
    }
}
