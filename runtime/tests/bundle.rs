//! The bundle file format: a written bundle reads back identical, and every kind of damage is
//! its own clear error, never a panic.

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use nap_core::int8::Quant;
use nap_core::reduce::Layout;
use nap_core::score::FusionWeights;
use nap_runtime::bundle::signature::{
    FLAG_SIGNED, TRAILER_LEN, TrustError, TrustedKeys, fingerprint, sign, signature,
};
use nap_runtime::bundle::{
    ActivationStorage, BackboneSpec, Bundle, BundleError, BundleFile, DiceSpec, FORMAT_VERSION,
    HeadForm, HeadSpec, HeadStorage, InputSpec, MAGIC, Manifest, ModelFormat, NeckSpec,
    PrePoolSpec, Precision, ScorerConfig, VimSpec,
};
use nap_runtime::integer::{Conv, Layer, Op, Program};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn bundle() -> Bundle {
    let (classes, features) = (3, 4);
    Bundle {
        manifest: Manifest {
            source: "tiny.onnx".into(),
            backbone: BackboneSpec {
                format: ModelFormat::Onnx,
                precision: Precision::F32,
                input_name: "input".into(),
                output_name: "pre_pool".into(),
            },
            input: InputSpec::TF,
            pre_pool: PrePoolSpec {
                channels: features,
                height: 7,
                width: 7,
                layout: Layout::Nchw,
                storage: ActivationStorage::F32,
            },
            head: HeadSpec {
                classes,
                features,
                form: HeadForm::Gemm,
                storage: HeadStorage::F32,
            },
            scorer: ScorerConfig {
                threshold: Some(1.25),
                ..ScorerConfig::default()
            },
            dice: None,
            neck: None,
            vim: None,
        },
        backbone: (0..200u8).collect(),
        head_weights: (0..classes * features)
            .map(|i| i as f32 * 0.5 - 2.0)
            .collect(),
        head_bias: vec![0.1, -0.2, 0.3],
        head_scales: Vec::new(),
        neck: Vec::new(),
        program: None,
    }
}

#[test]
fn round_trip() {
    let b = bundle();
    let bytes = b.to_bytes().unwrap();
    assert_eq!(&bytes[..8], &MAGIC);
    assert_eq!(Bundle::from_bytes(&bytes).unwrap(), b);

    let path = std::env::temp_dir().join(format!("nap-bundle-{}.nap", std::process::id()));
    b.write(&path).unwrap();
    assert_eq!(Bundle::read(&path).unwrap(), b);
    std::fs::remove_file(&path).unwrap();
}

/// A bundle whose int8 backbone is a stem (8x8 frame to 4x4x4) and a 1x1 convolution.
fn int8_bundle() -> Bundle {
    let q = |scale: f32, zero_point: u8| Quant { scale, zero_point };
    let conv = |input: u32, outputs: usize, taps: usize| Conv {
        input,
        weights: (0..outputs * taps).map(|i| (i % 11) as i8 - 5).collect(),
        weight_scales: vec![0.01; outputs],
        bias: (0..outputs as i32).collect(),
    };
    let program = Program {
        size: 8,
        input: q(0.02, 128),
        layers: vec![
            Layer {
                op: Op::Stem {
                    conv: conv(0, 6, 27),
                    pads: [0, 0, 1, 1],
                },
                output: q(0.05, 0),
                clamp: [0, 120],
            },
            Layer {
                op: Op::Pointwise(conv(1, 4, 6)),
                output: q(0.03, 10),
                clamp: [0, 255],
            },
        ],
    };
    let mut b = bundle();
    let m = &mut b.manifest;
    m.input.size = 8;
    m.backbone.precision = Precision::Int8;
    m.pre_pool = PrePoolSpec {
        channels: 4,
        height: 4,
        width: 4,
        layout: Layout::Nhwc,
        storage: ActivationStorage::U8(program.output()),
    };
    b.program = Some(program);
    b
}

#[test]
fn an_integer_program_round_trips_and_must_match_the_manifest() {
    let b = int8_bundle();
    assert_eq!(Bundle::from_bytes(&b.to_bytes().unwrap()).unwrap(), b);

    let mut other_size = b.clone();
    other_size.manifest.input.size = 16;
    let mut other_codes = b.clone();
    other_codes.manifest.pre_pool.storage = ActivationStorage::U8(Quant::RELU6);
    let mut bad_layer = b.clone();
    if let Some(p) = &mut bad_layer.program {
        p.layers[1].op = Op::Pointwise(Conv {
            input: 1,
            weights: vec![1; 4 * 5],
            weight_scales: vec![0.01; 4],
            bias: vec![0; 4],
        });
    }
    let mut float = b.clone();
    float.manifest.backbone.precision = Precision::F32;
    for (bundle, needle) in [
        (other_size, "16"),
        (other_codes, "output codes"),
        (
            bad_layer,
            "layer 1: 20 weights for 4 output channels of 6 taps",
        ),
        (float, "in a F32 bundle"),
    ] {
        let err = bundle.to_bytes().unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

/// `b` as format `version` (2 to 6) wrote it: a manifest without ViM's statistics (`b` has
/// none); for versions 2 to 5 also without the neck (`b` has none); for versions 2 to 4 also without NAP-D's weight and DICE's statistics (`b` has the default weight
/// and none), for versions 2 and 3 without the calibrated TPR (`b` has none); no flags; for
/// version 2 no program length in the header.
fn older_format(b: &Bundle, version: u16) -> Vec<u8> {
    assert_eq!(b.manifest.scorer.tpr, None);
    assert_eq!(b.manifest.dice, None);
    assert_eq!(b.manifest.neck, None);
    assert_eq!(b.manifest.vim, None);
    assert!(b.manifest.scorer.threshold.is_some());
    let new = b.to_bytes().unwrap();
    let full = u32::from_le_bytes(new[12..16].try_into().unwrap()) as usize;
    // The neck's and ViM's None end the manifest.
    assert_eq!(new[40 + full - 2..40 + full], [0, 0]);
    if version == 6 {
        let mut old = new.clone();
        old[8..10].copy_from_slice(&version.to_le_bytes());
        old[12..16].copy_from_slice(&(full as u32 - 1).to_le_bytes());
        old.remove(40 + full - 1);
        old.truncate(old.len() - 4);
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&old);
        old.extend_from_slice(&crc.to_le_bytes());
        return old;
    }
    let len = full - 2;
    let manifest = &new[40..40 + len];
    // The manifest ends with NAP-D's weight (4 bytes), the threshold (Some: 5 bytes), the
    // TPR's None and DICE's None.
    assert_eq!(manifest[len - 2..], [0, 0]);
    assert_eq!(
        manifest[len - 11..len - 7],
        FusionWeights::default().nap_d.to_le_bytes()
    );
    let old_manifest = if version == 5 {
        manifest.to_vec()
    } else {
        let mut old = manifest[..len - 11].to_vec();
        let tpr_kept = if version >= 4 { 1 } else { 0 };
        old.extend_from_slice(&manifest[len - 7..len - 2 + tpr_kept]);
        old
    };

    let header_len = if version == 2 { 32 } else { 40 };
    let mut old = new[..header_len].to_vec();
    old[8..10].copy_from_slice(&version.to_le_bytes());
    old[12..16].copy_from_slice(&(old_manifest.len() as u32).to_le_bytes());
    old.extend_from_slice(&old_manifest);
    old.extend_from_slice(&new[40 + full..new.len() - 4]);
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&old);
    old.extend_from_slice(&crc.to_le_bytes());
    old
}

#[test]
fn version_2_to_6_bundles_still_load() {
    let b = bundle();
    for version in [2, 3, 4, 5, 6] {
        let old = older_format(&b, version);
        assert_eq!(Bundle::from_bytes(&old).unwrap(), b, "version {version}");
    }
    // And a calibrated TPR round-trips in this version.
    let mut calibrated = bundle();
    calibrated.manifest.scorer.tpr = Some(0.95);
    let bytes = calibrated.to_bytes().unwrap();
    assert_eq!(Bundle::from_bytes(&bytes).unwrap(), calibrated);
    calibrated.manifest.scorer.tpr = Some(1.0);
    assert!(
        calibrated.to_bytes().is_err(),
        "a TPR of 1 keeps nothing out"
    );
}

#[test]
fn dice_statistics_round_trip_and_are_checked() {
    let mut b = bundle();
    b.manifest.dice = Some(DiceSpec {
        mean: vec![0.5, 1.0, 0.0, 2.0],
        sparsity: 50.0,
    });
    b.manifest.scorer.params.weights.nap_d = 0.3;
    let read = Bundle::from_bytes(&b.to_bytes().unwrap()).unwrap();
    assert_eq!(read, b);
    // Weights i * 0.5 - 2 over 3 x 4; contributions w * mean: the top 6 of 12 are 7, 3, 2.5,
    // 1, 0.5 and, of the zeros, the first (index 4, itself a zero weight).
    let sparse = read.dice_weights().unwrap();
    let kept = [4, 5, 7, 8, 9, 11];
    for (i, (&w, &orig)) in sparse.iter().zip(&b.head_weights).enumerate() {
        assert_eq!(w, if kept.contains(&i) { orig } else { 0.0 }, "weight {i}");
    }
    assert_eq!(bundle().dice_weights(), None);
    for (mean, sparsity, needle) in [
        (vec![1.0; 3], 50.0, "DICE's ID mean has 3 values"),
        (vec![1.0, f32::NAN, 1.0, 1.0], 50.0, "DICE's ID mean"),
        (vec![1.0; 4], 100.0, "DICE sparsity 100"),
    ] {
        b.manifest.dice = Some(DiceSpec { mean, sparsity });
        let err = b.to_bytes().unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn vim_statistics_round_trip_and_are_checked() {
    let mut b = bundle();
    let s = std::f32::consts::FRAC_1_SQRT_2;
    let vim = VimSpec {
        origin: vec![0.5, -1.0, 0.0, 2.0],
        basis: vec![1.0, 0.0, 0.0, 0.0, 0.0, s, s, 0.0],
        alpha: 0.25,
    };
    b.manifest.vim = Some(vim.clone());
    let read = Bundle::from_bytes(&b.to_bytes().unwrap()).unwrap();
    assert_eq!(read, b);
    assert_eq!(vim.dims(), 2);
    // -B u: -(0.5) and -(s (-1 + 0)).
    let offset = vim.offset();
    assert!(
        (offset[0] + 0.5).abs() < 1e-7 && (offset[1] - s).abs() < 1e-7,
        "{offset:?}"
    );
    // x - u = (0.5, 3, 2, 0): 0.5 and 5 s lie in the subspace, |x - u|^2 = 13.25.
    let residual = vim
        .view(&offset)
        .residual_norm(&[1.0, 2.0, 2.0, 2.0], &mut [0.0; 2]);
    assert!(
        (residual - (13.25f32 - 0.25 - 12.5).sqrt()).abs() < 1e-5,
        "{residual}"
    );
    let broken = |f: fn(&mut VimSpec)| {
        let mut v = vim.clone();
        f(&mut v);
        v
    };
    for (bad, needle) in [
        (
            broken(|v| v.origin.pop().map(drop).unwrap()),
            "origin of 3 values",
        ),
        (broken(|v| v.basis.truncate(6)), "basis of 6 values"),
        (broken(|v| v.basis = vec![0.5; 16]), "basis of 16 values"),
        (
            broken(|v| v.basis[1] = 0.5),
            "basis row 0 is not of unit length",
        ),
        (broken(|v| v.origin[2] = f32::INFINITY), "not finite"),
        (broken(|v| v.alpha = 0.0), "alpha 0 is not positive"),
    ] {
        b.manifest.vim = Some(bad);
        let err = b.to_bytes().unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn every_truncation_is_a_size_error() {
    let bytes = bundle().to_bytes().unwrap();
    for len in 8..bytes.len() {
        let err = Bundle::from_bytes(&bytes[..len]).unwrap_err();
        assert!(matches!(err, BundleError::Size { .. }), "{len}: {err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        Bundle::from_bytes(&longer),
        Err(BundleError::Size { .. })
    ));
}

#[test]
fn every_flipped_byte_is_caught() {
    let bytes = bundle().to_bytes().unwrap();
    for i in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[i] ^= 0x40;
        let err = Bundle::from_bytes(&damaged).expect_err("damage must not load");
        // Damage to the magic, the version or a length is reported as such; anything else as
        // a checksum mismatch.
        let expected = match i {
            0..8 => matches!(err, BundleError::NotABundle),
            8..10 => matches!(err, BundleError::Version { .. }),
            10..12 => matches!(&err, BundleError::Invalid(m) if m.contains("flags")),
            12..40 => matches!(err, BundleError::Size { .. } | BundleError::Checksum { .. }),
            _ => matches!(err, BundleError::Checksum { .. }),
        };
        assert!(expected, "byte {i}: {err}");
    }
}

#[test]
fn another_version_says_so() {
    let mut bytes = bundle().to_bytes().unwrap();
    let newer = FORMAT_VERSION + 1;
    bytes[8..10].copy_from_slice(&newer.to_le_bytes());
    let err = Bundle::from_bytes(&bytes).unwrap_err();
    assert!(matches!(err, BundleError::Version { found } if found == newer));
    assert!(
        err.to_string().contains(&format!("version {newer}")),
        "{err}"
    );
}

#[test]
fn not_a_bundle() {
    for bytes in [&b""[..], b"NAPB", b"\x08\x07onnx-model-bytes-here-and-more"] {
        assert!(matches!(
            Bundle::from_bytes(bytes),
            Err(BundleError::NotABundle)
        ));
    }
}

#[test]
fn inconsistent_bundles_are_refused() {
    let mut wrong_head = bundle();
    wrong_head.head_weights.pop();
    assert!(matches!(
        wrong_head.to_bytes(),
        Err(BundleError::Invalid(_))
    ));

    let mut wrong_channels = bundle();
    wrong_channels.manifest.pre_pool.channels = 5;
    assert!(
        matches!(wrong_channels.validate(), Err(BundleError::Invalid(m)) if m.contains("channels"))
    );

    let mut bad_eps = bundle();
    bad_eps.manifest.scorer.params.eps = 0.0;
    assert!(matches!(bad_eps.validate(), Err(BundleError::Invalid(m)) if m.contains("eps")));

    let mut nan_threshold = bundle();
    nan_threshold.manifest.scorer.threshold = Some(f32::NAN);
    assert!(nan_threshold.validate().is_err());

    // A head graph is described and stored together, or not at all.
    let neck = NeckSpec {
        input_name: "pooled".into(),
        keeps_dims: true,
        output_name: "hidden".into(),
        ops: vec!["Gemm".into(), "HardSwish".into()],
    };
    let mut described_only = bundle();
    described_only.manifest.neck = Some(neck.clone());
    assert!(
        matches!(described_only.validate(), Err(BundleError::Invalid(m)) if m.contains("describes a head graph"))
    );
    let mut stored_only = bundle();
    stored_only.neck = vec![1, 2, 3];
    assert!(
        matches!(stored_only.validate(), Err(BundleError::Invalid(m)) if m.contains("has no head graph"))
    );
    // Both: the file keeps them, and the pre-pool channels need not be the dense layer's input.
    let mut with_neck = bundle();
    with_neck.manifest.neck = Some(neck);
    with_neck.neck = b"an ONNX model".to_vec();
    with_neck.manifest.pre_pool.channels = 7;
    let read = Bundle::from_bytes(&with_neck.to_bytes().unwrap()).unwrap();
    assert_eq!(read, with_neck);
}

proptest! {
    #[test]
    fn random_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..400), cut in 0usize..400) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&tail);
        let _ = Bundle::from_bytes(&bytes);
        let good = bundle().to_bytes().unwrap();
        let _ = Bundle::from_bytes(&good[..cut.min(good.len())]);
    }
}

#[test]
fn int8_head_round_trips_at_a_quarter_of_the_weight_bytes() {
    let float = bundle();
    let mut small = float.clone();
    small.quantize_head();
    assert_eq!(small.manifest.head.storage, HeadStorage::I8);
    assert_eq!(small.head_scales.len(), 3);
    // Each weight moved by at most half a code step of its row.
    let features = small.manifest.head.features as usize;
    for (i, (q, f)) in small
        .head_weights
        .iter()
        .zip(&float.head_weights)
        .enumerate()
    {
        assert!((q - f).abs() <= small.head_scales[i / features] / 2.0 + 1e-7);
    }
    let bytes = small.to_bytes().unwrap();
    assert_eq!(Bundle::from_bytes(&bytes).unwrap(), small);
    let weights = float.head_weights.len();
    assert_eq!(
        float.to_bytes().unwrap().len() - bytes.len(),
        weights * 4 - (weights + 3 * 4)
    );
    // Quantizing again changes nothing.
    let mut again = small.clone();
    again.quantize_head();
    assert_eq!(again, small);
}

#[test]
fn int8_head_that_is_not_on_its_grid_is_refused() {
    let mut b = bundle();
    b.quantize_head();
    b.head_weights[0] += b.head_scales[0] / 3.0;
    let err = b.to_bytes().unwrap_err();
    assert!(err.to_string().contains("not whole codes"), "{err}");
    let mut b = bundle();
    b.quantize_head();
    b.head_scales.pop();
    assert!(b.to_bytes().unwrap_err().to_string().contains("row scales"));
}

// Signed bundles.

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn trusting(keys: &[&SigningKey]) -> TrustedKeys {
    TrustedKeys::from_keys(keys.iter().map(|k| k.verifying_key()).collect())
}

#[test]
fn a_signed_bundle_reads_as_itself_and_names_its_signer() {
    let b = bundle();
    let unsigned = b.to_bytes().unwrap();
    let signed = sign(&unsigned, &key(1)).unwrap();
    assert_eq!(signed.len(), unsigned.len() + TRAILER_LEN);
    assert_eq!(u16::from_le_bytes([signed[10], signed[11]]), FLAG_SIGNED);
    assert_eq!(Bundle::from_bytes(&signed).unwrap(), b);
    let signer = signature(&signed).unwrap().expect("signed");
    assert_eq!(signer.key, key(1).verifying_key());
    assert_eq!(signer.fingerprint(), fingerprint(&key(1).verifying_key()));
    assert!(signature(&unsigned).unwrap().is_none());

    let verified = trusting(&[&key(2), &key(1)]).verify(&signed).unwrap();
    assert_eq!(verified.key, key(1).verifying_key());

    // Through a file, as napd reads it.
    let path = std::env::temp_dir().join(format!("nap-signed-{}.nap", std::process::id()));
    std::fs::write(&path, &signed).unwrap();
    let read = BundleFile::read(&path, Some(&trusting(&[&key(1)]))).unwrap();
    let unchecked = BundleFile::read(&path, None).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(read.bundle, b);
    assert_eq!(read.signature.unwrap().key, key(1).verifying_key());
    assert!(unchecked.signature.is_none());
    // The file's SHA-256, as `sha256sum` prints it.
    let digest: String = Sha256::digest(&signed)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!((read.sha256.len(), &read.sha256), (64, &digest));
    assert_eq!(unchecked.sha256, digest);
}

#[test]
fn an_older_bundle_is_signed_in_this_format() {
    let b = bundle();
    let signed = sign(&older_format(&b, 3), &key(1)).unwrap();
    assert_eq!(u16::from_le_bytes([signed[8], signed[9]]), FORMAT_VERSION);
    assert_eq!(Bundle::from_bytes(&signed).unwrap(), b);
    assert!(trusting(&[&key(1)]).verify(&signed).is_ok());
}

/// `b` in format `version` (4 or 5), signed with `key` as napctl of that version signed.
fn signed_in_older_format(b: &Bundle, version: u16, key: &SigningKey) -> Vec<u8> {
    use ed25519_dalek::Signer;
    let mut body = older_format(b, version);
    body[10..12].copy_from_slice(&FLAG_SIGNED.to_le_bytes());
    let content = body.len() - 4;
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&body[..content]);
    body[content..].copy_from_slice(&crc.to_le_bytes());
    let signature = key.sign(&body);
    body.extend_from_slice(b"NAPSIG1\0");
    body.extend_from_slice(key.verifying_key().as_bytes());
    body.extend_from_slice(&signature.to_bytes());
    body
}

#[test]
fn bundles_signed_in_older_formats_still_load_and_verify() {
    let b = bundle();
    for version in [4, 5, 6] {
        let signed = signed_in_older_format(&b, version, &key(1));
        assert_eq!(Bundle::from_bytes(&signed).unwrap(), b, "version {version}");
        let signer = trusting(&[&key(1)]).verify(&signed).unwrap();
        assert_eq!(signer.key, key(1).verifying_key());
        assert!(trusting(&[&key(2)]).verify(&signed).is_err());
    }
}

#[test]
fn signing_again_replaces_the_signature() {
    let unsigned = bundle().to_bytes().unwrap();
    let once = sign(&unsigned, &key(1)).unwrap();
    let twice = sign(&once, &key(2)).unwrap();
    assert_eq!(twice.len(), once.len());
    assert!(trusting(&[&key(2)]).verify(&twice).is_ok());
    assert!(matches!(
        trusting(&[&key(1)]).verify(&twice),
        Err(TrustError::UnknownSigner { .. })
    ));
    // The same key signs the same bytes the same way (ed25519 is deterministic).
    assert_eq!(sign(&twice, &key(1)).unwrap(), once);
}

#[test]
fn unsigned_and_foreign_bundles_are_not_trusted() {
    let unsigned = bundle().to_bytes().unwrap();
    let trusted = trusting(&[&key(1)]);
    let err = trusted.verify(&unsigned).unwrap_err();
    assert!(matches!(err, TrustError::Unsigned), "{err}");
    assert!(err.to_string().contains("napctl sign"), "{err}");
    let foreign = sign(&unsigned, &key(3)).unwrap();
    let err = trusted.verify(&foreign).unwrap_err();
    assert!(
        err.to_string()
            .contains(&fingerprint(&key(3).verifying_key())),
        "{err}"
    );
    assert!(matches!(
        trusted.verify(b"not a bundle at all"),
        Err(TrustError::Bundle(BundleError::NotABundle))
    ));
}

#[test]
fn every_changed_byte_of_a_signed_bundle_is_refused() {
    let signed = sign(&bundle().to_bytes().unwrap(), &key(1)).unwrap();
    let trusted = trusting(&[&key(1)]);
    let body = signed.len() - TRAILER_LEN;
    for i in 0..signed.len() {
        let mut changed = signed.clone();
        changed[i] ^= 0x01;
        let err = trusted
            .verify(&changed)
            .expect_err("a changed byte must not pass");
        let expected = match i {
            // The magic: not a bundle any more.
            0..8 => matches!(err, TrustError::Bundle(BundleError::NotABundle)),
            // The version, or the signed flag cleared: unsigned; any other change is covered
            // by the signature.
            8..12 => matches!(err, TrustError::Unsigned | TrustError::Tampered { .. }),
            // The signer's key: another (untrusted or invalid) key.
            _ if (body + 8..body + 40).contains(&i) => matches!(
                err,
                TrustError::UnknownSigner { .. } | TrustError::Bundle(BundleError::Invalid(_))
            ),
            _ if (body..body + 8).contains(&i) => {
                matches!(err, TrustError::Bundle(BundleError::Invalid(_)))
            }
            _ => matches!(err, TrustError::Tampered { .. }),
        };
        assert!(expected, "byte {i}: {err}");
    }
    // Cut anywhere: refused, never a panic.
    for len in 0..signed.len() {
        assert!(trusted.verify(&signed[..len]).is_err(), "cut at {len}");
    }
}

#[test]
fn trusted_keys_load_from_pem_files_and_folders() {
    let dir = std::env::temp_dir().join(format!("nap-trusted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for seed in [1u8, 2] {
        let pem = key(seed)
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        std::fs::write(dir.join(format!("k{seed}.pub")), pem).unwrap();
    }
    // Whatever the umask: trusted keys must not be writable by others.
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [(dir.clone(), 0o755), (dir.join("k1.pub"), 0o644)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not a key, not read").unwrap();
    let all = TrustedKeys::load(&dir).unwrap();
    let mut expected = vec![
        fingerprint(&key(1).verifying_key()),
        fingerprint(&key(2).verifying_key()),
    ];
    expected.sort();
    let mut got = all.fingerprints();
    got.sort();
    assert_eq!(got, expected);
    let one = TrustedKeys::load(dir.join("k2.pub")).unwrap();
    assert_eq!(one.fingerprints(), [fingerprint(&key(2).verifying_key())]);
    // Writable by others: they could choose what the device trusts.
    let k2 = dir.join("k2.pub");
    std::fs::set_permissions(&k2, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = TrustedKeys::load(&k2).unwrap_err();
    assert!(err.to_string().contains("permissions 666"), "{err}");
    std::fs::set_permissions(&k2, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = TrustedKeys::load(&dir).unwrap_err();
    assert!(err.to_string().contains("permissions 777"), "{err}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("bad.pub"), "-----BEGIN PUBLIC KEY-----\nAAAA\n").unwrap();
    let err = TrustedKeys::load(&dir).unwrap_err();
    assert!(err.to_string().contains("bad.pub"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    let err = TrustedKeys::load(dir.join("none.pub")).unwrap_err();
    assert!(err.to_string().contains("none.pub"), "{err}");
}

#[test]
fn a_bundle_file_at_the_size_limit_is_read_and_one_past_it_refused_unread() {
    use nap_runtime::limits::MAX_BUNDLE_BYTES;
    let path = std::env::temp_dir().join(format!("nap-huge-{}.nap", std::process::id()));
    // Sparse: the file system holds no data for it, but reading it yields every byte.
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(MAX_BUNDLE_BYTES).unwrap();
    // Read whole, then refused for what it holds: zeros are no bundle.
    assert!(matches!(Bundle::read(&path), Err(BundleError::NotABundle)));
    file.set_len(MAX_BUNDLE_BYTES + 1).unwrap();
    let e = Bundle::read(&path).unwrap_err();
    assert!(
        matches!(e, BundleError::TooLarge { size, limit, .. } if size == limit + 1),
        "{e}"
    );
    assert!(
        e.to_string()
            .ends_with("536870913 bytes, more than the 536870912-byte limit on bundles")
    );
    std::fs::remove_file(&path).unwrap();
}
