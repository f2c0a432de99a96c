//! The link over an in-memory embedded-io port: bytes in, decisions, replies out as frames that
//! nap-core decodes.

mod common;

use std::collections::VecDeque;

use common::*;
use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write};
use nap_core::protocol::{Ack, ControllerState, FrameDecoder, Message};
use nap_firmware::{Link, Tick, link::MAX_READ_PER_POLL};

/// A UART stand-in: `rx` is what the runtime sent, `tx` what the controller wrote. An `Err` entry
/// in `rx` is a receive error (overrun) at that point of the stream.
#[derive(Default)]
struct Port {
    rx: VecDeque<Result<u8, ()>>,
    tx: Vec<u8>,
    fail_writes: bool,
}

impl ErrorType for Port {
    type Error = ErrorKind;
}

impl ReadReady for Port {
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(!self.rx.is_empty())
    }
}

impl Read for Port {
    /// Like a UART driver: one byte per call.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        match self.rx.pop_front() {
            None => Ok(0),
            Some(Ok(b)) => {
                buf[0] = b;
                Ok(1)
            }
            Some(Err(())) => Err(ErrorKind::Other),
        }
    }
}

impl Write for Port {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if self.fail_writes {
            return Err(ErrorKind::Other);
        }
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Port {
    fn send(&mut self, bytes: &[u8]) {
        self.rx.extend(bytes.iter().map(|&b| Ok(b)));
    }

    fn replies(&mut self) -> Vec<Message> {
        let mut decoder = FrameDecoder::new();
        let tx = std::mem::take(&mut self.tx);
        decoder.push_slice(&tx).map(Result::unwrap).collect()
    }
}

#[test]
fn acks_and_status_go_back_as_frames() {
    let (mut ctrl, ..) = controller(pulse_config(), &[low(), high(), low()], &[high(), low()]);
    let mut link = Link::new(Port::default());
    link.port().send(&heartbeat(0));
    link.port().send(&verdict(1, true));
    for t in 0..10 {
        link.poll(&mut ctrl, Tick(t));
    }
    let replies = link.port().replies();
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(replies[0], Message::Ack(Ack { seq: 0 }));
    assert!(
        matches!(replies[1], Message::ControllerStatus(s) if s.state == ControllerState::Armed)
    );
    assert_eq!(replies[2], Message::Ack(Ack { seq: 1 }));
    assert_eq!(ctrl.counters().rejects, 1);
    done(ctrl);
}

#[test]
fn a_poll_reads_a_bounded_number_of_bytes_so_ticks_still_happen() {
    let (mut ctrl, ..) = controller(pulse_config(), &[low()], &[high(), low(), high()]);
    let mut link = Link::new(Port::default());
    link.port().send(&heartbeat(0));
    link.poll(&mut ctrl, Tick(0));
    // A flood of noise: far more than one poll reads.
    link.port().send(&[0x42; 10 * MAX_READ_PER_POLL]);
    link.poll(&mut ctrl, Tick(TIMEOUT + 1));
    assert_eq!(link.port().rx.len(), 9 * MAX_READ_PER_POLL);
    assert_eq!(
        ctrl.state(),
        ControllerState::Safe,
        "the timeout was not enforced"
    );
    done(ctrl);
}

#[test]
fn a_receive_error_drops_only_the_frame_it_hit() {
    let (mut ctrl, ..) = controller(pulse_config(), &[low()], &[high(), low()]);
    let mut link = Link::new(Port::default());
    let hb = heartbeat(0);
    // Overrun in the middle of the first heartbeat, then a good one.
    link.port().send(&hb[..4]);
    link.port().rx.push_back(Err(()));
    link.port().send(&hb[4..]);
    link.port().send(&heartbeat(1));
    for t in 0..5 {
        link.poll(&mut ctrl, Tick(t));
    }
    let c = *ctrl.counters();
    assert_eq!(c.link_errors, 1);
    assert_eq!(c.frames, 1);
    assert_eq!(
        c.frame_errors(),
        0,
        "the damaged frame must be dropped silently"
    );
    assert_eq!(ctrl.state(), ControllerState::Armed);
    done(ctrl);
}

#[test]
fn failed_writes_are_counted_and_do_not_stop_the_controller() {
    let (mut ctrl, ..) = controller(pulse_config(), &[low()], &[high(), low()]);
    let mut link = Link::new(Port {
        fail_writes: true,
        ..Port::default()
    });
    link.port().send(&heartbeat(0));
    link.poll(&mut ctrl, Tick(0));
    assert_eq!(ctrl.state(), ControllerState::Armed);
    assert_eq!(ctrl.counters().tx_dropped, 2);
    done(ctrl);
}
