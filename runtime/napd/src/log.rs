//! The verdict log: one JSON object per line (JSON Lines), for people and scripts alike.
//!
//! Every object has a `type`: `verdict` (one per scored frame: `seq`, `frame`, `ood`, `score`,
//! `threshold`, `latency_us`, `top1`), `error` (a rejected frame), `dropped` (a frame evicted
//! because the workers were behind), `stats` (periodic), `link` (connection changes and
//! controller state), `status` (health sent to the controller), `truncated` (an object longer
//! than [`MAX_LINE_BYTES`]) and `final` (the last line).

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::str::FromStr;

/// Longest line written, newline excluded: 64 KiB, far above any object napd writes (frame
/// names are file names, at most 255 bytes on Linux).
pub const MAX_LINE_BYTES: usize = 64 << 10;

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

    /// Writes one object as one line and flushes it, so `tail -f` sees it at once. A line
    /// longer than [`MAX_LINE_BYTES`] is replaced by a `truncated` object with its type and
    /// length, so a reader's line buffer never has to grow without bound.
    pub fn write(&mut self, value: &serde_json::Value) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let mut line = serde_json::to_vec(value).expect("JSON values serialize");
        if line.len() > MAX_LINE_BYTES {
            line = serde_json::to_vec(&serde_json::json!({
                "type": "truncated",
                "of": value.get("type"),
                "bytes": line.len(),
                "limit": MAX_LINE_BYTES,
            }))
            .expect("JSON values serialize");
        }
        let result = out
            .write_all(&line)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_at_the_limit_is_written_and_one_past_it_replaced() {
        let out = Shared::default();
        let mut log = JsonLog {
            out: Some(Box::new(out.clone())),
            failed: false,
        };
        // {"type":"error","error":"xxx..."}: 27 bytes around the string.
        let object = |n: usize| serde_json::json!({"type": "error", "error": "x".repeat(n)});
        let fits = MAX_LINE_BYTES - serde_json::to_vec(&object(0)).unwrap().len();
        log.write(&object(fits));
        log.write(&object(fits + 1));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        let replaced: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(
            replaced,
            serde_json::json!({"type": "truncated", "of": "error", "bytes": MAX_LINE_BYTES + 1, "limit": MAX_LINE_BYTES})
        );
    }
}
