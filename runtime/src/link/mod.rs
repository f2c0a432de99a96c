//! The controller link: protocol frames to the sensor controller, acknowledgements and status
//! back.
//!
//! One thread owns the connection. It sends each verdict it is handed, a heartbeat at a fixed
//! period whether or not verdicts flow (so the controller's timeout never depends on the frame
//! rate), and every runtime status change; a second thread per connection reads what the
//! controller sends back ([`Ack`], [`ControllerStatus`]). Verdicts and heartbeats share one
//! wrapping sequence counter, +1 per message actually written, so the controller sees a gap only
//! when bytes are lost on the wire.
//!
//! A lost connection (peer gone, write error, cable pulled) is retried every
//! [`LinkOptions::reconnect`]; verdicts produced meanwhile are counted as unsent, never queued
//! (they would be stale). After every (re)connection the latest runtime status goes out first,
//! so a controller that restarted learns the runtime's health at once; after a reconnection it is
//! preceded by a `Degraded` status with [`code::LINK_RESTORED`], so the controller hears that
//! verdicts were lost.

pub mod peer;
pub mod serial;
pub mod tcp;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use nap_core::protocol::{
    ControllerStatus, FrameDecoder, Health, Heartbeat, MAX_FRAME_LEN, Message, RuntimeStatus,
    Verdict, encode,
};
use std::io::{ErrorKind, Read, Write};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Reason codes carried by [`RuntimeStatus::code`].
pub mod code {
    /// Scoring normally.
    pub const OK: u16 = 0;
    /// Frames were dropped in the last stats interval: the runtime is behind the camera.
    pub const FRAMES_DROPPED: u16 = 1;
    /// Frames were rejected (unreadable, malformed) in the last stats interval.
    pub const BAD_FRAMES: u16 = 2;
    /// The link came back after a loss; verdicts in between were not delivered.
    pub const LINK_RESTORED: u16 = 3;
    /// Loading the bundle: no verdicts yet.
    pub const STARTING: u16 = 4;
    /// Stopping on request (SIGINT / SIGTERM): no more verdicts will come.
    pub const SHUTDOWN: u16 = 10;
    /// The source ended (end of folder or stream): no more verdicts will come.
    pub const END_OF_STREAM: u16 = 11;
    /// The bundle could not be read or loaded.
    pub const BUNDLE: u16 = 20;
    /// The backbone failed while scoring.
    pub const BACKBONE: u16 = 21;
    /// The frame source failed and cannot go on.
    pub const SOURCE: u16 = 22;
    /// The configuration is invalid.
    pub const CONFIG: u16 = 23;
}

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

/// One open connection: a byte sink, a byte source and a way to unblock the source.
pub struct Connection {
    /// Where frames are written.
    pub writer: Box<dyn Write + Send>,
    /// Where the controller's frames are read from. Reads may time out (`TimedOut` /
    /// `WouldBlock`); end of stream means the peer is gone.
    pub reader: Box<dyn Read + Send>,
    /// Makes a blocked `reader` return, so its thread can end.
    pub close: Box<dyn FnOnce() + Send>,
}

/// Opens connections to one peer, again after each loss.
pub trait Connector: Send {
    /// Tries once to connect.
    fn connect(&mut self) -> std::io::Result<Connection>;
    /// The peer, for messages.
    fn describe(&self) -> String;
}

/// Timing of the link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkOptions {
    /// Heartbeat period. The controller's timeout should be several periods (the reference
    /// firmware waits 500 ms for a 100 ms period).
    pub heartbeat: Duration,
    /// Wait between reconnection attempts.
    pub reconnect: Duration,
    /// Messages waiting for the link thread; verdicts beyond it are counted as unsent.
    pub queue: usize,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            heartbeat: Duration::from_millis(100),
            reconnect: Duration::from_millis(500),
            queue: 64,
        }
    }
}

/// Something that happened on the link, for the daemon's log.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkEvent {
    /// Connected (the first time or again).
    Up {
        /// Connections made before this one.
        reconnects: u32,
    },
    /// The connection was lost or could not be made.
    Down {
        /// Why.
        reason: String,
    },
    /// The controller reported a new state.
    Controller(ControllerStatus),
}

/// Counters shared between the link threads and the daemon.
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// A connection is open now.
    pub connected: AtomicBool,
    /// Messages written (verdicts, heartbeats, statuses).
    pub sent: AtomicU64,
    /// Heartbeats written.
    pub heartbeats: AtomicU64,
    /// Verdicts not delivered: link down or its queue full.
    pub unsent: AtomicU64,
    /// Successful connections after the first.
    pub reconnects: AtomicU32,
    /// Acks received.
    pub acks: AtomicU64,
    /// Sequence number of the latest ack.
    pub last_ack: AtomicU32,
    /// Damaged frames received from the controller.
    pub rx_errors: AtomicU64,
    /// The controller's latest status.
    pub controller: Mutex<Option<ControllerStatus>>,
}

enum Command {
    Verdict {
        timestamp_us: u64,
        score: f32,
        threshold: f32,
        ood: bool,
    },
    Status(RuntimeStatus),
    /// Send this status as the last message (connecting until `deadline` if needed), then stop.
    Close {
        status: Option<RuntimeStatus>,
        deadline: Instant,
    },
}

/// The daemon's handle on the link thread. `Link::none()` discards everything.
pub struct Link {
    commands: Option<Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<LinkCounters>,
    events: Receiver<LinkEvent>,
}

impl Link {
    /// No controller: every call is a no-op.
    pub fn none() -> Link {
        Link {
            commands: None,
            thread: None,
            counters: Arc::new(LinkCounters::default()),
            events: crossbeam_channel::never(),
        }
    }

    /// Opens the link a spec names (connecting in the background).
    pub fn open(spec: &LinkSpec, options: LinkOptions, initial: RuntimeStatus) -> Link {
        match spec {
            LinkSpec::None => Link::none(),
            LinkSpec::Tcp(addr) => {
                Link::start(Box::new(tcp::TcpConnector::new(addr)), options, initial)
            }
            LinkSpec::Serial { path, baud } => Link::start(
                Box::new(serial::SerialConnector::new(path, *baud)),
                options,
                initial,
            ),
        }
    }

    /// Starts the link thread over any connector; `initial` is the status sent on connection.
    pub fn start(
        connector: Box<dyn Connector>,
        options: LinkOptions,
        initial: RuntimeStatus,
    ) -> Link {
        let (tx, rx) = crossbeam_channel::bounded(options.queue.max(4));
        let (etx, erx) = crossbeam_channel::unbounded();
        let counters = Arc::new(LinkCounters::default());
        let worker = LinkThread {
            connector,
            options,
            counters: counters.clone(),
            events: etx,
            status: initial,
            seq: 0,
            conn: None,
            ever_connected: false,
            reported_down: false,
        };
        let thread = std::thread::Builder::new()
            .name("napd-link".into())
            .spawn(move || worker.run(rx))
            .expect("spawning the link thread");
        Link {
            commands: Some(tx),
            thread: Some(thread),
            counters,
            events: erx,
        }
    }

    /// Hands a verdict to the link; counted as unsent when the link cannot take it now.
    pub fn verdict(&self, timestamp_us: u64, score: f32, threshold: f32, ood: bool) {
        if let Some(tx) = &self.commands {
            let cmd = Command::Verdict {
                timestamp_us,
                score,
                threshold,
                ood,
            };
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(cmd) {
                self.counters.unsent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reports a health change; kept and re-sent after every reconnection.
    pub fn status(&self, status: RuntimeStatus) {
        if let Some(tx) = &self.commands {
            // Statuses are rare and must not be lost to a momentarily full queue.
            let _ = tx.send_timeout(Command::Status(status), Duration::from_secs(1));
        }
    }

    /// Sends `status` as the last word and stops the link, trying for at most `patience` to
    /// connect if the link is down. Returns whether a connection was open at the end.
    pub fn close(mut self, status: RuntimeStatus, patience: Duration) -> bool {
        let Some(tx) = self.commands.take() else {
            return false;
        };
        let deadline = Instant::now() + patience;
        let _ = tx.send_timeout(
            Command::Close {
                status: Some(status),
                deadline,
            },
            patience,
        );
        drop(tx);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.counters.connected.load(Ordering::Relaxed)
    }

    /// The link's counters.
    pub fn counters(&self) -> &LinkCounters {
        &self.counters
    }

    /// Events since the last call.
    pub fn events(&self) -> impl Iterator<Item = LinkEvent> + '_ {
        self.events.try_iter()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(tx) = self.commands.take() {
            let _ = tx.try_send(Command::Close {
                status: None,
                deadline: Instant::now(),
            });
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Open {
    writer: Box<dyn Write + Send>,
    close: Option<Box<dyn FnOnce() + Send>>,
    reader: Option<JoinHandle<()>>,
    /// Set by the reader when the peer is gone.
    dead: Arc<AtomicBool>,
}

impl Open {
    fn shut(mut self) {
        if let Some(close) = self.close.take() {
            close();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

struct LinkThread {
    connector: Box<dyn Connector>,
    options: LinkOptions,
    counters: Arc<LinkCounters>,
    events: Sender<LinkEvent>,
    status: RuntimeStatus,
    seq: u32,
    conn: Option<Open>,
    ever_connected: bool,
    reported_down: bool,
}

impl LinkThread {
    fn run(mut self, commands: Receiver<Command>) {
        let period = self.options.heartbeat;
        let mut next_beat = Instant::now() + period;
        let mut next_try = Instant::now();
        loop {
            if self
                .conn
                .as_ref()
                .is_some_and(|c| c.dead.load(Ordering::Relaxed))
            {
                self.lost("the controller closed the link".into());
                next_try = Instant::now() + self.options.reconnect;
            }
            if self.conn.is_none() && Instant::now() >= next_try && !self.try_connect() {
                next_try = Instant::now() + self.options.reconnect;
            }
            let deadline = if self.conn.is_none() {
                next_beat.min(next_try)
            } else {
                next_beat
            };
            match commands.recv_deadline(deadline) {
                Ok(Command::Verdict {
                    timestamp_us,
                    score,
                    threshold,
                    ood,
                }) => {
                    if self.conn.is_some() {
                        let v = Verdict {
                            seq: self.seq,
                            timestamp_us,
                            score,
                            threshold,
                            ood,
                        };
                        if self.write(Message::Verdict(v)) {
                            self.seq = self.seq.wrapping_add(1);
                        } else {
                            self.counters.unsent.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        self.counters.unsent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Command::Status(s)) => {
                    self.status = s;
                    if self.conn.is_some() {
                        self.write(Message::RuntimeStatus(s));
                    }
                }
                Ok(Command::Close { status, deadline }) => {
                    // Handled here and nowhere else, so no heartbeat can follow the last word.
                    let fresh = self.conn.is_none();
                    if let Some(s) = status {
                        self.status = s;
                    }
                    while self.conn.is_none() && Instant::now() < deadline {
                        if !self.try_connect() {
                            std::thread::sleep(
                                self.options
                                    .reconnect
                                    .min(deadline.saturating_duration_since(Instant::now())),
                            );
                        }
                    }
                    // A fresh connection got the status from try_connect.
                    if let (false, Some(s)) = (fresh, status) {
                        self.write(Message::RuntimeStatus(s));
                    }
                    if let Some(mut c) = self.conn.take() {
                        let _ = c.writer.flush();
                        c.shut();
                    }
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if let Some(c) = self.conn.take() {
                        c.shut();
                    }
                    self.counters.connected.store(false, Ordering::Relaxed);
                    return;
                }
            }
            let now = Instant::now();
            if now >= next_beat {
                if self.conn.is_some() {
                    let hb = Heartbeat {
                        seq: self.seq,
                        timestamp_us: monotonic_us(),
                    };
                    if self.write(Message::Heartbeat(hb)) {
                        self.seq = self.seq.wrapping_add(1);
                        self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                    }
                }
                next_beat += period;
                if next_beat <= now {
                    // Fell behind (a stalled write): resume the rhythm from now, no burst.
                    next_beat = now + period;
                }
            }
        }
    }

    fn try_connect(&mut self) -> bool {
        match self.connector.connect() {
            Ok(conn) => {
                let dead = Arc::new(AtomicBool::new(false));
                let reader = spawn_reader(
                    conn.reader,
                    self.counters.clone(),
                    self.events.clone(),
                    dead.clone(),
                );
                self.conn = Some(Open {
                    writer: conn.writer,
                    close: Some(conn.close),
                    reader: Some(reader),
                    dead,
                });
                let reconnects = if self.ever_connected {
                    self.counters.reconnects.fetch_add(1, Ordering::Relaxed) + 1
                } else {
                    0
                };
                self.ever_connected = true;
                self.reported_down = false;
                self.counters.connected.store(true, Ordering::Relaxed);
                let _ = self.events.send(LinkEvent::Up { reconnects });
                if reconnects > 0 {
                    // Say that verdicts were lost, then the real state, which is the last word.
                    self.write(Message::RuntimeStatus(RuntimeStatus {
                        health: Health::Degraded,
                        code: code::LINK_RESTORED,
                    }));
                }
                self.write(Message::RuntimeStatus(self.status));
                self.conn.is_some()
            }
            Err(e) => {
                if !self.reported_down {
                    self.reported_down = true;
                    let _ = self.events.send(LinkEvent::Down {
                        reason: format!("cannot connect to {}: {e}", self.connector.describe()),
                    });
                }
                false
            }
        }
    }

    fn lost(&mut self, reason: String) {
        if let Some(c) = self.conn.take() {
            c.shut();
        }
        self.counters.connected.store(false, Ordering::Relaxed);
        self.reported_down = true;
        let _ = self.events.send(LinkEvent::Down { reason });
    }

    /// Writes one message; on failure drops the connection and says false.
    fn write(&mut self, msg: Message) -> bool {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let frame = encode(&msg, &mut buf).expect("every message fits a frame");
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        match conn
            .writer
            .write_all(frame)
            .and_then(|()| conn.writer.flush())
        {
            Ok(()) => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.lost(format!("writing to {}: {e}", self.connector.describe()));
                false
            }
        }
    }
}

fn spawn_reader(
    mut reader: Box<dyn Read + Send>,
    counters: Arc<LinkCounters>,
    events: Sender<LinkEvent>,
    dead: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("napd-link-rx".into())
        .spawn(move || {
            let mut decoder = FrameDecoder::new();
            let mut buf = [0u8; 256];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        for result in decoder.push_slice(&buf[..n]) {
                            match result {
                                Ok(Message::Ack(a)) => {
                                    counters.acks.fetch_add(1, Ordering::Relaxed);
                                    counters.last_ack.store(a.seq, Ordering::Relaxed);
                                }
                                Ok(Message::ControllerStatus(s)) => {
                                    let mut last = counters
                                        .controller
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner());
                                    if last.is_none_or(|l| l.state != s.state) {
                                        let _ = events.send(LinkEvent::Controller(s));
                                    }
                                    *last = Some(s);
                                }
                                // Our own messages echoed back (a loopback) or damage.
                                Ok(_) | Err(_) => {
                                    counters.rx_errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                        ) => {}
                    Err(_) => break,
                }
            }
            dead.store(true, Ordering::Relaxed);
        })
        .expect("spawning the link reader thread")
}

/// Microseconds of the process's monotonic clock: the timestamps on the wire.
pub fn monotonic_us() -> u64 {
    clock_origin().elapsed().as_micros() as u64
}

/// Microseconds from the clock origin to `t` (0 for instants before it).
pub fn timestamp_us(t: Instant) -> u64 {
    t.saturating_duration_since(clock_origin()).as_micros() as u64
}

fn clock_origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}
