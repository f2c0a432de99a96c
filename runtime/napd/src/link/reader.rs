//! The thread reading what the controller sends back (acks, its status) into the link's
//! counters and events.

use super::{LinkCounters, LinkEvent};
use crossbeam_channel::Sender;
use nap_core::protocol::{FrameDecoder, Message};
use std::io::{ErrorKind, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Reads and decodes until the peer is gone or the connection is closed, then raises `dead`.
pub(super) fn spawn_reader(
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
