//! The UDP fast path: answers the common questions (A, AAAA and SRV of a cached local service,
//! NXDOMAIN for a service that does not exist) straight from the request bytes and the record
//! bytes encoded when Consul's data changed, without decoding the message or allocating.
//!
//! It takes only plain queries: one question, class IN, no EDNS options, the question name
//! without compression, a name in one of the simple service forms. Anything else, and anything
//! whose answer would not fit the client's size, returns `None` and goes to the hickory-server
//! path, which answers it as before. The answers are the same records the general path gives
//! (the differential test against Consul's DNS runs over this path).

use std::net::IpAddr;

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, RecordType},
};

use super::{
    answer::Zone,
    wire::{CLASS_IN, HEADER_LEN, TYPE_OPT, soa_serial, udp_payload},
};
use crate::{
    catalog::{CachedLookup, Catalog, ServiceAnswers, write_name},
    config::{DnsOptions, SoaTimers},
};

/// The most labels the fast path looks at: `_svc._tag.service.<domain labels>`.
const MAX_LABELS: usize = 12;
/// The DNSSEC OK bit in the first byte of an OPT record's flags.
const DO_BIT: u8 = 0x80;
/// A compression pointer to the question name, which always starts right after the header.
const POINTER_TO_QUESTION: [u8; 2] = [0xC0, 0x0C];

/// What the fast path wrote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FastAnswer {
    pub(crate) qtype: RecordType,
    pub(crate) rcode: ResponseCode,
    /// Where the question section ends, in the request and in the answer alike.
    pub(crate) question_end: usize,
}

/// What the fast path needs to answer; cheap to share between sockets.
pub(crate) struct FastPath {
    catalog: Catalog,
    /// The domain's labels, lower-case, in order (`["consul"]`).
    domain_labels: Vec<Vec<u8>>,
    /// The SOA record up to (not including) its serial: owner, type, class, TTL, length, names.
    soa_head: Vec<u8>,
    soa: SoaTimers,
    /// At most this many records in an A/AAAA answer (`usize::MAX`: all).
    a_record_limit: usize,
    /// With Consul's `udp_answer_limit` set, questions without EDNS go the general way, which
    /// applies it.
    general_path_without_edns: bool,
    enabled: bool,
    recursion_available: bool,
}

/// A question read in place from the request.
struct Question<'a> {
    /// The question section as asked (name, type, class), copied into the answer.
    section: &'a [u8],
    /// The name's labels, as `(offset, length)` into the request.
    labels: [(usize, usize); MAX_LABELS],
    label_count: usize,
    qtype: u16,
    /// The client's UDP size when it sent EDNS.
    edns_payload: Option<u16>,
    /// The first byte of the OPT record's flags: the DO bit, to copy into the answer.
    edns_flags: u8,
}

impl FastPath {
    pub(crate) fn new(
        catalog: Catalog,
        zone: &Zone,
        options: &DnsOptions,
        recursion_available: bool,
    ) -> Self {
        let domain = catalog.domain().clone();
        let domain_labels = domain
            .iter()
            .map(|label| label.to_ascii_lowercase())
            .collect();
        Self {
            soa_head: soa_head(&domain, zone.soa.min_ttl),
            soa: zone.soa,
            a_record_limit: zone.a_record_limit,
            general_path_without_edns: options.udp_answer_limit.is_some(),
            // Its answers point back to the question name; uncompressed ones go the general way.
            enabled: !options.disable_compression,
            catalog,
            domain_labels,
            recursion_available,
        }
    }

    /// Writes the answer to `request` into `out` and returns its type and code, or `None` when
    /// the general path must answer.
    /// `scratch` is a buffer the caller keeps between queries, as `out`.
    pub(crate) fn answer(
        &self,
        request: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Option<FastAnswer> {
        if !self.enabled {
            return None;
        }
        let question = read_question(request)?;
        if self.general_path_without_edns && question.edns_payload.is_none() {
            return None;
        }
        let (service, tag) = self.service_and_tag(request, &question)?;
        let mut service_buf = [0u8; 63];
        let service = lower(service, &mut service_buf)?;
        let mut tag_buf = [0u8; 63];
        let tag = match tag {
            Some(tag) => Some(lower(tag, &mut tag_buf)?),
            None => None,
        };
        let qtype = RecordType::from(question.qtype);
        if !matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::SRV) {
            return None;
        }
        let limit = usize::from(udp_payload(question.edns_payload));
        out.clear();
        let rcode = match self.catalog.cached_local(service) {
            CachedLookup::NotCached => return None,
            CachedLookup::Unknown => {
                self.negative(request, &question, ResponseCode::NXDomain, out);
                ResponseCode::NXDomain
            }
            CachedLookup::Found(answers) => {
                self.positive(request, &question, &answers, tag, out, scratch)?
            }
        };
        let answer = FastAnswer {
            qtype,
            rcode,
            question_end: HEADER_LEN + question.section.len(),
        };
        (out.len() <= limit).then_some(answer)
    }

    /// `<svc>.service`, `<tag>.<svc>.service` or `_<svc>._<tag>.service` in our domain; other
    /// forms (datacenters, dotted tags) go the general way.
    fn service_and_tag<'a>(
        &self,
        request: &'a [u8],
        question: &Question<'_>,
    ) -> Option<(&'a [u8], Option<&'a [u8]>)> {
        let label = |i: usize| {
            let (at, len) = question.labels[i];
            &request[at..at + len]
        };
        let domain_count = self.domain_labels.len();
        let inside = question.label_count.checked_sub(domain_count)?;
        for (i, domain_label) in self.domain_labels.iter().enumerate() {
            if !label(inside + i).eq_ignore_ascii_case(domain_label) {
                return None;
            }
        }
        if inside < 2 || !label(inside - 1).eq_ignore_ascii_case(b"service") {
            return None;
        }
        match inside {
            2 => Some((label(0), None)),
            3 => {
                let (first, second) = (label(0), label(1));
                if first.starts_with(b"_") && second.starts_with(b"_") {
                    let tag = &second[1..];
                    let tag = (!tag.eq_ignore_ascii_case(b"tcp")).then_some(tag);
                    Some((&first[1..], tag))
                } else {
                    Some((second, Some(first)))
                }
            }
            _ => None,
        }
    }

    /// Header (with the given answer and authority counts; the additional count covers the OPT
    /// record) and the question as asked.
    fn header(
        &self,
        request: &[u8],
        rcode: ResponseCode,
        (answers, authorities): (u16, u16),
        question: &Question<'_>,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(&request[0..2]);
        // QR, opcode QUERY, AA, RD as asked; RA when recursors are configured.
        let rd = request[2] & 0x01;
        out.push(0x80 | 0x04 | rd);
        let ra = if self.recursion_available { 0x80 } else { 0 };
        out.push(ra | (u16::from(rcode) as u8 & 0x0F));
        out.extend_from_slice(&1u16.to_be_bytes());
        let additional = u16::from(question.edns_payload.is_some());
        for count in [answers, authorities, additional] {
            out.extend_from_slice(&count.to_be_bytes());
        }
        out.extend_from_slice(question.section);
    }

    fn negative(
        &self,
        request: &[u8],
        question: &Question<'_>,
        rcode: ResponseCode,
        out: &mut Vec<u8>,
    ) {
        self.header(request, rcode, (0, 1), question, out);
        out.extend_from_slice(&self.soa_head);
        let timers = self.soa;
        for value in [
            soa_serial(),
            timers.refresh,
            timers.retry,
            timers.expire,
            timers.min_ttl,
        ] {
            out.extend_from_slice(&value.to_be_bytes());
        }
        opt(question, out);
    }

    fn positive(
        &self,
        request: &[u8],
        question: &Question<'_>,
        answers: &ServiceAnswers,
        tag: Option<&str>,
        out: &mut Vec<u8>,
        additionals: &mut Vec<u8>,
    ) -> Option<ResponseCode> {
        if answers.has_repeats() {
            // Repeated instances are left out of answers; the general path does that.
            return None;
        }
        let ttl = answers.ttl();
        let qtype = RecordType::from(question.qtype);
        // Header and question first; the counts are patched at the end.
        self.header(request, ResponseCode::NoError, (0, 0), question, out);
        additionals.clear();
        let (mut answer_count, mut additional_count, mut selected) = (0u16, 0u16, 0usize);
        for instance in answers.select(tag) {
            selected += 1;
            let wire = instance.wire.as_ref()?;
            match (qtype, wire.ip) {
                (RecordType::A | RecordType::AAAA, _)
                    if usize::from(answer_count) == self.a_record_limit =>
                {
                    break;
                }
                (RecordType::A, IpAddr::V4(v4)) => {
                    record_head(out, qtype, ttl, 4);
                    out.extend_from_slice(&v4.octets());
                }
                (RecordType::AAAA, IpAddr::V6(v6)) => {
                    record_head(out, qtype, ttl, 16);
                    out.extend_from_slice(&v6.octets());
                }
                (RecordType::SRV, _) => {
                    record_head(out, qtype, ttl, u16::try_from(wire.srv_rdata.len()).ok()?);
                    out.extend_from_slice(&wire.srv_rdata);
                    additionals.extend_from_slice(&wire.additionals);
                    additional_count += wire.additional_count;
                }
                _ => continue,
            }
            answer_count += 1;
        }
        if selected == 0 || answer_count == 0 {
            // No instance with the tag: NXDOMAIN, as Consul. None of this type: NOERROR, no data.
            let rcode = match selected {
                0 => ResponseCode::NXDomain,
                _ => ResponseCode::NoError,
            };
            out.clear();
            self.negative(request, question, rcode, out);
            return Some(rcode);
        }
        out.extend_from_slice(additionals);
        let with_opt = additional_count + u16::from(question.edns_payload.is_some());
        out[6..8].copy_from_slice(&answer_count.to_be_bytes());
        out[10..12].copy_from_slice(&with_opt.to_be_bytes());
        opt(question, out);
        Some(ResponseCode::NoError)
    }
}

/// Owner (a pointer to the question name), type, class, TTL and data length of an answer.
fn record_head(out: &mut Vec<u8>, qtype: RecordType, ttl: u32, rdlen: u16) {
    out.extend_from_slice(&POINTER_TO_QUESTION);
    out.extend_from_slice(&u16::from(qtype).to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&rdlen.to_be_bytes());
}

/// The OPT record of a response to an EDNS query: our UDP size, no options.
fn opt(question: &Question<'_>, out: &mut Vec<u8>) {
    if let Some(size) = question.edns_payload {
        out.push(0);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&udp_payload(Some(size)).to_be_bytes());
        // Extended RCODE and version 0; the DO bit as asked (RFC 3225); no options.
        out.extend_from_slice(&[0, 0, question.edns_flags & DO_BIT, 0, 0, 0]);
    }
}

fn soa_head(domain: &Name, ttl: u32) -> Vec<u8> {
    let mut rdata_names = Vec::new();
    for first in ["ns", "hostmaster"] {
        let name = Name::from_ascii(first)
            .and_then(|label| label.append_domain(domain))
            .unwrap_or_else(|_| domain.clone());
        write_name(&mut rdata_names, &name);
    }
    let mut head = Vec::new();
    write_name(&mut head, domain);
    head.extend_from_slice(&u16::from(RecordType::SOA).to_be_bytes());
    head.extend_from_slice(&CLASS_IN.to_be_bytes());
    head.extend_from_slice(&ttl.to_be_bytes());
    let rdlen = rdata_names.len() + 5 * 4;
    head.extend_from_slice(&(rdlen as u16).to_be_bytes());
    head.extend_from_slice(&rdata_names);
    head
}

/// A label as a lower-case `&str` in `buf`, or `None` when it is not ASCII.
fn lower<'b>(label: &[u8], buf: &'b mut [u8; 63]) -> Option<&'b str> {
    let out = buf.get_mut(..label.len())?;
    for (to, from) in out.iter_mut().zip(label) {
        *to = from.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok().filter(|s| s.is_ascii())
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

/// Reads a plain query: a standard query with one question of class IN, no answer or authority
/// records, and at most an OPT record without options. `None` for anything else.
fn read_question(request: &[u8]) -> Option<Question<'_>> {
    if request.len() < HEADER_LEN {
        return None;
    }
    // QR=0, opcode QUERY, TC=0; Z/AD/CD bits and RCODE zero.
    if request[2] & 0xFA != 0 || request[3] != 0 {
        return None;
    }
    let counts = [
        read_u16(request, 4)?,
        read_u16(request, 6)?,
        read_u16(request, 8)?,
        read_u16(request, 10)?,
    ];
    if counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] > 1 {
        return None;
    }
    let mut labels = [(0usize, 0usize); MAX_LABELS];
    let mut label_count = 0;
    let mut at = HEADER_LEN;
    loop {
        let len = usize::from(*request.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        // Compression in a question, or labels past what we parse: the general path.
        if len > 63 || label_count == MAX_LABELS {
            return None;
        }
        request.get(at + 1..at + 1 + len)?;
        labels[label_count] = (at + 1, len);
        label_count += 1;
        at += 1 + len;
    }
    if at - HEADER_LEN > 255 {
        return None;
    }
    let qtype = read_u16(request, at)?;
    if read_u16(request, at + 2)? != CLASS_IN {
        return None;
    }
    let question_end = at + 4;
    let mut edns_flags = 0;
    let edns_payload = if counts[3] == 1 {
        // Exactly an OPT record: root name, type 41, the size, version 0 and no options.
        let opt = request.get(question_end..)?;
        if opt.len() != 11 || opt[0] != 0 || read_u16(opt, 1)? != TYPE_OPT {
            return None;
        }
        if opt[5] != 0 || opt[6] != 0 || read_u16(opt, 9)? != 0 {
            return None;
        }
        edns_flags = opt[7];
        Some(read_u16(opt, 3)?)
    } else {
        if request.len() != question_end {
            return None;
        }
        None
    };
    Some(Question {
        section: &request[HEADER_LEN..question_end],
        labels,
        label_count,
        qtype,
        edns_payload,
        edns_flags,
    })
}
