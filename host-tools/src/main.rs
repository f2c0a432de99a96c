//! `napctl`: the host tool. Cuts a classifier into a bundle, inspects models and bundles, scores
//! image folders and benchmarks a bundle.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::Cli::parse().run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("napctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
