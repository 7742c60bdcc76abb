//! Wire constants and values that the fast path and the general path must agree on, written
//! once so that both give the same bytes.

use std::time::{SystemTime, UNIX_EPOCH};

/// The largest UDP answer we send, whatever the client advertises (the DNS flag day value).
pub(crate) const MAX_UDP_PAYLOAD: u16 = 1232;
/// What a UDP client without EDNS can take (RFC 1035).
pub(crate) const PLAIN_UDP_PAYLOAD: u16 = 512;
/// Consul never puts more than this many answers in a UDP response without EDNS, whatever
/// `udp_answer_limit` says.
pub(crate) const MAX_UDP_ANSWER_LIMIT: usize = 8;
pub(crate) const CLASS_IN: u16 = 1;
pub(crate) const TYPE_OPT: u16 = 41;

/// The UDP size an answer may take: the client's EDNS size within our bounds, else 512.
pub(crate) fn udp_payload(edns_payload: Option<u16>) -> u16 {
    edns_payload.map_or(PLAIN_UDP_PAYLOAD, |size| {
        size.clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
    })
}

/// Consul's SOA serial: the current Unix time in seconds.
pub(crate) fn soa_serial() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// Consul's `a_record_limit` as a count to stop at: 0 means no limit.
pub(crate) fn record_cap(a_record_limit: usize) -> usize {
    match a_record_limit {
        0 => usize::MAX,
        limit => limit,
    }
}
