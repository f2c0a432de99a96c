//! Link specs as written on the command line: `serial:/dev/ttyX@BAUD`, `tcp:HOST:PORT`, `none`.

use std::str::FromStr;

/// Which link to open, as written on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkSpec {
    /// A UART: `serial:/dev/ttyX@BAUD` (`@BAUD` defaults to 115200).
    Serial {
        /// The device path.
        path: String,
        /// Bits per second.
        baud: u32,
    },
    /// A TCP peer that listens: `tcp:HOST:PORT`.
    Tcp(String),
    /// No controller: verdicts go to the log only.
    None,
}

/// Default UART speed.
pub const DEFAULT_BAUD: u32 = 115_200;

impl FromStr for LinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!("link {s:?}: {why} (expected serial:/dev/ttyX@BAUD, tcp:HOST:PORT or none)")
        };
        if s == "none" {
            return Ok(LinkSpec::None);
        }
        if let Some(rest) = s.strip_prefix("tcp:") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            port.parse::<u16>()
                .map_err(|_| bad("port is not a number in 0..=65535"))?;
            return Ok(LinkSpec::Tcp(rest.to_string()));
        }
        if let Some(rest) = s.strip_prefix("serial:") {
            let (path, baud) = match rest.rsplit_once('@') {
                Some((p, b)) => (
                    p,
                    b.parse::<u32>()
                        .ok()
                        .filter(|&b| b > 0)
                        .ok_or_else(|| bad("baud rate is not a positive number"))?,
                ),
                None => (rest, DEFAULT_BAUD),
            };
            if path.is_empty() {
                return Err(bad("empty device path"));
            }
            return Ok(LinkSpec::Serial {
                path: path.to_string(),
                baud,
            });
        }
        Err(bad("unknown kind"))
    }
}

impl std::fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkSpec::Serial { path, baud } => write!(f, "serial:{path}@{baud}"),
            LinkSpec::Tcp(addr) => write!(f, "tcp:{addr}"),
            LinkSpec::None => f.write_str("none"),
        }
    }
}
