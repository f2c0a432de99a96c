//! The controller's state machine: what each message, each damaged frame and each silence does.
//!
//! | state   | lines                          | left by                                           |
//! |---------|--------------------------------|---------------------------------------------------|
//! | `Safe`  | fault high, reject low         | a valid heartbeat while the runtime's health is Ok -> `Armed` |
//! | `Armed` | fault low, reject per verdict  | silence > timeout, or health Degraded/Fault -> `Safe` |
//! | `Fault` | fault high (retried), reject low | nothing: a pin failed; only a reset leaves it  |
//!
//! The controller boots `Safe`. Per valid message:
//! - `Heartbeat`: proof of life; acknowledged; arms a `Safe` controller when health is Ok.
//! - `Verdict`: proof of life; acknowledged; when `Armed`, an OOD verdict activates the reject
//!   line (and in level mode an in-distribution one releases it). Not acted on when `Safe`: the
//!   fault line already tells downstream not to trust anything.
//! - `RuntimeStatus`: Degraded or Fault disarms; Ok allows the next heartbeat to arm. Answered
//!   with a `ControllerStatus`.
//! - `Ack` / `ControllerStatus` (the runtime's own direction: a loopback): counted, ignored.
//!
//! Every damaged frame (CRC, COBS, length, version, payload) is only counted: it can never cause
//! or prevent a decision, nor refresh the heartbeat timer. Every state change is reported to the
//! runtime with a `ControllerStatus`.

use embedded_hal::digital::OutputPin;
use heapless::Deque;
use nap_core::protocol::{
    Ack, ControllerState, ControllerStatus, FrameDecoder, FrameError, Health, Heartbeat, Message,
    RuntimeStatus, Verdict,
};

use crate::config::Config;
use crate::counters::{Counters, bump};
use crate::lines::{LineError, Lines};
use crate::sequence::{SeqCheck, SequenceTracker};
use crate::time::Tick;

/// How many replies may wait for the link. A poll reads a bounded number of bytes
/// ([`Link`](crate::Link)), each frame of which makes at most two replies, and the link drains the
/// outbox after each poll; more than this are dropped and counted in
/// [`Counters::tx_dropped`].
pub const OUTBOX_LEN: usize = 16;

/// The sensor controller: decoder, state machine, lines, counters and outbox.
///
/// Drive it with [`receive`](Self::receive) (bytes from the link) and [`tick`](Self::tick) (once
/// per tick at least), and send what [`pop_outgoing`](Self::pop_outgoing) returns; or let
/// [`Link`](crate::Link) do all three.
#[derive(Debug)]
pub struct Controller<R, F> {
    config: Config,
    state: ControllerState,
    health: Health,
    lines: Lines<R, F>,
    decoder: FrameDecoder,
    sequence: SequenceTracker,
    counters: Counters,
    /// Last valid heartbeat or verdict, `None` until the first.
    last_alive: Option<Tick>,
    outbox: Deque<Message, OUTBOX_LEN>,
}

impl<R: OutputPin, F: OutputPin> Controller<R, F> {
    /// A controller in the `Safe` state, fault line driven high and reject line low. If a pin
    /// fails already here, it starts in the `Fault` state.
    pub fn new(config: Config, reject: R, fault: F) -> Self {
        let mut lines = Lines::new(reject, fault);
        let state = match lines.init() {
            Ok(()) => ControllerState::Safe,
            Err(e) => {
                warn!("line {} failed at boot", e);
                ControllerState::Fault
            }
        };
        info!(
            "controller up: timeout {} ticks, fault line high",
            config.heartbeat_timeout
        );
        Self {
            config,
            state,
            health: Health::Ok,
            lines,
            decoder: FrameDecoder::new(),
            sequence: SequenceTracker::new(),
            counters: Counters::default(),
            last_alive: None,
            outbox: Deque::new(),
        }
    }

    /// Feeds bytes received from the link. Every complete frame among them is validated and
    /// handled at `now`; a partial frame waits for the next call.
    pub fn receive(&mut self, bytes: &[u8], now: Tick) {
        for &byte in bytes {
            if let Some(result) = self.decoder.push(byte) {
                self.handle(result, now);
            }
        }
    }

    /// The link lost bytes (UART overrun, framing or parity error): the frame in progress is
    /// dropped without being reported, and decoding restarts at the next delimiter.
    pub fn link_error(&mut self) {
        bump(&mut self.counters.link_errors);
        self.decoder.resync();
    }

    /// Handles one decoder result: a valid message is acted on, an error only counted.
    pub fn handle(&mut self, result: Result<Message, FrameError>, now: Tick) {
        match result {
            Ok(msg) => self.on_message(msg, now),
            Err(e) => {
                self.counters.count_error(e);
                debug!("frame dropped: {}", frame_error_name(e));
            }
        }
    }

    /// Advances time to `now`: ends reject pulses and enforces the heartbeat timeout. Call it at
    /// least once per tick.
    pub fn tick(&mut self, now: Tick) {
        match self.state {
            ControllerState::Armed => {
                // A `now` older than the last message (a caller that read its clock before
                // receiving) counts as no silence at all rather than as a near-infinite one.
                let silent = self
                    .last_alive
                    .map_or(u32::MAX, |t| if now.reached(t) { now.since(t) } else { 0 });
                if silent > self.config.heartbeat_timeout {
                    warn!(
                        "no heartbeat for {} ticks (timeout {}): safe state",
                        silent, self.config.heartbeat_timeout
                    );
                    self.disarm();
                    return;
                }
                let result = self.lines.tick(now);
                self.check(result);
            }
            ControllerState::Safe => {}
            ControllerState::Fault => {
                // Keep asking for the safe levels; a transient pin error may let them through.
                let _ = self.lines.set_fault(true);
                let _ = self.lines.release_reject();
            }
        }
    }

    /// The next message to send to the runtime, oldest first.
    pub fn pop_outgoing(&mut self) -> Option<Message> {
        self.outbox.pop_front()
    }

    /// Current state.
    pub fn state(&self) -> ControllerState {
        self.state
    }

    /// Health last reported by the runtime (Ok until it says otherwise).
    pub fn runtime_health(&self) -> Health {
        self.health
    }

    /// Counters since boot.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The output lines (their current levels).
    pub fn lines(&self) -> &Lines<R, F> {
        &self.lines
    }

    /// Tick of the last valid heartbeat or verdict.
    pub fn last_alive(&self) -> Option<Tick> {
        self.last_alive
    }

    /// The settings in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The status message this controller reports.
    pub fn status(&self) -> ControllerStatus {
        ControllerStatus {
            state: self.state,
            frames: self.counters.frames,
            ood: self.counters.ood,
            crc_errors: self.counters.crc_errors,
            seq_gaps: self.counters.seq_gaps,
        }
    }

    /// Gives the pins back.
    pub fn release(self) -> (R, F) {
        self.lines.release()
    }

    fn on_message(&mut self, msg: Message, now: Tick) {
        bump(&mut self.counters.frames);
        match msg {
            Message::Heartbeat(hb) => self.on_heartbeat(hb, now),
            Message::Verdict(v) => self.on_verdict(v, now),
            Message::RuntimeStatus(s) => self.on_runtime_status(s),
            Message::Ack(_) | Message::ControllerStatus(_) => {
                bump(&mut self.counters.wrong_direction);
                warn!("received a message meant for the runtime: link in loopback?");
            }
        }
    }

    /// Sequence bookkeeping shared by heartbeats and verdicts. Returns `false` for a duplicate.
    fn sequence(&mut self, seq: u32) -> bool {
        match self.sequence.check(seq) {
            SeqCheck::First | SeqCheck::InOrder => true,
            SeqCheck::Gap { missed } => {
                self.counters.seq_gaps = self.counters.seq_gaps.wrapping_add(missed);
                debug!("sequence gap: {} missed before {}", missed, seq);
                true
            }
            SeqCheck::Duplicate => {
                bump(&mut self.counters.duplicates);
                false
            }
            SeqCheck::Restart => {
                bump(&mut self.counters.restarts);
                info!("sequence restarted at {}", seq);
                true
            }
        }
    }

    fn on_heartbeat(&mut self, hb: Heartbeat, now: Tick) {
        self.sequence(hb.seq);
        self.last_alive = Some(now);
        self.send(Message::Ack(Ack { seq: hb.seq }));
        if self.state == ControllerState::Safe && self.health == Health::Ok {
            let result = self.lines.set_fault(false);
            if self.check(result) {
                info!("heartbeat {}: armed", hb.seq);
                self.set_state(ControllerState::Armed);
            }
        }
    }

    fn on_verdict(&mut self, v: Verdict, now: Tick) {
        let fresh = self.sequence(v.seq);
        self.last_alive = Some(now);
        self.send(Message::Ack(Ack { seq: v.seq }));
        if !fresh {
            return;
        }
        if v.ood {
            bump(&mut self.counters.ood);
        }
        if self.state != ControllerState::Armed {
            return;
        }
        let result = self.lines.verdict(v.ood, self.config.reject, now);
        if let Ok(true) = result {
            bump(&mut self.counters.rejects);
            info!("verdict {}: OOD, reject", v.seq);
        }
        self.check(result);
    }

    fn on_runtime_status(&mut self, s: RuntimeStatus) {
        self.health = s.health;
        if s.health != Health::Ok && self.state == ControllerState::Armed {
            warn!(
                "runtime health {} (code {}): safe state",
                health_name(s.health),
                s.code
            );
            self.disarm();
        }
        // Also the runtime's way of asking: every status gets the controller's status back.
        self.send(Message::ControllerStatus(self.status()));
    }

    /// Armed -> Safe: fault line up, reject line released.
    fn disarm(&mut self) {
        bump(&mut self.counters.disarms);
        let fault = self.lines.set_fault(true);
        let reject = self.lines.release_reject();
        if self.check(fault) && self.check(reject) {
            self.set_state(ControllerState::Safe);
        }
    }

    /// Passes `Ok` through as `true`; on a pin error enters the `Fault` state for good.
    fn check<T>(&mut self, result: Result<T, LineError>) -> bool {
        match result {
            Ok(_) => true,
            Err(e) => {
                warn!("line {} failed: controller fault", e);
                let _ = self.lines.set_fault(true);
                let _ = self.lines.release_reject();
                self.set_state(ControllerState::Fault);
                false
            }
        }
    }

    fn set_state(&mut self, state: ControllerState) {
        if self.state != state && self.state != ControllerState::Fault {
            self.state = state;
            self.send(Message::ControllerStatus(self.status()));
        }
    }

    fn send(&mut self, msg: Message) {
        if self.outbox.push_back(msg).is_err() {
            bump(&mut self.counters.tx_dropped);
        }
    }

    pub(crate) fn count_tx_dropped(&mut self) {
        bump(&mut self.counters.tx_dropped);
    }
}

/// A short name for logs (nap-core's types do not implement `defmt::Format`).
fn frame_error_name(e: FrameError) -> &'static str {
    match e {
        FrameError::Oversize => "oversize",
        FrameError::Cobs => "cobs",
        FrameError::TooShort => "too short",
        FrameError::Crc => "crc",
        FrameError::Version(_) => "version",
        FrameError::Payload => "payload",
    }
}

/// A short name for logs.
fn health_name(h: Health) -> &'static str {
    match h {
        Health::Ok => "ok",
        Health::Degraded => "degraded",
        Health::Fault => "fault",
    }
}
