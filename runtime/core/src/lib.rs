//! The NAP runtime's core: everything that must compute the same on the host, the edge board and the
//! sensor controller, with no operating system and no allocator.
//!
//! - [`depthwise`]: the backbone's depthwise 3x3 convolutions, the part a generic engine runs slowest.
//! - [`pointwise`]: the backbone's 1x1 convolutions, most of its float work.
//! - [`reduce`]: one pass over the pre-pool activation giving per-channel max and sum.
//! - [`gemv`]: the classifier head's product over int8 weight rows.
//! - [`nap`]: NAP itself: S_NAP and the pooled feature from those reductions (u8 or f32
//!   activations).
//! - [`score`]: the OOD scoring methods (MSP, MaxLogit, Energy, GEN, ReAct, ASH, SCALE, NAP
//!   and its fusions), by name.
//! - [`protocol`]: the wire format between the runtime and the sensor controller.
#![no_std]

#[cfg(any(feature = "std", test))]
extern crate std;

pub mod depthwise;
pub mod gemv;
pub mod int8;
pub mod isa;
pub mod nap;
pub mod pointwise;
pub mod protocol;
pub mod reduce;
pub mod score;
