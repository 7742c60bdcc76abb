//! The UDP fast path for reverse lookups of IPv4 addresses (`d.c.b.a.in-addr.arpa`): the PTR a
//! node or watched service with the address gives, or SERVFAIL when none has it (as Consul
//! without recursors), from the address indexes kept on the watch side, without decoding the
//! message or allocating. A PTR flood then costs what a flood of cached A questions costs.
//!
//! Left to the general path: IPv6 names (32 nibble labels), partial names, SOA questions (their
//! answer carries the SOA too), a node list not loaded yet, and misses when zone files or
//! recursors may answer them.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::{op::ResponseCode, rr::RecordType};

use super::fast_query::{HeaderFlags, Question, record_head};
use crate::{catalog::Catalog, cidr::ClientNet, wire::write_name};

/// Writes the answer to a reverse question into `out`; `None` when it is not one the fast path
/// takes. `misses_answered`: whether a miss is answered here (SERVFAIL) rather than handed to
/// the zone files and recursors. `recursion_available` sets RA, as on every answer.
pub(crate) fn answer(
    catalog: &Catalog,
    question: &Question<'_>,
    client: ClientNet,
    misses_answered: bool,
    recursion_available: bool,
    out: &mut Vec<u8>,
) -> Option<ResponseCode> {
    if RecordType::from(question.qtype) == RecordType::SOA {
        return None;
    }
    let ip = ipv4_of(question)?;
    catalog.cached_reverse(IpAddr::V4(ip), client, |target| {
        let flags = |authoritative| HeaderFlags {
            authoritative,
            recursion_available,
        };
        match target {
            Some(target) => {
                question.write_header(ResponseCode::NoError, flags(true), (1, 0), out);
                let at = out.len();
                // Consul's PTR answers carry TTL 0; the length is patched once the name is in.
                record_head(out, RecordType::PTR, 0, 0);
                write_name(out, target);
                let rdlen = u16::try_from(out.len() - at - 12).ok()?;
                out[at + 10..at + 12].copy_from_slice(&rdlen.to_be_bytes());
                question.write_opt(out);
                Some(ResponseCode::NoError)
            }
            None if misses_answered => {
                question.write_header(ResponseCode::ServFail, flags(false), (0, 0), out);
                question.write_opt(out);
                Some(ResponseCode::ServFail)
            }
            None => None,
        }
    })?
}

/// The address `d.c.b.a.in-addr.arpa.` stands for, read as the general path reads it.
fn ipv4_of(question: &Question<'_>) -> Option<Ipv4Addr> {
    if question.label_count != 6
        || !question.label(4).eq_ignore_ascii_case(b"in-addr")
        || !question.label(5).eq_ignore_ascii_case(b"arpa")
    {
        return None;
    }
    let octet = |i: usize| {
        std::str::from_utf8(question.label(i))
            .ok()?
            .parse::<u8>()
            .ok()
    };
    Some(Ipv4Addr::new(octet(3)?, octet(2)?, octet(1)?, octet(0)?))
}
