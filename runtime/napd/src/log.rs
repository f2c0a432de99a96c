//! The verdict log: one JSON object per line (JSON Lines), for people and scripts alike.
//!
//! Every object has a `type`: `verdict` (one per scored frame: `seq`, `frame`, `ood`, `score`,
//! `threshold`, `latency_us`, `top1`), `error` (a rejected frame), `dropped` (a frame evicted
//! because the workers were behind), `stats` (periodic), `link` (connection changes and
//! controller state), `status` (health sent to the controller) and `final` (the last line).

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::str::FromStr;

/// Where the log goes, as written on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// No log.
    None,
    /// Standard output (`-` or `jsonl:-`).
    Stdout,
    /// A file, appended to (`jsonl:PATH`).
    File(PathBuf),
}

impl FromStr for LogTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(LogTarget::None),
            "-" | "jsonl:-" => Ok(LogTarget::Stdout),
            _ => match s.strip_prefix("jsonl:") {
                Some(p) if !p.is_empty() => Ok(LogTarget::File(p.into())),
                _ => Err(format!(
                    "log {s:?}: expected jsonl:PATH, - (stdout) or none"
                )),
            },
        }
    }
}

/// An open JSON Lines log. Write errors are counted and reported once, never fatal: the
/// controller link matters more than the log.
pub struct JsonLog {
    out: Option<Box<dyn Write + Send>>,
    failed: bool,
}

impl JsonLog {
    /// Opens the target (creating the file if needed).
    pub fn open(target: &LogTarget) -> Result<JsonLog, String> {
        let out: Option<Box<dyn Write + Send>> = match target {
            LogTarget::None => None,
            LogTarget::Stdout => Some(Box::new(std::io::stdout())),
            LogTarget::File(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("log {}: {e}", path.display()))?;
                Some(Box::new(BufWriter::new(file)))
            }
        };
        Ok(JsonLog { out, failed: false })
    }

    /// A log that writes nowhere.
    pub fn none() -> JsonLog {
        JsonLog {
            out: None,
            failed: false,
        }
    }

    /// Writes one object as one line and flushes it, so `tail -f` sees it at once.
    pub fn write(&mut self, value: &serde_json::Value) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let result = serde_json::to_writer(&mut *out, value)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(e) = result
            && !self.failed
        {
            self.failed = true;
            eprintln!("napd: writing the log failed ({e}); verdicts still go to the link");
        }
    }
}
