//! One frame through the core, end to end, on built-in synthetic pre-pool activations:
//! reduce -> S_NAP and pooled feature -> head -> every scoring method -> verdict on the wire.
//!
//! `cargo run -p nap-core --example frame`
//!
//! The "familiar" activation has what NAP looks for in in-distribution frames: each channel a sharp
//! peak over a quiet plane. The "unfamiliar" one has the same total activation spread flat.

use nap_core::int8::Quant;
use nap_core::nap::{DEFAULT_EPS, nap_u8};
use nap_core::protocol::{FrameDecoder, MAX_FRAME_LEN, Message, Verdict, encode};
use nap_core::reduce::{Reducer, Shape};
use nap_core::score::dice::{DEFAULT_SPARSITY, sparsify};
use nap_core::score::vim::{self, Vim};
use nap_core::score::{Evidence, Head, LinearHead, Method, Params, Workspace};

const CHANNELS: usize = 64;
const PLANE: usize = 49; // 7 x 7
const CLASSES: usize = 10;

/// A deterministic pseudo-random generator, so the example prints the same numbers everywhere.
struct XorShift(u32);

impl XorShift {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

fn familiar(rng: &mut XorShift) -> Vec<u8> {
    let mut a = vec![0u8; CHANNELS * PLANE];
    for plane in a.chunks_exact_mut(PLANE) {
        plane.iter_mut().for_each(|x| *x = (rng.next() % 8) as u8);
        plane[rng.next() as usize % PLANE] = 200 + (rng.next() % 56) as u8;
    }
    a
}

fn unfamiliar(rng: &mut XorShift) -> Vec<u8> {
    (0..CHANNELS * PLANE)
        .map(|_| 6 + (rng.next() % 4) as u8)
        .collect()
}

fn main() {
    let mut rng = XorShift(0x9e37_79b9);
    let weights: Vec<f32> = (0..CLASSES * CHANNELS)
        .map(|_| (rng.next() % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let bias = [0.0f32; CLASSES];
    let head = LinearHead::new(&weights, &bias, CHANNELS).expect("head shape is consistent");
    let params = Params {
        react_clip: Some(1.0),
        ..Params::default()
    };
    params.validate().expect("built-in parameters are valid");

    let reducer = Reducer::new();
    let shape = Shape::nchw(CHANNELS, PLANE);
    println!(
        "pre-pool activation: {CHANNELS} x 7 x 7 u8 (ReLU6 scale 6/255), reduction path: {}",
        reducer.isa().name()
    );

    let frames = [
        ("familiar", familiar(&mut rng)),
        ("unfamiliar", unfamiliar(&mut rng)),
    ];
    let pooled_nap = |activation: &[u8]| {
        let (mut max, mut sum) = (vec![0u8; CHANNELS], vec![0u32; CHANNELS]);
        reducer
            .reduce_u8(shape, activation, &mut max, &mut sum)
            .expect("buffers match the shape");
        let mut pooled = vec![0.0f32; CHANNELS];
        let nap = nap_u8(&max, &sum, PLANE, Quant::RELU6, DEFAULT_EPS, &mut pooled);
        (pooled, nap)
    };
    // DICE's head, sparsified by contributions on the familiar frame (calibration uses the mean
    // over the ID frames).
    let mut sparse = weights.clone();
    let id_mean = pooled_nap(&frames[0].1).0;
    sparsify(
        &mut sparse,
        &id_mean,
        DEFAULT_SPARSITY,
        &mut vec![0.0; weights.len()],
    );
    let dice_head = LinearHead::new(&sparse, &bias, CHANNELS).expect("same shape");
    // ViM's principal subspace: one direction, the familiar frame's (calibration fits D of
    // them to the ID frames), about the origin.
    let norm = id_mean.iter().map(|x| x * x).sum::<f32>().sqrt();
    let basis: Vec<f32> = id_mean.iter().map(|x| x / norm).collect();
    let origin = vec![0.0f32; CHANNELS];
    let mut offset = [0.0f32];
    vim::offset(&basis, &origin, &mut offset);
    let vim = Vim::new(&origin, &basis, &offset, 1.0).expect("same shape");

    let mut scores = Vec::new();
    for (name, activation) in &frames {
        let (pooled, nap) = pooled_nap(activation);
        let mut logits = vec![0.0f32; CLASSES];
        head.logits(&pooled, &mut logits);
        let mut dice_logits = vec![0.0f32; CLASSES];
        dice_head.logits(&pooled, &mut dice_logits);

        let evidence = Evidence {
            nap,
            pooled: &pooled,
            logits: &logits,
            dice_logits: Some(&dice_logits),
            vim_logit: Some(vim.virtual_logit(&pooled, &mut [0.0])),
        };
        let mut buffer = vec![0.0f32; Workspace::required(CHANNELS, CLASSES)];
        let row: Vec<f32> = Method::ALL
            .iter()
            .map(|m| {
                m.score(&params, &evidence, &head, &mut Workspace::new(&mut buffer))
                    .expect("scorable")
                    .value
            })
            .collect();
        scores.push((name, row));
    }

    print!("\n{:<12}", "frame");
    Method::ALL.iter().for_each(|m| print!("{:>10}", m.name()));
    println!();
    for (name, row) in &scores {
        print!("{name:<12}");
        row.iter().for_each(|s| print!("{s:>10.3}"));
        println!();
    }

    // A threshold comes from calibration on real ID frames (`napctl calibrate`); here it is the
    // midpoint of the two NAP-E scores, to show the verdicts and the bytes the controller gets.
    let nap_e = Method::ALL
        .iter()
        .position(|&m| m == Method::NapE)
        .expect("NAP-E is a method");
    let threshold = (scores[0].1[nap_e] + scores[1].1[nap_e]) / 2.0;
    println!("\nNAP-E threshold {threshold:.3}; verdicts as sent to the sensor controller:");
    let mut decoder = FrameDecoder::new();
    for (seq, (name, row)) in scores.iter().enumerate() {
        let score = row[nap_e];
        let verdict = Message::Verdict(Verdict {
            seq: seq as u32,
            timestamp_us: 33_333 * seq as u64,
            score,
            threshold,
            ood: score < threshold,
        });
        let mut buf = [0u8; MAX_FRAME_LEN];
        let wire = encode(&verdict, &mut buf).expect("a verdict fits MAX_FRAME_LEN");
        let hex: Vec<String> = wire.iter().map(|b| format!("{b:02x}")).collect();
        let decoded = decoder
            .push_slice(wire)
            .next()
            .expect("one frame")
            .expect("intact frame");
        assert_eq!(decoded, verdict);
        println!(
            "  {name:<11} ood={:<5} {} bytes: {}",
            score < threshold,
            wire.len(),
            hex.join(" ")
        );
    }
}
