//! A real mosquitto broker on 127.0.0.1 (a free port, its own folder, sessions persisted so a
//! restart keeps them), and a subscriber that records every message it gets.

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running mosquitto, stopped when dropped.
pub struct Broker {
    program: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// mosquitto's path (it lives in /usr/sbin, often not on a user's PATH); `None` after the
/// skip line when missing off CI, a panic when missing under CI.
fn mosquitto() -> Option<PathBuf> {
    let sbin = Path::new("/usr/sbin/mosquitto");
    if sbin.is_file() {
        return Some(sbin.to_path_buf());
    }
    crate::tools::require("mosquitto")
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    /// Starts a broker in `dir` (emptied first). `extra` lines go into its config (a password
    /// file, say); without any, clients need no credentials.
    pub fn start(dir: &Path, extra: &str) -> Option<Broker> {
        let program = mosquitto()?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let config = dir.join("mosquitto.conf");
        // Started as root, mosquitto would become the `mosquitto` user, who cannot read the
        // test's files: it stays the user who made the folder.
        let user = {
            use std::os::unix::fs::MetadataExt;
            if std::fs::metadata(dir).unwrap().uid() == 0 {
                "user root\n"
            } else {
                ""
            }
        };
        let anonymous = if extra.contains("password_file") {
            "false"
        } else {
            "true"
        };
        std::fs::write(
            &config,
            format!(
                "{user}listener {port} 127.0.0.1\nallow_anonymous {anonymous}\npersistence true\n\
                 persistence_location {}/\nautosave_interval 1\nlog_dest file {}\n{extra}\n",
                dir.display(),
                dir.join("mosquitto.log").display()
            ),
        )
        .unwrap();
        let mut broker = Broker {
            program,
            config,
            child: None,
            port,
        };
        broker.run();
        Some(broker)
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn run(&mut self) {
        let child = Command::new(&self.program)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's process id while it runs (to read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the broker with SIGTERM (it saves its sessions) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with the sessions it saved.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One message a subscriber got.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its topic.
    pub topic: String,
    /// Its payload, parsed as JSON (`Null` when it is not JSON).
    pub json: Value,
    /// Whether the broker delivered it as a retained message.
    pub retained: bool,
}

/// A subscriber with a persistent session: it gets what was published while it was away (once
/// it reconnects), and resubscribes on every connection.
pub struct Subscriber {
    messages: Arc<Mutex<Vec<Received>>>,
    client: Client,
}

impl Subscriber {
    /// Subscribes to `filter` on the broker at `port` as `id`, and waits until it is subscribed.
    pub fn start(port: u16, id: &str, filter: &str) -> Subscriber {
        Subscriber::connect(port, id, filter, None)
    }

    /// The same, logging in as `(user, password)`.
    pub fn start_with_credentials(
        port: u16,
        id: &str,
        filter: &str,
        credentials: (&str, &str),
    ) -> Subscriber {
        Subscriber::connect(port, id, filter, Some(credentials))
    }

    fn connect(port: u16, id: &str, filter: &str, credentials: Option<(&str, &str)>) -> Subscriber {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5));
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, mut connection) = Client::new(options, 64);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel();
        let (sink, resubscribe, filter) = (messages.clone(), client.clone(), filter.to_string());
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = resubscribe.try_subscribe(&filter, QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            json: serde_json::from_slice(&p.payload).unwrap_or(Value::Null),
                            retained: p.retain,
                        });
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        subscribed_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the subscriber did not get its SUBACK");
        Subscriber { messages, client }
    }

    /// Everything received so far.
    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a message that `matches`; gives it.
    pub fn wait_for(
        &self,
        timeout: Duration,
        matches: impl Fn(&Received) -> bool,
    ) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| matches(m)) {
                return Some(m);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}
