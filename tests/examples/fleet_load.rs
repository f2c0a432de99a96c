//! Fleet telemetry under load: DEVICES simulated devices, each with napd's own MQTT sink (its
//! connection, queue and counters), publish their status, stats every second and every verdict
//! at RATE per second (one in five OOD, QoS 1; the others QoS 0, as `--mqtt-all-verdicts`) to one
//! local mosquitto for SECONDS. Meanwhile `napctl fleet --json` and a counting subscriber
//! listen. It reports QoS 1 messages lost, whether the fleet view agrees with what each device
//! sent, and the CPU time per device message of the broker, the devices and the fleet view.
//!
//! ```sh
//! cargo build --release -p napctl
//! cargo run --release -p nap-tests --example fleet_load -- [DEVICES [RATE [SECONDS]]]
//! ```
//!
//! Exits non-zero when a QoS 1 message was lost or the fleet view is wrong.

use nap_core::protocol::{Health, RuntimeStatus};
use nap_test_support::broker::Broker;
use napd::telemetry::mqtt::Mqtt;
use napd::telemetry::{MqttOptions, Sink, Telemetry};
use rumqttc::{Client, Event, MqttOptions as ClientOptions, Packet, QoS};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every this many verdicts of a device, one is OOD.
const OOD_EVERY: u64 = 5;
/// Devices driven by one publishing thread.
const DEVICES_PER_DRIVER: usize = 25;

fn main() -> ExitCode {
    let arg = |i: usize, default: u64| {
        std::env::args().nth(i).map_or(default, |a| {
            a.parse().expect("DEVICES, RATE and SECONDS are integers")
        })
    };
    let (devices, rate, seconds) = (arg(1, 100) as usize, arg(2, 30), arg(3, 60));
    let napctl = std::env::current_exe()
        .expect("own path")
        .parent()
        .and_then(|examples| examples.parent())
        .expect("target/<profile>/examples")
        .join("napctl");
    assert!(
        napctl.is_file(),
        "{} is missing: cargo build -p napctl with the same profile",
        napctl.display()
    );
    let dir = std::env::temp_dir().join(format!("nap-fleet-load-{}", std::process::id()));
    let Some(broker) = Broker::start(&dir, "") else {
        return ExitCode::FAILURE;
    };
    let broker_pid = broker.pid().expect("broker runs");
    println!(
        "{devices} devices x {rate} verdicts/s for {seconds} s to mosquitto on port {}",
        broker.port
    );

    // The fleet view listens for the whole run and a little after.
    let fleet = Command::new(&napctl)
        .args(["fleet", &broker.url(), "--json", "--wait"])
        .arg((seconds + 15).to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting napctl fleet");
    let counter = Counter::start(broker.port);

    let sinks: Vec<Mqtt> = (0..devices)
        .map(|d| {
            let sink = Mqtt::open(&MqttOptions {
                broker: broker.url().parse().unwrap(),
                device_id: format!("sim-{d:04}"),
                credentials: None,
                ca: None,
                all_verdicts: true,
                queue: 4096,
                reconnect: Duration::from_secs(1),
            })
            .expect("opening a device's sink");
            sink.bundle(&json!({"sha256": "load", "method": "nap-e"}));
            sink.status(RuntimeStatus {
                health: Health::Ok,
                code: 0,
            });
            sink
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));

    let cpu_before = [cpu_seconds(broker_pid), cpu_seconds(std::process::id())];
    let started = Instant::now();
    let frames = rate * seconds;
    std::thread::scope(|scope| {
        for (chunk_index, chunk) in sinks.chunks(DEVICES_PER_DRIVER).enumerate() {
            scope.spawn(move || drive(chunk, chunk_index * DEVICES_PER_DRIVER, rate, frames));
        }
    });
    let publishing = started.elapsed();
    let mut totals = BTreeMap::<String, u64>::new();
    for sink in &sinks {
        let (_, counts) = sink.close(Duration::from_secs(30)).expect("counts");
        for (key, value) in counts.as_object().unwrap() {
            if key == "connected" {
                continue;
            }
            *totals.entry(key.clone()).or_default() += value.as_u64().unwrap_or(0);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let cpu_after = [cpu_seconds(broker_pid), cpu_seconds(std::process::id())];
    let fleet_cpu = cpu_seconds(fleet.id());
    let output = fleet.wait_with_output().expect("napctl fleet");
    let view: BTreeMap<String, Value> =
        serde_json::from_slice(&output.stdout).expect("napctl fleet --json prints an object");
    let received = counter.stop();

    let device_messages = totals["sent"];
    let ood_per_device = (0..frames).filter(|&k| is_ood(k)).count() as u64;
    let ood_sent = ood_per_device * devices as u64;
    let lost = ood_sent - received.ood_distinct;
    let wrong_rows: Vec<String> = (0..devices)
        .map(|d| format!("sim-{d:04}"))
        .filter(|id| {
            let row = &view.get(id).cloned().unwrap_or_default();
            !(row["state"] == "ok"
                && row["verdicts"] == frames
                && row["ood_verdicts_seen"].as_u64() >= Some(ood_per_device))
        })
        .collect();
    let per_message_us = |seconds: f64, messages: u64| 1e6 * seconds / messages as f64;
    println!(
        "published {device_messages} device messages in {:.1} s ({:.0}/s; {} verdicts, {ood_sent} OOD at QoS 1)",
        publishing.as_secs_f64(),
        device_messages as f64 / publishing.as_secs_f64(),
        frames * devices as u64,
    );
    println!("device sinks: {totals:?}");
    println!(
        "counting subscriber: {} OOD verdicts distinct of {ood_sent} ({} repeats), {} of {} QoS 0 verdicts; QoS 1 lost: {lost}",
        received.ood_distinct,
        received.ood_messages - received.ood_distinct,
        received.other_verdicts,
        (frames - ood_per_device) * devices as u64,
    );
    println!(
        "fleet view: {} devices, {} wrong{}",
        view.len(),
        wrong_rows.len(),
        wrong_rows.first().map_or(String::new(), |id| format!(
            " (first {id}: {})",
            view.get(id).map_or("missing".into(), Value::to_string)
        ))
    );
    let broker_cpu = cpu_after[0] - cpu_before[0];
    let devices_cpu = cpu_after[1] - cpu_before[1];
    println!(
        "CPU per device message: broker {:.1} us ({broker_cpu:.1} s), devices + counter {:.1} us ({devices_cpu:.1} s), napctl fleet {:.1} us ({fleet_cpu:.1} s, whole run)",
        per_message_us(broker_cpu, device_messages),
        per_message_us(devices_cpu, device_messages),
        per_message_us(fleet_cpu, device_messages),
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    if lost == 0 && wrong_rows.is_empty() && totals["dropped"] == 0 && totals["lost"] == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn is_ood(frame: u64) -> bool {
    frame.is_multiple_of(OOD_EVERY)
}

/// Publishes `frames` verdicts per device at `rate` per second, and stats every second and at
/// the end, as napd would.
fn drive(sinks: &[Mqtt], first: usize, rate: u64, frames: u64) {
    let started = Instant::now();
    for k in 0..frames {
        let due = started + Duration::from_secs_f64(k as f64 / rate as f64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        for (i, sink) in sinks.iter().enumerate() {
            let ood = is_ood(k);
            sink.verdict(
                &json!({
                    "type": "verdict", "seq": k, "frame": format!("sim-{:04}/{k:08}", first + i),
                    "ood": ood, "score": if ood { 2.5 } else { 7.5 }, "threshold": 5.0,
                    "latency_us": 21_000, "top1": 281, "time": time,
                }),
                ood,
            );
            if (k + 1).is_multiple_of(rate) || k + 1 == frames {
                sink.stats(&json!({
                    "type": "stats", "fps": rate, "p50_us": 20_000, "p99_us": 25_000,
                    "ood_rate": 1.0 / OOD_EVERY as f64, "verdicts": rate,
                    "total_verdicts": k + 1, "total_dropped": 0, "total_bad": 0,
                }));
            }
        }
    }
}

/// What the counting subscriber got.
#[derive(Default)]
struct Received {
    ood_messages: u64,
    ood_distinct: u64,
    other_verdicts: u64,
}

/// A subscriber to every device's verdicts that tells OOD repeats from distinct ones.
struct Counter {
    client: Client,
    done: Arc<AtomicBool>,
    ood_messages: Arc<AtomicU64>,
    other_verdicts: Arc<AtomicU64>,
    ood_seen: Arc<Mutex<HashSet<(String, u64)>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Counter {
    fn start(port: u16) -> Counter {
        let mut options = ClientOptions::new("fleet-load-counter", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10));
        let (client, mut connection) = Client::new(options, 64);
        let done = Arc::new(AtomicBool::new(false));
        let ood_messages = Arc::new(AtomicU64::new(0));
        let other_verdicts = Arc::new(AtomicU64::new(0));
        let ood_seen = Arc::new(Mutex::new(HashSet::new()));
        let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let (client, done) = (client.clone(), done.clone());
            let (ood_messages, other_verdicts, ood_seen) = (
                ood_messages.clone(),
                other_verdicts.clone(),
                ood_seen.clone(),
            );
            move || {
                while !done.load(Ordering::SeqCst) {
                    match connection.recv_timeout(Duration::from_millis(100)) {
                        Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                            let _ = client.try_subscribe("nap/+/verdict", QoS::AtLeastOnce);
                        }
                        Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                            let _ = subscribed_tx.send(());
                        }
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                            let verdict: Value = serde_json::from_slice(&p.payload).unwrap();
                            if verdict["ood"] == true {
                                ood_messages.fetch_add(1, Ordering::Relaxed);
                                let device = p.topic.split('/').nth(1).unwrap().to_string();
                                let seq = verdict["seq"].as_u64().unwrap();
                                ood_seen.lock().unwrap().insert((device, seq));
                            } else {
                                other_verdicts.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Ok(_)) | Err(_) => {}
                        Ok(Err(e)) => panic!("the counting subscriber lost the broker: {e}"),
                    }
                }
            }
        });
        subscribed_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the counting subscriber did not get its SUBACK");
        Counter {
            client,
            done,
            ood_messages,
            other_verdicts,
            ood_seen,
            thread,
        }
    }

    fn stop(self) -> Received {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.client.try_disconnect();
        self.thread.join().expect("counting subscriber");
        Received {
            ood_messages: self.ood_messages.load(Ordering::Relaxed),
            ood_distinct: self.ood_seen.lock().unwrap().len() as u64,
            other_verdicts: self.other_verdicts.load(Ordering::Relaxed),
        }
    }
}

/// User + system CPU time a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the 3rd field, utime the
    // 14th and stime the 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
    // SAFETY: sysconf reads a constant of the running system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(14).unwrap_or(0.0) + ticks(15).unwrap_or(0.0)) / per_second
}
