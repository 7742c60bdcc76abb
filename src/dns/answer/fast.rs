//! The UDP fast path: answers the common questions (A, AAAA and SRV of a cached local service,
//! NXDOMAIN for a service that does not exist) straight from the request bytes and the record
//! bytes encoded when Consul's data changed, without decoding the message or allocating.
//!
//! It takes only plain queries: one question, class IN, no EDNS options but a cookie and a
//! client subnet, the question name without compression, a name in one of the simple service
//! forms. Who asked is the peer, or the subnet a trusted forwarder reports (answered back with
//! its scope), and the gate's access rules hold for it. Anything else, and anything whose
//! answer would not fit the client's size, returns `None` and goes to the hickory-server path,
//! which answers it as before. The answers are the same records the general path gives
//! (the differential test against Consul's DNS runs over this path).

use std::{net::IpAddr, sync::Arc};

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, RecordType},
};

use super::fast_query::{HeaderFlags, Question, lower, read_question, record_head};
use super::fast_reverse;
use super::records::Zone;
use crate::cidr::ClientNet;
use crate::dns::gate::{Gate, reported_on_wire};
use crate::wire::{
    CLASS_IN, OPTION_CLIENT_SUBNET, append_edns_option_at, soa_serial, udp_payload, write_name,
};
use crate::{
    catalog::{CachedLookup, Catalog, ServiceAnswers},
    config::{DnsOptions, SoaTimers},
};

/// What the fast path wrote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FastAnswer {
    pub(crate) qtype: RecordType,
    pub(crate) rcode: ResponseCode,
    /// Where the question section ends, in the request and in the answer alike.
    pub(crate) question_end: usize,
    /// The client's EDNS size, when it sent one.
    pub(crate) edns_payload: Option<u16>,
    /// Where the data of the question's COOKIE option is in the request, and its length.
    pub(crate) cookie: Option<(usize, usize)>,
    /// Where the answer's OPT record starts (it is the last record).
    pub(crate) opt_at: Option<usize>,
    /// Who asked: the peer, or the client subnet a trusted forwarder reported.
    pub(crate) client: IpAddr,
}

/// An OPT record without options: root, type, size, TTL, length.
const BARE_OPT_LEN: usize = 11;
/// What a server cookie adds to an answer: option code, length, client and server cookies.
const COOKIE_ROOM: usize = 4 + 24;

/// Who asked one question, as the fast path answers it.
struct Asker<'a> {
    client: ClientNet,
    /// The data of a trusted forwarder's CLIENT-SUBNET option, to answer with its scope.
    subnet: Option<&'a [u8]>,
}

impl FastAnswer {
    /// What was written into `out` for `question`, with the forwarder's client subnet option
    /// joined to the OPT record (with `scope`) when it sent one.
    fn finish(
        question: &Question<'_>,
        qtype: RecordType,
        rcode: ResponseCode,
        out: &mut Vec<u8>,
        asker: &Asker<'_>,
        scope: u8,
    ) -> Option<Self> {
        // Every answer here ends with the OPT record, when the question had one.
        let opt_at = question
            .edns_payload
            .and_then(|_| out.len().checked_sub(BARE_OPT_LEN));
        if let (Some(subnet), Some(at)) = (asker.subnet, opt_at) {
            let mut data = [0u8; MAX_SUBNET_LEN];
            let data = data.get_mut(..subnet.len())?;
            data.copy_from_slice(subnet);
            data[3] = scope;
            if !append_edns_option_at(out, at, OPTION_CLIENT_SUBNET, data, usize::MAX) {
                return None;
            }
        }
        Some(Self {
            qtype,
            rcode,
            question_end: question.end(),
            edns_payload: question.edns_payload,
            cookie: question.cookie,
            opt_at,
            client: asker.client.address(),
        })
    }
}

/// The longest client subnet option: family, prefixes, 16 address bytes.
const MAX_SUBNET_LEN: usize = 4 + 16;

/// What the fast path needs to answer; cheap to share between sockets.
pub(crate) struct FastPath {
    catalog: Catalog,
    /// Who asked (trusted client subnets) and whether they are answered at all.
    gate: Arc<Gate>,
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
    /// Whether zone files or recursors may answer names outside the domain: then a reverse
    /// question no node or service answers goes to them, by the general path.
    outside_answered: bool,
}

impl FastPath {
    pub(crate) fn new(
        catalog: Catalog,
        gate: Arc<Gate>,
        zone: &Zone,
        options: &DnsOptions,
        recursion_available: bool,
        outside_answered: bool,
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
            gate,
            domain_labels,
            recursion_available,
            outside_answered,
        }
    }

    /// Writes the answer to `request` into `out` and returns its type and code, or `None` when
    /// the general path must answer.
    /// `scratch` is a buffer the caller keeps between queries, as `out`.
    pub(crate) fn answer(
        &self,
        request: &[u8],
        peer: IpAddr,
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
        // Who asked: a trusted forwarder's client subnet (a malformed one: the general path's
        // FORMERR), else the peer, whatever an untrusted option claims (it is not answered).
        let asker = match question.subnet {
            Some((at, len)) if self.gate.trusts(peer) => {
                let subnet = request.get(at..at + len)?;
                Asker {
                    client: reported_on_wire(subnet)?,
                    subnet: Some(subnet),
                }
            }
            _ => Asker {
                client: ClientNet::from(peer),
                subnet: None,
            },
        };
        // Outside --allow-query: the general path refuses.
        if !self.gate.allows(asker.client) {
            return None;
        }
        let access_scope = self.gate.access_scope(asker.client).unwrap_or(0);
        // Room for the server cookie the gate adds, and for the client subnet.
        let cookie_room = match question.cookie {
            Some(_) => COOKIE_ROOM,
            None => 0,
        };
        let subnet_room = asker.subnet.map_or(0, |subnet| 4 + subnet.len());
        let limit = usize::from(udp_payload(question.edns_payload)) - cookie_room;
        out.clear();
        // Reverse answers with a client subnet go the general way (their scope is read there).
        let reverse = match asker.subnet {
            Some(_) => None,
            None => fast_reverse::answer(
                &self.catalog,
                &question,
                asker.client,
                !self.outside_answered,
                self.recursion_available,
                out,
            ),
        };
        if let Some(rcode) = reverse {
            let qtype = RecordType::from(question.qtype);
            let answer = FastAnswer::finish(&question, qtype, rcode, out, &asker, 0)?;
            return (out.len() <= limit).then_some(answer);
        }
        let (service, tag) = self.service_and_tag(&question)?;
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
        out.clear();
        let (rcode, scope) = match self.catalog.cached_local(service) {
            CachedLookup::NotCached => return None,
            CachedLookup::Unknown => {
                self.negative(&question, ResponseCode::NXDomain, out);
                (ResponseCode::NXDomain, access_scope)
            }
            CachedLookup::Found(answers) => {
                let rcode = self.positive(&question, &answers, tag, asker.client, out, scratch)?;
                let scope = answers.client_scope(asker.client).unwrap_or(0);
                (rcode, scope.max(access_scope))
            }
        };
        // Within the client's size with the subnet option, which the answer must carry.
        if out.len() + subnet_room > limit {
            return None;
        }
        let answer = FastAnswer::finish(&question, qtype, rcode, out, &asker, scope)?;
        (out.len() <= limit).then_some(answer)
    }

    /// Service answers are authoritative; RA says whether recursors are configured, as Consul.
    fn flags(&self) -> HeaderFlags {
        HeaderFlags {
            authoritative: true,
            recursion_available: self.recursion_available,
        }
    }

    /// `<svc>.service`, `<tag>.<svc>.service` or `_<svc>._<tag>.service` in our domain, alone
    /// or with the local datacenter after it (`.dc1` or `.dc1.dc`: the same answers, so the
    /// same bytes); other forms (other datacenters, dotted tags) go the general way.
    fn service_and_tag<'a>(&self, question: &Question<'a>) -> Option<(&'a [u8], Option<&'a [u8]>)> {
        let label = |i: usize| question.label(i);
        let domain_count = self.domain_labels.len();
        let inside = question.label_count.checked_sub(domain_count)?;
        for (i, domain_label) in self.domain_labels.iter().enumerate() {
            if !label(inside + i).eq_ignore_ascii_case(domain_label) {
                return None;
            }
        }
        // The rightmost `service` ends the parts, as the general path reads names.
        let is_service = |at: usize| at < inside && label(at).eq_ignore_ascii_case(b"service");
        let kind_at = [2, 1].into_iter().find(|&at| is_service(at))?;
        match inside - kind_at - 1 {
            0 => {}
            suffixes @ (1 | 2) => {
                let dc = label(kind_at + 1);
                let labelled = suffixes == 1 || label(kind_at + 2).eq_ignore_ascii_case(b"dc");
                if !labelled || is_kind(dc) || !self.catalog.is_local_datacenter(dc) {
                    return None;
                }
            }
            _ => return None,
        }
        match kind_at {
            1 => Some((label(0), None)),
            _ => {
                let (first, second) = (label(0), label(1));
                if first.starts_with(b"_") && second.starts_with(b"_") {
                    let tag = &second[1..];
                    let tag = (!tag.eq_ignore_ascii_case(b"tcp")).then_some(tag);
                    Some((&first[1..], tag))
                } else {
                    Some((second, Some(first)))
                }
            }
        }
    }

    fn negative(&self, question: &Question<'_>, rcode: ResponseCode, out: &mut Vec<u8>) {
        question.write_header(rcode, self.flags(), (0, 1), out);
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
        question.write_opt(out);
    }

    fn positive(
        &self,
        question: &Question<'_>,
        answers: &ServiceAnswers,
        tag: Option<&str>,
        client: ClientNet,
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
        question.write_header(ResponseCode::NoError, self.flags(), (0, 0), out);
        additionals.clear();
        let (mut answer_count, mut additional_count, mut selected) = (0u16, 0u16, 0usize);
        for instance in answers.select(tag, client) {
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
            self.negative(question, rcode, out);
            return Some(rcode);
        }
        out.extend_from_slice(additionals);
        let with_opt = additional_count + u16::from(question.edns_payload.is_some());
        out[6..8].copy_from_slice(&answer_count.to_be_bytes());
        out[10..12].copy_from_slice(&with_opt.to_be_bytes());
        question.write_opt(out);
        Some(ResponseCode::NoError)
    }
}

/// Whether `label` is one of the kinds a name's parts end with: a datacenter label that is one
/// would be read as the kind, so such names go the general way.
fn is_kind(label: &[u8]) -> bool {
    [
        "service", "connect", "virtual", "ingress", "node", "query", "addr",
    ]
    .iter()
    .any(|kind| label.eq_ignore_ascii_case(kind.as_bytes()))
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
