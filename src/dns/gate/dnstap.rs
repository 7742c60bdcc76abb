//! dnstap (`--dnstap`): every question a client asks and every answer it gets
//! (CLIENT_QUERY / CLIENT_RESPONSE, with its transport: UDP, TCP, DoT, DoH) and every question
//! the bridge forwards to a recursor with what came back (FORWARDER_QUERY /
//! FORWARDER_RESPONSE), encoded as `dnstap.Dnstap` protobuf messages (dnstap.proto, by hand:
//! a dozen fields) and handed to the Frame Streams writer off the answer path. A full queue
//! drops the message and counts it, as the query log does.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use super::frame_streams::FrameWriter;
use super::query_log::Transport;
use crate::config::DnstapTarget;

/// `Message.Type` of dnstap.proto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    ClientQuery = 5,
    ClientResponse = 6,
    ForwarderQuery = 7,
    ForwarderResponse = 8,
}

/// One DNS message seen, as dnstap records it.
pub(crate) struct Seen<'a> {
    pub(crate) kind: Kind,
    pub(crate) transport: Transport,
    /// The side that asked (the client; the bridge for forwarded questions), when known.
    pub(crate) query_address: Option<SocketAddr>,
    /// The side that answers (the recursor for forwarded questions), when known.
    pub(crate) response_address: Option<SocketAddr>,
    pub(crate) query_time: SystemTime,
    /// For responses: when it was sent or received.
    pub(crate) response_time: Option<SystemTime>,
    pub(crate) message: &'a [u8],
}

/// The answer paths' end of dnstap; cheap to clone.
#[derive(Clone)]
pub(crate) struct Dnstap {
    writer: FrameWriter,
    /// `Dnstap.identity`: the server's name (`--dnstap-identity`, default the host name).
    identity: Vec<u8>,
}

/// When `at` was, on the wall clock.
pub(crate) fn wall_time(at: Instant) -> SystemTime {
    SystemTime::now() - at.elapsed()
}

impl Dnstap {
    /// Starts the writer for `target`, holding up to `capacity` messages while it is behind.
    pub(crate) fn start(target: DnstapTarget, capacity: usize, identity: Vec<u8>) -> Self {
        Self {
            writer: FrameWriter::start(target, capacity),
            identity,
        }
    }

    /// Encodes `seen` and queues it (dropped and counted if the queue is full).
    pub(crate) fn record(&self, seen: &Seen<'_>) {
        self.writer.send(encode(&self.identity, seen));
    }

    /// Messages written, and dropped (queue full or collector away), since start.
    pub(crate) fn counts(&self) -> (u64, u64) {
        self.writer.counts()
    }
}

const VERSION: &str = concat!("consul-dns-bridge ", env!("CARGO_PKG_VERSION"));

/// The `dnstap.Dnstap` message for `seen`.
fn encode(identity: &[u8], seen: &Seen<'_>) -> Vec<u8> {
    let mut message = Vec::with_capacity(seen.message.len() + 64);
    varint_field(&mut message, 1, seen.kind as u64);
    let family = seen.query_address.or(seen.response_address);
    if let Some(addr) = family {
        varint_field(&mut message, 2, if addr.is_ipv4() { 1 } else { 2 });
    }
    // SocketProtocol: UDP 1, TCP 2, DOT 3, DOH 4.
    let protocol = match seen.transport {
        Transport::Udp => 1,
        Transport::Tcp => 2,
        Transport::Tls => 3,
        Transport::Https => 4,
    };
    varint_field(&mut message, 3, protocol);
    if let Some(addr) = seen.query_address {
        bytes_field(&mut message, 4, &address_bytes(addr.ip()));
    }
    if let Some(addr) = seen.response_address {
        bytes_field(&mut message, 5, &address_bytes(addr.ip()));
    }
    if let Some(addr) = seen.query_address {
        varint_field(&mut message, 6, u64::from(addr.port()));
    }
    if let Some(addr) = seen.response_address {
        varint_field(&mut message, 7, u64::from(addr.port()));
    }
    let (secs, nanos) = since_epoch(seen.query_time);
    varint_field(&mut message, 8, secs);
    fixed32_field(&mut message, 9, nanos);
    match seen.kind {
        Kind::ClientQuery | Kind::ForwarderQuery => bytes_field(&mut message, 10, seen.message),
        Kind::ClientResponse | Kind::ForwarderResponse => {
            let (secs, nanos) = since_epoch(seen.response_time.unwrap_or(seen.query_time));
            varint_field(&mut message, 12, secs);
            fixed32_field(&mut message, 13, nanos);
            bytes_field(&mut message, 14, seen.message);
        }
    }
    let mut dnstap = Vec::with_capacity(message.len() + identity.len() + VERSION.len() + 16);
    if !identity.is_empty() {
        bytes_field(&mut dnstap, 1, identity);
    }
    bytes_field(&mut dnstap, 2, VERSION.as_bytes());
    bytes_field(&mut dnstap, 14, &message);
    // Dnstap.Type MESSAGE.
    varint_field(&mut dnstap, 15, 1);
    dnstap
}

fn address_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    }
}

fn since_epoch(at: SystemTime) -> (u64, u32) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_secs(), since.subsec_nanos())
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_field(out: &mut Vec<u8>, field: u64, value: u64) {
    varint(out, field << 3);
    varint(out, value);
}

fn fixed32_field(out: &mut Vec<u8>, field: u64, value: u32) {
    varint(out, (field << 3) | 5);
    out.extend_from_slice(&value.to_le_bytes());
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_client_query_is_encoded_as_dnstap_proto_says() {
        let at = UNIX_EPOCH + Duration::new(1_609_664_398, 355_231_260);
        let seen = Seen {
            kind: Kind::ClientQuery,
            transport: Transport::Udp,
            query_address: Some("10.0.0.210:55142".parse().unwrap_or_else(|e| panic!("{e}"))),
            response_address: Some("10.0.0.210:53".parse().unwrap_or_else(|e| panic!("{e}"))),
            query_time: at,
            response_time: None,
            message: &[0xda, 0xba],
        };
        let bytes = encode(b"dnstappb", &seen);
        // The message as the dnstap Go library encodes the same fields (field numbers, wire
        // types, varints, little-endian fixed32).
        let mut expected = vec![10, 8];
        expected.extend_from_slice(b"dnstappb");
        expected.extend_from_slice(&[18, VERSION.len() as u8]);
        expected.extend_from_slice(VERSION.as_bytes());
        let message = [
            8, 5, 16, 1, 24, 1, 34, 4, 10, 0, 0, 210, 42, 4, 10, 0, 0, 210, 48, 230, 174, 3, 56,
            53, 64, 142, 143, 198, 255, 5, 77, 28, 102, 44, 21, 82, 2, 0xda, 0xba,
        ];
        expected.extend_from_slice(&[114, message.len() as u8]);
        expected.extend_from_slice(&message);
        expected.extend_from_slice(&[120, 1]);
        assert_eq!(bytes, expected);
    }
}
