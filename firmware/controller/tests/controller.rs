//! The state machine on mock pins: every pin write is an expectation, so an unexpected decision
//! fails the test.

mod common;

use common::*;
use nap_core::protocol::{Ack, ControllerState, Health, Message};
use nap_firmware::{RejectMode, Tick};

#[test]
fn boots_safe_with_the_fault_line_high_and_arms_on_the_first_heartbeat() {
    // Boot: fault high, reject low. First heartbeat: fault low.
    let (mut ctrl, ..) = controller(pulse_config(), &[low()], &[high(), low()]);
    assert_eq!(ctrl.state(), ControllerState::Safe);
    assert!(ctrl.lines().fault_high());
    // Silence before any heartbeat changes nothing: already safe.
    tick_through(&mut ctrl, 0, 100);
    assert!(outgoing(&mut ctrl).is_empty());

    ctrl.receive(&heartbeat(7), Tick(101));
    assert_eq!(ctrl.state(), ControllerState::Armed);
    assert!(!ctrl.lines().fault_high());
    let out = outgoing(&mut ctrl);
    assert_eq!(out[0], Message::Ack(Ack { seq: 7 }));
    let Message::ControllerStatus(s) = out[1] else {
        panic!("expected a status, got {:?}", out[1]);
    };
    assert_eq!(s.state, ControllerState::Armed);
    assert_eq!(s.frames, 1);
    done(ctrl);
}

#[test]
fn verdicts_before_the_first_heartbeat_are_acknowledged_but_not_acted_on() {
    let (mut ctrl, ..) = controller(pulse_config(), &[low()], &[high()]);
    ctrl.receive(&verdict(0, true), Tick(1));
    assert_eq!(ctrl.state(), ControllerState::Safe);
    assert_eq!(outgoing(&mut ctrl), [Message::Ack(Ack { seq: 0 })]);
    assert_eq!(ctrl.counters().ood, 1);
    assert_eq!(ctrl.counters().rejects, 0);
    done(ctrl);
}

#[test]
fn each_ood_verdict_pulses_the_reject_line_for_the_configured_ticks() {
    let (mut ctrl, ..) = controller(
        pulse_config(),
        &[low(), high(), low(), high(), low()],
        &[high(), low()],
    );
    ctrl.receive(&heartbeat(0), Tick(0));
    ctrl.receive(&verdict(1, false), Tick(1));
    assert!(!ctrl.lines().reject_high());
    ctrl.receive(&verdict(2, true), Tick(2));
    assert!(ctrl.lines().reject_high());
    tick_through(&mut ctrl, 2, 2 + PULSE - 1);
    assert!(ctrl.lines().reject_high(), "pulse ended early");
    ctrl.tick(Tick(2 + PULSE));
    assert!(!ctrl.lines().reject_high(), "pulse did not end");
    ctrl.receive(&verdict(3, true), Tick(8));
    tick_through(&mut ctrl, 8, 8 + PULSE);
    assert_eq!(ctrl.counters().rejects, 2);
    assert_eq!(ctrl.counters().ood, 2);
    assert_eq!(ctrl.counters().frames, 4);
    done(ctrl);
}

#[test]
fn an_ood_verdict_during_a_pulse_extends_it() {
    let (mut ctrl, ..) = controller(pulse_config(), &[low(), high(), low()], &[high(), low()]);
    ctrl.receive(&heartbeat(0), Tick(0));
    ctrl.receive(&verdict(1, true), Tick(1));
    ctrl.receive(&verdict(2, true), Tick(3));
    tick_through(&mut ctrl, 1, 3 + PULSE - 1);
    assert!(ctrl.lines().reject_high());
    ctrl.tick(Tick(3 + PULSE));
    assert!(!ctrl.lines().reject_high());
    assert_eq!(ctrl.counters().ood, 2);
    assert_eq!(ctrl.counters().rejects, 1);
    done(ctrl);
}

#[test]
fn level_mode_follows_the_latest_verdict() {
    let (mut ctrl, ..) = controller(
        config(RejectMode::Level),
        &[low(), high(), low()],
        &[high(), low()],
    );
    ctrl.receive(&heartbeat(0), Tick(0));
    ctrl.receive(&verdict(1, true), Tick(1));
    ctrl.receive(&verdict(2, true), Tick(2));
    tick_through(&mut ctrl, 1, 5);
    assert!(ctrl.lines().reject_high(), "level mode must not time out");
    ctrl.receive(&verdict(3, false), Tick(6));
    assert!(!ctrl.lines().reject_high());
    assert_eq!(ctrl.counters().rejects, 1);
    done(ctrl);
}

#[test]
fn heartbeat_loss_raises_the_fault_line_within_timeout_plus_one_tick_and_recovers() {
    let (mut ctrl, ..) = controller(pulse_config(), &[low()], &[high(), low(), high(), low()]);
    ctrl.receive(&heartbeat(0), Tick(5));
    outgoing(&mut ctrl);
    // Silent for exactly the timeout: still armed.
    tick_through(&mut ctrl, 5, 5 + TIMEOUT);
    assert_eq!(ctrl.state(), ControllerState::Armed);
    // One tick more: safe, fault line up, reported.
    ctrl.tick(Tick(5 + TIMEOUT + 1));
    assert_eq!(ctrl.state(), ControllerState::Safe);
    assert!(ctrl.lines().fault_high());
    assert_eq!(ctrl.counters().disarms, 1);
    let out = outgoing(&mut ctrl);
    assert!(
        matches!(out[..], [Message::ControllerStatus(s)] if s.state == ControllerState::Safe),
        "{out:?}"
    );
    // Heartbeats return: armed again.
    ctrl.receive(&heartbeat(1), Tick(40));
    assert_eq!(ctrl.state(), ControllerState::Armed);
    assert!(!ctrl.lines().fault_high());
    done(ctrl);
}

#[test]
fn verdicts_keep_the_link_alive() {
    let (mut ctrl, ..) = controller(config(RejectMode::Level), &[low()], &[high(), low()]);
    ctrl.receive(&heartbeat(0), Tick(0));
    for (seq, t) in (1..).zip((TIMEOUT..100).step_by(TIMEOUT as usize)) {
        tick_through(&mut ctrl, t - TIMEOUT + 1, t);
        ctrl.receive(&verdict(seq, false), Tick(t));
    }
    assert_eq!(ctrl.state(), ControllerState::Armed);
    done(ctrl);
}

#[test]
fn heartbeat_loss_during_a_pulse_releases_the_reject_line() {
    let config = config(RejectMode::Pulse { ticks: 100 });
    let (mut ctrl, ..) = controller(config, &[low(), high(), low()], &[high(), low(), high()]);
    ctrl.receive(&heartbeat(0), Tick(0));
    ctrl.receive(&verdict(1, true), Tick(1));
    tick_through(&mut ctrl, 1, 1 + TIMEOUT + 1);
    assert_eq!(ctrl.state(), ControllerState::Safe);
    assert!(!ctrl.lines().reject_high());
    done(ctrl);
}

#[test]
fn degraded_or_faulty_runtime_disarms_until_health_is_ok_and_a_heartbeat_comes() {
    for health in [Health::Degraded, Health::Fault] {
        let (mut ctrl, ..) = controller(pulse_config(), &[low()], &[high(), low(), high(), low()]);
        ctrl.receive(&heartbeat(0), Tick(0));
        outgoing(&mut ctrl);
        ctrl.receive(&status(health, 42), Tick(1));
        assert_eq!(ctrl.state(), ControllerState::Safe);
        assert_eq!(ctrl.runtime_health(), health);
        // Status change reported, then the reply to the status message.
        let out = outgoing(&mut ctrl);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out.iter().all(
            |m| matches!(m, Message::ControllerStatus(s) if s.state == ControllerState::Safe)
        ));
        // Heartbeats alone do not re-arm while the runtime is unhealthy; OOD verdicts do nothing.
        ctrl.receive(&heartbeat(1), Tick(2));
        ctrl.receive(&verdict(2, true), Tick(3));
        assert_eq!(ctrl.state(), ControllerState::Safe);
        ctrl.receive(&status(Health::Ok, 0), Tick(4));
        assert_eq!(ctrl.state(), ControllerState::Safe);
        ctrl.receive(&heartbeat(3), Tick(5));
        assert_eq!(ctrl.state(), ControllerState::Armed);
        done(ctrl);
    }
}

#[test]
fn sequence_gaps_duplicates_and_restarts_are_counted() {
    let (mut ctrl, ..) = controller(pulse_config(), &[low(), high(), low()], &[high(), low()]);
    ctrl.receive(&heartbeat(10), Tick(0));
    ctrl.receive(&verdict(11, false), Tick(1));
    ctrl.receive(&verdict(15, true), Tick(2)); // 12, 13, 14 lost
    ctrl.receive(&verdict(15, true), Tick(3)); // retransmission: no second decision
    ctrl.receive(&heartbeat(0), Tick(4)); // runtime restarted
    ctrl.receive(&heartbeat(1), Tick(5));
    tick_through(&mut ctrl, 2, 10);
    let c = *ctrl.counters();
    assert_eq!(c.seq_gaps, 3);
    assert_eq!(c.duplicates, 1);
    assert_eq!(c.restarts, 1);
    assert_eq!(c.ood, 1);
    assert_eq!(c.rejects, 1);
    assert_eq!(c.frames, 6);
    let acks: Vec<u32> = outgoing(&mut ctrl)
        .into_iter()
        .filter_map(|m| match m {
            Message::Ack(a) => Some(a.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        acks,
        [10, 11, 15, 15, 0, 1],
        "every valid numbered message is acknowledged"
    );
    let s = ctrl.status();
    assert_eq!((s.frames, s.ood, s.seq_gaps), (6, 1, 3));
    done(ctrl);
}

#[test]
fn messages_meant_for_the_runtime_are_counted_and_ignored() {
    let (mut ctrl, ..) = controller(pulse_config(), &[low()], &[high()]);
    ctrl.receive(&frame(Message::Ack(Ack { seq: 1 })), Tick(0));
    ctrl.receive(&frame(ctrl.status()), Tick(0));
    assert_eq!(ctrl.counters().wrong_direction, 2);
    assert_eq!(ctrl.state(), ControllerState::Safe);
    assert!(outgoing(&mut ctrl).is_empty());
    done(ctrl);
}

#[test]
fn ticks_wrap_around_u32() {
    let start = u32::MAX - 3;
    let (mut ctrl, ..) = controller(
        pulse_config(),
        &[low(), high(), low()],
        &[high(), low(), high()],
    );
    ctrl.receive(&heartbeat(0), Tick(start));
    ctrl.receive(&verdict(1, true), Tick(start));
    for i in 0..=TIMEOUT {
        ctrl.tick(Tick(start.wrapping_add(i)));
    }
    assert_eq!(ctrl.state(), ControllerState::Armed);
    assert!(!ctrl.lines().reject_high());
    ctrl.tick(Tick(start.wrapping_add(TIMEOUT + 1)));
    assert_eq!(ctrl.state(), ControllerState::Safe);
    done(ctrl);
}
