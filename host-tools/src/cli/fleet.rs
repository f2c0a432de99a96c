//! `napctl fleet`: a live table of the devices publishing to a broker (napd `--mqtt`), or one
//! JSON snapshot for scripts.

use anyhow::{Result, anyhow, bail};
use napctl::fleet::Fleet;
use napd::telemetry::BrokerUrl;
use napd::telemetry::mqtt::client_options;
use rumqttc::{Client, Event, Packet, QoS};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `napctl fleet`.
#[derive(clap::Args)]
pub struct FleetArgs {
    /// The broker the devices publish to: mqtt://HOST[:PORT] or mqtts://HOST[:PORT].
    broker: BrokerUrl,
    /// Print one JSON snapshot (an object by device id) after --wait seconds, and exit.
    #[arg(long)]
    json: bool,
    /// With --json: how long to listen first, in seconds (statuses are retained and come at
    /// once; stats come every napd --stats-ms).
    #[arg(long, value_name = "S", default_value_t = 3.0)]
    wait: f64,
    /// A file (mode 600) holding the broker's USER:PASSWORD on one line.
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// The CA certificate(s), PEM, that an mqtts:// broker's certificate chains to.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Mark devices silent for longer than this many seconds with "?".
    #[arg(long, value_name = "S", default_value_t = 30)]
    stale: u64,
}

impl FleetArgs {
    /// Runs `napctl fleet`.
    pub fn run(self) -> Result<ExitCode> {
        if !(self.wait.is_finite() && self.wait > 0.0 && self.wait <= 3600.0) {
            bail!("--wait {} is outside (0, 3600] seconds", self.wait);
        }
        let id = format!("napctl-fleet-{}", std::process::id());
        let mut options = client_options(
            id,
            &self.broker,
            self.credentials.as_deref(),
            self.ca.as_deref(),
        )
        .map_err(|e| anyhow!(e))?;
        options.set_keep_alive(Duration::from_secs(10));
        let (client, mut connection) = Client::new(options, 16);
        let started = Instant::now();
        let until = started + Duration::from_secs_f64(self.wait);
        let mut fleet = Fleet::default();
        let mut next_draw = started;
        let mut connected = false;
        let live = !self.json;
        let terminal = std::io::stdout().is_terminal();
        loop {
            let now = Instant::now();
            if self.json && now >= until {
                break;
            }
            if live && now >= next_draw {
                next_draw = now + Duration::from_secs(1);
                let table = fleet.table(now, Duration::from_secs(self.stale));
                let mut out = std::io::stdout().lock();
                if terminal {
                    // Home and clear: the table is redrawn in place.
                    write!(out, "\x1b[H\x1b[2J")?;
                }
                writeln!(
                    out,
                    "{} ({})\n{table}",
                    self.broker,
                    if connected { "connected" } else { "connecting" }
                )?;
                out.flush()?;
            }
            match connection.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    connected = true;
                    client.try_subscribe("nap/+/+", QoS::AtLeastOnce)?;
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    fleet.receive(&p.topic, &p.payload, Instant::now());
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => {
                    connected = false;
                    if self.json {
                        bail!("{}: {e}", self.broker);
                    }
                    eprintln!("napctl: {}: {e}; retrying", self.broker);
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        let _ = client.try_disconnect();
        println!(
            "{}",
            serde_json::to_string_pretty(&fleet.snapshot(Instant::now()))?
        );
        Ok(ExitCode::SUCCESS)
    }
}
