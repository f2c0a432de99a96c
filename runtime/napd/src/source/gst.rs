//! `gst:PIPELINE`: frames from a GStreamer pipeline (cargo feature `gstreamer`), written as for
//! `gst-launch-1.0`: libcamera and Argus CSI cameras, RTSP cameras, video files, anything
//! GStreamer reads.
//!
//! The pipeline ends in an `appsink`: the user's own (its properties kept, its caps narrowed to
//! the formats napd reads), or one napd appends behind a `videoconvert` when the description has
//! none. The appended sink does not sync to the clock, so a file is read as fast as the workers
//! score it, like `dir:`; a live pipeline (a camera) paces itself and napd's queue drops the
//! oldest frames when the workers fall behind. End of stream ends the source; an error on the
//! pipeline's bus fails it with GStreamer's message. Conversion to RGB happens on the workers,
//! as for `raw:` frames.

use super::pixel::PixelFormat;
use super::{Frame, Pixels, Source, SourceEvent};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSink;
use gstreamer_video::{VideoFormat, VideoFrameExt, VideoFrameRef, VideoInfo};
use std::time::{Duration, Instant};

/// The raw formats napd reads from a pipeline, as GStreamer caps, in order of preference.
const CAPS: &str = "video/x-raw, format=(string){ RGB, BGR, GRAY8, YUY2, NV12 }";

/// How long the pipeline gets to start (preroll, caps negotiation, an RTSP handshake).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a waiting source looks at the bus for errors.
const POLL: Duration = Duration::from_millis(100);

fn pixel_format(format: VideoFormat) -> Option<PixelFormat> {
    Some(match format {
        VideoFormat::Rgb => PixelFormat::Rgb8,
        VideoFormat::Bgr => PixelFormat::Bgr8,
        VideoFormat::Gray8 => PixelFormat::Gray8,
        VideoFormat::Yuy2 => PixelFormat::Yuyv,
        VideoFormat::Nv12 => PixelFormat::Nv12,
        _ => return None,
    })
}

/// A running GStreamer pipeline and the appsink frames leave it through.
pub struct GstSource {
    pipeline: gst::Pipeline,
    sink: AppSink,
    live: bool,
    index: u64,
    max_frame_bytes: usize,
}

impl GstSource {
    /// Builds the pipeline `description` names and starts it; errors name GStreamer's cause
    /// (a description that does not parse, a missing element, caps that cannot be negotiated).
    pub fn open(description: &str, max_frame_bytes: usize) -> Result<GstSource, String> {
        gst::init().map_err(|e| format!("GStreamer: {e}"))?;
        let fail = |e: &dyn std::fmt::Display| format!("gst:{description}: {e}");
        // A description that ends in caps (`... ! video/x-raw,width=640`) only parses with a
        // sink behind it, so a failed parse is tried again with napd's sink appended.
        let appended = format!("{description} ! videoconvert ! appsink name=napd sync=false");
        let (pipeline, sink) = match parse(description) {
            Ok(pipeline) => match appsink(&pipeline) {
                Ok(sink) => (pipeline, sink),
                Err(None) => with_appended_sink(&appended).map_err(|e| fail(&e))?,
                Err(Some(e)) => return Err(fail(&e)),
            },
            Err(e) => with_appended_sink(&appended).map_err(|_| fail(&e))?,
        };
        sink.set_caps(Some(&CAPS.parse::<gst::Caps>().expect("napd's caps parse")));
        // Back-pressure instead of silent drops: the source thread pulls continuously, and
        // napd's own queue drops (and counts) when a live camera outruns the workers.
        sink.set_max_buffers(4);
        sink.set_drop(false);

        let mut source = GstSource {
            pipeline,
            sink,
            live: false,
            index: 0,
            max_frame_bytes,
        };
        source.live = source.start().map_err(|e| fail(&e))?;
        Ok(source)
    }

    /// Sets the pipeline playing and waits until it runs; true for a live pipeline.
    fn start(&self) -> Result<bool, String> {
        let changed = self.pipeline.set_state(gst::State::Playing);
        if changed.is_err() {
            return Err(self.start_error());
        }
        let (result, _, _) = self.pipeline.state(gst::ClockTime::from_nseconds(
            START_TIMEOUT.as_nanos() as u64,
        ));
        match result {
            Ok(gst::StateChangeSuccess::NoPreroll) => Ok(true),
            Ok(gst::StateChangeSuccess::Async) => Err(format!(
                "the pipeline did not start within {} s",
                START_TIMEOUT.as_secs()
            )),
            Ok(_) => Ok(changed == Ok(gst::StateChangeSuccess::NoPreroll)),
            Err(_) => Err(self.start_error()),
        }
    }

    /// Why the pipeline failed to start: the streaming thread may post its error a moment after
    /// the state change failed.
    fn start_error(&self) -> String {
        self.bus_error(Duration::from_secs(2))
            .unwrap_or_else(|| "the pipeline cannot start".into())
    }

    /// The first error posted on the bus within `wait`, with GStreamer's debug detail when it
    /// has some.
    fn bus_error(&self, wait: Duration) -> Option<String> {
        let bus = self.pipeline.bus()?;
        let wait = gst::ClockTime::from_nseconds(wait.as_nanos() as u64);
        while let Some(message) = bus.timed_pop_filtered(wait, &[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = message.view() {
                let from = e
                    .src()
                    .map(|s| format!("{}: ", s.name()))
                    .unwrap_or_default();
                let debug = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                // GStreamer words a caps mismatch as an "internal data stream error".
                let hint = if debug.contains("not-negotiated") {
                    "; the caps could not be negotiated: napd reads RGB, BGR, GRAY8, YUY2 and NV12, and a videoconvert before the appsink converts to them"
                } else {
                    ""
                };
                return Some(format!("{from}{}{debug}{hint}", e.error()));
            }
        }
        None
    }

    fn frame(&mut self, sample: &gst::Sample) -> SourceEvent {
        let captured = Instant::now();
        let name = format!("gst:{}", self.index);
        self.index += 1;
        match frame_pixels(sample, self.max_frame_bytes) {
            Ok(pixels) => SourceEvent::Frame(Frame {
                name,
                captured,
                pixels,
            }),
            Err(error) => SourceEvent::Bad { name, error },
        }
    }
}

/// The pipeline of a description that ends in napd's own appsink.
fn with_appended_sink(description: &str) -> Result<(gst::Pipeline, AppSink), String> {
    let pipeline = parse(description)?;
    let sink = appsink(&pipeline).map_err(|e| e.unwrap_or_else(|| "no appsink".into()))?;
    Ok((pipeline, sink))
}

/// Parses a `gst-launch` description into a pipeline.
fn parse(description: &str) -> Result<gst::Pipeline, String> {
    let element = gst::parse::launch(description).map_err(|e| e.to_string())?;
    match element.downcast::<gst::Pipeline>() {
        Ok(pipeline) => Ok(pipeline),
        // A single element: wrap it so it has a bus and a clock like any pipeline.
        Err(element) => {
            let pipeline = gst::Pipeline::new();
            pipeline.add(&element).map_err(|e| e.to_string())?;
            Ok(pipeline)
        }
    }
}

/// The pipeline's one appsink: `Err(None)` when it has none, an error when it has several or
/// its last sink is something else.
fn appsink(pipeline: &gst::Pipeline) -> Result<AppSink, Option<String>> {
    let sinks: Vec<gst::Element> = pipeline.iterate_sinks().into_iter().flatten().collect();
    let appsinks: Vec<AppSink> = sinks
        .iter()
        .filter_map(|s| s.clone().downcast::<AppSink>().ok())
        .collect();
    match (appsinks.len(), sinks.len()) {
        (0, 0) => Err(None),
        (0, _) => Err(Some(format!(
            "the pipeline ends in {}, not an appsink (leave the sink out and napd appends its own)",
            sinks[0].name()
        ))),
        (1, _) => Ok(appsinks[0].clone()),
        (n, _) => Err(Some(format!(
            "the pipeline has {n} appsinks, napd reads one"
        ))),
    }
}

/// The sample's pixels, repacked without row padding.
fn frame_pixels(sample: &gst::Sample, max_frame_bytes: usize) -> Result<Pixels, String> {
    let caps = sample.caps().ok_or("a sample without caps")?;
    let info = VideoInfo::from_caps(caps).map_err(|e| format!("caps {caps}: {e}"))?;
    let format = pixel_format(info.format())
        .ok_or_else(|| format!("napd does not read {:?} frames", info.format()))?;
    let (width, height) = (info.width(), info.height());
    let len = format.frame_len(width, height).map_err(|e| e.to_string())?;
    if len > max_frame_bytes {
        return Err(format!(
            "{width}x{height} {format} frames are {len} bytes, above the limit of {max_frame_bytes}"
        ));
    }
    let buffer = sample.buffer().ok_or("a sample without a buffer")?;
    let frame = VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|e| format!("mapping the buffer: {e}"))?;
    let mut data = Vec::with_capacity(len);
    for (plane, (row, rows)) in planes(format, width, height).into_iter().enumerate() {
        let bytes = frame
            .plane_data(plane as u32)
            .map_err(|e| format!("plane {plane}: {e}"))?;
        let stride = usize::try_from(frame.plane_stride()[plane]).unwrap_or(0);
        for r in 0..rows {
            let line = bytes.get(r * stride..r * stride + row).ok_or_else(|| {
                format!("plane {plane} is shorter than {rows} rows of {row} bytes")
            })?;
            data.extend_from_slice(line);
        }
    }
    Ok(Pixels::Raw {
        width,
        height,
        format,
        data,
    })
}

/// Bytes per row and rows of each plane of a packed `format` frame.
fn planes(format: PixelFormat, width: u32, height: u32) -> Vec<(usize, usize)> {
    let (w, h) = (width as usize, height as usize);
    match format {
        PixelFormat::Rgb8 | PixelFormat::Bgr8 => vec![(w * 3, h)],
        PixelFormat::Gray8 => vec![(w, h)],
        PixelFormat::Yuyv => vec![(w * 2, h)],
        PixelFormat::Nv12 => vec![(w, h), (w, h / 2)],
    }
}

impl Source for GstSource {
    fn next_event(&mut self) -> SourceEvent {
        loop {
            if let Some(sample) = self
                .sink
                .try_pull_sample(gst::ClockTime::from_nseconds(POLL.as_nanos() as u64))
            {
                return self.frame(&sample);
            }
            if let Some(error) = self.bus_error(Duration::ZERO) {
                return SourceEvent::Failed(format!("gst: {error}"));
            }
            if self.sink.is_eos() {
                return SourceEvent::End;
            }
        }
    }

    fn is_live(&self) -> bool {
        self.live
    }
}

impl Drop for GstSource {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
