//! A stand-in controller on TCP: listens, decodes every protocol frame napd sends, records it
//! with its arrival time, and can answer with acks. Tests and benchmarks check napd against it;
//! it is also handy for watching a daemon by hand.

use nap_core::protocol::{Ack, FrameDecoder, MAX_FRAME_LEN, Message, encode};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One message as the peer got it.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// Which connection (0 for the first accepted) it came on.
    pub connection: u32,
    /// The message.
    pub message: Message,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    frame_errors: AtomicU64,
    connections: Mutex<Vec<TcpStream>>,
    accepting: AtomicBool,
    ack: AtomicBool,
    quit: AtomicBool,
}

/// A listening stand-in controller.
pub struct Peer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Peer {
    /// Listens on `127.0.0.1`, on a free port.
    pub fn bind() -> std::io::Result<Peer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        shared.accepting.store(true, Ordering::Relaxed);
        let s = shared.clone();
        let thread = std::thread::spawn(move || accept_loop(listener, s));
        Ok(Peer {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The link spec that reaches it: `tcp:127.0.0.1:PORT`.
    pub fn link_spec(&self) -> String {
        format!("tcp:{}", self.addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Frames that did not decode.
    pub fn frame_errors(&self) -> u64 {
        self.shared.frame_errors.load(Ordering::Relaxed)
    }

    /// Whether to answer each verdict and heartbeat with an [`Ack`].
    pub fn set_ack(&self, on: bool) {
        self.shared.ack.store(on, Ordering::Relaxed);
    }

    /// Waits until `done` holds for what was received, or `timeout` passes; says which.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if done(&self.received()) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Goes away: closes every connection and refuses new ones until [`Peer::resume`]
    /// (connection attempts are accepted and closed at once, like a controller rebooting).
    pub fn vanish(&self) {
        self.shared.accepting.store(false, Ordering::Relaxed);
        for c in self
            .shared
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Comes back: accepts connections again.
    pub fn resume(&self) {
        self.shared.accepting.store(true, Ordering::Relaxed);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::Relaxed);
        self.vanish();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_id = 0u32;
    let mut readers = Vec::new();
    while !shared.quit.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if !shared.accepting.load(Ordering::Relaxed) {
                    let _ = stream.shutdown(Shutdown::Both);
                    continue;
                }
                let _ = stream.set_nonblocking(false);
                let id = next_id;
                next_id += 1;
                if let Ok(c) = stream.try_clone() {
                    shared
                        .connections
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(c);
                }
                let s = shared.clone();
                readers.push(std::thread::spawn(move || read_loop(stream, id, s)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for r in readers {
        let _ = r.join();
    }
}

fn read_loop(mut stream: TcpStream, id: u32, shared: Arc<Shared>) {
    let mut decoder = FrameDecoder::new();
    let mut buf = [0u8; 512];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let at = Instant::now();
        let mut acks = Vec::new();
        for result in decoder.push_slice(&buf[..n]) {
            match result {
                Ok(message) => {
                    let seq = match message {
                        Message::Verdict(v) => Some(v.seq),
                        Message::Heartbeat(h) => Some(h.seq),
                        _ => None,
                    };
                    if let Some(seq) = seq
                        && shared.ack.load(Ordering::Relaxed)
                    {
                        acks.push(seq);
                    }
                    shared
                        .received
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Received {
                            at,
                            connection: id,
                            message,
                        });
                }
                Err(_) => {
                    shared.frame_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for seq in acks {
            let mut out = [0u8; MAX_FRAME_LEN];
            if let Ok(frame) = encode(&Message::Ack(Ack { seq }), &mut out)
                && stream.write_all(frame).is_err()
            {
                return;
            }
        }
    }
}
