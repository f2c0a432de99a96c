//! Bytes between an embedded-io port (the UART) and the [`Controller`].

use embedded_hal::digital::OutputPin;
use embedded_io::{Read, ReadReady, Write};
use nap_core::protocol::{MAX_FRAME_LEN, encode};

use crate::controller::Controller;
use crate::time::Tick;

/// Most bytes one [`Link::poll`] reads. Bounded so that a peer flooding the line cannot keep the
/// controller from ticking: the heartbeat timeout and the pulse ends are enforced between reads.
/// Two maximum-size frames.
pub const MAX_READ_PER_POLL: usize = 2 * MAX_FRAME_LEN;

/// The controller's serial link: reads what is ready, ticks, writes the replies.
#[derive(Debug)]
pub struct Link<P> {
    port: P,
}

impl<P: Read + ReadReady + Write> Link<P> {
    /// Wraps the port.
    pub fn new(port: P) -> Self {
        Self { port }
    }

    /// One round of the main loop at `now`: reads up to [`MAX_READ_PER_POLL`] bytes that are
    /// ready (never waits for more), hands them to the controller, ticks it, then writes every
    /// queued reply (this does wait until the port took them).
    ///
    /// Port errors never stop the controller: a receive error drops the frame in progress
    /// ([`Controller::link_error`]), a failed write drops that reply (counted in
    /// `tx_dropped`).
    pub fn poll<R: OutputPin, F: OutputPin>(&mut self, ctrl: &mut Controller<R, F>, now: Tick) {
        let mut buf = [0u8; MAX_READ_PER_POLL];
        let mut filled = 0;
        while filled < buf.len() {
            match self.port.read_ready() {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => {
                    ctrl.link_error();
                    break;
                }
            }
            match self.port.read(&mut buf[filled..]) {
                // A ready port returning 0 bytes: nothing more now (end of a test stream).
                Ok(0) => break,
                // `min`: a port claiming more bytes than it was given must not push `filled`
                // past the buffer.
                Ok(n) => filled += n.min(buf.len() - filled),
                Err(_) => {
                    // Hand over the bytes that came before the error first, so that a frame
                    // completed before it still counts and the resync drops only what follows.
                    ctrl.receive(&buf[..filled], now);
                    filled = 0;
                    ctrl.link_error();
                    break;
                }
            }
        }
        ctrl.receive(&buf[..filled], now);
        ctrl.tick(now);
        self.flush(ctrl);
    }

    /// Writes every reply the controller queued.
    pub fn flush<R: OutputPin, F: OutputPin>(&mut self, ctrl: &mut Controller<R, F>) {
        let mut frame = [0u8; MAX_FRAME_LEN];
        while let Some(msg) = ctrl.pop_outgoing() {
            // A MAX_FRAME_LEN buffer fits every message: encode cannot fail here, and if it
            // ever did the reply is dropped and counted, never a panic.
            let sent = match encode(&msg, &mut frame) {
                Ok(bytes) => self.port.write_all(bytes).is_ok(),
                Err(_) => false,
            };
            if !sent {
                ctrl.count_tx_dropped();
            }
        }
        if self.port.flush().is_err() {
            debug!("link flush failed");
        }
    }

    /// The port.
    pub fn port(&mut self) -> &mut P {
        &mut self.port
    }

    /// Gives the port back.
    pub fn release(self) -> P {
        self.port
    }
}
