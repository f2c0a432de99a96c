//! The sensor controller's state machine under arbitrary input: link bytes (noise, and valid
//! frames built from the input) interleaved with time passing and link errors. Shared by the
//! `controller` fuzz target and its corpus replay test, so both check exactly the same thing.

use embedded_hal::digital::{ErrorType, OutputPin};
use nap_core::protocol::{
    ControllerState, FrameDecoder, Health, Heartbeat, MAX_FRAME_LEN, Message, RuntimeStatus,
    Verdict, encode,
};
use nap_firmware::{Config, Controller, Counters, RejectMode, Tick};
use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;

/// A pin whose level the harness reads, independent of what the controller believes.
#[derive(Clone, Default)]
struct Probe(Rc<Cell<bool>>);

impl ErrorType for Probe {
    type Error = Infallible;
}

impl OutputPin for Probe {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.set(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.set(true);
        Ok(())
    }
}

/// What [`check_controller`] drove the controller through.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ControllerRun {
    /// Steps taken.
    pub steps: usize,
    /// Valid messages the controller received.
    pub messages: usize,
    /// Times it went from `Safe` to `Armed`.
    pub armings: usize,
    /// Times it left `Armed`.
    pub disarms: usize,
}

/// The input, read a byte at a time; zeros once it is used up.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

/// Drives a controller with `input` and panics when an invariant fails.
///
/// The first two bytes choose the config (timeout 1-64 ticks, pulse or level reject mode). Then
/// each step is one of: raw bytes onto the link; a valid heartbeat, verdict or runtime status
/// (sequence numbers near the last one, so in order, repeated, skipped or restarted); time
/// passing (with a `tick` call, as a board makes once per tick); a link error. After every step:
///
/// 1. `Armed` only while the runtime's last reported health is Ok, and a step that arms the
///    controller delivered a valid heartbeat (as an independent decoder of the same bytes sees);
/// 2. the fault line is high whenever the last valid heartbeat or verdict is more than the
///    timeout + 1 ticks old (or none came yet);
/// 3. the reject line is never high while `Safe`;
/// 4. no counter decreases.
pub fn check_controller(input: &[u8]) -> ControllerRun {
    let mut input = Input(input);
    let config_byte = input.byte();
    let mode = input.byte();
    let config = Config {
        heartbeat_timeout: 1 + u32::from(config_byte % 64),
        reject: if mode & 1 == 1 {
            RejectMode::Level
        } else {
            RejectMode::Pulse {
                ticks: 1 + u32::from(mode >> 1) % 16,
            }
        },
    };
    let (reject, fault) = (Probe::default(), Probe::default());
    let mut ctrl = Controller::new(config, reject.clone(), fault.clone());
    let mut oracle = FrameDecoder::new();
    let mut now = Tick(u32::from(config_byte).wrapping_mul(0x0101_0101));
    let mut seq = 0u32;
    let mut health = Health::Ok;
    let mut last_alive: Option<Tick> = None;
    let mut counters = *ctrl.counters();
    let mut run = ControllerRun::default();

    while !input.0.is_empty() {
        run.steps += 1;
        let before = ctrl.state();
        let mut bytes = Vec::new();
        match input.byte() % 8 {
            0 | 1 => {
                let n = usize::from(input.byte() % 48);
                bytes.extend_from_slice(input.take(n));
            }
            2..=4 => {
                seq = seq.wrapping_add(i32::from(input.byte() as i8 / 16) as u32);
                let what = input.byte();
                let message = match what % 3 {
                    0 => Message::Heartbeat(Heartbeat {
                        seq,
                        timestamp_us: u64::from(now.0),
                    }),
                    1 => Message::Verdict(Verdict {
                        seq,
                        timestamp_us: u64::from(now.0),
                        score: f32::from(what),
                        threshold: 100.0,
                        ood: what & 8 != 0,
                    }),
                    _ => Message::RuntimeStatus(RuntimeStatus {
                        health: [Health::Ok, Health::Degraded, Health::Fault]
                            [usize::from(what >> 2) % 3],
                        code: u16::from(what),
                    }),
                };
                let mut frame = [0u8; MAX_FRAME_LEN];
                bytes.extend_from_slice(encode(&message, &mut frame).expect("fits a frame"));
            }
            5 | 6 => {
                let ticks = u32::from(input.byte()) % (2 * config.heartbeat_timeout + 4);
                now = now.after(ticks);
            }
            _ => {
                ctrl.link_error();
                oracle.resync();
            }
        }

        // What an independent decoder sees in the same bytes: the messages this step delivered.
        let mut armed_by_heartbeat = false;
        for &byte in &bytes {
            if let Some(Ok(message)) = oracle.push(byte) {
                run.messages += 1;
                match message {
                    Message::Heartbeat(_) => {
                        last_alive = Some(now);
                        armed_by_heartbeat |= health == Health::Ok;
                    }
                    Message::Verdict(_) => last_alive = Some(now),
                    Message::RuntimeStatus(s) => health = s.health,
                    Message::Ack(_) | Message::ControllerStatus(_) => {}
                }
            }
        }
        ctrl.receive(&bytes, now);
        ctrl.tick(now);
        while ctrl.pop_outgoing().is_some() {}

        let state = ctrl.state();
        assert_ne!(state, ControllerState::Fault, "infallible pins cannot fail");
        if state == ControllerState::Armed {
            assert_eq!(
                health,
                Health::Ok,
                "armed while the runtime says {health:?}"
            );
            if before != ControllerState::Armed {
                assert!(armed_by_heartbeat, "armed without a valid heartbeat");
                run.armings += 1;
            }
        } else if before == ControllerState::Armed {
            run.disarms += 1;
        }
        let silent = last_alive.is_none_or(|t| now.since(t) > config.heartbeat_timeout + 1);
        if silent {
            assert!(
                fault.0.get(),
                "fault line low after silence (state {state:?})"
            );
        }
        if state == ControllerState::Safe {
            assert!(!reject.0.get(), "reject line high while safe");
        }
        assert_eq!(ctrl.last_alive(), last_alive, "proof of life disagrees");
        let after = *ctrl.counters();
        assert_counters_grow(&counters, &after);
        counters = after;
    }
    run
}

/// Every counter is at least what it was (inputs are far too short to wrap one).
fn assert_counters_grow(before: &Counters, after: &Counters) {
    let fields = |c: &Counters| {
        [
            c.frames,
            c.ood,
            c.crc_errors,
            c.seq_gaps,
            c.malformed,
            c.version_errors,
            c.duplicates,
            c.restarts,
            c.wrong_direction,
            c.link_errors,
            c.tx_dropped,
            c.rejects,
            c.disarms,
        ]
    };
    for (i, (b, a)) in fields(before).iter().zip(fields(after)).enumerate() {
        assert!(a >= *b, "counter {i} went from {b} to {a}");
    }
}
