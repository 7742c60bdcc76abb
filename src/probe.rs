//! `consul-dns-bridge probe [ADDR]`: asks a running bridge's `/health` (default
//! `127.0.0.1:8654`) and says whether it answered 200, for container health checks in an image
//! that holds no shell, curl or wget.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// How long the probe waits for the connection and for the answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `Ok` when `/health` at `addr` answers `200`; else why not, in one line.
pub fn probe_health(addr: &str) -> Result<(), String> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("not an address (IP:PORT): '{addr}'"))?;
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(PROBE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(PROBE_TIMEOUT));
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("cannot ask {addr}: {e}"))?;
    let mut head = [0u8; 64];
    let read = stream
        .read(&mut head)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    let status = String::from_utf8_lossy(&head[..read]);
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        other => Err(format!(
            "{addr}/health answered {}",
            other.unwrap_or("nothing")
        )),
    }
}
