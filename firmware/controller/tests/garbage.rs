//! Garbage on the link: random noise, bit-flipped frames, truncated and oversize runs. None of it
//! may cause a decision (no pin write beyond the expected ones, no acknowledgement, no refresh of
//! the heartbeat timer); all of it is counted; a valid frame after it still works.

mod common;

use common::*;
use nap_core::protocol::{ControllerState, Message};
use nap_firmware::{Controller, Tick};
use proptest::prelude::*;

type Mock = embedded_hal_mock::eh1::digital::Mock;

/// An armed controller whose pins expect nothing after arming (and the boot writes).
fn armed() -> (Controller<Mock, Mock>, Mock, Mock) {
    let (mut ctrl, reject, fault) = controller(pulse_config(), &[low()], &[high(), low()]);
    ctrl.receive(&heartbeat(0), Tick(0));
    assert_eq!(ctrl.state(), ControllerState::Armed);
    outgoing(&mut ctrl);
    (ctrl, reject, fault)
}

/// Feeds `garbage` (then a delimiter, ending whatever it left open) and checks that nothing but
/// error counters moved.
fn assert_ignored(ctrl: &mut Controller<Mock, Mock>, garbage: &[u8]) {
    let before = *ctrl.counters();
    ctrl.receive(garbage, Tick(1));
    ctrl.receive(&[0], Tick(1));
    let after = *ctrl.counters();
    assert_eq!(after.frames, before.frames, "garbage accepted as a frame");
    assert_eq!(after.ood, before.ood);
    assert_eq!(after.rejects, before.rejects);
    assert_eq!(after.seq_gaps, before.seq_gaps);
    assert_eq!(
        ctrl.last_alive(),
        Some(Tick(0)),
        "garbage refreshed the heartbeat timer"
    );
    assert_eq!(ctrl.state(), ControllerState::Armed);
    assert!(outgoing(ctrl).is_empty(), "garbage was answered");
    assert!(after.frame_errors() >= before.frame_errors());
}

/// After garbage, the next valid OOD verdict still pulses: the decoder resynchronised.
fn assert_still_works(ctrl: Controller<Mock, Mock>, mut reject: Mock) {
    reject.update_expectations(&[high()]);
    let mut ctrl = ctrl;
    ctrl.receive(&verdict(1, true), Tick(2));
    assert_eq!(ctrl.counters().rejects, 1);
    assert_eq!(outgoing(&mut ctrl).len(), 1);
    done(ctrl);
}

#[test]
fn every_single_bit_flip_of_every_message_kind_is_only_counted() {
    let frames = [
        heartbeat(0x1234_5678),
        verdict(1, true),
        verdict(u32::MAX, false),
        status(nap_core::protocol::Health::Fault, 7),
    ];
    for good in &frames {
        // Bits of the delimiters are excluded: flipping them does not damage the content.
        for bit in 8..(good.len() - 1) * 8 {
            let (mut ctrl, reject, _fault) = armed();
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_ignored(&mut ctrl, &bad);
            let c = ctrl.counters();
            assert!(c.frame_errors() >= 1, "flip of bit {bit} not counted");
            assert_still_works(ctrl, reject);
        }
    }
}

#[test]
fn a_corrupted_crc_counts_as_a_crc_error() {
    let (mut ctrl, reject, _fault) = armed();
    let mut bad = verdict(1, true);
    let last = bad.len() - 2; // the last CRC byte (non-zero in COBS form)
    bad[last] ^= 0x01;
    assert_ignored(&mut ctrl, &bad);
    assert_eq!(ctrl.counters().crc_errors, 1);
    assert_eq!(ctrl.status().crc_errors, 1);
    assert_still_works(ctrl, reject);
}

#[test]
fn truncated_and_oversize_runs_are_counted_as_malformed() {
    let (mut ctrl, reject, _fault) = armed();
    let good = verdict(1, true);
    // Cut short: delimiter after half a frame.
    assert_ignored(&mut ctrl, &good[..good.len() / 2]);
    // A run of 200 non-zero bytes: reported once as oversize.
    assert_ignored(&mut ctrl, &[0x55; 200]);
    assert_eq!(ctrl.counters().malformed, 2);
    assert_eq!(ctrl.counters().crc_errors, 0);
    assert_still_works(ctrl, reject);
}

#[test]
fn a_frame_of_another_version_is_counted_separately() {
    // Build version 2 by hand: same layout, other version byte, valid CRC-32C.
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let mut raw = vec![2u8, 0x01, 0x05, 0x00];
    raw.extend_from_slice(&crc.checksum(&raw).to_le_bytes());
    let mut wire = vec![0u8; raw.len() + 2];
    let n = cobs::encode(&raw, &mut wire);
    wire.truncate(n);
    let (mut ctrl, reject, _fault) = armed();
    assert_ignored(&mut ctrl, &wire);
    assert_eq!(ctrl.counters().version_errors, 1);
    assert_still_works(ctrl, reject);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_noise_makes_no_decision(noise in prop::collection::vec(any::<u8>(), 0..400)) {
        let (mut ctrl, reject, _fault) = armed();
        assert_ignored(&mut ctrl, &noise);
        assert_still_works(ctrl, reject);
    }

    #[test]
    fn noise_with_many_delimiters_makes_no_decision(
        noise in prop::collection::vec(prop_oneof![Just(0u8), 1u8..=4, any::<u8>()], 0..400)
    ) {
        let (mut ctrl, reject, _fault) = armed();
        assert_ignored(&mut ctrl, &noise);
        assert_still_works(ctrl, reject);
    }

    #[test]
    fn random_bit_flips_in_a_stream_never_act_on_a_damaged_frame(
        flips in prop::collection::vec((0usize..10, 0usize..8 * 20), 1..6),
    ) {
        // Ten verdicts, each OOD; the flipped ones must not pulse, the intact ones must. Each
        // frame gets its own pulse window (long gaps between them).
        let frames: Vec<Vec<u8>> = (1..=10).map(|seq| verdict(seq, true)).collect();
        let mut damaged = [false; 10];
        let mut wire = frames.clone();
        for &(i, bit) in &flips {
            let f = &mut wire[i];
            // Flip inside the COBS content only (not the delimiters).
            let bit = bit % ((f.len() - 2) * 8) + 8;
            f[bit / 8] ^= 1 << (bit % 8);
            damaged[i] = wire[i] != frames[i];
        }
        let intact = damaged.iter().filter(|d| !**d).count();
        let mut expect_reject = vec![low()];
        for _ in 0..intact {
            expect_reject.extend([high(), low()]);
        }
        let (mut ctrl, ..) = controller(
            nap_firmware::Config { heartbeat_timeout: 1_000, ..pulse_config() },
            &expect_reject,
            &[high(), low()],
        );
        ctrl.receive(&heartbeat(0), Tick(0));
        for (i, f) in wire.iter().enumerate() {
            let t = 10 * (i as u32 + 1);
            ctrl.receive(f, Tick(t));
            tick_through(&mut ctrl, t, t + PULSE);
        }
        let c = *ctrl.counters();
        prop_assert_eq!(c.rejects as usize, intact);
        prop_assert_eq!(c.frames as usize, 1 + intact);
        prop_assert!(c.frame_errors() as usize >= 10 - intact);
        let acks = outgoing(&mut ctrl)
            .iter()
            .filter(|m| matches!(m, Message::Ack(_)))
            .count();
        prop_assert_eq!(acks, 1 + intact);
        done(ctrl);
    }
}
