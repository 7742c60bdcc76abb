//! Reading a plain query in place and writing the fixed parts of an answer to it (header,
//! question as asked, record heads, OPT), for the fast paths ([`super::fast`],
//! [`super::fast_reverse`]). Wire code only: no catalog, no I/O.

use hickory_proto::{op::ResponseCode, rr::RecordType};

use crate::dns::gate::cookie_well_formed;
use crate::wire::{
    CLASS_IN, HEADER_LEN, OPTION_CLIENT_SUBNET, OPTION_COOKIE, TYPE_OPT, udp_payload,
};

/// The most labels a fast path looks at: `_svc._tag.service.<domain labels>`, or the six of
/// `d.c.b.a.in-addr.arpa`.
pub(crate) const MAX_LABELS: usize = 12;
/// The DNSSEC OK bit in the first byte of an OPT record's flags.
const DO_BIT: u8 = 0x80;
/// A compression pointer to the question name, which always starts right after the header.
pub(crate) const POINTER_TO_QUESTION: [u8; 2] = [0xC0, 0x0C];

/// The header flags an answer sets besides QR and the echoed RD.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderFlags {
    pub(crate) authoritative: bool,
    pub(crate) recursion_available: bool,
}

/// A question read in place from the request.
pub(crate) struct Question<'a> {
    /// The whole request.
    pub(crate) request: &'a [u8],
    /// The question section as asked (name, type, class), copied into the answer.
    pub(crate) section: &'a [u8],
    /// The name's labels, as `(offset, length)` into the request.
    pub(crate) labels: [(usize, usize); MAX_LABELS],
    pub(crate) label_count: usize,
    pub(crate) qtype: u16,
    /// The client's UDP size when it sent EDNS.
    pub(crate) edns_payload: Option<u16>,
    /// The first byte of the OPT record's flags: the DO bit, to copy into the answer.
    pub(crate) edns_flags: u8,
    /// Where the data of its COOKIE option is in the request, and its length.
    pub(crate) cookie: Option<(usize, usize)>,
    /// Where the data of its CLIENT-SUBNET option is in the request, and its length.
    pub(crate) subnet: Option<(usize, usize)>,
}

impl<'a> Question<'a> {
    /// The label at `i`, as asked.
    pub(crate) fn label(&self, i: usize) -> &'a [u8] {
        let (at, len) = self.labels[i];
        &self.request[at..at + len]
    }

    /// Where the question ends, in the request and in an answer alike.
    pub(crate) fn end(&self) -> usize {
        HEADER_LEN + self.section.len()
    }

    /// Writes the header (with the given answer and authority counts; the additional count
    /// covers the OPT record) and the question as asked.
    pub(crate) fn write_header(
        &self,
        rcode: ResponseCode,
        flags: HeaderFlags,
        (answers, authorities): (u16, u16),
        out: &mut Vec<u8>,
    ) {
        let request = self.request;
        out.extend_from_slice(&request[0..2]);
        // QR, opcode QUERY, AA as answered, RD as asked; RA when recursors are configured.
        let rd = request[2] & 0x01;
        let aa = if flags.authoritative { 0x04 } else { 0 };
        out.push(0x80 | aa | rd);
        let ra = if flags.recursion_available { 0x80 } else { 0 };
        out.push(ra | (u16::from(rcode) as u8 & 0x0F));
        out.extend_from_slice(&1u16.to_be_bytes());
        let additional = u16::from(self.edns_payload.is_some());
        for count in [answers, authorities, additional] {
            out.extend_from_slice(&count.to_be_bytes());
        }
        out.extend_from_slice(self.section);
    }

    /// The OPT record of a response to an EDNS query: our UDP size, no options (the gate adds
    /// the cookie). Always the last record written.
    pub(crate) fn write_opt(&self, out: &mut Vec<u8>) {
        if let Some(size) = self.edns_payload {
            out.push(0);
            out.extend_from_slice(&TYPE_OPT.to_be_bytes());
            out.extend_from_slice(&udp_payload(Some(size)).to_be_bytes());
            // Extended RCODE and version 0; the DO bit as asked (RFC 3225); no options.
            out.extend_from_slice(&[0, 0, self.edns_flags & DO_BIT, 0, 0, 0]);
        }
    }
}

/// Owner (a pointer to the question name), type, class, TTL and data length of an answer.
pub(crate) fn record_head(out: &mut Vec<u8>, qtype: RecordType, ttl: u32, rdlen: u16) {
    out.extend_from_slice(&POINTER_TO_QUESTION);
    out.extend_from_slice(&u16::from(qtype).to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&rdlen.to_be_bytes());
}

/// A label as a lower-case `&str` in `buf`, or `None` when it is not ASCII.
pub(crate) fn lower<'b>(label: &[u8], buf: &'b mut [u8; 63]) -> Option<&'b str> {
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
/// records, and at most an OPT record with no options but a well-formed COOKIE and a
/// CLIENT-SUBNET. `None` for anything else.
pub(crate) fn read_question(request: &[u8]) -> Option<Question<'_>> {
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
    let mut cookie = None;
    let mut subnet = None;
    let edns_payload = if counts[3] == 1 {
        // Exactly an OPT record: root name, type 41, the size, version 0, and no options but
        // a cookie (what BIND's dig and named send by default).
        let opt = request.get(question_end..)?;
        if opt.len() < 11 || opt[0] != 0 || read_u16(opt, 1)? != TYPE_OPT {
            return None;
        }
        if opt[5] != 0 || opt[6] != 0 {
            return None;
        }
        let options = &opt[11..];
        if usize::from(read_u16(opt, 9)?) != options.len() {
            return None;
        }
        // At most one COOKIE (well formed) and one CLIENT-SUBNET, in any order.
        let mut next = 0;
        while next < options.len() {
            let code = read_u16(options, next)?;
            let len = usize::from(read_u16(options, next + 2)?);
            options.get(next + 4..next + 4 + len)?;
            let data_at = question_end + 11 + next + 4;
            match code {
                OPTION_COOKIE if cookie.is_none() && cookie_well_formed(len) => {
                    cookie = Some((data_at, len));
                }
                OPTION_CLIENT_SUBNET if subnet.is_none() => subnet = Some((data_at, len)),
                _ => return None,
            }
            next += 4 + len;
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
        request,
        section: &request[HEADER_LEN..question_end],
        labels,
        label_count,
        qtype,
        edns_payload,
        edns_flags,
        cookie,
        subnet,
    })
}
