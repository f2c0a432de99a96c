//! Prometheus metrics: what napd does, served at `/metrics` in Prometheus' text exposition
//! format through the `prometheus` client crate and tiny_http, from a thread of its own so a
//! slow scraper never touches scoring.

use super::{Sink, Telemetry};
use nap_core::protocol::{Health, RuntimeStatus};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder, exponential_buckets, linear_buckets,
};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The labels of `nap_bundle_info`.
const BUNDLE_LABELS: [&str; 4] = ["sha256", "method", "threshold", "precision"];

/// The metrics napd keeps.
struct Metrics {
    frames: IntCounterVec,
    ood: IntCounter,
    latency: Histogram,
    score: Histogram,
    health: IntGauge,
    status_code: IntGauge,
    link_connected: IntGauge,
    controller_acks: IntCounter,
    acks_seen: AtomicU64,
    rss: IntGauge,
    bundle: IntGaugeVec,
    drift_raised: IntGauge,
}

impl Metrics {
    fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let gauge = |name: &str, help: &str| IntGauge::new(name, help);
        let m = Metrics {
            frames: IntCounterVec::new(
                Opts::new(
                    "nap_frames_total",
                    "Frames by outcome: verdict, rejected (unreadable or malformed) or dropped \
                     (the workers were behind)",
                ),
                &["outcome"],
            )?,
            ood: counter(
                "nap_ood_verdicts_total",
                "Verdicts that flagged the frame out of distribution",
            )?,
            latency: Histogram::with_opts(
                HistogramOpts::new(
                    "nap_verdict_latency_seconds",
                    "Time from capture to verdict",
                )
                .buckets(exponential_buckets(0.001, 2.0, 14)?),
            )?,
            score: Histogram::with_opts(
                HistogramOpts::new("nap_score", "Deciding scores (below the threshold: OOD)")
                    .buckets(linear_buckets(-10.0, 2.0, 21)?),
            )?,
            health: gauge(
                "nap_health",
                "Health the controller hears: 0 ok, 1 degraded, 2 fault",
            )?,
            status_code: gauge(
                "nap_status_code",
                "Reason code of the health (README: statuses)",
            )?,
            link_connected: gauge("nap_link_connected", "1 while the controller link is up")?,
            controller_acks: counter(
                "nap_controller_acks_total",
                "Acknowledgements from the controller",
            )?,
            acks_seen: AtomicU64::new(0),
            rss: gauge("nap_resident_memory_bytes", "napd's resident set size")?,
            bundle: IntGaugeVec::new(
                Opts::new(
                    "nap_bundle_info",
                    "The bundle that decides, as labels (value 1)",
                ),
                &BUNDLE_LABELS,
            )?,
            drift_raised: gauge("nap_drift_alarm", "1 while the drift alarm is raised")?,
        };
        registry.register(Box::new(m.frames.clone()))?;
        registry.register(Box::new(m.ood.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.score.clone()))?;
        registry.register(Box::new(m.health.clone()))?;
        registry.register(Box::new(m.status_code.clone()))?;
        registry.register(Box::new(m.link_connected.clone()))?;
        registry.register(Box::new(m.controller_acks.clone()))?;
        registry.register(Box::new(m.rss.clone()))?;
        registry.register(Box::new(m.bundle.clone()))?;
        registry.register(Box::new(m.drift_raised.clone()))?;
        for outcome in ["verdict", "rejected", "dropped"] {
            m.frames.with_label_values(&[outcome]);
        }
        Ok(m)
    }
}

/// The metrics endpoint: registry, metrics and the thread serving them.
pub struct MetricsServer {
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    server: Arc<tiny_http::Server>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Where it listens (the port the OS chose when asked for 0).
    pub addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics` from a thread.
    pub fn start(addr: SocketAddr) -> Result<MetricsServer, String> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| format!("metrics: cannot listen on {addr}: {e}"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("metrics: {addr} is not an IP address"))?;
        let registry = Registry::new();
        let metrics = Arc::new(Metrics::register(&registry).map_err(|e| format!("metrics: {e}"))?);
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("napd-metrics".into())
            .spawn({
                let (server, stop) = (server.clone(), stop.clone());
                move || serve(&server, &registry, &stop)
            })
            .map_err(|e| format!("metrics: starting a thread: {e}"))?;
        Ok(MetricsServer {
            metrics,
            stop,
            server,
            thread: Mutex::new(Some(thread)),
            addr,
        })
    }
}

/// Answers scrapes until `stop`.
fn serve(server: &tiny_http::Server, registry: &Registry, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let request = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(_) => break,
        };
        let path = request.url().split('?').next().unwrap_or("");
        let response = if path == "/metrics" && *request.method() == tiny_http::Method::Get {
            let encoder = TextEncoder::new();
            let mut body = Vec::new();
            match encoder.encode(&registry.gather(), &mut body) {
                Ok(()) => tiny_http::Response::from_data(body).with_header(
                    tiny_http::Header::from_bytes("Content-Type", encoder.format_type())
                        .expect("a valid header"),
                ),
                Err(e) => tiny_http::Response::from_data(format!("encoding failed: {e}\n"))
                    .with_status_code(500),
            }
        } else {
            tiny_http::Response::from_string("napd serves /metrics only\n").with_status_code(404)
        };
        let _ = request.respond(response);
    }
}

impl Telemetry for MetricsServer {
    fn status(&self, status: RuntimeStatus) {
        let m = &self.metrics;
        m.health.set(match status.health {
            Health::Ok => 0,
            Health::Degraded => 1,
            Health::Fault => 2,
        });
        m.status_code.set(i64::from(status.code));
    }

    fn verdict(&self, verdict: &Value, ood: bool) {
        let m = &self.metrics;
        m.frames.with_label_values(&["verdict"]).inc();
        if ood {
            m.ood.inc();
        }
        if let Some(us) = verdict["latency_us"].as_u64() {
            m.latency.observe(us as f64 / 1e6);
        }
        if let Some(score) = verdict["score"].as_f64() {
            m.score.observe(score);
        }
    }

    fn rejected(&self) {
        self.metrics.frames.with_label_values(&["rejected"]).inc();
    }

    fn dropped(&self) {
        self.metrics.frames.with_label_values(&["dropped"]).inc();
    }

    fn stats(&self, stats: &Value) {
        let m = &self.metrics;
        if let Some(kib) = stats["rss_kib"].as_u64() {
            m.rss.set((kib * 1024) as i64);
        }
        let link = &stats["link"];
        m.link_connected
            .set(i64::from(link["connected"].as_bool().unwrap_or(false)));
        if let Some(acks) = link["acks"].as_u64() {
            let seen = m.acks_seen.swap(acks, Ordering::Relaxed);
            m.controller_acks.inc_by(acks.saturating_sub(seen));
        }
    }

    fn drift(&self, drift: &Value) {
        self.metrics
            .drift_raised
            .set(i64::from(drift["event"] == "raised"));
    }

    fn events(&self) -> Vec<Value> {
        Vec::new()
    }

    fn counts(&self) -> Option<(&'static str, Value)> {
        None
    }
}

impl Sink for MetricsServer {
    fn bundle(&self, bundle: &Value) {
        let values: Vec<String> = BUNDLE_LABELS
            .iter()
            .map(|key| {
                let v = &bundle[*key];
                v.as_str().map_or_else(|| v.to_string(), str::to_string)
            })
            .collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        self.metrics.bundle.with_label_values(&values).set(1);
    }

    fn close(&self, _patience: Duration) -> Option<(&'static str, Value)> {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.lock().expect("thread lock").take() {
            let _ = thread.join();
        }
        None
    }
}
