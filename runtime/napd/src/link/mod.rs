//! The controller link: protocol frames to the sensor controller, acknowledgements and status
//! back.
//!
//! One thread owns the connection. It sends each verdict it is handed, a heartbeat at a fixed
//! period whether or not verdicts flow (so the controller's timeout never depends on the frame
//! rate), and every runtime status change; a second thread per connection reads what the
//! controller sends back ([`Ack`](nap_core::protocol::Ack), [`ControllerStatus`]). Verdicts and heartbeats share one
//! wrapping sequence counter, +1 per message actually written, so the controller sees a gap only
//! when bytes are lost on the wire.
//!
//! A lost connection (peer gone, write error, cable pulled) is retried every
//! [`LinkOptions::reconnect`]; verdicts produced meanwhile are counted as unsent, never queued
//! (they would be stale). After every (re)connection the latest runtime status goes out first,
//! so a controller that restarted learns the runtime's health at once; after a reconnection it is
//! preceded by a `Degraded` status with [`LINK_RESTORED`](crate::status::code::LINK_RESTORED), so
//! the controller hears that verdicts were lost.
//!
//! Here: the daemon's [`Link`] handle; [`spec`](LinkSpec) parsing; the thread's state machine;
//! the reader of the controller's replies; the wire clock; the [`serial`] and [`tcp`] transports.

mod clock;
mod reader;
pub mod serial;
mod spec;
pub mod tcp;
mod thread;

pub use clock::{monotonic_us, timestamp_us};
pub use spec::{DEFAULT_BAUD, LinkSpec};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use nap_core::protocol::{ControllerStatus, RuntimeStatus};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thread::{Command, LinkThread};

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
        let worker = LinkThread::new(connector, options, counters.clone(), etx, initial);
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
