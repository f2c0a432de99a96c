//! `napd`: the on-device daemon. Scores camera frames with a NAP bundle and tells the sensor
//! controller about each one, in order and in time, or that the runtime is gone.

use clap::Parser;
use napd::Options;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Out-of-distribution detection for camera frames, reported to a sensor controller.
///
/// Every frame gets a verdict (score < threshold means out of distribution), sent in frame order
/// over the link as protocol frames, shown on the OOD line and written to the log. Heartbeats
/// keep the controller informed when no frame comes. SIGINT or SIGTERM drains the queued frames,
/// sends a final status and exits 0; a failure sends a fault status and exits 1; bad flags or
/// config exit 2.
#[derive(Parser, Debug)]
#[command(name = "napd", version)]
struct Cli {
    /// A TOML config file; its keys are the flag names (`ood-gpio = "gpiochip0:17"`), and
    /// flags given on the command line override it.
    #[arg(long, value_name = "napd.toml")]
    config: Option<PathBuf>,
    /// Validate the config and load the bundle, then exit (0 when all is well).
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    options: Options,
}

fn main() -> ExitCode {
    // Timestamps on the wire count from here.
    napd::link::monotonic_us();
    // A malformed bundle that makes tract panic is reported as a load error, not twice.
    #[cfg(feature = "tract")]
    nap_runtime::backbone::quiet_guarded_panics();
    let cli = Cli::parse();
    let options = match &cli.config {
        None => cli.options,
        Some(path) => match Options::from_file(path) {
            Ok(file) => cli.options.over(file),
            Err(e) => {
                eprintln!("napd: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let settings = match options.resolve() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("napd: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        return match napd::check(&settings) {
            Ok(report) => {
                println!("{report}\nnapd: configuration OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("napd: check failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while draining ends the process at once.
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()));
        if let Err(e) = registered {
            eprintln!("napd: cannot install the signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    let served = napd::serve(&settings, stop);
    if let Some(s) = &served.summary {
        eprintln!(
            "napd: {} verdicts ({} OOD), {} dropped, {} rejected; {:.1} fps, p50 {} us, p99 {} us",
            s.verdicts,
            s.ood,
            s.dropped,
            s.bad,
            s.fps,
            s.p50_us.unwrap_or(0),
            s.p99_us.unwrap_or(0)
        );
    }
    ExitCode::from(served.exit_code)
}
