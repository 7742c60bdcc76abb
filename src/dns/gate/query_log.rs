//! The query log (`--query-log PATH`, `-` for stderr): one JSON object per answered query,
//! written by a thread of its own from a bounded queue, so answering never waits for the log.
//! When the writer falls behind and the queue is full, lines are dropped and counted. SIGHUP
//! reopens the file (for log rotation).
//!
//! A line: `{"time":"2026-11-26T10:00:00.123456Z","client":"127.0.0.1:40000","transport":"udp",
//! "name":"web.service.consul.","type":"A","rcode":"NOERROR","answers":2,"path":"fast",
//! "latency_us":12}`. The answer paths hand over the question's wire bytes; the writer
//! formats them, so a logged fast-path answer costs a copy of its question, not a string.

use std::{
    fmt::Write as _,
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, RecordType},
    serialize::binary::{BinDecodable, BinDecoder},
};
use hickory_server::net::xfer::Protocol;
use tracing::warn;

use crate::{config::LogTarget, wire::rcode_mnemonic};

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
    Tls,
    Https,
}

impl From<Protocol> for Transport {
    fn from(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Tcp => Self::Tcp,
            Protocol::Tls => Self::Tls,
            Protocol::Https => Self::Https,
            _ => Self::Udp,
        }
    }
}

/// One answered query, as the answer path hands it over.
pub(crate) struct Entry {
    pub(crate) at: SystemTime,
    pub(crate) client: SocketAddr,
    pub(crate) transport: Transport,
    /// The question name in wire form, as asked (up to 255 bytes).
    name: [u8; 255],
    name_len: u8,
    pub(crate) qtype: u16,
    pub(crate) rcode: ResponseCode,
    pub(crate) answers: u16,
    pub(crate) fast: bool,
    pub(crate) latency: Duration,
}

impl Entry {
    /// An entry for the question whose name is `name_wire` (wire form).
    #[allow(clippy::too_many_arguments)] // one field each, in the order of a log line
    pub(crate) fn new(
        client: SocketAddr,
        transport: Transport,
        name_wire: &[u8],
        qtype: u16,
        rcode: ResponseCode,
        answers: u16,
        fast: bool,
        latency: Duration,
    ) -> Self {
        let mut name = [0u8; 255];
        let len = name_wire.len().min(name.len());
        name[..len].copy_from_slice(&name_wire[..len]);
        Self {
            at: SystemTime::now(),
            client,
            transport,
            name,
            name_len: len as u8,
            qtype,
            rcode,
            answers,
            fast,
            latency,
        }
    }
}

/// The answer paths' end of the log; cheap to clone.
#[derive(Clone)]
pub(crate) struct QueryLog {
    queue: SyncSender<Entry>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    written: AtomicU64,
    dropped: AtomicU64,
    reopen: AtomicBool,
}

impl QueryLog {
    /// Opens `target` and starts the writer thread, with room for `capacity` entries waiting.
    pub(crate) fn start(target: LogTarget, capacity: usize) -> io::Result<Self> {
        let output = open(&target)?;
        let (queue, entries) = sync_channel(capacity.max(1));
        let shared = Arc::new(Shared::default());
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("query-log".into())
            .spawn(move || write_entries(entries, output, target, &writer_shared))?;
        Ok(Self { queue, shared })
    }

    /// Hands `entry` to the writer, or drops (and counts) it when the queue is full.
    pub(crate) fn record(&self, entry: Entry) {
        if let Err(TrySendError::Full(_)) = self.queue.try_send(entry) {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The file is opened anew before the next line (after a rotation, SIGHUP).
    pub(crate) fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Relaxed);
    }

    /// Lines written and entries dropped since start.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.shared.written.load(Ordering::Relaxed),
            self.shared.dropped.load(Ordering::Relaxed),
        )
    }
}

fn open(target: &LogTarget) -> io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        LogTarget::Stderr => Box::new(io::stderr()),
        LogTarget::File(path) => {
            let file: File = OpenOptions::new().create(true).append(true).open(path)?;
            Box::new(file)
        }
    })
}

/// How long the writer sleeps once the queue is empty. It polls instead of waiting on the
/// queue, because a waiting receiver makes every answer's send a thread wake-up (a futex
/// call on the answer path); at 150,000 answers a second the queue holds 10 ms easily.
const WRITE_INTERVAL: Duration = Duration::from_millis(10);

/// The writer thread: formats and writes entries until every sender is gone.
fn write_entries(
    entries: Receiver<Entry>,
    output: Box<dyn Write + Send>,
    target: LogTarget,
    shared: &Shared,
) {
    let mut output = BufWriter::new(output);
    let mut line = String::with_capacity(256);
    let mut scratch = String::with_capacity(256);
    loop {
        let first = match entries.try_recv() {
            Ok(entry) => entry,
            Err(TryRecvError::Empty) => {
                std::thread::sleep(WRITE_INTERVAL);
                continue;
            }
            Err(TryRecvError::Disconnected) => return,
        };
        if shared.reopen.swap(false, Ordering::Relaxed) {
            let _ = output.flush();
            match open(&target) {
                Ok(reopened) => output = BufWriter::new(reopened),
                Err(error) => warn!(%error, "cannot reopen the query log; writing on"),
            }
        }
        // Everything already queued goes out in one write.
        for entry in std::iter::once(first).chain(entries.try_iter()) {
            line.clear();
            format_line(&entry, &mut line, &mut scratch);
            if output.write_all(line.as_bytes()).is_ok() {
                shared.written.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = output.flush();
    }
}

/// Writes the entry's JSON line: fields written in place, as a `serde_json::Value` built per
/// line cost half again the CPU of answering (measured with benches/compare.sh).
fn format_line(entry: &Entry, line: &mut String, scratch: &mut String) {
    let transport = match entry.transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
        Transport::Https => "https",
    };
    scratch.clear();
    if let Ok(name) = Name::read(&mut BinDecoder::new(
        &entry.name[..usize::from(entry.name_len)],
    )) {
        let _ = write!(scratch, "{name}");
    }
    line.push_str("{\"time\":\"");
    rfc3339(entry.at, line);
    let _ = write!(
        line,
        "\",\"client\":\"{}\",\"transport\":\"{transport}\",\"name\":",
        entry.client
    );
    json_string(scratch, line);
    let latency = u64::try_from(entry.latency.as_micros()).unwrap_or(u64::MAX);
    let _ = writeln!(
        line,
        ",\"type\":\"{}\",\"rcode\":\"{}\",\"answers\":{},\"path\":\"{}\",\"latency_us\":{latency}}}",
        RecordType::from(entry.qtype),
        rcode_mnemonic(entry.rcode),
        entry.answers,
        if entry.fast { "fast" } else { "general" },
    );
}

/// `text` as a JSON string: quoted, with `"`, `\\` and control characters escaped.
fn json_string(text: &str, line: &mut String) {
    line.push('"');
    for c in text.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(line, "\\u{:04x}", u32::from(c));
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// Appends `at` as RFC 3339 in UTC with microseconds.
fn rfc3339(at: SystemTime, line: &mut String) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (days, rest) = (since.as_secs() / 86_400, since.as_secs() % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        line,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_json_with_every_field() {
        let name = [
            3, b'w', b'e', b'b', 7, b's', b'e', b'r', b'v', b'i', b'c', b'e', 6, b'c', b'o', b'n',
            b's', b'u', b'l', 0,
        ];
        let entry = Entry::new(
            "127.0.0.9:5353".parse().unwrap_or_else(|e| panic!("{e}")),
            Transport::Udp,
            &name,
            1,
            ResponseCode::NoError,
            2,
            true,
            Duration::from_micros(12),
        );
        let mut line = String::new();
        format_line(&entry, &mut line, &mut String::new());
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(value["name"], "web.service.consul.");
        assert_eq!(value["type"], "A");
        assert_eq!(value["rcode"], "NOERROR");
        assert_eq!(
            (value["answers"].as_u64(), value["latency_us"].as_u64()),
            (Some(2), Some(12))
        );
        assert_eq!(
            (value["transport"].as_str(), value["path"].as_str()),
            (Some("udp"), Some("fast"))
        );
        assert_eq!(value["client"], "127.0.0.9:5353");
        assert!(line.ends_with('\n'));
    }

    #[test]
    fn quotes_and_backslashes_in_names_stay_json() {
        let name = [4, b'a', b'"', b'\\', b'}', 0];
        let entry = Entry::new(
            "[::1]:53".parse().unwrap_or_else(|e| panic!("{e}")),
            Transport::Https,
            &name,
            16,
            ResponseCode::Refused,
            0,
            false,
            Duration::ZERO,
        );
        let mut line = String::new();
        format_line(&entry, &mut line, &mut String::new());
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let logged = value["name"].as_str().unwrap_or_default();
        // The presentation form (RFC 1035 §5.1 escapes), carried through JSON unchanged.
        assert_eq!(logged, r#"a\"\\\}."#);
        assert_eq!(
            (value["client"].as_str(), value["rcode"].as_str()),
            (Some("[::1]:53"), Some("REFUSED"))
        );
    }

    #[test]
    fn dates_are_civil() {
        let at = UNIX_EPOCH + Duration::from_micros(1_764_151_200_123_456);
        let text = |at| {
            let mut line = String::new();
            rfc3339(at, &mut line);
            line
        };
        assert_eq!(text(at), "2025-11-26T10:00:00.123456Z");
        assert_eq!(text(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(text(leap), "2000-02-29T00:00:00.000000Z");
    }
}
