//! `napdetect`, the GStreamer element of the NAP runtime: put it in a video pipeline and each
//! frame is scored with a bundle; the verdict goes out as a `nap-verdict` message on the bus and
//! travels with the buffer as a `NapVerdictMeta` ([`verdict`]), and `drop-ood=true` keeps the
//! out-of-distribution frames from going further.
//!
//! The element is built with the cargo feature `gstreamer` (GStreamer's development packages);
//! without it the crate is empty, so that the workspace needs no GStreamer.
#![cfg(feature = "gstreamer")]

use gstreamer as gst;
use gstreamer::glib;

mod napdetect;
pub mod verdict;

pub use verdict::Verdict;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    verdict::register_meta();
    napdetect::register(plugin)
}

/// The plugin's descriptor, which GStreamer finds in `libgstnapdetect.so`, and
/// `plugin_register_static()` for programs that link the element in instead.
#[allow(missing_docs)]
pub mod plugin {
    use super::{gst, plugin_init};

    // GStreamer accepts a plugin license from a fixed list that has no Apache-2.0 (the crate's).
    gst::plugin_define!(
        napdetect,
        env!("CARGO_PKG_DESCRIPTION"),
        plugin_init,
        env!("CARGO_PKG_VERSION"),
        "unknown",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_NAME"),
        // No public home yet: GStreamer's own words for that.
        "Unknown package origin"
    );
}
