//! A soak run of napd under faults: a paced raw camera stream with malformed frames and stalls,
//! a controller link that drops every so often, and a controller (the firmware library) that
//! answers with garbage now and then. It records what napd did over time, and checks that every
//! frame offered is accounted for and that the controller never stays armed while napd says it
//! is not healthy. The long run is `examples/soak.rs` in `nap-tests`; a short one runs in CI.

use nap_core::protocol::{ControllerState, FrameDecoder, Health, MAX_FRAME_LEN, encode};
use nap_firmware::{Config, Controller, RejectMode, Tick};
use napd::source::PixelFormat;
use napd::source::raw::encode_frame;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a soak run does, and how often each fault comes.
#[derive(Clone, Debug)]
pub struct SoakPlan {
    /// How long frames are offered.
    pub duration: Duration,
    /// Frames offered per second.
    pub fps: f64,
    /// Scoring threads.
    pub workers: usize,
    /// The link is dropped (and the next connection accepted) this often.
    pub link_drop_every: Duration,
    /// The camera stalls this often ...
    pub stall_every: Duration,
    /// ... for this long.
    pub stall: Duration,
    /// One frame in this many is malformed.
    pub malformed_one_in: u64,
    /// One controller reply in this many is replaced by random bytes.
    pub garbage_one_in: u64,
    /// RSS is sampled this often.
    pub rss_every: Duration,
    /// Latency is summarized per window of this length.
    pub window: Duration,
}

impl SoakPlan {
    /// The plan the issue sets: 30 minutes at 15 fps with 2 workers, the link dropped every
    /// 20 s, a 3 s stall every 5 minutes, 1% malformed frames and 1% garbage replies.
    pub fn full() -> SoakPlan {
        SoakPlan {
            duration: Duration::from_secs(30 * 60),
            fps: 15.0,
            workers: 2,
            link_drop_every: Duration::from_secs(20),
            stall_every: Duration::from_secs(5 * 60),
            stall: Duration::from_secs(3),
            malformed_one_in: 100,
            garbage_one_in: 100,
            rss_every: Duration::from_secs(10),
            window: Duration::from_secs(5 * 60),
        }
    }

    /// The same faults, compressed into `duration` (the stall comes twice per run).
    pub fn short(duration: Duration) -> SoakPlan {
        SoakPlan {
            duration,
            link_drop_every: Duration::from_secs(10),
            stall_every: duration / 3,
            rss_every: Duration::from_secs(2),
            window: duration / 3,
            ..SoakPlan::full()
        }
    }
}

/// What a soak run recorded.
#[derive(Debug, Default)]
pub struct SoakReport {
    /// Frames written to napd's stream, malformed ones included.
    pub offered: u64,
    /// ... of which malformed.
    pub malformed: u64,
    /// From napd's `final` object.
    pub verdicts: u64,
    /// Frames napd rejected.
    pub rejected: u64,
    /// Frames napd dropped.
    pub dropped: u64,
    /// napd's resident memory, KiB, by seconds since the start.
    pub rss_kib: Vec<(f64, u64)>,
    /// Per window: (start s, verdicts, p50 us, p99 us).
    pub windows: Vec<(f64, usize, u64, u64)>,
    /// Link connections the controller accepted.
    pub connections: u64,
    /// Statuses napd sent (as the controller decoded them).
    pub statuses: u64,
    /// Times the controller armed.
    pub armings: u64,
    /// Times the controller left the armed state.
    pub disarms: u64,
    /// Garbage replies sent.
    pub garbage_sent: u64,
    /// Steps at which the controller was armed while napd's last status was not Ok.
    pub armed_while_unhealthy: u64,
    /// napd's exit status.
    pub exit_ok: bool,
}

impl SoakReport {
    /// Frames napd accounted for: verdicts, rejections and drops.
    pub fn accounted(&self) -> u64 {
        self.verdicts + self.rejected + self.dropped
    }

    /// RSS growth after the first `settle` seconds, in KiB (last sample minus the first one
    /// after `settle`).
    pub fn rss_growth_after(&self, settle: f64) -> i64 {
        let after: Vec<u64> = self
            .rss_kib
            .iter()
            .filter(|(t, _)| *t >= settle)
            .map(|&(_, k)| k)
            .collect();
        match (after.first(), after.last()) {
            (Some(&a), Some(&b)) => b as i64 - a as i64,
            _ => 0,
        }
    }

    /// The report as a Markdown table of windows and totals.
    pub fn table(&self) -> String {
        let mut out =
            String::from("| window from | verdicts | p50 ms | p99 ms |\n|---:|---:|---:|---:|\n");
        for (start, n, p50, p99) in &self.windows {
            out.push_str(&format!(
                "| {start:.0} s | {n} | {:.1} | {:.1} |\n",
                *p50 as f64 / 1000.0,
                *p99 as f64 / 1000.0
            ));
        }
        out.push_str(&format!(
            "\noffered {} ({} malformed); verdicts {}, rejected {}, dropped {} (accounted {}); \
             link connections {}; statuses {}; controller armed {} / disarmed {} times; garbage \
             replies {}; armed while unhealthy {}; RSS {} -> {} KiB\n",
            self.offered,
            self.malformed,
            self.verdicts,
            self.rejected,
            self.dropped,
            self.accounted(),
            self.connections,
            self.statuses,
            self.armings,
            self.disarms,
            self.garbage_sent,
            self.armed_while_unhealthy,
            self.rss_kib.first().map_or(0, |s| s.1),
            self.rss_kib.last().map_or(0, |s| s.1),
        ));
        out
    }
}

/// A small deterministic generator for the faults (xorshift).
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn one_in(&mut self, n: u64) -> bool {
        n > 0 && self.next().is_multiple_of(n)
    }
}

/// Runs napd (`napd`, with `bundle`) on raw frames made from `photos` (RGB8 pixels with their
/// sizes) for the plan's duration, with its faults, and reports. `log` receives napd's JSONL.
pub fn run(
    napd: &Path,
    bundle: &Path,
    photos: &[(u32, u32, Vec<u8>)],
    plan: &SoakPlan,
    log: &Path,
) -> SoakReport {
    let _ = std::fs::remove_file(log);
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the controller's port");
    let port = listener.local_addr().unwrap().port();
    let controller = ControllerEnd::start(listener, plan.clone());
    let mut child = Command::new(napd)
        .arg("--bundle")
        .arg(bundle)
        .args(["--source", "raw:-", "--workers"])
        .arg(plan.workers.to_string())
        .args(["--link", &format!("tcp:127.0.0.1:{port}")])
        .arg("--log")
        .arg(format!("jsonl:{}", log.display()))
        .args(["--reconnect-ms", "200", "--stats-ms", "5000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting napd");
    let pid = child.id();
    let started = Instant::now();

    // RSS sampler.
    let rss = Arc::new(Mutex::new(Vec::new()));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = std::thread::spawn({
        let (rss, sampling, every) = (rss.clone(), sampling.clone(), plan.rss_every);
        move || {
            while sampling.load(Ordering::SeqCst) {
                if let Some(kib) = rss_kib(pid) {
                    rss.lock()
                        .unwrap()
                        .push((started.elapsed().as_secs_f64(), kib));
                }
                std::thread::sleep(every);
            }
        }
    });

    // The camera: paced frames, some malformed, with stalls.
    let mut stdin = child.stdin.take().unwrap();
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let (mut offered, mut malformed) = (0u64, 0u64);
    let period = Duration::from_secs_f64(1.0 / plan.fps);
    let mut next_stall = plan.stall_every;
    let mut due = Instant::now();
    while started.elapsed() < plan.duration {
        if started.elapsed() >= next_stall {
            std::thread::sleep(plan.stall);
            next_stall += plan.stall_every;
            due = Instant::now();
        }
        let (w, h, pixels) = &photos[(offered as usize) % photos.len()];
        let mut frame = encode_frame(PixelFormat::Rgb8, *w, *h, pixels).expect("photo frame");
        if dice.one_in(plan.malformed_one_in) {
            frame[4] = 9; // an unknown header version: rejected, payload skipped
            malformed += 1;
        }
        if stdin.write_all(&frame).is_err() {
            break;
        }
        offered += 1;
        due += period;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit_ok = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    sampling.store(false, Ordering::SeqCst);
    sampler.join().unwrap();
    let end = controller.stop();

    let lines: Vec<Value> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let last_final = lines.iter().rev().find(|o| o["type"] == "final");
    let count = |key: &str| last_final.and_then(|f| f[key].as_u64()).unwrap_or(0);
    SoakReport {
        offered,
        malformed,
        verdicts: count("verdicts"),
        rejected: count("bad"),
        dropped: count("dropped"),
        rss_kib: rss.lock().unwrap().clone(),
        windows: latency_windows(&lines, plan.window),
        connections: end.connections,
        statuses: end.statuses,
        armings: end.armings,
        disarms: end.disarms,
        garbage_sent: end.garbage,
        armed_while_unhealthy: end.armed_while_unhealthy,
        exit_ok,
    }
}

/// p50 and p99 of the verdicts' latency per window, by the verdicts' log order and time.
fn latency_windows(lines: &[Value], window: Duration) -> Vec<(f64, usize, u64, u64)> {
    let times: Vec<(f64, u64)> = lines
        .iter()
        .filter(|o| o["type"] == "verdict")
        .filter_map(|o| {
            let at = humantime::parse_rfc3339(o["time"].as_str()?).ok()?;
            let secs = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
            Some((secs, o["latency_us"].as_u64()?))
        })
        .collect();
    let Some(&(t0, _)) = times.first() else {
        return Vec::new();
    };
    let mut windows: Vec<(f64, Vec<u64>)> = Vec::new();
    for (t, latency) in times {
        let start = ((t - t0) / window.as_secs_f64()).floor() * window.as_secs_f64();
        match windows.last_mut() {
            Some((s, v)) if *s == start => v.push(latency),
            _ => windows.push((start, vec![latency])),
        }
    }
    windows
        .into_iter()
        .map(|(start, mut v)| {
            v.sort_unstable();
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            (start, v.len(), q(0.5), q(0.99))
        })
        .collect()
}

/// napd's resident set, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What the controller end saw.
#[derive(Default)]
struct EndCounts {
    /// The state at the last look.
    last: Option<ControllerState>,
    connections: u64,
    statuses: u64,
    armings: u64,
    disarms: u64,
    garbage: u64,
    armed_while_unhealthy: u64,
}

/// The controller: the firmware library on a millisecond tick behind a TCP port, accepting one
/// connection at a time and dropping it every `link_drop_every`.
struct ControllerEnd {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<EndCounts>,
}

/// Infallible output pins: the soak watches the state, not the lines.
#[derive(Default)]
struct Pin;

impl embedded_hal::digital::ErrorType for Pin {
    type Error = std::convert::Infallible;
}

impl embedded_hal::digital::OutputPin for Pin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl ControllerEnd {
    fn start(listener: TcpListener, plan: SoakPlan) -> ControllerEnd {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || serve(listener, &plan, &stop)
        });
        ControllerEnd { stop, thread }
    }

    fn stop(self) -> EndCounts {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("controller end")
    }
}

impl EndCounts {
    /// Counts state changes and any moment armed while the runtime's last status was not Ok.
    fn look(&mut self, ctrl: &Controller<Pin, Pin>) {
        let state = ctrl.state();
        if state == ControllerState::Armed && ctrl.runtime_health() != Health::Ok {
            self.armed_while_unhealthy += 1;
        }
        let was_armed = self.last == Some(ControllerState::Armed);
        match (was_armed, state == ControllerState::Armed) {
            (false, true) => self.armings += 1,
            (true, false) => self.disarms += 1,
            _ => {}
        }
        self.last = Some(state);
    }
}

fn serve(listener: TcpListener, plan: &SoakPlan, stop: &AtomicBool) -> EndCounts {
    let started = Instant::now();
    let now = || Tick(started.elapsed().as_millis() as u32);
    let config = Config {
        heartbeat_timeout: 500,
        reject: RejectMode::Pulse { ticks: 50 },
    };
    let mut ctrl = Controller::new(config, Pin, Pin);
    let mut oracle = FrameDecoder::new();
    let mut counts = EndCounts::default();
    let mut dice = Dice(0x2545_f491_4f6c_dd1d);
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::SeqCst) {
        let mut stream: TcpStream = match listener.accept() {
            Ok((s, _)) => s,
            Err(_) => {
                ctrl.tick(now());
                counts.look(&ctrl);
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        counts.connections += 1;
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        // A new connection starts mid-stream for the decoders.
        ctrl.link_error();
        oracle.resync();
        let connected = Instant::now();
        let mut buf = [0u8; 1024];
        while !stop.load(Ordering::SeqCst) && connected.elapsed() < plan.link_drop_every {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    0
                }
                Err(_) => break,
            };
            for &byte in &buf[..n] {
                if let Some(Ok(nap_core::protocol::Message::RuntimeStatus(_))) = oracle.push(byte) {
                    counts.statuses += 1;
                }
            }
            ctrl.receive(&buf[..n], now());
            ctrl.tick(now());
            counts.look(&ctrl);
            while let Some(reply) = ctrl.pop_outgoing() {
                let mut out = [0u8; MAX_FRAME_LEN];
                let bytes = encode(&reply, &mut out)
                    .expect("replies fit a frame")
                    .to_vec();
                let bytes = if dice.one_in(plan.garbage_one_in) {
                    counts.garbage += 1;
                    (0..bytes.len()).map(|_| dice.next() as u8).collect()
                } else {
                    bytes
                };
                if stream.write_all(&bytes).is_err() {
                    break;
                }
            }
        }
        let _ = stream.shutdown(Shutdown::Both);
    }
    counts
}

/// The first `n` photos of a folder that decode, as RGB8 camera frames (width, height,
/// pixels).
pub fn photos(folder: &Path, n: usize) -> Vec<(u32, u32, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .expect("the photo folder lists")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|p| nap_runtime::preprocess::decode(&std::fs::read(p).ok()?).ok())
        .take(n)
        .map(|img| (img.width(), img.height(), img.into_raw()))
        .collect()
}
