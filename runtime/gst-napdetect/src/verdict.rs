//! A frame's verdict as `napdetect` publishes it: the fields of the `nap-verdict` bus message and
//! of the `NapVerdictMeta` on the buffer, which carry the same structure.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `frame` | `guint64` | the frame's number since the element started, from 0 |
//! | `pts` | `guint64` | the buffer's presentation timestamp in ns (`GST_CLOCK_TIME_NONE` if none) |
//! | `ood` | `gboolean` | `score < threshold`: the frame is out of distribution |
//! | `score` | `gdouble` | the deciding method's score (higher = more familiar) |
//! | `threshold` | `gdouble` | the threshold it was decided against |
//! | `top1` | `guint` | the classifier's top class |
//! | `method` | `gchararray` | the deciding method (`NAP-E`, `Energy`, ...) |

use gstreamer as gst;

/// The name of the bus message (an element message from `napdetect`).
pub const MESSAGE: &str = "nap-verdict";

/// The name of the custom meta (`gst_buffer_get_custom_meta(buffer, "NapVerdictMeta")` in C).
pub const META: &str = "NapVerdictMeta";

/// What `napdetect` decided about one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The frame's number since the element started, from 0.
    pub frame: u64,
    /// The buffer's presentation timestamp.
    pub pts: Option<gst::ClockTime>,
    /// The frame is out of distribution: `score < threshold`.
    pub ood: bool,
    /// The deciding method's score (higher = more familiar).
    pub score: f32,
    /// The threshold the verdict was decided against.
    pub threshold: f32,
    /// The classifier's top class.
    pub top1: u32,
    /// The deciding method.
    pub method: String,
}

impl Verdict {
    /// The verdict as a structure named `name` ([`MESSAGE`] for the bus).
    pub fn to_structure(&self, name: &str) -> gst::Structure {
        let mut s = gst::Structure::new_empty(name);
        self.fill(&mut s);
        s
    }

    fn fill(&self, s: &mut gst::StructureRef) {
        s.set("frame", self.frame);
        s.set("pts", self.pts.map_or(u64::MAX, |t| t.nseconds()));
        s.set("ood", self.ood);
        s.set("score", f64::from(self.score));
        s.set("threshold", f64::from(self.threshold));
        s.set("top1", self.top1);
        s.set("method", &self.method);
    }

    /// Reads a verdict back from a message's or a meta's structure.
    pub fn from_structure(s: &gst::StructureRef) -> Result<Verdict, String> {
        let bad = |e: &dyn std::fmt::Display| format!("{} in {s}", e);
        let pts: u64 = s.get("pts").map_err(|e| bad(&e))?;
        Ok(Verdict {
            frame: s.get("frame").map_err(|e| bad(&e))?,
            pts: (pts != u64::MAX).then(|| gst::ClockTime::from_nseconds(pts)),
            ood: s.get("ood").map_err(|e| bad(&e))?,
            score: s.get::<f64>("score").map_err(|e| bad(&e))? as f32,
            threshold: s.get::<f64>("threshold").map_err(|e| bad(&e))? as f32,
            top1: s.get("top1").map_err(|e| bad(&e))?,
            method: s.get("method").map_err(|e| bad(&e))?,
        })
    }

    /// Attaches the verdict to `buffer` as a [`META`].
    pub fn attach(&self, buffer: &mut gst::BufferRef) -> Result<(), String> {
        let mut meta = gst::meta::CustomMeta::add(buffer, META)
            .map_err(|e| format!("adding the {META}: {e}"))?;
        self.fill(meta.mut_structure());
        Ok(())
    }

    /// The verdict `napdetect` attached to `buffer`, if any.
    pub fn from_buffer(buffer: &gst::BufferRef) -> Option<Result<Verdict, String>> {
        let meta = gst::meta::CustomMeta::from_buffer(buffer, META).ok()?;
        Some(Verdict::from_structure(meta.structure()))
    }
}

/// Registers [`META`] with GStreamer (once per process; the plugin does it when it loads).
pub fn register_meta() {
    if !gst::meta::CustomMeta::is_registered(META) {
        gst::meta::CustomMeta::register(META, &[]);
    }
}
