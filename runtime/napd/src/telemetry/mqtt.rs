//! Telemetry to an MQTT broker through rumqttc, under `nap/<device-id>/`:
//!
//! - `status` (retained, QoS 1): state (`loading`, `ok`, `degraded`, `fault`), code, reason,
//!   bundle, napd version; the broker's last will sets it to `offline` when napd vanishes;
//! - `stats` (QoS 0): each stats object as logged;
//! - `verdict` (QoS 1 for OOD frames, 0 for the others with `--mqtt-all-verdicts`);
//! - `drift` (QoS 1): the drift alarm's raised and cleared events.
//!
//! Messages wait in a bounded queue while the broker is away (the oldest dropped first and
//! counted), and are handed to the client only while connected. The session is persistent, so a
//! broker that keeps sessions gets the unacknowledged ones again; one that lost the session (a
//! restart without persistence) lost them, and they are counted as `lost`.

use super::{BrokerUrl, MqttOptions, Sink, Telemetry, read_credentials, state_of};
use crate::queue::{self, Overflow, QueueReceiver, QueueSender, Take};
use crate::status;
use nap_core::protocol::RuntimeStatus;
use rumqttc::{
    Client, ConnectionError, Event, LastWill, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Requests rumqttc holds between napd's queue and the network.
const CLIENT_CAPACITY: usize = 16;
/// How often an idle publisher looks at the connection and the end.
const POLL: Duration = Duration::from_millis(20);

/// One message for the broker.
struct Message {
    topic: String,
    qos: QoS,
    retain: bool,
    payload: Vec<u8>,
}

/// What both threads and the daemon share.
#[derive(Default)]
struct Shared {
    connected: AtomicBool,
    closing: AtomicBool,
    reconnects: AtomicU64,
    /// Messages accepted into the queue.
    queued: AtomicU64,
    /// Evicted from the full queue, oldest first.
    dropped: AtomicU64,
    /// Handed to the client, and of those at QoS 1.
    sent: AtomicU64,
    sent_qos1: AtomicU64,
    /// QoS 1 messages the broker acknowledged.
    acked: AtomicU64,
    /// QoS 1 messages sent but gone with a session the broker did not keep.
    lost: AtomicU64,
    /// The latest status, republished (retained) on every connection.
    status: Mutex<Option<Vec<u8>>>,
    /// Connection changes for the log.
    events: Mutex<Vec<Value>>,
}

impl Shared {
    /// QoS 1 messages sent and neither acknowledged nor lost yet.
    fn unconfirmed(&self) -> u64 {
        let sent = self.sent_qos1.load(Ordering::SeqCst);
        sent.saturating_sub(self.acked.load(Ordering::SeqCst) + self.lost.load(Ordering::SeqCst))
    }

    fn event(&self, event: Value) {
        self.events.lock().expect("events lock").push(event);
    }
}

/// An open MQTT telemetry sink.
pub struct Mqtt {
    prefix: String,
    device: String,
    all_verdicts: bool,
    queue: Mutex<Option<QueueSender<Message>>>,
    shared: Arc<Shared>,
    client: Client,
    bundle: Mutex<Value>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Mqtt {
    /// Checks the settings, reads the credentials and CA, and starts connecting.
    pub fn open(options: &MqttOptions) -> Result<Mqtt, String> {
        let device = options.device_id.clone();
        super::check_device_id(&device)?;
        let prefix = format!("nap/{device}/");
        let mut mqtt = client_options(
            format!("napd-{device}"),
            &options.broker,
            options.credentials.as_deref(),
            options.ca.as_deref(),
        )?;
        mqtt.set_keep_alive(Duration::from_secs(10))
            .set_clean_session(false)
            .set_last_will(LastWill::new(
                format!("{prefix}status"),
                serde_json::to_vec(&json!({"state": "offline", "device": device})).expect("JSON"),
                QoS::AtLeastOnce,
                true,
            ));
        let (client, connection) = Client::new(mqtt, CLIENT_CAPACITY);
        let (tx, rx) = queue::bounded(options.queue, Overflow::DropOldest);
        let shared = Arc::new(Shared::default());
        let threads = vec![
            spawn("napd-mqtt-conn", {
                let (client, shared, wait) = (client.clone(), shared.clone(), options.reconnect);
                let broker = options.broker.to_string();
                let topic = format!("{prefix}status");
                move || run_connection(connection, &client, &shared, wait, &broker, &topic)
            })?,
            spawn("napd-mqtt-pub", {
                let (client, shared) = (client.clone(), shared.clone());
                move || run_publisher(&rx, &client, &shared)
            })?,
        ];
        Ok(Mqtt {
            prefix,
            device,
            all_verdicts: options.all_verdicts,
            queue: Mutex::new(Some(tx)),
            shared,
            client,
            bundle: Mutex::new(Value::Null),
            threads: Mutex::new(threads),
        })
    }

    fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: &Value) {
        let Some(tx) = &*self.queue.lock().expect("queue lock") else {
            return;
        };
        let message = Message {
            topic: format!("{}{topic}", self.prefix),
            qos,
            retain,
            payload: serde_json::to_vec(payload).expect("JSON values serialize"),
        };
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        if let Ok(evicted) = tx.push(message, &AtomicBool::new(false)) {
            self.shared
                .dropped
                .fetch_add(evicted.len() as u64, Ordering::Relaxed);
        }
    }
}

/// A client's connection settings for `broker`: its id, the credentials file's user and
/// password, and for `mqtts://` the CA file (PEM) the broker's certificate must chain to. What
/// napd and `napctl fleet` connect with.
pub fn client_options(
    client_id: String,
    broker: &BrokerUrl,
    credentials: Option<&Path>,
    ca: Option<&Path>,
) -> Result<rumqttc::MqttOptions, String> {
    let mut options = rumqttc::MqttOptions::new(client_id, broker.host.clone(), broker.port);
    if let Some(path) = credentials {
        let (user, password) = read_credentials(path)?;
        options.set_credentials(user, password);
    }
    if broker.tls {
        options.set_transport(Transport::tls_with_config(tls_config(ca)?));
    } else if ca.is_some() {
        return Err("mqtt-ca is for mqtts:// brokers only".into());
    }
    Ok(options)
}

/// The TLS settings of an `mqtts://` broker: its CA from `--mqtt-ca`, ring as the crypto.
fn tls_config(ca: Option<&Path>) -> Result<TlsConfiguration, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let Some(path) = ca else {
        return Err(
            "mqtts:// needs --mqtt-ca FILE: the CA certificate (PEM) the broker's certificate \
             chains to (/etc/ssl/certs/ca-certificates.crt for the system's)"
                .into(),
        );
    };
    let name = path.display();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("mqtt-ca {name}: {e}"))? {
        let cert = cert.map_err(|e| format!("mqtt-ca {name}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("mqtt-ca {name}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("mqtt-ca {name}: no certificate in it"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("mqtt TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| format!("mqtt: starting a thread: {e}"))
}

/// Drives the connection: reconnects after `wait`, counts acknowledgements, republishes the
/// status on every connection, and notes what a lost session took.
fn run_connection(
    mut connection: rumqttc::Connection,
    client: &Client,
    shared: &Shared,
    wait: Duration,
    broker: &str,
    status_topic: &str,
) {
    let mut ever_connected = false;
    let mut down_reported = false;
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if ever_connected {
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    if !ack.session_present {
                        // The broker forgot the session: rumqttc drops what it had not
                        // confirmed, so those messages are lost; count them.
                        let lost = shared.unconfirmed();
                        shared.lost.fetch_add(lost, Ordering::SeqCst);
                    }
                }
                // After a reconnect the broker may have lost the retained status (a restart
                // without persistence): say it again. The first one is in the queue.
                let republish = ever_connected;
                ever_connected = true;
                down_reported = false;
                if republish
                    && let Some(status) = shared.status.lock().expect("status lock").clone()
                    && client
                        .try_publish(status_topic, QoS::AtLeastOnce, true, status)
                        .is_ok()
                {
                    shared.sent.fetch_add(1, Ordering::SeqCst);
                    shared.sent_qos1.fetch_add(1, Ordering::SeqCst);
                }
                shared.connected.store(true, Ordering::SeqCst);
                eprintln!("napd: mqtt connected to {broker}");
                shared.event(json!({
                    "type": "mqtt", "event": "up", "broker": broker,
                    "reconnects": shared.reconnects.load(Ordering::Relaxed),
                    "lost": shared.lost.load(Ordering::Relaxed),
                }));
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                shared.acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) if shared.closing.load(Ordering::SeqCst) => {
                break;
            }
            Ok(_) => {}
            Err(e) => {
                shared.connected.store(false, Ordering::SeqCst);
                if shared.closing.load(Ordering::SeqCst)
                    || matches!(e, ConnectionError::RequestsDone)
                {
                    break;
                }
                if !down_reported {
                    down_reported = true;
                    let reason = describe(&e);
                    eprintln!("napd: mqtt {broker}: {reason}; retrying every {wait:?}");
                    shared.event(json!({"type": "mqtt", "event": "down", "broker": broker, "reason": reason}));
                }
                std::thread::sleep(wait);
            }
        }
    }
}

/// A connection error in words a person acts on.
fn describe(e: &ConnectionError) -> String {
    use rumqttc::ConnectReturnCode as Code;
    match e {
        ConnectionError::ConnectionRefused(Code::BadUserNamePassword) => {
            "the broker refused the user name or password (check --mqtt-credentials)".into()
        }
        ConnectionError::ConnectionRefused(Code::NotAuthorized) => {
            "the broker says this client is not authorized (check --mqtt-credentials)".into()
        }
        ConnectionError::ConnectionRefused(code) => format!("the broker refused: {code:?}"),
        e => e.to_string(),
    }
}

/// Hands queued messages to the client while connected.
fn run_publisher(rx: &QueueReceiver<Message>, client: &Client, shared: &Shared) {
    loop {
        if !shared.connected.load(Ordering::SeqCst) {
            if shared.closing.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(POLL);
            continue;
        }
        match queue::take(rx, POLL) {
            Take::Item(m) => {
                let qos1 = m.qos == QoS::AtLeastOnce;
                if client.publish(m.topic, m.qos, m.retain, m.payload).is_ok() {
                    shared.sent.fetch_add(1, Ordering::SeqCst);
                    shared
                        .sent_qos1
                        .fetch_add(u64::from(qos1), Ordering::SeqCst);
                }
            }
            Take::Idle => {}
            Take::Closed => return,
        }
    }
}

impl Telemetry for Mqtt {
    fn status(&self, status: RuntimeStatus) {
        let payload = json!({
            "state": state_of(status),
            "health": format!("{:?}", status.health),
            "code": status.code,
            "reason": status::reason(status.code),
            "device": self.device,
            "napd": env!("CARGO_PKG_VERSION"),
            "bundle": *self.bundle.lock().expect("bundle lock"),
            "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        });
        *self.shared.status.lock().expect("status lock") =
            Some(serde_json::to_vec(&payload).expect("JSON"));
        self.publish("status", QoS::AtLeastOnce, true, &payload);
    }

    fn verdict(&self, verdict: &Value, ood: bool) {
        if ood {
            self.publish("verdict", QoS::AtLeastOnce, false, verdict);
        } else if self.all_verdicts {
            self.publish("verdict", QoS::AtMostOnce, false, verdict);
        }
    }

    fn stats(&self, stats: &Value) {
        self.publish("stats", QoS::AtMostOnce, false, stats);
    }

    fn drift(&self, drift: &Value) {
        self.publish("drift", QoS::AtLeastOnce, false, drift);
    }

    fn events(&self) -> Vec<Value> {
        std::mem::take(&mut *self.shared.events.lock().expect("events lock"))
    }

    fn counts(&self) -> Option<(&'static str, Value)> {
        Some(("mqtt", self.mqtt_counts()))
    }
}

impl Mqtt {
    /// The counters of the `mqtt` object in `stats` and `final`.
    fn mqtt_counts(&self) -> Value {
        let s = &self.shared;
        let waiting = self
            .queue
            .lock()
            .expect("queue lock")
            .as_ref()
            .map_or(0, QueueSender::len);
        json!({
            "connected": s.connected.load(Ordering::SeqCst),
            "reconnects": s.reconnects.load(Ordering::Relaxed),
            "queued": s.queued.load(Ordering::Relaxed),
            "waiting": waiting,
            "dropped": s.dropped.load(Ordering::Relaxed),
            "sent": s.sent.load(Ordering::SeqCst),
            "acked": s.acked.load(Ordering::SeqCst),
            "unconfirmed": s.unconfirmed(),
            "lost": s.lost.load(Ordering::SeqCst),
        })
    }
}

impl Sink for Mqtt {
    fn bundle(&self, bundle: &Value) {
        *self.bundle.lock().expect("bundle lock") = bundle.clone();
    }

    fn close(&self, patience: Duration) -> Option<(&'static str, Value)> {
        let deadline = Instant::now() + patience;
        let pending = || {
            self.queue
                .lock()
                .expect("queue lock")
                .as_ref()
                .map_or(0, QueueSender::len)
                + self.shared.unconfirmed() as usize
        };
        while pending() > 0 && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        // What is still waiting now is never sent: the final counts say so.
        let counts = self.mqtt_counts();
        // Closing the queue ends the publisher; the disconnect tells the broker the end is
        // clean, so it keeps the last status instead of publishing the will.
        self.queue.lock().expect("queue lock").take();
        self.shared.closing.store(true, Ordering::SeqCst);
        let _ = self.client.try_disconnect();
        for thread in std::mem::take(&mut *self.threads.lock().expect("threads lock")) {
            while !thread.is_finished() && Instant::now() < deadline + Duration::from_secs(1) {
                std::thread::sleep(POLL);
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        Some(("mqtt", counts))
    }
}
