//! The link thread: owns the connection, writes verdicts, heartbeats and statuses on one
//! sequence counter, and reconnects after a loss.

use super::reader::spawn_reader;
use super::{Connector, LinkCounters, LinkEvent, LinkOptions, monotonic_us};
use crate::status::{self, code};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use nap_core::protocol::{Heartbeat, MAX_FRAME_LEN, Message, RuntimeStatus, Verdict, encode};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

/// What the daemon asks of the link thread.
pub(super) enum Command {
    /// Send a verdict if connected (counted as unsent otherwise).
    Verdict {
        timestamp_us: u64,
        score: f32,
        threshold: f32,
        ood: bool,
    },
    /// The runtime's health changed: send it now and after every reconnection.
    Status(RuntimeStatus),
    /// Send this status as the last message (connecting until `deadline` if needed), then stop.
    Close {
        status: Option<RuntimeStatus>,
        deadline: Instant,
    },
}

/// One open connection and its reader thread.
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

/// The link thread's state.
pub(super) struct LinkThread {
    connector: Box<dyn Connector>,
    options: LinkOptions,
    counters: Arc<LinkCounters>,
    events: Sender<LinkEvent>,
    /// The latest runtime status, sent first on every connection.
    status: RuntimeStatus,
    seq: u32,
    conn: Option<Open>,
    ever_connected: bool,
    reported_down: bool,
}

impl LinkThread {
    /// A thread that will connect through `connector` and open with `initial`.
    pub(super) fn new(
        connector: Box<dyn Connector>,
        options: LinkOptions,
        counters: Arc<LinkCounters>,
        events: Sender<LinkEvent>,
        initial: RuntimeStatus,
    ) -> LinkThread {
        LinkThread {
            connector,
            options,
            counters,
            events,
            status: initial,
            seq: 0,
            conn: None,
            ever_connected: false,
            reported_down: false,
        }
    }

    /// Serves commands until closed: connects (again) when down, and beats the heartbeat on its
    /// own clock whatever the commands do.
    pub(super) fn run(mut self, commands: Receiver<Command>) {
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
                // Handled here and nowhere else, so no heartbeat can follow the last word.
                Ok(Command::Close { status, deadline }) => return self.close(status, deadline),
                Ok(Command::Verdict {
                    timestamp_us,
                    score,
                    threshold,
                    ood,
                }) => self.verdict(timestamp_us, score, threshold, ood),
                Ok(Command::Status(s)) => {
                    self.status = s;
                    if self.conn.is_some() {
                        self.write(Message::RuntimeStatus(s));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.abandon(),
            }
            let now = Instant::now();
            if now >= next_beat {
                self.heartbeat();
                next_beat += period;
                if next_beat <= now {
                    // Fell behind (a stalled write): resume the rhythm from now, no burst.
                    next_beat = now + period;
                }
            }
        }
    }

    fn verdict(&mut self, timestamp_us: u64, score: f32, threshold: f32, ood: bool) {
        let verdict = Verdict {
            seq: self.seq,
            timestamp_us,
            score,
            threshold,
            ood,
        };
        if self.conn.is_some() && self.write(Message::Verdict(verdict)) {
            self.seq = self.seq.wrapping_add(1);
        } else {
            self.counters.unsent.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn heartbeat(&mut self) {
        if self.conn.is_none() {
            return;
        }
        let beat = Heartbeat {
            seq: self.seq,
            timestamp_us: monotonic_us(),
        };
        if self.write(Message::Heartbeat(beat)) {
            self.seq = self.seq.wrapping_add(1);
            self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The last word: `status` (connecting until `deadline` if the link is down), then stop.
    fn close(mut self, status: Option<RuntimeStatus>, deadline: Instant) {
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
    }

    /// The handle is gone without a last word: drop the connection.
    fn abandon(mut self) {
        if let Some(c) = self.conn.take() {
            c.shut();
        }
        self.counters.connected.store(false, Ordering::Relaxed);
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
                    self.write(Message::RuntimeStatus(status::degraded(
                        code::LINK_RESTORED,
                    )));
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
