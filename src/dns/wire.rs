//! Wire constants and values that the fast path and the general path must agree on, written
//! once so that both give the same bytes.

use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;

/// The largest UDP answer we send, whatever the client advertises (the DNS flag day value).
pub(crate) const MAX_UDP_PAYLOAD: u16 = 1232;
/// What a UDP client without EDNS can take (RFC 1035).
pub(crate) const PLAIN_UDP_PAYLOAD: u16 = 512;
/// Consul never puts more than this many answers in a UDP response without EDNS, whatever
/// `udp_answer_limit` says.
pub(crate) const MAX_UDP_ANSWER_LIMIT: usize = 8;
pub(crate) const HEADER_LEN: usize = 12;
pub(crate) const CLASS_IN: u16 = 1;
pub(crate) const TYPE_OPT: u16 = 41;

/// Cuts an answer written in `message` down to its header and question (which ends at
/// `question_end`), with TC set: what rate limiting sends instead of an answer it holds back
/// ("slip"), no larger than the question, so that a real client retries over TCP.
/// Without a question end (the question could not be read), the answer is cut to its header,
/// with no question counted.
pub(crate) fn truncate_to_question(message: &mut Vec<u8>, question_end: Option<usize>) {
    if message.len() < HEADER_LEN {
        return;
    }
    let end = match question_end {
        Some(end) if (HEADER_LEN..=message.len()).contains(&end) => end,
        _ => {
            message[4..6].fill(0);
            HEADER_LEN
        }
    };
    message.truncate(end);
    // QR, opcode, AA and RD stay; TC set. RA stays; RCODE NOERROR.
    message[2] |= 0x02;
    message[3] &= 0xF0;
    message[6..HEADER_LEN].fill(0);
}

/// Where the one question of `message` ends (its name written in full, as the first name of
/// a message always is); `None` for a message without exactly one readable question.
pub(crate) fn question_end(message: &[u8]) -> Option<usize> {
    if message.get(4..6)? != [0, 1] {
        return None;
    }
    let mut at = HEADER_LEN;
    loop {
        let len = usize::from(*message.get(at)?);
        at += 1;
        match len {
            0 => break,
            1..=63 => at += len,
            _ => return None,
        }
    }
    let end = at + 4;
    (end <= message.len()).then_some(end)
}

/// The UDP size an answer may take: the client's EDNS size within our bounds, else 512.
pub(crate) fn udp_payload(edns_payload: Option<u16>) -> u16 {
    edns_payload.map_or(PLAIN_UDP_PAYLOAD, |size| {
        size.clamp(PLAIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
    })
}

/// A response code as DNS tools print it (`NOERROR`, `NXDOMAIN`...); `OTHER` for the rest.
pub(crate) fn rcode_mnemonic(rcode: ResponseCode) -> &'static str {
    match u16::from(rcode) {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        16 => "BADVERS",
        _ => "OTHER",
    }
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
