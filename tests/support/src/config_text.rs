//! napd's config file and command-line specs under arbitrary text. Shared by the `config` fuzz
//! target and its corpus replay test, so both check exactly the same thing.

use napd::config::Options;
use napd::link::LinkSpec;
use napd::ood_line::{GpioSpec, LineMode};
use napd::source::SourceSpec;
use napd::telemetry::{BrokerUrl, check_device_id, parse_metrics_addr};

/// What [`check_config_text`] accepted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConfigRun {
    /// The text was a config file napd parses.
    pub parsed: bool,
    /// ... and one whose values all check out.
    pub resolved: bool,
    /// Spec parsers (source, link, OOD line, GPIO, broker, device id, metrics address) that
    /// accepted the text.
    pub specs: usize,
}

/// Reads `input` (as UTF-8, lossily) as napd's TOML config, resolving it when it parses, and
/// as every spec napd takes on its command line. Any of them may refuse it, with a message;
/// none may panic. A resolved config's values are the ones its specs parse to.
pub fn check_config_text(input: &[u8]) -> ConfigRun {
    let text = String::from_utf8_lossy(input);
    let mut run = ConfigRun::default();
    match Options::from_toml(&text) {
        Ok(options) => {
            run.parsed = true;
            match options.resolve() {
                Ok(settings) => {
                    run.resolved = true;
                    if let Some(source) = &options.source {
                        assert_eq!(source.parse::<SourceSpec>().ok(), Some(settings.source));
                    }
                }
                Err(e) => assert!(!e.is_empty()),
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }
    let mut spec = |result: Result<(), String>| match result {
        Ok(()) => run.specs += 1,
        Err(e) => assert!(!e.is_empty(), "an empty error for {text:?}"),
    };
    spec(
        text.parse::<SourceSpec>()
            .map(drop)
            .map_err(|e| e.to_string()),
    );
    spec(text.parse::<LinkSpec>().map(drop));
    spec(text.parse::<LineMode>().map(drop));
    spec(text.parse::<GpioSpec>().map(drop));
    spec(text.parse::<BrokerUrl>().map(drop));
    spec(check_device_id(&text));
    spec(parse_metrics_addr(&text).map(drop));
    run
}
