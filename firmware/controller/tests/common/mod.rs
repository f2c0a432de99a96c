//! Helpers shared by the host tests: frames from nap-core's encoder, mock pins.

#![allow(dead_code)] // each test file uses a different subset

use embedded_hal_mock::eh1::digital::{Mock as Pin, State, Transaction};
use nap_core::protocol::{
    Health, Heartbeat, MAX_FRAME_LEN, Message, RuntimeStatus, Verdict, encode,
};
use nap_firmware::{Config, Controller, RejectMode, Tick};

/// The wire bytes of one message.
pub fn frame(msg: impl Into<Message>) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    encode(&msg.into(), &mut buf).unwrap().to_vec()
}

pub fn heartbeat(seq: u32) -> Vec<u8> {
    frame(Heartbeat {
        seq,
        timestamp_us: u64::from(seq) * 10_000,
    })
}

pub fn verdict(seq: u32, ood: bool) -> Vec<u8> {
    frame(Verdict {
        seq,
        timestamp_us: u64::from(seq) * 10_000,
        score: if ood { -3.5 } else { 2.0 },
        threshold: 0.25,
        ood,
    })
}

pub fn status(health: Health, code: u16) -> Vec<u8> {
    frame(RuntimeStatus { health, code })
}

pub fn high() -> Transaction {
    Transaction::set(State::High)
}

pub fn low() -> Transaction {
    Transaction::set(State::Low)
}

pub const TIMEOUT: u32 = 10;
pub const PULSE: u32 = 3;

pub fn config(reject: RejectMode) -> Config {
    Config {
        heartbeat_timeout: TIMEOUT,
        reject,
    }
}

pub fn pulse_config() -> Config {
    config(RejectMode::Pulse { ticks: PULSE })
}

/// A controller on mock pins expecting exactly `reject` and `fault` (boot writes included).
pub fn controller(
    config: Config,
    reject: &[Transaction],
    fault: &[Transaction],
) -> (Controller<Pin, Pin>, Pin, Pin) {
    let reject = Pin::new(reject);
    let fault = Pin::new(fault);
    let ctrl = Controller::new(config, reject.clone(), fault.clone());
    (ctrl, reject, fault)
}

/// Checks that every expected pin write happened, and no other.
pub fn done(ctrl: Controller<Pin, Pin>) {
    let (mut reject, mut fault) = ctrl.release();
    reject.done();
    fault.done();
}

/// Drains the outbox.
pub fn outgoing(ctrl: &mut Controller<Pin, Pin>) -> Vec<Message> {
    std::iter::from_fn(|| ctrl.pop_outgoing()).collect()
}

/// Ticks one by one from `from` to `to` inclusive.
pub fn tick_through(ctrl: &mut Controller<Pin, Pin>, from: u32, to: u32) {
    for t in from..=to {
        ctrl.tick(Tick(t));
    }
}
