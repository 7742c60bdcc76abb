//! DNS wire data without I/O: the constants, and the encoding of names and records that the
//! catalog (which encodes an instance's records once per change) and both answer paths must
//! agree on, written once so that all give the same bytes.

use std::time::{SystemTime, UNIX_EPOCH};

use std::net::IpAddr;

use hickory_proto::{
    op::ResponseCode,
    rr::{
        Name, RData, Record,
        rdata::{A, AAAA, SRV},
    },
};

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
        23 => "BADCOOKIE",
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

/// A name in wire form without compression.
pub(crate) fn write_name(out: &mut Vec<u8>, name: &Name) {
    for label in name.iter() {
        // Labels of a valid Name are at most 63 bytes.
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

/// EDNS option codes (RFC 6891 registry) the answer path writes itself.
pub(crate) const OPTION_NSID: u16 = 3;
pub(crate) const OPTION_CLIENT_SUBNET: u16 = 8;
pub(crate) const OPTION_EDE: u16 = 15;
pub(crate) const OPTION_COOKIE: u16 = 10;
/// BADCOOKIE (RFC 7873): an extended RCODE, its upper bits in the OPT record.
const RCODE_BADCOOKIE: u16 = 23;

/// Appends an EDNS option (`code`, `data`) to the OPT record that ends `message`, if the message
/// ends with one (the OPT record is written last, as RFC 6891 lets it be) and the result stays
/// within `limit` bytes; says whether it did.
pub(crate) fn append_edns_option(
    message: &mut Vec<u8>,
    code: u16,
    data: &[u8],
    limit: usize,
) -> bool {
    let Some(opt) = last_record_start(message) else {
        return false;
    };
    append_edns_option_at(message, opt, code, data, limit)
}

/// As [`append_edns_option`], with where the OPT record starts known (the fast path wrote it).
pub(crate) fn append_edns_option_at(
    message: &mut Vec<u8>,
    opt: usize,
    code: u16,
    data: &[u8],
    limit: usize,
) -> bool {
    // Owner (the root, one byte), type, class (payload size), TTL, RDLENGTH.
    let type_at = opt + 1;
    let rdlength_at = opt + 9;
    let is_opt = message.get(opt) == Some(&0)
        && message.get(type_at..type_at + 2) == Some(&TYPE_OPT.to_be_bytes()[..]);
    let grown = message.len() + 4 + data.len();
    let Ok(data_len) = u16::try_from(data.len()) else {
        return false;
    };
    let Some(rdlength) = message
        .get(rdlength_at..rdlength_at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
    else {
        return false;
    };
    if !is_opt || grown > limit || rdlength_at + 2 + usize::from(rdlength) != message.len() {
        return false;
    }
    let Some(new_rdlength) = rdlength.checked_add(4 + data_len) else {
        return false;
    };
    message[rdlength_at..rdlength_at + 2].copy_from_slice(&new_rdlength.to_be_bytes());
    message.extend_from_slice(&code.to_be_bytes());
    message.extend_from_slice(&data_len.to_be_bytes());
    message.extend_from_slice(data);
    true
}

/// Rewrites the answer in `message` into a BADCOOKIE answer (RFC 7873 section 5.2.3): header
/// and question (which ends at `question_end`), no records but an OPT record carrying
/// `cookie`, the client's cookie and a server cookie for it to send next time.
pub(crate) fn write_bad_cookie(message: &mut Vec<u8>, question_end: Option<usize>, cookie: &[u8]) {
    truncate_to_question(message, question_end);
    if message.len() < HEADER_LEN {
        return;
    }
    // Not truncated: the client retries at once over UDP, with the cookie.
    message[2] &= !0x02;
    message[3] = (message[3] & 0xF0) | (RCODE_BADCOOKIE & 0x0F) as u8;
    message[10..12].copy_from_slice(&1u16.to_be_bytes());
    message.push(0);
    message.extend_from_slice(&TYPE_OPT.to_be_bytes());
    message.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
    // Extended RCODE (the upper 8 bits of the 12), version 0, no flags.
    message.extend_from_slice(&[(RCODE_BADCOOKIE >> 4) as u8, 0, 0, 0]);
    let option_len = cookie.len() as u16;
    message.extend_from_slice(&(option_len + 4).to_be_bytes());
    message.extend_from_slice(&OPTION_COOKIE.to_be_bytes());
    message.extend_from_slice(&option_len.to_be_bytes());
    message.extend_from_slice(cookie);
}

/// Where the last resource record of `message` starts; `None` for a message that does not
/// parse or has none.
fn last_record_start(message: &[u8]) -> Option<usize> {
    use hickory_proto::{
        op::{Header, Query},
        serialize::binary::{BinDecodable, BinDecoder},
    };
    let mut decoder = BinDecoder::new(message);
    let header = Header::read(&mut decoder).ok()?;
    for _ in 0..header.counts.queries {
        Query::read(&mut decoder).ok()?;
    }
    let records = u32::from(header.counts.answers)
        + u32::from(header.counts.authorities)
        + u32::from(header.counts.additionals);
    let mut last = None;
    for _ in 0..records {
        last = Some(decoder.index());
        Record::read(&mut decoder).ok()?;
    }
    last
}

/// SRV record data (priority, weight, port, target written in full) appended to `out`.
pub(crate) fn write_srv_rdata(out: &mut Vec<u8>, srv: &SRV) {
    out.extend_from_slice(&srv.priority.to_be_bytes());
    out.extend_from_slice(&srv.weight.to_be_bytes());
    out.extend_from_slice(&srv.port.to_be_bytes());
    write_name(out, &srv.target);
}

/// A whole A, AAAA or TXT record (owner written in full) appended to `out`; `None` for
/// another type or a TXT string over 255 bytes (those go the general way).
pub(crate) fn write_record(out: &mut Vec<u8>, record: &Record) -> Option<()> {
    let rdata: Vec<u8> = match &record.data {
        RData::A(a) => a.0.octets().to_vec(),
        RData::AAAA(aaaa) => aaaa.0.octets().to_vec(),
        RData::TXT(txt) => {
            let mut bytes = Vec::new();
            for text in txt.txt_data.iter() {
                // One character-string holds at most 255 bytes.
                bytes.push(u8::try_from(text.len()).ok()?);
                bytes.extend_from_slice(text);
            }
            bytes
        }
        _ => return None,
    };
    write_name(out, &record.name);
    out.extend_from_slice(&u16::from(record.record_type()).to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&record.ttl.to_be_bytes());
    out.extend_from_slice(&u16::try_from(rdata.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&rdata);
    Some(())
}

pub(crate) fn ip_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::{
        op::{Edns, Message, MessageType, OpCode},
        rr::rdata::opt::{EdnsCode, EdnsOption},
    };

    fn with_edns() -> Vec<u8> {
        let mut message = Message::new(7, MessageType::Response, OpCode::Query);
        message.set_edns(Edns::new());
        message.to_vec().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_option_joins_the_opt_record_when_it_fits() {
        let mut bytes = with_edns();
        assert!(append_edns_option(&mut bytes, OPTION_NSID, b"b1", 512));
        assert!(append_edns_option(&mut bytes, OPTION_EDE, &[0, 3], 512));
        let message = Message::from_vec(&bytes).unwrap_or_else(|e| panic!("{e}"));
        let edns = message.edns.as_ref().unwrap_or_else(|| panic!("OPT"));
        assert!(edns.options().get(EdnsCode::NSID).is_some());
        assert_eq!(
            edns.options().get(EdnsCode::from(OPTION_EDE)),
            Some(&EdnsOption::Unknown(OPTION_EDE, vec![0, 3]))
        );
        // Not past the limit; not into a message without OPT.
        let before = bytes.clone();
        assert!(!append_edns_option(
            &mut bytes,
            OPTION_NSID,
            b"x",
            before.len()
        ));
        assert_eq!(bytes, before);
        let mut plain = Message::new(7, MessageType::Response, OpCode::Query)
            .to_vec()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!append_edns_option(&mut plain, OPTION_NSID, b"x", 512));
    }

    #[test]
    fn a_bad_cookie_answer_keeps_the_question_and_carries_the_cookie() {
        use hickory_proto::{
            op::Query,
            rr::{Name, RecordType},
        };
        let mut message = Message::new(9, MessageType::Response, OpCode::Query);
        let name = Name::from_ascii("web.service.consul.").unwrap_or_else(|e| panic!("{e}"));
        message.add_query(Query::query(name.clone(), RecordType::A));
        message.add_answer(Record::from_rdata(name, 0, RData::A(A::new(10, 0, 0, 1))));
        message.set_edns(Edns::new());
        let mut bytes = message.to_vec().unwrap_or_else(|e| panic!("{e}"));
        let cookie = [7u8; 24];
        let end = question_end(&bytes);
        write_bad_cookie(&mut bytes, end, &cookie);
        let answer = Message::from_vec(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u16::from(answer.metadata.response_code), 23, "BADCOOKIE");
        assert!(!answer.metadata.truncation);
        assert_eq!((answer.queries.len(), answer.answers.len()), (1, 0));
        let edns = answer.edns.as_ref().unwrap_or_else(|| panic!("OPT"));
        assert_eq!(
            edns.options().get(EdnsCode::Cookie),
            Some(&EdnsOption::Unknown(OPTION_COOKIE, cookie.to_vec()))
        );
    }
}
