//! `tcp:HOST:PORT`: the link over TCP, to a peer that listens (tests, a networked controller,
//! a serial-to-network bridge).

use super::{Connection, Connector};
use std::io;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long one connection attempt, and one blocked write, may take.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Connects to one `HOST:PORT`, resolving the name on every attempt.
pub struct TcpConnector {
    addr: String,
}

impl TcpConnector {
    /// A connector for `addr` (`HOST:PORT`).
    pub fn new(addr: &str) -> Self {
        TcpConnector {
            addr: addr.to_string(),
        }
    }
}

impl Connector for TcpConnector {
    fn connect(&mut self) -> io::Result<Connection> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
        for addr in self.addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, TIMEOUT) {
                Ok(stream) => {
                    // Frames are tiny and latency matters more than packet count.
                    stream.set_nodelay(true)?;
                    // A peer that stops reading must not stall heartbeats forever.
                    stream.set_write_timeout(Some(TIMEOUT))?;
                    let reader = stream.try_clone()?;
                    let closer = stream.try_clone()?;
                    return Ok(Connection {
                        writer: Box::new(stream),
                        reader: Box::new(reader),
                        close: Box::new(move || {
                            let _ = closer.shutdown(Shutdown::Both);
                        }),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn describe(&self) -> String {
        format!("tcp:{}", self.addr)
    }
}
