//! A Frame Streams writer (the transport of dnstap, as `fstrm` speaks it): a thread of its own
//! connects to the collector's Unix or TCP socket, does the bidirectional handshake (READY,
//! ACCEPT, START), writes each message as a data frame, and on shutdown sends STOP and waits
//! for FINISH. Messages wait in a bounded queue; when it is full, or while the collector is
//! away, they are dropped and counted. A lost collector is reconnected to every second.

use std::{
    io::{self, BufWriter, Read, Write},
    net::TcpStream,
    os::unix::net::UnixStream,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel},
    },
    time::Duration,
};

use tracing::{info, warn};

use crate::config::DnstapTarget;

const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";
const CONTROL_ACCEPT: u32 = 0x01;
const CONTROL_START: u32 = 0x02;
const CONTROL_STOP: u32 = 0x03;
const CONTROL_READY: u32 = 0x04;
const CONTROL_FINISH: u32 = 0x05;
const FIELD_CONTENT_TYPE: u32 = 0x01;
/// How long the collector has for each step of the handshake, and between reconnections.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// A control frame longer than this is not one fstrm sends.
const MAX_CONTROL_LEN: usize = 512;

/// The answer paths' end of the writer; cheap to clone.
#[derive(Clone)]
pub(crate) struct FrameWriter {
    queue: SyncSender<Vec<u8>>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    written: AtomicU64,
    dropped: AtomicU64,
}

impl FrameWriter {
    /// Starts the writer thread for `target`, with room for `capacity` waiting messages.
    pub(crate) fn start(target: DnstapTarget, capacity: usize) -> Self {
        let (queue, frames) = sync_channel(capacity.max(1));
        let counts = Arc::new(Counts::default());
        let writer_counts = counts.clone();
        let spawned = std::thread::Builder::new()
            .name("dnstap".into())
            .spawn(move || write_frames(&target, &frames, &writer_counts));
        if let Err(error) = spawned {
            warn!(%error, "cannot start the dnstap writer; dnstap messages are dropped");
        }
        Self { queue, counts }
    }

    /// Queues `frame`, or drops (and counts) it when the queue is full.
    pub(crate) fn send(&self, frame: Vec<u8>) {
        match self.queue.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Frames written and dropped since start.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.counts.written.load(Ordering::Relaxed),
            self.counts.dropped.load(Ordering::Relaxed),
        )
    }
}

/// A connected collector.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn connect(target: &DnstapTarget) -> io::Result<Box<dyn Stream>> {
    match target {
        DnstapTarget::Unix(path) => {
            let stream = UnixStream::connect(path)?;
            stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
            stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
            Ok(Box::new(stream))
        }
        DnstapTarget::Tcp(addr) => {
            let stream = TcpStream::connect_timeout(addr, HANDSHAKE_TIMEOUT)?;
            stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
            stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream))
        }
    }
}

/// Connects and writes frames until the answer paths are gone; reconnects when the collector
/// goes away. Messages that arrive while there is no collector are dropped (counted): old
/// traffic is worth less than keeping the queue for what comes after it returns.
fn write_frames(target: &DnstapTarget, frames: &Receiver<Vec<u8>>, counts: &Counts) {
    // Logged once each way: when the collector is away (at start too), when it is back.
    let mut away = false;
    loop {
        let mut stream = match connect(target).and_then(|mut s| handshake(&mut s).map(|()| s)) {
            Ok(stream) => stream,
            Err(error) => {
                if !away {
                    warn!(
                        %target,
                        %error,
                        "no dnstap collector; messages are dropped, connecting every second"
                    );
                    away = true;
                }
                let until = std::time::Instant::now() + RECONNECT_EVERY;
                loop {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    match frames.recv_timeout(left) {
                        Ok(_) => {
                            counts.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                continue;
            }
        };
        info!(%target, "dnstap collector connected");
        away = false;
        match write_connected(&mut stream, frames, counts) {
            Ok(()) => {
                let _ = stop(&mut stream);
                return;
            }
            Err(error) => warn!(%target, %error, "dnstap collector write failed"),
        }
    }
}

/// Writes frames to a connected collector; `Ok` when the answer paths are gone.
fn write_connected(
    stream: &mut Box<dyn Stream>,
    frames: &Receiver<Vec<u8>>,
    counts: &Counts,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(64 * 1024, stream);
    loop {
        // Flushed whenever the queue runs dry, so a quiet server's messages do not wait.
        let frame = match frames.try_recv() {
            Ok(frame) => frame,
            Err(_) => {
                out.flush()?;
                match frames.recv() {
                    Ok(frame) => frame,
                    Err(_) => {
                        out.flush()?;
                        return Ok(());
                    }
                }
            }
        };
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let written = out
            .write_all(&len.to_be_bytes())
            .and_then(|()| out.write_all(&frame));
        if let Err(error) = written {
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(error);
        }
        counts.written.fetch_add(1, Ordering::Relaxed);
    }
}

/// A control frame: the escape (a zero length), its length, its type, its fields.
fn control_frame(kind: u32, with_content_type: bool) -> Vec<u8> {
    let mut body = kind.to_be_bytes().to_vec();
    if with_content_type {
        body.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        body.extend_from_slice(&(CONTENT_TYPE.len() as u32).to_be_bytes());
        body.extend_from_slice(CONTENT_TYPE);
    }
    let mut frame = 0u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Reads one control frame; its type and whether it names our content type.
fn read_control(stream: &mut dyn Stream) -> io::Result<(u32, bool)> {
    let mut head = [0u8; 8];
    stream.read_exact(&mut head)?;
    let escape = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if escape != 0 || !(4..=MAX_CONTROL_LEN).contains(&len) {
        return Err(io::Error::other(
            "the collector did not send a control frame",
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    let kind = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let mut fields = &body[4..];
    let mut names_ours = false;
    while fields.len() >= 8 {
        let field = u32::from_be_bytes([fields[0], fields[1], fields[2], fields[3]]);
        let field_len = u32::from_be_bytes([fields[4], fields[5], fields[6], fields[7]]) as usize;
        let Some(value) = fields.get(8..8 + field_len) else {
            break;
        };
        names_ours |= field == FIELD_CONTENT_TYPE && value == CONTENT_TYPE;
        fields = &fields[8 + field_len..];
    }
    Ok((kind, names_ours))
}

/// READY, the collector's ACCEPT naming dnstap, then START.
fn handshake(stream: &mut Box<dyn Stream>) -> io::Result<()> {
    stream.write_all(&control_frame(CONTROL_READY, true))?;
    match read_control(stream.as_mut())? {
        (CONTROL_ACCEPT, true) => {}
        (CONTROL_ACCEPT, false) => {
            return Err(io::Error::other("the collector does not accept dnstap"));
        }
        _ => return Err(io::Error::other("the collector did not accept")),
    }
    stream.write_all(&control_frame(CONTROL_START, true))?;
    stream.flush()
}

/// STOP, then the collector's FINISH (so that it has every frame before we go).
fn stop(stream: &mut Box<dyn Stream>) -> io::Result<()> {
    stream.write_all(&control_frame(CONTROL_STOP, false))?;
    stream.flush()?;
    match read_control(stream.as_mut())? {
        (CONTROL_FINISH, _) => Ok(()),
        _ => Err(io::Error::other("the collector did not finish")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_are_escaped_and_carry_the_content_type() {
        let ready = control_frame(CONTROL_READY, true);
        assert_eq!(&ready[..4], &[0, 0, 0, 0]);
        let len = u32::from_be_bytes([ready[4], ready[5], ready[6], ready[7]]) as usize;
        assert_eq!(len, ready.len() - 8);
        assert_eq!(&ready[8..12], &CONTROL_READY.to_be_bytes());
        assert!(ready.ends_with(CONTENT_TYPE));
        assert_eq!(control_frame(CONTROL_STOP, false).len(), 12);
    }
}
