//! Evaluation of OOD detection on image sets, from per-image features: what `napctl eval`
//! reports and what `napctl calibrate` chooses from.
//!
//! - [`features`]: what one frame gives every method (per-channel mean and max).
//! - [`cache`]: those features on disk, per bundle and image content.
//! - [`extract`]: the features of whole image sets on all cores, through the cache; the
//!   pseudo-OOD sets made with [`corrupt`]'s corruptions.
//! - [`Components`]: every method's score of one frame; [`evaluate`] and [`sweep_table`]: the
//!   paper's Table 2 and Table 5 from them, with [`metrics`]' FPR95, AUROC and AUPR.
//! - [`plots`]: the figures.

pub mod cache;
mod components;
pub mod corrupt;
pub mod extract;
pub mod features;
pub mod metrics;
pub mod plots;
mod report;

pub use components::{Components, ComponentsError, EVAL_METHODS, FUSED_METHODS, HostHead, scores};
pub use report::{
    AtThreshold, EvalReport, Flagged, MethodMetrics, OodResult, ScoredSet, SetInfo, evaluate,
    mean_fpr_auroc, sweep_table,
};
