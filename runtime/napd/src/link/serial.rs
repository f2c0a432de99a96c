//! `serial:/dev/ttyX@BAUD`: the link over a UART, 8N1, no flow control.

use super::{Connection, Connector};
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Read timeout: how often the reader looks whether it should stop.
const POLL: Duration = Duration::from_millis(50);

/// Opens one serial device (again after it vanished, e.g. a USB adapter unplugged).
pub struct SerialConnector {
    path: String,
    baud: u32,
}

impl SerialConnector {
    /// A connector for the device at `path`.
    pub fn new(path: &str, baud: u32) -> Self {
        SerialConnector {
            path: path.to_string(),
            baud,
        }
    }
}

/// A port reader that reports end of stream once told to stop.
struct StoppableReader<R> {
    inner: R,
    stop: Arc<AtomicBool>,
}

impl<R: Read> Read for StoppableReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Ok(0);
        }
        self.inner.read(buf)
    }
}

impl Connector for SerialConnector {
    fn connect(&mut self) -> io::Result<Connection> {
        let port = serialport::new(&self.path, self.baud)
            .data_bits(serialport::DataBits::Eight)
            .parity(serialport::Parity::None)
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .timeout(POLL)
            .open()
            .map_err(io::Error::from)?;
        let reader = port.try_clone().map_err(io::Error::from)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        Ok(Connection {
            writer: Box::new(port),
            reader: Box::new(StoppableReader {
                inner: reader,
                stop,
            }),
            close: Box::new(move || flag.store(true, Ordering::Relaxed)),
        })
    }

    fn describe(&self) -> String {
        format!("serial:{}@{}", self.path, self.baud)
    }
}
