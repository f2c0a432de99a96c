//! On-target tests: nap-core's protocol and nap-firmware's controller on the Cortex-M4
//! instruction set, plus this board's LED register. Run under QEMU by `cargo test` (the runner in
//! .cargo/config.toml); prints one line per test, then `N passed, N failed`, and exits non-zero
//! when any failed.
#![no_std]
#![no_main]

use core::convert::Infallible;

use cortex_m_rt::entry;
use embedded_hal::digital::{ErrorType, OutputPin, StatefulOutputPin};
use embedded_io::{ErrorKind, Read, ReadReady, Write};
use nap_board_mps2::leds::Led;
use nap_board_mps2::semihost::{self, println};
use nap_core::protocol::{
    Ack, ControllerState, ControllerStatus, FrameDecoder, Health, Heartbeat, MAX_FRAME_LEN,
    Message, RuntimeStatus, Verdict, decode, encode,
};
use nap_firmware::{Config, Controller, Link, RejectMode, Tick};

type TestResult = Result<(), &'static str>;

macro_rules! ensure {
    ($cond:expr) => {
        if !$cond {
            return Err(concat!("failed: ", stringify!($cond)));
        }
    };
}

/// An output pin that remembers its level and counts rising edges.
#[derive(Default)]
struct Probe {
    high: bool,
    rises: u32,
    writes: u32,
}

impl ErrorType for Probe {
    type Error = Infallible;
}

impl OutputPin for Probe {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.high = false;
        self.writes += 1;
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.rises += u32::from(!self.high);
        self.high = true;
        self.writes += 1;
        Ok(())
    }
}

const TIMEOUT: u32 = 10;
const PULSE: u32 = 3;
const CONFIG: Config = Config {
    heartbeat_timeout: TIMEOUT,
    reject: RejectMode::Pulse { ticks: PULSE },
};

struct Frame {
    buf: [u8; MAX_FRAME_LEN],
    len: usize,
}

impl Frame {
    fn of(msg: impl Into<Message>) -> Self {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let len = encode(&msg.into(), &mut buf).map(|f| f.len()).unwrap_or(0);
        Self { buf, len }
    }
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn heartbeat(seq: u32) -> Frame {
    Frame::of(Heartbeat {
        seq,
        timestamp_us: 1_000 * u64::from(seq),
    })
}

fn verdict(seq: u32, ood: bool) -> Frame {
    Frame::of(Verdict {
        seq,
        timestamp_us: 1_000 * u64::from(seq),
        score: if ood { -1.5 } else { 3.25 },
        threshold: 0.5,
        ood,
    })
}

fn armed() -> Controller<Probe, Probe> {
    let mut ctrl = Controller::new(CONFIG, Probe::default(), Probe::default());
    ctrl.receive(heartbeat(0).bytes(), Tick(0));
    while ctrl.pop_outgoing().is_some() {}
    ctrl
}

fn golden_heartbeat_frame() -> TestResult {
    // The example of runtime/core/src/protocol/mod.rs, byte for byte (CRC table, LEB128, COBS).
    let f = heartbeat(1);
    ensure!(
        f.bytes()
            == [
                0x00, 0x0a, 0x01, 0x01, 0x01, 0xe8, 0x07, 0xf3, 0x59, 0xe6, 0x37, 0x00
            ]
    );
    Ok(())
}

fn every_message_round_trips() -> TestResult {
    let msgs: [Message; 5] = [
        Verdict {
            seq: u32::MAX,
            timestamp_us: u64::MAX,
            score: -0.0,
            threshold: f32::MAX,
            ood: true,
        }
        .into(),
        Heartbeat {
            seq: 7,
            timestamp_us: 0,
        }
        .into(),
        RuntimeStatus {
            health: Health::Degraded,
            code: 513,
        }
        .into(),
        Ack { seq: 1 << 31 }.into(),
        ControllerStatus {
            state: ControllerState::Armed,
            frames: 1,
            ood: 2,
            crc_errors: 3,
            seq_gaps: 4,
        }
        .into(),
    ];
    for msg in msgs {
        let f = Frame::of(msg);
        ensure!(f.len > 0);
        ensure!(decode(f.bytes()) == Ok(msg));
        let mut d = FrameDecoder::new();
        let mut results = d.push_slice(f.bytes());
        ensure!(results.next() == Some(Ok(msg)));
        ensure!(results.next().is_none());
    }
    Ok(())
}

fn boots_safe_and_arms_on_a_heartbeat() -> TestResult {
    let mut ctrl = Controller::new(CONFIG, Probe::default(), Probe::default());
    ensure!(ctrl.state() == ControllerState::Safe);
    ensure!(ctrl.lines().fault_high());
    ctrl.receive(heartbeat(0).bytes(), Tick(0));
    ensure!(ctrl.state() == ControllerState::Armed);
    ensure!(!ctrl.lines().fault_high());
    ensure!(ctrl.pop_outgoing() == Some(Message::Ack(Ack { seq: 0 })));
    Ok(())
}

fn ood_verdicts_pulse_the_reject_line() -> TestResult {
    let mut ctrl = armed();
    for (i, seq) in (1..=4).enumerate() {
        let t = 10 * i as u32 + 1;
        ctrl.receive(verdict(seq, seq % 2 == 0).bytes(), Tick(t));
        for dt in 0..=PULSE {
            ctrl.tick(Tick(t + dt));
        }
    }
    ensure!(!ctrl.lines().reject_high());
    let (reject, _) = ctrl.release();
    ensure!(reject.rises == 2);
    Ok(())
}

fn heartbeat_loss_faults_within_timeout_plus_one_and_recovers() -> TestResult {
    let mut ctrl = armed();
    for t in 1..=TIMEOUT {
        ctrl.tick(Tick(t));
    }
    ensure!(ctrl.state() == ControllerState::Armed);
    ctrl.tick(Tick(TIMEOUT + 1));
    ensure!(ctrl.state() == ControllerState::Safe);
    ensure!(ctrl.lines().fault_high());
    ctrl.receive(heartbeat(1).bytes(), Tick(50));
    ensure!(ctrl.state() == ControllerState::Armed);
    ensure!(!ctrl.lines().fault_high());
    Ok(())
}

/// xorshift32: deterministic noise without a dependency.
fn noise(state: &mut u32) -> u8 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    (*state >> 24) as u8
}

fn noise_makes_no_decision() -> TestResult {
    let mut ctrl = armed();
    let mut s = 0x1234_5678;
    let mut chunk = [0u8; 64];
    for _ in 0..256 {
        for b in &mut chunk {
            *b = noise(&mut s);
        }
        ctrl.receive(&chunk, Tick(1));
    }
    ctrl.receive(&[0], Tick(1));
    let c = *ctrl.counters();
    ensure!(c.frames == 1);
    ensure!(c.rejects == 0);
    ensure!(c.frame_errors() > 0);
    ensure!(ctrl.last_alive() == Some(Tick(0)));
    ensure!(ctrl.pop_outgoing().is_none());
    // Still in sync: a valid OOD verdict after the noise acts.
    ctrl.receive(verdict(1, true).bytes(), Tick(2));
    ensure!(ctrl.counters().rejects == 1);
    Ok(())
}

fn bit_flipped_verdicts_are_only_counted() -> TestResult {
    let good = verdict(1, true);
    for bit in 8..(good.len - 1) * 8 {
        let mut ctrl = armed();
        let mut bad = Frame {
            buf: good.buf,
            len: good.len,
        };
        bad.buf[bit / 8] ^= 1 << (bit % 8);
        ctrl.receive(bad.bytes(), Tick(1));
        ctrl.receive(&[0], Tick(1));
        ensure!(ctrl.counters().rejects == 0);
        ensure!(ctrl.counters().frames == 1);
        ensure!(ctrl.counters().frame_errors() >= 1);
        ensure!(ctrl.pop_outgoing().is_none());
    }
    Ok(())
}

/// An in-memory port: `rx` is what the runtime sent, `tx` collects the replies.
struct Loopback<'a> {
    rx: &'a [u8],
    tx: [u8; 128],
    tx_len: usize,
}

impl embedded_io::ErrorType for Loopback<'_> {
    type Error = ErrorKind;
}
impl ReadReady for Loopback<'_> {
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(!self.rx.is_empty())
    }
}
impl Read for Loopback<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.rx.read(buf).map_err(|_| ErrorKind::Other)
    }
}
impl Write for Loopback<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let room = &mut self.tx[self.tx_len..];
        let n = buf.len().min(room.len());
        room[..n].copy_from_slice(&buf[..n]);
        self.tx_len += n;
        if n == 0 && !buf.is_empty() {
            return Err(ErrorKind::OutOfMemory);
        }
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

fn the_link_acknowledges_through_embedded_io() -> TestResult {
    let mut rx = [0u8; 2 * MAX_FRAME_LEN];
    let (hb, v) = (heartbeat(5), verdict(6, false));
    rx[..hb.len].copy_from_slice(hb.bytes());
    rx[hb.len..hb.len + v.len].copy_from_slice(v.bytes());
    let mut ctrl = Controller::new(CONFIG, Probe::default(), Probe::default());
    let mut link = Link::new(Loopback {
        rx: &rx[..hb.len + v.len],
        tx: [0; 128],
        tx_len: 0,
    });
    link.poll(&mut ctrl, Tick(0));
    let port = link.release();
    let mut d = FrameDecoder::new();
    let mut replies = d.push_slice(&port.tx[..port.tx_len]);
    ensure!(replies.next() == Some(Ok(Message::Ack(Ack { seq: 5 }))));
    ensure!(
        matches!(replies.next(), Some(Ok(Message::ControllerStatus(s))) if s.state == ControllerState::Armed)
    );
    ensure!(replies.next() == Some(Ok(Message::Ack(Ack { seq: 6 }))));
    ensure!(replies.next().is_none());
    Ok(())
}

fn fpgaio_leds_follow_the_pins() -> TestResult {
    // SAFETY: the tests run one at a time and nothing else drives the LEDs here.
    let (mut led0, mut led1) = unsafe { (Led::new(0), Led::new(1)) };
    led0.set_low().ok();
    led1.set_low().ok();
    ensure!(Led::register() & 0b11 == 0);
    led1.set_high().ok();
    ensure!(Led::register() & 0b11 == 0b10);
    ensure!(led1.is_set_high() == Ok(true));
    led0.set_high().ok();
    led1.set_low().ok();
    ensure!(Led::register() & 0b11 == 0b01);
    led0.set_low().ok();
    Ok(())
}

/// A test: its name and its body.
type Test = (&'static str, fn() -> TestResult);

const TESTS: &[Test] = &[
    ("golden_heartbeat_frame", golden_heartbeat_frame),
    ("every_message_round_trips", every_message_round_trips),
    (
        "boots_safe_and_arms_on_a_heartbeat",
        boots_safe_and_arms_on_a_heartbeat,
    ),
    (
        "ood_verdicts_pulse_the_reject_line",
        ood_verdicts_pulse_the_reject_line,
    ),
    (
        "heartbeat_loss_faults_within_timeout_plus_one_and_recovers",
        heartbeat_loss_faults_within_timeout_plus_one_and_recovers,
    ),
    ("noise_makes_no_decision", noise_makes_no_decision),
    (
        "bit_flipped_verdicts_are_only_counted",
        bit_flipped_verdicts_are_only_counted,
    ),
    (
        "the_link_acknowledges_through_embedded_io",
        the_link_acknowledges_through_embedded_io,
    ),
    ("fpgaio_leds_follow_the_pins", fpgaio_leds_follow_the_pins),
];

#[entry]
fn main() -> ! {
    semihost::mute_defmt();
    println!(
        "running {} tests on {}",
        TESTS.len(),
        "cortex-m4 (qemu mps2-an386)"
    );
    let (mut passed, mut failed) = (0u32, 0u32);
    for (name, test) in TESTS {
        match test() {
            Ok(()) => {
                passed += 1;
                println!("test {} ... ok", name);
            }
            Err(why) => {
                failed += 1;
                println!("test {} ... FAILED: {}", name, why);
            }
        }
    }
    // For the size report in firmware/README.md: what the binary keeps on main's stack.
    println!(
        "size_of Controller<Led, Led> = {} bytes, Link<CmsdkUart> = {} bytes",
        core::mem::size_of::<Controller<Led, Led>>(),
        core::mem::size_of::<Link<nap_board_mps2::uart::CmsdkUart>>()
    );
    println!("{} passed, {} failed", passed, failed);
    semihost::exit(failed == 0)
}
