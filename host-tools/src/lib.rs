//! Host-side tooling for the NAP runtime.

pub mod metrics;
