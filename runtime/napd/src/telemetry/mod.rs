//! Fleet telemetry: what napd knows (health, verdicts, stats, drift) told to the fleet's
//! infrastructure as it happens, never in the way of scoring.
//!
//! - [`Telemetry`] is what the pipeline tells; each sink decides what to send and how;
//! - [`mqtt`] (cargo feature `mqtt`, on by default): topics under `nap/<device-id>/` on a broker,
//!   through a bounded queue that drops the oldest message first and counts it;
//! - [`metrics`] (cargo feature `metrics`, on by default): Prometheus metrics at `/metrics`.
//!
//! This module also parses the broker URL, the device id and the credentials file, so a bad
//! value is refused the same way with or without the feature.

#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "mqtt")]
pub mod mqtt;

use nap_core::protocol::RuntimeStatus;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// What the pipeline tells the fleet. Every call returns at once: a sink queues, it never waits
/// for the network.
pub trait Telemetry: Send + Sync {
    /// The health the controller now hears.
    fn status(&self, status: RuntimeStatus);
    /// One verdict, as its log object.
    fn verdict(&self, verdict: &Value, ood: bool);
    /// A stats object, as logged.
    fn stats(&self, stats: &Value);
    /// A drift alarm event, as logged.
    fn drift(&self, drift: &Value);
    /// A frame rejected (unreadable, malformed).
    fn rejected(&self) {}
    /// A frame dropped because the workers were behind.
    fn dropped(&self) {}
    /// Connection changes since the last call, as log objects.
    fn events(&self) -> Vec<Value>;
    /// The sink's counters under their key, for the `stats` objects, if it keeps any.
    fn counts(&self) -> Option<(&'static str, Value)>;
}

/// Where the broker is: `mqtt://HOST[:PORT]` (1883) or `mqtts://HOST[:PORT]` (TLS, 8883).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    /// TLS (`mqtts://`).
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl FromStr for BrokerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            Err(format!(
                "mqtt {s:?}: {why} (expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT])"
            ))
        };
        let (tls, rest) = match (s.strip_prefix("mqtt://"), s.strip_prefix("mqtts://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return bad("unknown scheme"),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('@') {
            return Err(format!(
                "mqtt {s:?}: credentials do not go in the URL (a command line is readable by \
                 every user): put them in a file given with --mqtt-credentials"
            ));
        }
        if rest.contains(['/', '?', '#']) {
            return bad("a broker URL has no path");
        }
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((host, "")) => (host, None),
                Some((host, port)) => match port.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return bad("junk after the IPv6 address"),
                },
                None => return bad("unclosed ["),
            },
            None => match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_');
        if host.is_empty() || !host.chars().all(valid) {
            return bad("no valid host");
        }
        let port = match port {
            None => {
                if tls {
                    8883
                } else {
                    1883
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return bad("the port is not a number in 1..=65535"),
            },
        };
        Ok(BrokerUrl {
            tls,
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// MQTT telemetry as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct MqttOptions {
    /// The broker.
    pub broker: BrokerUrl,
    /// This device's name in the topics, `nap/<device-id>/...`.
    pub device_id: String,
    /// A file holding `USER:PASSWORD`, if the broker wants them.
    pub credentials: Option<PathBuf>,
    /// The CA certificate(s) (PEM) an `mqtts://` broker's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Publish every verdict, not only OOD ones.
    pub all_verdicts: bool,
    /// Messages waiting while the broker is slow or away; the oldest go first.
    pub queue: usize,
    /// Wait between connection attempts.
    pub reconnect: Duration,
}

/// Checks a device id: it becomes a topic level, so 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_device_id(id: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > 64 || !id.chars().all(ok) {
        return Err(format!(
            "device-id {id:?}: 1 to 64 letters, digits, '.', '_' or '-' (it is an MQTT topic level)"
        ));
    }
    Ok(())
}

/// This machine's host name, as the default device id (`napd` when there is none usable).
pub fn default_device_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| check_device_id(h).is_ok())
        .unwrap_or_else(|| "napd".to_string())
}

/// The most bytes a credentials file may have.
const MAX_CREDENTIALS_BYTES: u64 = 4096;

/// Reads `USER:PASSWORD` (one line) from a file only its owner can read.
pub fn read_credentials(path: &Path) -> Result<(String, String), String> {
    let name = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("mqtt credentials {name}: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "mqtt credentials {name}: mode {mode:03o} lets others read the password; \
                 chmod 600 it"
            ));
        }
    }
    if meta.len() > MAX_CREDENTIALS_BYTES {
        return Err(format!(
            "mqtt credentials {name}: {} bytes, more than {MAX_CREDENTIALS_BYTES}",
            meta.len()
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("mqtt credentials {name}: {e}"))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    match line.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok((user.into(), password.into())),
        _ => Err(format!(
            "mqtt credentials {name}: expected one line USER:PASSWORD"
        )),
    }
}

/// Opens the MQTT sink: checks the settings and starts connecting in the background (an
/// unreachable broker is not an error; napd scores anyway and keeps trying).
pub fn open_mqtt(options: &MqttOptions) -> Result<Box<dyn Sink>, String> {
    #[cfg(feature = "mqtt")]
    {
        Ok(Box::new(mqtt::Mqtt::open(options)?))
    }
    #[cfg(not(feature = "mqtt"))]
    {
        let _ = options;
        Err("mqtt: this napd was built without MQTT (cargo feature `mqtt`)".into())
    }
}

/// Starts serving Prometheus metrics at `http://ADDR/metrics`.
pub fn open_metrics(addr: SocketAddr) -> Result<Box<dyn Sink>, String> {
    #[cfg(feature = "metrics")]
    {
        let server = metrics::MetricsServer::start(addr)?;
        eprintln!("napd: metrics at http://{}/metrics", server.addr);
        Ok(Box::new(server))
    }
    #[cfg(not(feature = "metrics"))]
    {
        let _ = addr;
        Err("metrics: this napd was built without them (cargo feature `metrics`)".into())
    }
}

/// A telemetry sink as the daemon holds it: what the pipeline tells, plus what only the
/// daemon's life calls.
pub trait Sink: Telemetry {
    /// The loaded bundle (file, hash, method, threshold, precision), for what follows.
    fn bundle(&self, bundle: &Value);
    /// Sends what is queued for up to `patience` and stops. Gives the final counters under
    /// their key, if the sink keeps any.
    fn close(&self, patience: Duration) -> Option<(&'static str, Value)>;
}

/// Where `--metrics` listens: `PORT` (on 127.0.0.1) or `ADDRESS:PORT`.
pub fn parse_metrics_addr(text: &str) -> Result<SocketAddr, String> {
    let addr = match text.parse::<u16>() {
        Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        Err(_) => text.parse().map_err(|_| {
            format!(
                "metrics {text:?}: expected PORT (on 127.0.0.1) or ADDRESS:PORT, e.g. 0.0.0.0:9464"
            )
        })?,
    };
    Ok(addr)
}

/// The words for a status code, for people reading a fleet dashboard.
pub fn state_of(status: RuntimeStatus) -> &'static str {
    use crate::status::code;
    use nap_core::protocol::Health;
    match status.health {
        Health::Ok => "ok",
        Health::Degraded if status.code == code::STARTING => "loading",
        Health::Degraded => "degraded",
        Health::Fault => "fault",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_default_ports_and_bad_ones_say_why() {
        let url: BrokerUrl = "mqtt://127.0.0.1:1884".parse().unwrap();
        assert_eq!(
            (url.tls, url.host.as_str(), url.port),
            (false, "127.0.0.1", 1884)
        );
        assert_eq!(
            "mqtt://broker.local".parse::<BrokerUrl>().unwrap().port,
            1883
        );
        assert_eq!("mqtts://broker/".parse::<BrokerUrl>().unwrap().port, 8883);
        let v6: BrokerUrl = "mqtt://[::1]:9000".parse().unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9000));
        assert_eq!(v6.to_string(), "mqtt://[::1]:9000");
        for (bad, why) in [
            ("tcp://host", "unknown scheme"),
            ("mqtt://", "no valid host"),
            ("mqtt://host:0", "1..=65535"),
            ("mqtt://host:99999", "1..=65535"),
            ("mqtt://host:x", "1..=65535"),
            ("mqtt://user:pw@host", "credentials do not go in the URL"),
            ("mqtt://host/topic", "no path"),
            ("mqtt://[::1", "unclosed"),
            ("mqtt://ho st", "no valid host"),
        ] {
            let e = bad.parse::<BrokerUrl>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn metrics_listen_on_loopback_unless_told() {
        assert_eq!(
            parse_metrics_addr("9464").unwrap().to_string(),
            "127.0.0.1:9464"
        );
        assert_eq!(
            parse_metrics_addr("0.0.0.0:80").unwrap().to_string(),
            "0.0.0.0:80"
        );
        assert_eq!(
            parse_metrics_addr("[::1]:9").unwrap().to_string(),
            "[::1]:9"
        );
        for bad in ["", "host:9464", "99999", "1.2.3.4"] {
            assert!(
                parse_metrics_addr(bad)
                    .unwrap_err()
                    .contains("expected PORT"),
                "{bad}"
            );
        }
    }

    #[test]
    fn device_ids_are_single_topic_levels() {
        for good in ["cam-01", "a", "jetson.lab_3"] {
            check_device_id(good).unwrap();
        }
        for bad in ["", "a/b", "+", "#", "cam 1", &"x".repeat(65)] {
            assert!(check_device_id(bad).is_err(), "{bad:?}");
        }
        check_device_id(&default_device_id()).unwrap();
    }

    #[test]
    fn credentials_come_from_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("napd-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mqtt.cred");
        let write = |text: &str, mode: u32| {
            std::fs::write(&file, text).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("cam:s3cret:with:colons\n", 0o600);
        assert_eq!(
            read_credentials(&file).unwrap(),
            ("cam".to_string(), "s3cret:with:colons".to_string())
        );
        write("cam:pw\n", 0o644);
        assert!(read_credentials(&file).unwrap_err().contains("chmod 600"));
        write("no colon\n", 0o600);
        assert!(
            read_credentials(&file)
                .unwrap_err()
                .contains("USER:PASSWORD")
        );
        write(&"x".repeat(5000), 0o600);
        assert!(read_credentials(&file).unwrap_err().contains("more than"));
        assert!(read_credentials(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
