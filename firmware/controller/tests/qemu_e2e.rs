//! End to end: the controller firmware running in QEMU (mps2-an386, Cortex-M4) driven over its
//! emulated UART by the host side of the link, as the runtime would drive a real controller.
//!
//! The host encodes heartbeats and verdicts with nap-core, sends them (with noise and a damaged
//! frame mixed in) through a TCP socket that QEMU connects to the board's UART0, reads the
//! acknowledgements and status messages back, then checks the firmware's event log (semihosting
//! stdout) and exit status: one reject pulse per intact OOD verdict, the fault line raised within
//! the timeout plus one tick of the last heartbeat when the host goes silent, and lowered again
//! when heartbeats return.
//!
//! Needs `qemu-system-arm` on PATH and the board binary, built with
//! `RUSTC_BOOTSTRAP=1 cargo +debian build --release -Zbuild-std=core` in firmware/board-mps2 (or
//! `cargo build --release` with a rustup `thumbv7em-none-eabihf` target); `NAP_FIRMWARE_ELF`
//! overrides its path. Without either the test prints why and passes, so `cargo test` works on
//! machines without the cross tools; CI sets `NAP_FIRMWARE_E2E=require` to make that a failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nap_core::protocol::{
    ControllerState, FrameDecoder, Heartbeat, MAX_FRAME_LEN, Message, Verdict, encode,
};

/// The board binary's settings (firmware/board-mps2/src/main.rs: `Config::DEFAULT_100HZ`).
const TIMEOUT_TICKS: u32 = 50;
const TICK: Duration = Duration::from_millis(10);
/// Time between two messages: well below the timeout, well above the 50 ms reject pulse.
const SPACING: Duration = Duration::from_millis(120);

/// Prints past the test harness's capture, so that a skip is visible in a plain `cargo test`.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

fn skip_or_fail(why: &str) {
    if std::env::var("NAP_FIRMWARE_E2E").as_deref() == Ok("require") {
        panic!("NAP_FIRMWARE_E2E=require, but {why}");
    }
    say(&format!("qemu_e2e: SKIPPED: {why}"));
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn firmware_elf() -> PathBuf {
    std::env::var_os("NAP_FIRMWARE_ELF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../board-mps2/target/thumbv7em-none-eabihf/release/nap-board-mps2")
        })
}

/// Kills QEMU if the test fails half-way.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The host end of the link.
struct Runtime {
    stream: TcpStream,
    seq: u32,
    /// Sequence numbers of the intact verdicts and heartbeats sent.
    sent: Vec<u32>,
    ood_sent: u32,
}

impl Runtime {
    fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to QEMU's UART");
    }

    fn frame(msg: Message) -> Vec<u8> {
        let mut buf = [0u8; MAX_FRAME_LEN];
        encode(&msg, &mut buf).unwrap().to_vec()
    }

    fn heartbeat(&mut self) {
        let msg = Message::Heartbeat(Heartbeat {
            seq: self.seq,
            timestamp_us: u64::from(self.seq) * 1000,
        });
        self.send_bytes(&Self::frame(msg));
        self.sent.push(self.seq);
        self.seq += 1;
        thread::sleep(SPACING);
    }

    fn verdict_frame(&self, ood: bool) -> Vec<u8> {
        Self::frame(Message::Verdict(Verdict {
            seq: self.seq,
            timestamp_us: u64::from(self.seq) * 1000,
            score: if ood { -2.0 } else { 4.0 },
            threshold: 1.0,
            ood,
        }))
    }

    fn verdict(&mut self, ood: bool) {
        let f = self.verdict_frame(ood);
        self.send_bytes(&f);
        self.sent.push(self.seq);
        self.ood_sent += u32::from(ood);
        self.seq += 1;
        thread::sleep(SPACING);
    }

    /// An OOD verdict damaged on the way (one bit of its CRC flipped): it uses up a sequence
    /// number, like a real frame lost to noise.
    fn damaged_ood_verdict(&mut self) {
        let mut f = self.verdict_frame(true);
        let i = f.len() - 3;
        f[i] ^= 0x10;
        if f[i] == 0 {
            f[i] = 0x10; // keep the frame in one piece: still damaged, still one CRC error
        }
        self.send_bytes(&f);
        self.seq += 1;
        thread::sleep(SPACING);
    }

    fn noise(&mut self) {
        let mut s = 0x9e37_79b9u32;
        let noise: Vec<u8> = (0..96)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 24) as u8
            })
            .chain([0])
            .collect();
        self.send_bytes(&noise);
        thread::sleep(SPACING);
    }
}

/// Waits until `pred` holds for the log so far, or panics after `limit`.
fn wait_for(log: &mpsc::Receiver<String>, seen: &mut Vec<String>, limit: Duration, what: &str) {
    wait_until(log, seen, limit, what, |line| line.contains(what));
}

fn wait_until(
    log: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    limit: Duration,
    what: &str,
    pred: impl Fn(&str) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) => {
                let hit = pred(&line);
                seen.push(line);
                if hit {
                    return;
                }
            }
            Err(_) => panic!("no `{what}` in the firmware log within {limit:?}; log:\n{seen:#?}"),
        }
    }
}

/// Decodes the run's defmt stream with `defmt-print` when it is installed (`cargo install
/// defmt-print`) and checks that it tells the same story as the event log.
fn check_defmt_log(elf: &Path, stream: &Path) {
    let Some(defmt_print) = find_on_path("defmt-print") else {
        say("qemu_e2e: defmt-print not installed: defmt stream saved, not decoded");
        return;
    };
    let out = Command::new(defmt_print)
        .arg("-e")
        .arg(elf)
        .stdin(std::fs::File::open(stream).expect("defmt stream"))
        .output()
        .expect("run defmt-print");
    let text = String::from_utf8_lossy(&out.stdout);
    say(&format!("qemu_e2e: defmt log:\n{text}"));
    assert!(text.contains("armed"), "defmt log lacks the arming: {text}");
    assert!(
        text.contains("safe state"),
        "defmt log lacks the heartbeat loss: {text}"
    );
}

/// `key=value` from an event line.
fn field(line: &str, key: &str) -> Option<u32> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

#[test]
fn firmware_in_qemu_acts_on_verdicts_and_fails_safe_on_silence() {
    let Some(qemu) = find_on_path("qemu-system-arm") else {
        return skip_or_fail("qemu-system-arm is not installed (apt install qemu-system-arm)");
    };
    let elf = firmware_elf();
    if !elf.is_file() {
        return skip_or_fail(&format!(
            "no firmware binary at {} (build firmware/board-mps2 first, see firmware/README.md)",
            elf.display()
        ));
    }

    // QEMU connects to us: no race for a free port.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let defmt_log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nap-board-mps2.defmt");
    let child = Command::new(&qemu)
        .args(["-cpu", "cortex-m4", "-machine", "mps2-an386", "-nographic"])
        // -icount: the guest clock advances with executed instructions, so SysTick interrupts
        // land between main-loop rounds in order and a busy host cannot make the firmware skip
        // ticks (which would blur the "timeout + 1 tick" check); shift=auto keeps it near real
        // time for the host's sleeps.
        .args(["-monitor", "none", "-icount", "shift=auto"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-serial")
        .arg(format!("tcp:127.0.0.1:{port}"))
        .arg("-kernel")
        .arg(&elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-arm");
    let mut qemu = Qemu(child);

    // Firmware event log (semihosting stdout), line by line.
    let (log_tx, log) = mpsc::channel();
    let stdout = qemu.0.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            say(&format!("firmware: {line}"));
            if log_tx.send(line).is_err() {
                break;
            }
        }
    });
    // defmt frames (semihosting stderr), kept for `defmt-print -e <elf>`; QEMU's own errors
    // land here too.
    let mut stderr = qemu.0.stderr.take().unwrap();
    let defmt_path = defmt_log.clone();
    let stderr_thread = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        let _ = std::fs::write(&defmt_path, &bytes);
        bytes
    });

    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => {
                if let Ok(Some(status)) = qemu.0.try_wait() {
                    let err = stderr_thread.join().unwrap_or_default();
                    panic!(
                        "QEMU exited with {status}: {}",
                        String::from_utf8_lossy(&err)
                    );
                }
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("QEMU did not connect to the UART socket: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream.set_nodelay(true).unwrap();

    // Replies from the controller, decoded with nap-core.
    let (reply_tx, replies) = mpsc::channel();
    let mut reader = stream.try_clone().unwrap();
    thread::spawn(move || {
        let mut decoder = FrameDecoder::new();
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            for result in decoder.push_slice(&buf[..n]) {
                if reply_tx.send(result).is_err() {
                    return;
                }
            }
        }
    });

    let mut rt = Runtime {
        stream,
        seq: 100,
        sent: Vec::new(),
        ood_sent: 0,
    };
    let mut seen = Vec::new();
    wait_for(&log, &mut seen, Duration::from_secs(10), "boot fault=1");

    // Phase 1: arm, then verdicts with noise and a damaged frame mixed in.
    rt.heartbeat();
    wait_for(
        &log,
        &mut seen,
        Duration::from_secs(5),
        "fault=0 state=armed",
    );
    rt.verdict(true);
    rt.verdict(false);
    rt.noise();
    rt.heartbeat();
    rt.verdict(true);
    rt.damaged_ood_verdict();
    rt.verdict(false);
    rt.verdict(true);
    rt.heartbeat();
    rt.verdict(true);
    rt.heartbeat();
    rt.heartbeat();

    // Phase 2: silence, three times the timeout.
    wait_for(
        &log,
        &mut seen,
        TICK * TIMEOUT_TICKS * 3,
        "fault=1 state=safe",
    );
    let loss = seen.last().unwrap().clone();

    // Phase 3: heartbeats return; one more OOD verdict while armed again.
    rt.heartbeat();
    wait_for(
        &log,
        &mut seen,
        Duration::from_secs(5),
        "fault=0 state=armed",
    );
    rt.heartbeat();
    rt.verdict(true);
    rt.heartbeat();
    rt.heartbeat();

    // The firmware ends its run after 3 s of silence.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = qemu.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "firmware did not end its run");
        thread::sleep(Duration::from_millis(50));
    };
    seen.extend(log.try_iter());
    // Give the reader threads the last bytes.
    thread::sleep(Duration::from_millis(100));
    let replies: Vec<Message> = replies
        .try_iter()
        .map(|r| r.expect("damaged reply"))
        .collect();
    let defmt_bytes = stderr_thread.join().unwrap_or_default();

    say(&format!(
        "qemu_e2e: {} events, {} replies, {} defmt bytes in {}",
        seen.len(),
        replies.len(),
        defmt_bytes.len(),
        defmt_log.display()
    ));
    assert!(
        status.success(),
        "firmware exit status {status}; log:\n{seen:#?}"
    );
    check_defmt_log(&elf, &defmt_log);

    // One pulse per intact OOD verdict; the damaged one made none.
    let pulses = seen.iter().filter(|l| l.ends_with("reject=1")).count();
    assert_eq!(pulses as u32, rt.ood_sent, "reject pulses; log:\n{seen:#?}");
    assert_eq!(
        seen.iter().filter(|l| l.ends_with("reject=0")).count(),
        pulses,
        "every pulse ends"
    );

    // Fault line: boot high, lowered on arming, raised on the silence within the timeout plus one
    // tick of the last valid message, lowered on recovery, and raised again by the silence that
    // ends the run (the firmware stops 3 s after the last byte, the timeout is 0.5 s).
    let faults: Vec<&String> = seen.iter().filter(|l| l.contains(" fault=")).collect();
    let levels: Vec<u32> = faults.iter().filter_map(|l| field(l, "fault")).collect();
    assert_eq!(levels, [1, 0, 1, 0, 1], "fault line edges: {faults:#?}");
    for edge in [faults[2], faults[4]] {
        let (raised_at, last_alive) = (
            field(edge, "tick").unwrap(),
            field(edge, "last_alive").unwrap(),
        );
        let silent = raised_at - last_alive;
        say(&format!(
            "qemu_e2e: fault raised {silent} ticks after the last heartbeat (timeout {TIMEOUT_TICKS})"
        ));
        assert!(
            silent > TIMEOUT_TICKS && silent <= TIMEOUT_TICKS + 1,
            "fault raised {silent} ticks after the last heartbeat: {edge}"
        );
    }
    assert_eq!(faults[2], &loss);

    // Counters at the end of the run.
    let summary = seen
        .iter()
        .find(|l| l.starts_with("summary"))
        .expect("summary line");
    let valid = rt.sent.len() as u32;
    assert_eq!(field(summary, "frames"), Some(valid), "{summary}");
    assert_eq!(field(summary, "ood"), Some(rt.ood_sent), "{summary}");
    assert_eq!(field(summary, "rejects"), Some(rt.ood_sent), "{summary}");
    assert_eq!(field(summary, "crc_errors"), Some(1), "{summary}");
    assert_eq!(
        field(summary, "seq_gaps"),
        Some(1),
        "the damaged frame's number; {summary}"
    );
    assert!(
        field(summary, "malformed").unwrap() >= 1,
        "the noise; {summary}"
    );
    assert_eq!(field(summary, "disarms"), Some(2), "{summary}");
    assert!(summary.ends_with("state=safe"), "ends fail-safe: {summary}");

    // Every intact numbered message was acknowledged, in order; the state changes were reported.
    let acked: Vec<u32> = replies
        .iter()
        .filter_map(|m| match m {
            Message::Ack(a) => Some(a.seq),
            _ => None,
        })
        .collect();
    assert_eq!(acked, rt.sent, "acknowledgements");
    let states: Vec<ControllerState> = replies
        .iter()
        .filter_map(|m| match m {
            Message::ControllerStatus(s) => Some(s.state),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            ControllerState::Armed,
            ControllerState::Safe,
            ControllerState::Armed,
            ControllerState::Safe
        ],
        "status reports"
    );
    assert!(
        replies
            .iter()
            .all(|m| m.direction() == nap_core::protocol::Direction::ToRuntime),
        "the controller only sends acks and status"
    );
}
