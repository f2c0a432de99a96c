//! A real RTSP server for napd's `rtsp://` tests: gst-rtsp-server serving an MJPEG AVI file at
//! `rtsp://127.0.0.1:PORT/cam`, from its first frame for every client, then end of stream.
//! Prints `ready` once it listens; stops when killed.
//!
//! `rtsp-serve PORT FILE.avi`

use gstreamer as gst;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_rtsp_server::{RTSPMediaFactory, RTSPServer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(file)) = (args.next(), args.next()) else {
        return Err("usage: rtsp-serve PORT FILE.avi".into());
    };
    gst::init()?;
    let main_loop = gst::glib::MainLoop::new(None, false);
    let server = RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&port);
    let factory = RTSPMediaFactory::new();
    factory.set_launch(&format!(
        "( filesrc location=\"{file}\" ! avidemux ! rtpjpegpay name=pay0 pt=26 )"
    ));
    server
        .mount_points()
        .ok_or("no mount points")?
        .add_factory("/cam", factory);
    let _source = server.attach(None)?;
    println!("ready");
    main_loop.run();
    Ok(())
}
