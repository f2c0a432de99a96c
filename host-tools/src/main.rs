//! `napctl`: the host tool. Cuts a classifier into a bundle, inspects models and bundles, scores
//! image folders and benchmarks a bundle.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so every print to a closed pipe (`napctl inspect ... | head`) would
    // panic; the default action ends the process quietly instead.
    #[cfg(unix)]
    // SAFETY: done first, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // A malformed model that makes tract panic is reported as an error, not twice.
    nap_runtime::backbone::quiet_guarded_panics();
    match cli::Cli::parse().run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("napctl: error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `outer: cause: ...`, each said once: many errors already quote
/// their source in their own message.
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}
