//! `napctl fleet`: what the devices publish under `nap/<device-id>/` (napd `--mqtt`), folded
//! into one row per device: its status, its latest stats, the OOD verdicts seen, and when it
//! was last heard from.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// One device as the fleet view knows it.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Device {
    /// `loading`, `ok`, `degraded`, `fault` or `offline` (its last will); empty until a status
    /// arrives.
    pub state: String,
    /// The status's reason code and words.
    pub code: Option<u64>,
    /// The reason, in words.
    pub reason: String,
    /// SHA-256 of the bundle it runs.
    pub bundle: Option<String>,
    /// napd's version.
    pub napd: Option<String>,
    /// From the latest stats: frames per second, p99 latency (us), OOD rate, totals.
    pub fps: Option<f64>,
    /// p99 latency of the last stats interval, in microseconds.
    pub p99_us: Option<u64>,
    /// OOD share of the last stats interval.
    pub ood_rate: Option<f64>,
    /// Verdicts since napd started.
    pub verdicts: Option<u64>,
    /// Frames dropped since napd started.
    pub dropped: Option<u64>,
    /// Frames rejected since napd started.
    pub rejected: Option<u64>,
    /// OOD verdict messages received (QoS 1: a repeat counts again).
    pub ood_verdicts_seen: u64,
    /// Whether the drift alarm is raised, from the last drift event.
    pub drifting: bool,
    /// Seconds since the last message from it.
    pub last_seen_s: f64,
    #[serde(skip)]
    last_seen: Option<Instant>,
}

/// Every device heard from, by id.
#[derive(Debug, Default)]
pub struct Fleet {
    devices: BTreeMap<String, Device>,
}

impl Fleet {
    /// Folds one message in; messages outside `nap/<id>/<kind>` or not JSON are ignored and
    /// give `false`.
    pub fn receive(&mut self, topic: &str, payload: &[u8], now: Instant) -> bool {
        let mut levels = topic.split('/');
        let (Some("nap"), Some(id), Some(kind), None) =
            (levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return false;
        };
        let Ok(json) = serde_json::from_slice::<Value>(payload) else {
            return false;
        };
        let device = self.devices.entry(id.to_string()).or_default();
        device.last_seen = Some(now);
        match kind {
            "status" => {
                device.state = json["state"].as_str().unwrap_or("").to_string();
                device.code = json["code"].as_u64();
                device.reason = json["reason"].as_str().unwrap_or("").to_string();
                if let Some(sha) = json["bundle"]["sha256"].as_str() {
                    device.bundle = Some(sha.to_string());
                }
                if let Some(v) = json["napd"].as_str() {
                    device.napd = Some(v.to_string());
                }
            }
            "stats" => {
                device.fps = json["fps"].as_f64();
                device.p99_us = json["p99_us"].as_u64();
                device.ood_rate = json["ood_rate"].as_f64();
                device.verdicts = json["total_verdicts"].as_u64();
                device.dropped = json["total_dropped"].as_u64();
                device.rejected = json["total_bad"].as_u64();
            }
            "verdict" => device.ood_verdicts_seen += u64::from(json["ood"] == true),
            "drift" => device.drifting = json["event"] == "raised",
            _ => return false,
        }
        true
    }

    /// The devices, by id, with their time since last heard as of `now`.
    pub fn snapshot(&self, now: Instant) -> BTreeMap<String, Device> {
        self.devices
            .iter()
            .map(|(id, d)| {
                let mut d = d.clone();
                d.last_seen_s = d
                    .last_seen
                    .map_or(f64::INFINITY, |t| now.duration_since(t).as_secs_f64());
                (id.clone(), d)
            })
            .collect()
    }

    /// The devices as a table; a device silent for longer than `stale` is marked.
    pub fn table(&self, now: Instant, stale: Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<20} {:<9} {:>6} {:>6} {:>8} {:>9} {:>8} {:>8} {:>9}",
            "DEVICE", "STATE", "FPS", "OOD%", "P99 ms", "VERDICTS", "DROPPED", "REJECTED", "SEEN"
        );
        let num = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        for (id, d) in self.snapshot(now) {
            let silent = d.last_seen_s > stale.as_secs_f64();
            let state = match (d.state.as_str(), d.drifting, silent) {
                ("", _, _) => "?".to_string(),
                (s, true, _) => format!("{s}+drift"),
                (s, _, true) if s != "offline" => format!("{s}?"),
                (s, _, _) => s.to_string(),
            };
            let _ = writeln!(
                out,
                "{:<20} {:<9} {:>6} {:>6} {:>8} {:>9} {:>8} {:>8} {:>8.0}s",
                id,
                state,
                d.fps.map_or("-".to_string(), |f| format!("{f:.1}")),
                d.ood_rate
                    .map_or("-".to_string(), |r| format!("{:.1}", 100.0 * r)),
                d.p99_us
                    .map_or("-".to_string(), |us| format!("{:.1}", us as f64 / 1000.0)),
                num(d.verdicts),
                num(d.dropped),
                num(d.rejected),
                d.last_seen_s,
            );
        }
        if self.devices.is_empty() {
            out.push_str("(no device heard from yet)\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_fold_into_one_row_per_device() {
        let t0 = Instant::now();
        let mut fleet = Fleet::default();
        let status = br#"{"state":"ok","code":0,"reason":"scoring","napd":"0.1.0","bundle":{"sha256":"ab"}}"#;
        assert!(fleet.receive("nap/cam-1/status", status, t0));
        let stats = br#"{"fps":14.9,"p99_us":80000,"ood_rate":0.25,"total_verdicts":120,"total_dropped":2,"total_bad":1}"#;
        assert!(fleet.receive("nap/cam-1/stats", stats, t0));
        assert!(fleet.receive("nap/cam-1/verdict", br#"{"ood":true}"#, t0));
        assert!(fleet.receive("nap/cam-1/drift", br#"{"event":"raised"}"#, t0));
        assert!(fleet.receive("nap/cam-2/status", br#"{"state":"offline"}"#, t0));
        for (topic, payload) in [
            ("nap/cam-1", &b"{}"[..]),
            ("other/cam-1/status", b"{}"),
            ("nap/cam-1/status/x", b"{}"),
            ("nap/cam-1/status", b"not json"),
            ("nap/cam-1/unknown", b"{}"),
        ] {
            assert!(!fleet.receive(topic, payload, t0), "{topic}");
        }
        let later = t0 + Duration::from_secs(60);
        let snap = fleet.snapshot(later);
        let cam1 = &snap["cam-1"];
        assert_eq!((cam1.state.as_str(), cam1.code), ("ok", Some(0)));
        assert_eq!(cam1.bundle.as_deref(), Some("ab"));
        assert_eq!(
            (cam1.verdicts, cam1.dropped, cam1.rejected),
            (Some(120), Some(2), Some(1))
        );
        assert_eq!(cam1.ood_verdicts_seen, 1);
        assert!(cam1.drifting);
        assert_eq!(cam1.last_seen_s, 60.0);
        let table = fleet.table(later, Duration::from_secs(30));
        assert!(table.contains("ok+drift"), "{table}");
        assert!(table.contains("offline "), "offline stays offline: {table}");
        assert!(table.contains("14.9") && table.contains("25.0") && table.contains("80.0"));
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["cam-2"]["state"], "offline");
        assert_eq!(json["cam-1"]["verdicts"], 120);
    }
}
