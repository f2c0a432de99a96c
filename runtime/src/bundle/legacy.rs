//! Manifests of bundle format versions 2 to 6, read into today's [`Manifest`]. Versions 2 to 6
//! predate ViM's statistics, versions 2 to 5 the neck (their heads are one dense layer), versions 2 to 4 NAP-D's fusion weight and
//! DICE's statistics, and versions 2 and 3 the calibrated TPR: those take their defaults (the
//! paper's weight, no DICE, no TPR).

use super::manifest::{BackboneSpec, HeadSpec, InputSpec, Manifest, PrePoolSpec, ScorerConfig};
use nap_core::score::{FusionWeights, Method, Params};
use serde::Deserialize;

/// A version 2 to 4 manifest as postcard encoded it: today's fields in today's order, up to the
/// ones added since.
#[derive(Deserialize)]
struct ManifestV4 {
    source: String,
    backbone: BackboneSpec,
    input: InputSpec,
    pre_pool: PrePoolSpec,
    head: HeadSpec,
    scorer: ScorerV4,
}

#[derive(Deserialize)]
struct ScorerV4 {
    method: Method,
    params: ParamsV4,
    threshold: Option<f32>,
    tpr: Option<f32>,
}

#[derive(Deserialize)]
struct ParamsV4 {
    eps: f32,
    react_clip: Option<f32>,
    ash_percentile: f32,
    weights: WeightsV4,
}

#[derive(Deserialize)]
struct WeightsV4 {
    nap_e: f32,
    nap_r: f32,
    nap_a: f32,
    nap_m: f32,
}

/// Decodes the manifest of a bundle of format `version` (2 to 6).
pub(super) fn read_manifest(bytes: &[u8], version: u16) -> Result<Manifest, postcard::Error> {
    if version >= 5 {
        // Version 6 ends before `vim`, version 5 before `neck` too: a zero byte (`None`) for
        // each missing field completes them.
        let missing: &[u8] = if version == 6 { &[0] } else { &[0, 0] };
        return postcard::from_bytes(&[bytes, missing].concat());
    }
    let old: ManifestV4 = if version >= 4 {
        postcard::from_bytes(bytes)?
    } else {
        // Versions 2 and 3 end before `scorer.tpr`: one zero byte (`None`) appended completes them.
        postcard::from_bytes(&[bytes, &[0]].concat())?
    };
    let p = old.scorer.params;
    let w = p.weights;
    Ok(Manifest {
        source: old.source,
        backbone: old.backbone,
        input: old.input,
        pre_pool: old.pre_pool,
        head: old.head,
        scorer: ScorerConfig {
            method: old.scorer.method,
            params: Params {
                eps: p.eps,
                react_clip: p.react_clip,
                ash_percentile: p.ash_percentile,
                weights: FusionWeights {
                    nap_e: w.nap_e,
                    nap_r: w.nap_r,
                    nap_a: w.nap_a,
                    nap_m: w.nap_m,
                    ..FusionWeights::default()
                },
            },
            threshold: old.scorer.threshold,
            tpr: old.scorer.tpr,
        },
        dice: None,
        neck: None,
        vim: None,
    })
}
