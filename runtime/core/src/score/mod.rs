//! Out-of-distribution scores. Higher always means more in-distribution.
//!
//! Every method is a recipe of three small named steps, so the runtime and the host tool pick
//! methods by name and compute them with the same code:
//!
//! | method | shaping of the pooled feature | logit score      | fused with S_NAP |
//! |--------|-------------------------------|------------------|------------------|
//! | MSP    | none                          | max softmax      | no               |
//! | MaxLogit | none                        | largest logit    | no               |
//! | Energy | none                          | negative energy  | no               |
//! | GEN    | none                          | -generalized entropy of the top 100 softmax probabilities | no |
//! | ReAct  | clip at c                     | negative energy  | no               |
//! | ASH-S/B/P | ASH at percentile p        | negative energy  | no               |
//! | SCALE  | all scaled by ASH-S's factor at p | negative energy | no             |
//! | DICE   | none, head sparsified by ID contributions | negative energy | no     |
//! | ViM    | none                          | negative energy less alpha x the residual off the ID principal subspace | no |
//! | NAP    | -                             | - (S_NAP alone)  | -                |
//! | NAP-E  | none                          | negative energy  | weight w         |
//! | NAP-R  | clip at c                     | negative energy  | weight w         |
//! | NAP-A  | ASH-S at percentile p         | negative energy  | weight w         |
//! | NAP-M  | none                          | max softmax      | weight w         |
//! | NAP-D  | none, DICE's sparsified head  | negative energy  | weight w         |

pub mod dice;
pub mod fusion;
pub mod head;
pub mod logits;
pub mod method;
pub mod shaping;
pub mod vim;

pub use fusion::{FUSION_FLOOR, Fused, fuse};
pub use head::{Head, HeadError, Int8Head, LinearHead};
pub use method::{
    Evidence, FusionWeights, LogitScore, Method, Params, Recipe, Score, ScoreError, Shaping,
    UnknownMethod, Workspace,
};
