//! `gst:PIPELINE`: frames from a GStreamer pipeline (cargo feature `gstreamer`), written as for
//! `gst-launch-1.0`: libcamera and Argus CSI cameras, RTSP cameras, video files, anything
//! GStreamer reads.
//!
//! The pipeline ends in an `appsink`: the user's own (its properties kept, its caps narrowed to
//! the formats napd reads), or one napd appends behind a `videoconvert` when the description has
//! none. The appended sink does not sync to the clock, so a file is read as fast as the workers
//! score it, like `dir:`; a live pipeline (a camera) paces itself and napd's queue drops the
//! oldest frames when the workers fall behind. End of stream ends the source; an error on the
//! pipeline's bus fails it with GStreamer's message. An `rtsp://` camera ([`GstSource::rtsp`])
//! is rebuilt instead, whatever stopped it. Conversion to RGB happens on the workers, as for
//! `raw:` frames.

use super::pixel::PixelFormat;
use super::{Frame, Pixels, Source, SourceEvent};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSink;
use gstreamer_video::{VideoFormat, VideoFrameExt, VideoFrameRef, VideoInfo};
use std::time::{Duration, Instant};

/// The raw formats napd reads from a pipeline, as GStreamer caps, in order of preference.
pub const CAPS: &str = "video/x-raw, format=(string){ RGB, BGR, GRAY8, YUY2, NV12 }";

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

/// Frames from a GStreamer pipeline; for an RTSP camera, rebuilt whenever it is lost.
pub struct GstSource {
    /// What the user wrote, for messages.
    spec: String,
    /// The description that runs, napd's appsink appended where needed.
    description: String,
    /// `None` while a lost source waits to reconnect.
    running: Option<Running>,
    /// A lost source's state from the loss until its first frame after reconnecting.
    lost: bool,
    /// That first frame, held while [`SourceEvent::Resumed`] goes out.
    pending: Option<gst::Sample>,
    live: bool,
    index: u64,
    max_frame_bytes: usize,
    /// For sources that come back (RTSP cameras): the wait between attempts to reconnect.
    reconnect: Option<Duration>,
}

impl GstSource {
    /// Builds the pipeline `description` names and starts it; errors name GStreamer's cause
    /// (a description that does not parse, a missing element, caps that cannot be negotiated).
    pub fn open(description: &str, max_frame_bytes: usize) -> Result<GstSource, String> {
        Self::start(
            format!("gst:{description}"),
            description,
            max_frame_bytes,
            None,
        )
    }

    /// An RTSP camera at `url` (rtspsrc: UDP, falling back to TCP; any codec decodebin knows).
    /// It must answer now; once running, a camera never ends: an error, a lost connection or an
    /// end of stream makes it [`SourceEvent::Lost`], and it is tried again every
    /// `options.reconnect` until frames come again ([`SourceEvent::Resumed`]).
    pub fn rtsp(url: &str, options: &super::SourceOptions) -> Result<GstSource, String> {
        let description = format!(
            "rtspsrc location=\"{url}\" latency={} ! decodebin",
            options.rtsp_latency.as_millis()
        );
        let reconnect = Some(options.reconnect);
        let mut source = Self::start(
            url.to_string(),
            &description,
            options.max_frame_bytes,
            reconnect,
        )?;
        // rtspsrc plays before it has connected: only a first frame shows the camera answers.
        let running = source.running.as_ref().expect("just started");
        let first = running.first_sample().map_err(|e| format!("{url}: {e}"))?;
        source.pending = Some(first);
        Ok(source)
    }

    fn start(
        spec: String,
        description: &str,
        max_frame_bytes: usize,
        reconnect: Option<Duration>,
    ) -> Result<GstSource, String> {
        gst::init().map_err(|e| format!("GStreamer: {e}"))?;
        let fail = |e: &dyn std::fmt::Display| format!("{spec}: {e}");
        // A description that ends in caps (`... ! video/x-raw,width=640`) only parses with a
        // sink behind it, so a failed parse is tried again with napd's sink appended.
        let appended = format!("{description} ! videoconvert ! appsink name=napd sync=false");
        let description = match parse(description) {
            Ok(pipeline) => match appsink(&pipeline) {
                Ok(_) => description.to_string(),
                Err(None) => appended,
                Err(Some(e)) => return Err(fail(&e)),
            },
            Err(e) => {
                parse(&appended).map_err(|_| fail(&e))?;
                appended
            }
        };
        let running = Running::start(&description).map_err(|e| fail(&e))?;
        Ok(GstSource {
            spec,
            description,
            live: running.live,
            running: Some(running),
            lost: false,
            pending: None,
            index: 0,
            max_frame_bytes,
            reconnect,
        })
    }

    fn frame(&mut self, sample: &gst::Sample) -> SourceEvent {
        let captured = Instant::now();
        let name = format!("gst:{}", self.index);
        self.index += 1;
        let pts = sample
            .buffer()
            .and_then(|b| b.pts())
            .map(|t| Duration::from_nanos(t.nseconds()));
        match frame_pixels(sample, self.max_frame_bytes) {
            Ok(pixels) => SourceEvent::Frame(Frame {
                name,
                captured,
                pts,
                pixels,
            }),
            Err(error) => SourceEvent::Bad { name, error },
        }
    }
}

/// A pipeline playing, and the appsink frames leave it through; stopped when dropped.
struct Running {
    pipeline: gst::Pipeline,
    sink: AppSink,
    live: bool,
}

impl Running {
    /// Builds the pipeline of a description that ends in an appsink, sets it playing and waits
    /// until it runs.
    fn start(description: &str) -> Result<Running, String> {
        let pipeline = parse(description)?;
        let sink = appsink(&pipeline).map_err(|e| e.unwrap_or_else(|| "no appsink".into()))?;
        sink.set_caps(Some(&CAPS.parse::<gst::Caps>().expect("napd's caps parse")));
        // Back-pressure instead of silent drops: the source thread pulls continuously, and
        // napd's own queue drops (and counts) when a live camera outruns the workers.
        sink.set_max_buffers(4);
        sink.set_drop(false);
        let mut running = Running {
            pipeline,
            sink,
            live: false,
        };
        let changed = running.pipeline.set_state(gst::State::Playing);
        if changed.is_err() {
            return Err(running.start_error());
        }
        running.live = changed == Ok(gst::StateChangeSuccess::NoPreroll);
        if changed == Ok(gst::StateChangeSuccess::Async) {
            // Prerolling: done when the pipeline says so, failed at its first error.
            let bus = running.pipeline.bus().ok_or("a pipeline without a bus")?;
            let wait = gst::ClockTime::from_nseconds(START_TIMEOUT.as_nanos() as u64);
            let types = [gst::MessageType::AsyncDone, gst::MessageType::Error];
            match bus
                .timed_pop_filtered(wait, &types)
                .as_ref()
                .map(|m| m.view())
            {
                Some(gst::MessageView::AsyncDone(_)) => {}
                Some(gst::MessageView::Error(e)) => return Err(describe(e)),
                _ => return Err(running.timed_out("start")),
            }
        }
        Ok(running)
    }

    /// The first frame of a pipeline that just started, or why none came.
    fn first_sample(&self) -> Result<gst::Sample, String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let poll = gst::ClockTime::from_nseconds(POLL.as_nanos() as u64);
        while Instant::now() < deadline {
            if let Some(sample) = self.sink.try_pull_sample(poll) {
                return Ok(sample);
            }
            if let Some(error) = self.bus_error(Duration::ZERO) {
                return Err(error);
            }
            if self.sink.is_eos() {
                return Err("the stream ended before its first frame".into());
            }
        }
        Err(self.timed_out("send a first frame"))
    }

    fn timed_out(&self, what: &str) -> String {
        format!(
            "the pipeline did not {what} within {} s",
            START_TIMEOUT.as_secs()
        )
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
                return Some(describe(e));
            }
        }
        None
    }
}

/// An error message from the bus: the element, GStreamer's text and its debug detail.
fn describe(e: &gst::message::Error) -> String {
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
    format!("{from}{}{debug}{hint}", e.error())
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
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
    let buffer = sample.buffer().ok_or("a sample without a buffer")?;
    buffer_pixels(buffer, &info, max_frame_bytes)
}

/// The pixels of a video buffer laid out as `info` says, repacked without row padding; an error
/// for a format napd does not read ([`CAPS`] lists those it does) or a frame above
/// `max_frame_bytes`.
pub fn buffer_pixels(
    buffer: &gst::BufferRef,
    info: &VideoInfo,
    max_frame_bytes: usize,
) -> Result<Pixels, String> {
    let format = pixel_format(info.format())
        .ok_or_else(|| format!("napd does not read {:?} frames", info.format()))?;
    let (width, height) = (info.width(), info.height());
    let len = format.frame_len(width, height).map_err(|e| e.to_string())?;
    if len > max_frame_bytes {
        return Err(format!(
            "{width}x{height} {format} frames are {len} bytes, above the limit of {max_frame_bytes}"
        ));
    }
    let frame = VideoFrameRef::from_buffer_ref_readable(buffer, info)
        .map_err(|e| format!("mapping the buffer: {e}"))?;
    let mut data = Vec::with_capacity(len);
    for (plane, (row, rows)) in planes(format, width, height).enumerate() {
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
fn planes(format: PixelFormat, width: u32, height: u32) -> impl Iterator<Item = (usize, usize)> {
    let (w, h) = (width as usize, height as usize);
    let (first, chroma) = match format {
        PixelFormat::Rgb8 | PixelFormat::Bgr8 => ((w * 3, h), None),
        PixelFormat::Gray8 => ((w, h), None),
        PixelFormat::Yuyv => ((w * 2, h), None),
        PixelFormat::Nv12 => ((w, h), Some((w, h / 2))),
    };
    std::iter::once(first).chain(chroma)
}

impl Source for GstSource {
    fn next_event(&mut self) -> SourceEvent {
        let poll = gst::ClockTime::from_nseconds(POLL.as_nanos() as u64);
        loop {
            if let Some(sample) = self.pending.take() {
                return self.frame(&sample);
            }
            let Some(running) = &self.running else {
                // Lost: try again after the wait. A pipeline that starts is not yet a camera
                // that is back (rtspsrc reports a refused connection after it starts playing).
                std::thread::sleep(self.reconnect.unwrap_or(POLL));
                self.running = Running::start(&self.description).ok();
                continue;
            };
            if let Some(sample) = running.sink.try_pull_sample(poll) {
                if std::mem::take(&mut self.lost) {
                    self.pending = Some(sample);
                    return SourceEvent::Resumed;
                }
                return self.frame(&sample);
            }
            let error = running.bus_error(Duration::ZERO);
            if error.is_none() && !running.sink.is_eos() {
                continue;
            }
            if self.reconnect.is_none() {
                return match error {
                    Some(e) => SourceEvent::Failed(format!("{}: {e}", self.spec)),
                    None => SourceEvent::End,
                };
            }
            self.running = None;
            if !std::mem::replace(&mut self.lost, true) {
                let why = error.unwrap_or_else(|| "end of stream".into());
                return SourceEvent::Lost(format!("{}: {why}", self.spec));
            }
        }
    }

    fn is_live(&self) -> bool {
        self.live
    }
}
