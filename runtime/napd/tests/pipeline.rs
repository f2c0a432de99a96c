//! The real-time pipeline without a model: a scripted scorer whose work takes a different time
//! per frame, so workers finish out of order. Checks that verdicts leave in frame order, that
//! every sequence number gets exactly one outcome (verdict, rejection or counted drop), that a
//! full queue drops the oldest frames of a live source and blocks a replay, and that stop and
//! fatal errors end the run with the right reason. Also the OOD line on a mock pin.

use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction};
use napd::DaemonError;
use napd::drift::{Drift, DriftAction, DriftAlarm};
use napd::link::Link;
use napd::log::{JsonLog, LogTarget};
use napd::ood_line::{LineMode, OodLine, OodOutput};
use napd::pipeline::{self, Outputs};
use napd::pipeline::{EndReason, PipelineOptions, ScoreError, Scored, Scorer};
use napd::queue::Overflow;
use napd::source::{Frame, Pixels, Source, SourceEvent};
use napd::status::code;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Frame bytes are `"<score>"`, `"bad"` (a frame error) or `"boom"` (a fatal error). Work takes
/// `(score * 7) % 5` ms, so neighbours finish out of order.
struct Script {
    delay_ms: u64,
    scored: AtomicUsize,
}

impl Script {
    /// A scorer that takes `delay_ms` per frame.
    fn taking(delay_ms: u64) -> Script {
        Script {
            delay_ms,
            scored: AtomicUsize::new(0),
        }
    }
}

/// A stop flag and the thread that raises it after `ms` milliseconds.
fn stop_after(ms: u64) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let raiser = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            stop.store(true, Ordering::Relaxed);
        })
    };
    (stop, raiser)
}

impl Scorer for Script {
    type Worker = ();

    fn worker(&self) -> Result<(), String> {
        Ok(())
    }

    fn score(&self, _: &mut (), frame: &Frame) -> Result<Scored, ScoreError> {
        let Pixels::Encoded(bytes) = &frame.pixels else {
            return Err(ScoreError::Frame("not scripted".into()));
        };
        let text = std::str::from_utf8(bytes).unwrap();
        match text {
            "bad" => return Err(ScoreError::Frame("scripted bad frame".into())),
            "boom" => return Err(ScoreError::Fatal("scripted backbone failure".into())),
            _ => {}
        }
        let score: f32 = text.parse().unwrap();
        std::thread::sleep(Duration::from_millis(
            self.delay_ms + (score as u64 * 7) % 5,
        ));
        self.scored.fetch_add(1, Ordering::Relaxed);
        Ok(Scored {
            score,
            ood: score < self.threshold(),
            top1: score as usize,
        })
    }

    fn threshold(&self) -> f32 {
        10.0
    }
}

/// Frames from a list, then the end (or, if `endless`, the list again and again).
struct ListSource {
    items: Vec<String>,
    next: usize,
    live: bool,
    endless: bool,
}

impl ListSource {
    /// A source of `items`, like a camera (`live`: it drops frames when behind) or a file
    /// replay; `endless` ones wait for a stop after the last item instead of ending.
    fn new(items: Vec<String>, live: bool, endless: bool) -> ListSource {
        ListSource {
            items,
            next: 0,
            live,
            endless,
        }
    }
}

impl Source for ListSource {
    fn next_event(&mut self) -> SourceEvent {
        if self.next >= self.items.len() {
            if !self.endless {
                return SourceEvent::End;
            }
            self.next = 0;
            std::thread::sleep(Duration::from_millis(1));
        }
        let item = self.items[self.next].clone();
        self.next += 1;
        match item.as_str() {
            "lost" => return SourceEvent::Lost("scripted loss".into()),
            "resumed" => return SourceEvent::Resumed,
            _ => {}
        }
        if item == "unreadable" {
            return SourceEvent::Bad {
                name: "unreadable".into(),
                error: "scripted read error".into(),
            };
        }
        SourceEvent::Frame(Frame {
            name: format!("f{}", self.next - 1),
            captured: Instant::now(),
            pts: None,
            pixels: Pixels::Encoded(item.into_bytes()),
        })
    }

    fn is_live(&self) -> bool {
        self.live
    }
}

fn log_path(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("napd_pipeline_{name}.jsonl"));
    let _ = std::fs::remove_file(&p);
    p
}

fn read_log(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of_type<'a>(log: &'a [Value], t: &str) -> Vec<&'a Value> {
    log.iter().filter(|v| v["type"] == t).collect()
}

struct Run {
    summary: pipeline::Summary,
    log: Vec<Value>,
}

fn run(
    name: &str,
    source: ListSource,
    scorer: Script,
    options: PipelineOptions,
    stop: &AtomicBool,
    line: Option<&mut dyn OodOutput>,
) -> Run {
    run_with_drift(name, source, scorer, options, stop, line, None)
}

fn run_with_drift(
    name: &str,
    source: ListSource,
    scorer: Script,
    options: PipelineOptions,
    stop: &AtomicBool,
    line: Option<&mut dyn OodOutput>,
    drift: Option<DriftAlarm>,
) -> Run {
    let path = log_path(name);
    let mut log = JsonLog::open(&LogTarget::File(path.clone())).unwrap();
    let link = Link::none();
    let summary = pipeline::run(
        Arc::new(scorer),
        Box::new(source),
        Outputs {
            link: &link,
            line,
            log: &mut log,
            drift,
            capture: None,
            telemetry: Vec::new(),
        },
        &options,
        stop,
    );
    drop(log);
    Run {
        summary,
        log: read_log(&path),
    }
}

/// Every sequence number 0..frames appears exactly once among verdicts, errors and drops, and
/// the log lists them in increasing order.
fn assert_accounted(log: &[Value], frames: u64) {
    let seqs: Vec<u64> = log
        .iter()
        .filter(|v| ["verdict", "error", "dropped"].contains(&v["type"].as_str().unwrap()))
        .filter_map(|v| v["seq"].as_u64())
        .collect();
    assert_eq!(
        seqs,
        (0..frames).collect::<Vec<_>>(),
        "outcomes in order, one per frame"
    );
}

#[test]
fn verdicts_leave_in_frame_order_with_four_workers() {
    let items: Vec<String> = (0..60).map(|i| ((i * 13) % 20).to_string()).collect();
    let source = ListSource::new(items.clone(), false, false);
    let options = PipelineOptions {
        workers: 4,
        queue: 3,
        overflow: None,
        stats_interval: Duration::from_millis(100),
    };
    let r = run(
        "order",
        source,
        Script::taking(1),
        options,
        &AtomicBool::new(false),
        None,
    );
    assert_eq!(r.summary.reason, EndReason::EndOfStream);
    assert_eq!(
        (r.summary.frames, r.summary.verdicts, r.summary.dropped),
        (60, 60, 0)
    );
    let verdicts = of_type(&r.log, "verdict");
    for (i, v) in verdicts.iter().enumerate() {
        assert_eq!(v["seq"], i as u64);
        assert_eq!(v["frame"], format!("f{i}"));
        let score: f64 = items[i].parse().unwrap();
        assert_eq!(v["score"].as_f64().unwrap(), score);
        assert_eq!(v["ood"], score < 10.0);
        assert_eq!(v["threshold"].as_f64().unwrap(), 10.0);
        assert!(v["latency_us"].as_u64().is_some());
    }
    assert_eq!(
        r.summary.ood,
        items
            .iter()
            .filter(|s| s.parse::<f32>().unwrap() < 10.0)
            .count() as u64
    );
    assert_accounted(&r.log, 60);
    let last = of_type(&r.log, "stats").last().copied().cloned().unwrap();
    assert_eq!(last["total_verdicts"], 60);
    assert!(r.summary.p50_us.is_some() && r.summary.p99_us >= r.summary.p50_us);
}

#[test]
fn a_live_source_drops_the_oldest_frames_and_counts_them() {
    // 200 frames offered at once to one worker that needs 5+ ms each, through a queue of 2.
    let items: Vec<String> = (0..200).map(|i| (i % 20).to_string()).collect();
    let source = ListSource::new(items, true, false);
    let options = PipelineOptions {
        workers: 1,
        queue: 2,
        overflow: None,
        stats_interval: Duration::from_millis(50),
    };
    let scorer = Script::taking(5);
    let r = run(
        "drops",
        source,
        scorer,
        options,
        &AtomicBool::new(false),
        None,
    );
    let s = &r.summary;
    assert_eq!(s.frames, 200);
    assert!(s.dropped > 0, "nothing dropped: {s:?}");
    assert_eq!(s.verdicts + s.dropped + s.bad, 200);
    assert_eq!(of_type(&r.log, "dropped").len() as u64, s.dropped);
    assert_accounted(&r.log, 200);
    // The newest frame is never the one evicted: the last frame always gets its verdict.
    assert_eq!(of_type(&r.log, "verdict").last().unwrap()["seq"], 199);
}

#[test]
fn dropping_makes_the_health_degraded() {
    let (stop, raiser) = stop_after(400);
    // A camera far faster than its one worker, for longer than a few stats intervals.
    let source = ListSource::new(vec!["1".into(); 50], true, true);
    let options = PipelineOptions {
        workers: 1,
        queue: 2,
        overflow: None,
        stats_interval: Duration::from_millis(50),
    };
    let r = run("degraded", source, Script::taking(5), options, &stop, None);
    raiser.join().unwrap();
    assert!(r.summary.dropped > 0);
    assert_accounted(&r.log, r.summary.frames);
    let statuses = of_type(&r.log, "status");
    assert!(
        statuses
            .iter()
            .any(|v| v["health"] == "Degraded" && v["code"] == 1),
        "{statuses:?}"
    );
}

#[test]
fn a_replay_blocks_instead_of_dropping() {
    let items: Vec<String> = (0..40).map(|i| (i % 20).to_string()).collect();
    let source = ListSource::new(items, false, false);
    let options = PipelineOptions {
        workers: 1,
        queue: 1,
        overflow: None,
        stats_interval: Duration::from_secs(1),
    };
    let r = run(
        "block",
        source,
        Script::taking(2),
        options,
        &AtomicBool::new(false),
        None,
    );
    assert_eq!((r.summary.verdicts, r.summary.dropped), (40, 0));
    // And the policy can be forced either way.
    let source = ListSource::new(
        (0..100).map(|i| (i % 20).to_string()).collect(),
        false,
        false,
    );
    let options = PipelineOptions {
        workers: 1,
        queue: 1,
        overflow: Some(Overflow::DropOldest),
        stats_interval: Duration::from_secs(1),
    };
    let r = run(
        "forced",
        source,
        Script::taking(3),
        options,
        &AtomicBool::new(false),
        None,
    );
    assert!(r.summary.dropped > 0);
    assert_accounted(&r.log, 100);
}

#[test]
fn bad_frames_are_logged_and_skipped() {
    let items: Vec<String> = ["1", "bad", "15", "unreadable", "3"]
        .map(String::from)
        .to_vec();
    let source = ListSource::new(items, false, false);
    let r = run(
        "bad",
        source,
        Script::taking(0),
        PipelineOptions::default(),
        &AtomicBool::new(false),
        None,
    );
    assert_eq!(r.summary.reason, EndReason::EndOfStream);
    assert_eq!((r.summary.verdicts, r.summary.bad), (3, 2));
    let errors = of_type(&r.log, "error");
    assert_eq!(errors[0]["seq"], 1);
    assert_eq!(errors[0]["error"], "scripted bad frame");
    assert_eq!(errors[1]["seq"], 3);
    assert_eq!(errors[1]["frame"], "unreadable");
    assert_accounted(&r.log, 5);
}

#[test]
fn a_lost_source_degrades_the_health_until_it_resumes() {
    let items = ["1", "lost", "resumed", "2"].map(String::from).to_vec();
    let r = run(
        "lost",
        ListSource::new(items, true, false),
        Script::taking(0),
        PipelineOptions::default(),
        &AtomicBool::new(false),
        None,
    );
    assert_eq!(r.summary.reason, EndReason::EndOfStream);
    let events: Vec<(&str, Option<u64>)> = r
        .log
        .iter()
        .filter(|v| v["type"] == "source" || v["type"] == "status")
        .map(|v| (v["type"].as_str().unwrap(), v["code"].as_u64()))
        .collect();
    let lost = u64::from(code::SOURCE_LOST);
    assert_eq!(
        events,
        [
            ("source", None),
            ("status", Some(lost)),
            ("source", None),
            ("status", Some(0))
        ]
    );
    assert_eq!(of_type(&r.log, "source")[0]["reason"], "scripted loss");
    assert_eq!(of_type(&r.log, "source")[1]["event"], "resumed");
    assert_accounted(&r.log, 2);
}

#[test]
fn stop_drains_and_ends_cleanly() {
    let (stop, raiser) = stop_after(300);
    let source = ListSource::new(vec!["1".into(), "12".into()], true, true);
    let options = PipelineOptions {
        workers: 2,
        queue: 2,
        overflow: None,
        stats_interval: Duration::from_secs(10),
    };
    let r = run("stop", source, Script::taking(2), options, &stop, None);
    raiser.join().unwrap();
    assert_eq!(r.summary.reason, EndReason::Stopped);
    assert!(r.summary.verdicts > 0);
    assert_eq!(r.summary.verdicts + r.summary.dropped, r.summary.frames);
    assert_accounted(&r.log, r.summary.frames);
}

#[test]
fn a_fatal_scoring_error_ends_the_run() {
    let items: Vec<String> = ["1", "2", "boom", "3", "4", "5"].map(String::from).to_vec();
    let source = ListSource::new(items, false, true);
    let r = run(
        "fatal",
        source,
        Script::taking(0),
        PipelineOptions::default(),
        &AtomicBool::new(false),
        None,
    );
    assert_eq!(
        r.summary.reason,
        EndReason::Failed(DaemonError::Backbone("scripted backbone failure".into()))
    );
    assert!(!r.summary.reason.is_clean());
    assert_eq!(
        r.summary.reason.status().health,
        nap_core::protocol::Health::Fault
    );
}

#[test]
fn the_ood_line_follows_verdicts_in_level_mode() {
    // Scores 5, 5, 15, 3, 20, 20: OOD, OOD, ID, OOD, ID, ID -> low (init), high, low, high, low;
    // the pin is only written on a change, and shutdown finds it low already.
    let expect = [State::Low, State::High, State::Low, State::High, State::Low];
    let pin = PinMock::new(&expect.map(Transaction::set));
    let mut line = OodLine::new(pin, LineMode::Level).unwrap();
    let items: Vec<String> = ["5", "5", "15", "3", "20", "20"].map(String::from).to_vec();
    let source = ListSource::new(items, false, false);
    let options = PipelineOptions {
        workers: 3,
        ..PipelineOptions::default()
    };
    let r = run(
        "line",
        source,
        Script::taking(1),
        options,
        &AtomicBool::new(false),
        Some(&mut line),
    );
    assert_eq!(r.summary.verdicts, 6);
    let mut pin = line.release().unwrap();
    pin.done();
}

#[test]
fn the_ood_line_pulses_and_extends() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let pin = PinMock::new(
        &[State::Low, State::High, State::Low, State::High, State::Low].map(Transaction::set),
    );
    let mut line = OodLine::new(pin, LineMode::Pulse(ms(50))).unwrap();
    line.verdict(true, t0).unwrap();
    assert!(line.is_high());
    line.verdict(false, t0 + ms(10)).unwrap();
    assert!(line.is_high(), "an ID verdict does not cut a pulse short");
    line.verdict(true, t0 + ms(40)).unwrap();
    line.poll(t0 + ms(60)).unwrap();
    assert!(
        line.is_high(),
        "a second OOD verdict extends the pulse to 90 ms"
    );
    assert_eq!(line.deadline(), Some(t0 + ms(90)));
    line.poll(t0 + ms(90)).unwrap();
    assert!(!line.is_high());
    line.verdict(true, t0 + ms(100)).unwrap();
    let mut pin = line.release().unwrap();
    pin.done();
}

#[test]
fn line_modes_parse() {
    assert_eq!("level".parse::<LineMode>(), Ok(LineMode::Level));
    assert_eq!(
        "pulse:20".parse::<LineMode>(),
        Ok(LineMode::Pulse(Duration::from_millis(20)))
    );
    for bad in ["pulse:0", "pulse:x", "pulse:", "edge", "pulse:99999999"] {
        assert!(bad.parse::<LineMode>().is_err(), "{bad}");
    }
}

#[test]
fn the_daemon_rides_out_a_controller_that_vanishes_and_returns() {
    use nap_core::protocol::{Health, Message, RuntimeStatus};
    use nap_test_support::peer::Peer;
    use napd::link::LinkOptions;
    use napd::status::code;

    let peer = Peer::bind().unwrap();
    let link_options = LinkOptions {
        heartbeat: Duration::from_millis(20),
        reconnect: Duration::from_millis(50),
        ..LinkOptions::default()
    };
    let ok = RuntimeStatus {
        health: Health::Ok,
        code: code::OK,
    };
    let link = Link::open(&peer.link_spec().parse().unwrap(), link_options, ok);
    let (stop, script) = stop_after(1500);
    let path = log_path("vanish");
    let mut log = JsonLog::open(&LogTarget::File(path.clone())).unwrap();
    let source = ListSource::new(vec!["3".into(), "15".into()], true, true);
    let options = PipelineOptions {
        workers: 2,
        queue: 2,
        overflow: None,
        stats_interval: Duration::from_millis(100),
    };
    let summary = std::thread::scope(|s| {
        s.spawn(|| {
            assert!(peer.wait_until(Duration::from_secs(10), |r| {
                r.iter().any(|m| matches!(m.message, Message::Verdict(_)))
            }));
            peer.vanish();
            std::thread::sleep(Duration::from_millis(300));
            peer.resume();
        });
        pipeline::run(
            Arc::new(Script::taking(5)),
            Box::new(source),
            Outputs {
                link: &link,
                line: None,
                log: &mut log,
                drift: None,
                capture: None,
                telemetry: Vec::new(),
            },
            &options,
            &stop,
        )
    });
    script.join().unwrap();
    drop(log);
    assert_eq!(
        summary.reason,
        EndReason::Stopped,
        "no crash: the run ends on the stop flag"
    );
    let log = read_log(&path);
    assert_accounted(&log, summary.frames);
    let link_events: Vec<&Value> = of_type(&log, "link");
    assert!(
        link_events.iter().any(|v| v["event"] == "down"),
        "{link_events:?}"
    );
    assert!(
        link_events
            .iter()
            .any(|v| v["event"] == "up" && v["reconnects"].as_u64() >= Some(1)),
        "{link_events:?}"
    );
    let restored = Message::RuntimeStatus(RuntimeStatus {
        health: Health::Degraded,
        code: code::LINK_RESTORED,
    });
    let got = peer.received();
    let back = got
        .iter()
        .find(|m| m.connection > 0)
        .expect("the link came back");
    assert_eq!(
        back.message, restored,
        "the first word after the outage says the link was restored"
    );
    assert!(
        got.iter()
            .any(|m| m.connection > 0 && matches!(m.message, Message::Verdict(_))),
        "verdicts flow again after the outage"
    );
}

#[test]
fn a_drift_alarm_degrades_the_health_until_the_rate_returns() {
    // 5% OOD ("1" scores under the threshold of 10), then all OOD, then 5% again.
    let familiar = |n: usize| (0..n).map(|i| if i % 20 == 7 { "1" } else { "20" }.to_string());
    let items: Vec<String> = familiar(300)
        .chain(std::iter::repeat_n("1".to_string(), 100))
        .chain(familiar(300))
        .collect();
    let source = ListSource::new(items, false, false);
    let options = PipelineOptions {
        workers: 2,
        queue: 4,
        overflow: None,
        stats_interval: Duration::from_secs(60),
    };
    let alarm = DriftAlarm {
        test: Drift::new(100, 0.05).unwrap(),
        action: DriftAction::Degrade,
    };
    let raise_at = alarm.test.raise_at();
    let stop = AtomicBool::new(false);
    let r = run_with_drift(
        "drift",
        source,
        Script::taking(0),
        options,
        &stop,
        None,
        Some(alarm),
    );
    assert_accounted(&r.log, 700);
    let drift = of_type(&r.log, "drift");
    assert_eq!(drift.len(), 2, "{drift:?}");
    let (raised, cleared) = (
        drift[0]["seq"].as_u64().unwrap(),
        drift[1]["seq"].as_u64().unwrap(),
    );
    assert_eq!(drift[0]["event"], "raised");
    // The window holds 5 OOD verdicts at the switch; each new one adds one, and the familiar
    // OOD ones leave it: never before the switch, within raise_at verdicts after it.
    let earliest = 300 + (raise_at - 5) as u64 - 1;
    assert!(
        (earliest..300 + raise_at as u64).contains(&raised),
        "{drift:?}"
    );
    assert_eq!(drift[1]["event"], "cleared");
    assert!((400..500).contains(&cleared), "{drift:?}");
    // The status follows: Degraded with the drift code while raised, Ok after.
    let statuses: Vec<(u64, u64)> = r
        .log
        .iter()
        .scan(0u64, |seq, v| {
            if let Some(s) = v["seq"].as_u64() {
                *seq = s;
            }
            Some((*seq, v))
        })
        .filter(|(_, v)| v["type"] == "status")
        .map(|(seq, v)| (seq, v["code"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            (raised, u64::from(code::DRIFT)),
            (cleared, u64::from(code::OK))
        ]
    );
}
