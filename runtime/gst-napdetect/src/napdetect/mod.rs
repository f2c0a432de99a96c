//! The `napdetect` element: a pass-through video filter that scores every frame.

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;

mod imp;
mod method;

glib::wrapper! {
    /// The `napdetect` element.
    pub struct NapDetect(ObjectSubclass<imp::NapDetect>)
        @extends gstreamer_video::VideoFilter, gstreamer_base::BaseTransform, gst::Element, gst::Object;
}

/// Registers `napdetect` with the plugin.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "napdetect",
        gst::Rank::NONE,
        NapDetect::static_type(),
    )
}
