//! Turns cache lookups into the sections of a response, as Consul's DNS would fill them.
//!
//! Owner names of answers are the query name exactly as asked (Consul does the same), so the
//! records are made per query from the ready record data of the cache entry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::{
    op::ResponseCode,
    rr::{
        Name, RData, Record, RecordType,
        rdata::{NS, PTR, SOA, TXT},
    },
};

use crate::cidr::ClientNet;
use crate::dns::gate::mark_client_dependent;
use crate::wire::{record_cap, soa_serial};
use crate::{
    catalog::{NodeRecord, ServiceAnswers},
    config::{Config, SoaTimers},
    wire::ip_rdata,
};

/// What answers in the Consul domain share.
#[derive(Debug, Clone)]
pub(crate) struct Zone {
    /// Lower-case, fully qualified; also for names asked under the alternative domain, as
    /// Consul (its SRV targets and SOA stay in the primary domain).
    pub(crate) domain: Name,
    pub(crate) soa: SoaTimers,
    pub(crate) node_ttl: u32,
    /// At most this many instances in an address answer of a service (`usize::MAX`: all).
    pub(crate) a_record_limit: usize,
}

impl Zone {
    pub(crate) fn from_config(config: &Config) -> Self {
        Self {
            domain: config.domain.clone(),
            soa: config.dns.soa,
            node_ttl: u32::try_from(config.node_ttl.as_secs()).unwrap_or(u32::MAX),
            a_record_limit: record_cap(config.dns.a_record_limit),
        }
    }
}

/// A response without its header and question: what the handler writes.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) rcode: ResponseCode,
    pub(crate) authoritative: bool,
    pub(crate) answers: Vec<Record>,
    pub(crate) authorities: Vec<Record>,
    pub(crate) additionals: Vec<Record>,
}

impl Answer {
    pub(crate) fn error(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            authoritative: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }

    /// NXDOMAIN with the zone's SOA, so resolvers cache the negative answer properly.
    pub(crate) fn nxdomain(zone: &Zone) -> Self {
        Self::negative(ResponseCode::NXDomain, zone)
    }

    /// NOERROR without data, with the SOA.
    pub(crate) fn nodata(zone: &Zone) -> Self {
        Self::negative(ResponseCode::NoError, zone)
    }

    fn negative(rcode: ResponseCode, zone: &Zone) -> Self {
        Self {
            rcode,
            authoritative: true,
            answers: Vec::new(),
            authorities: vec![soa(zone)],
            additionals: Vec::new(),
        }
    }

    fn positive(answers: Vec<Record>, additionals: Vec<Record>) -> Self {
        Self {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers,
            authorities: Vec::new(),
            additionals,
        }
    }
}

/// Consul's SOA: `ns.<domain> hostmaster.<domain>`, serial the current time, the configured
/// timers, and the minimum as its TTL.
pub(crate) fn soa(zone: &Zone) -> Record {
    let domain = &zone.domain;
    let serial = soa_serial();
    let under = |label: &str| {
        Name::from_ascii(label)
            .and_then(|l| l.append_domain(domain))
            .unwrap_or_else(|_| domain.clone())
    };
    let timers = zone.soa;
    let data = SOA::new(
        under("ns"),
        under("hostmaster"),
        serial,
        timers.refresh as i32,
        timers.retry as i32,
        timers.expire as i32,
        timers.min_ttl,
    );
    Record::from_rdata(domain.clone(), timers.min_ttl, RData::SOA(data))
}

/// A service question answered from its cache entry, `tag` already lower-case. As Consul, an
/// instance that repeats one already answered (same address; for SRV, same node, target and
/// port) is left out, and address answers stop at `a_record_limit` instances.
pub(crate) fn service(
    asked: &Name,
    qtype: RecordType,
    answers: &ServiceAnswers,
    tag: Option<&str>,
    zone: &Zone,
    client: ClientNet,
) -> Answer {
    // Instances with a visibility rule exist only for the clients it names.
    if let Some(scope) = answers.client_scope(client) {
        mark_client_dependent(scope);
    }
    let mut selected = answers.select(tag, client).peekable();
    if selected.peek().is_none() {
        return Answer::nxdomain(zone);
    }
    let ttl = answers.ttl();
    // Consul answers TXT and ANY on a service name with its addresses.
    let (v4, v6) = match qtype {
        RecordType::A => (true, false),
        RecordType::AAAA => (false, true),
        RecordType::ANY | RecordType::TXT => (true, true),
        RecordType::SRV => {
            let mut records = Vec::new();
            let mut additionals = Vec::new();
            let mut seen = Vec::new();
            for instance in selected {
                let key = (&instance.node_name, &instance.srv.target, instance.srv.port);
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                records.push(Record::from_rdata(
                    asked.clone(),
                    ttl,
                    RData::SRV(instance.srv.clone()),
                ));
                additionals.extend(instance.srv_additionals(ttl));
            }
            return Answer::positive(records, additionals);
        }
        _ => return Answer::nodata(zone),
    };
    let limit = zone.a_record_limit;
    let mut records: Vec<Record> = Vec::new();
    for rdata in selected.filter_map(|instance| instance.address.rdata(v4, v6)) {
        if records.iter().any(|r| r.data == rdata) {
            continue;
        }
        records.push(Record::from_rdata(asked.clone(), ttl, rdata));
        if records.len() == limit {
            break;
        }
    }
    if records.is_empty() {
        return Answer::nodata(zone);
    }
    Answer::positive(records, Vec::new())
}

/// A reverse-lookup answer: one PTR to `target`, whatever the type asked, and for an SOA
/// question the domain's SOA in the authority section too (as Consul).
pub(crate) fn pointer(asked: &Name, qtype: RecordType, target: Name, zone: &Zone) -> Answer {
    // Consul's PTR answers carry TTL 0 whatever node_ttl and service_ttl say.
    let record = Record::from_rdata(asked.clone(), 0, RData::PTR(PTR(target)));
    let mut answer = Answer::positive(vec![record], Vec::new());
    if qtype == RecordType::SOA {
        answer.authorities.push(soa(zone));
    }
    answer
}

/// NOERROR with nothing in any section, not even an SOA: what Consul gives for some questions it
/// does not look up.
pub(crate) fn empty() -> Answer {
    Answer {
        rcode: ResponseCode::NoError,
        authoritative: true,
        answers: Vec::new(),
        authorities: Vec::new(),
        additionals: Vec::new(),
    }
}

/// `answer` with every name in `from` moved to `to` (owners, SRV and NS targets, the SOA's
/// names): current Consul's answer to a question in its alternative domain.
pub(crate) fn move_to_domain(answer: &mut Answer, from: &Name, to: &Name) {
    let moved = |name: &Name| -> Option<Name> {
        if !from.zone_of(name) {
            return None;
        }
        let keep = usize::from(name.num_labels() - from.num_labels());
        Name::from_labels(name.iter().take(keep))
            .and_then(|relative| relative.append_domain(to))
            .ok()
    };
    let sections = [
        &mut answer.answers,
        &mut answer.authorities,
        &mut answer.additionals,
    ];
    for record in sections.into_iter().flatten() {
        if let Some(name) = moved(&record.name) {
            record.name = name;
        }
        match &mut record.data {
            RData::SRV(srv) => {
                if let Some(target) = moved(&srv.target) {
                    srv.target = target;
                }
            }
            RData::NS(ns) => {
                if let Some(target) = moved(&ns.0) {
                    ns.0 = target;
                }
            }
            RData::SOA(soa) => {
                if let Some(mname) = moved(&soa.mname) {
                    soa.mname = mname;
                }
                if let Some(rname) = moved(&soa.rname) {
                    soa.rname = rname;
                }
            }
            _ => {}
        }
    }
}

/// `<service>.virtual.` names, as current Consul answers them: the virtual IP as an A record
/// (TTL `node_ttl`) whatever the type asked, but for AAAA, which never gets the IPv4 address;
/// no virtual IP: NOERROR without records or SOA.
pub(crate) fn virtual_ip(
    asked: &Name,
    qtype: RecordType,
    ip: Option<IpAddr>,
    zone: &Zone,
) -> Answer {
    match (ip, qtype) {
        (Some(IpAddr::V4(v4)), qtype) if qtype != RecordType::AAAA => Answer::positive(
            vec![Record::from_rdata(
                asked.clone(),
                zone.node_ttl,
                RData::A(v4.into()),
            )],
            Vec::new(),
        ),
        _ => empty(),
    }
}

/// `<hex>.addr.` names, as Consul answers them: whatever the question type, an A for 8 hex
/// digits and an AAAA for 32, owned by the name in lower case; NXDOMAIN when the digits are not
/// hex; an empty NOERROR (without SOA) for any other length.
pub(crate) fn address(asked: &Name, hex: &str, zone: &Zone) -> Answer {
    let ttl = zone.node_ttl;
    // Go's hex.DecodeString (Consul's) fails on an odd length as on a bad digit; the length is
    // looked at as len / 2 bytes.
    let wanted = hex.len() / 2;
    if wanted != 4 && wanted != 16 {
        return empty();
    }
    let bytes: Option<Vec<u8>> = hex
        .len()
        .is_multiple_of(2)
        .then(|| {
            (0..hex.len())
                .step_by(2)
                .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    let ip = match bytes.as_deref() {
        Some(&[a, b, c, d]) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        Some(sixteen) => match <[u8; 16]>::try_from(sixteen) {
            Ok(octets) => IpAddr::V6(Ipv6Addr::from(octets)),
            Err(_) => return Answer::nxdomain(zone),
        },
        None => return Answer::nxdomain(zone),
    };
    let owner = asked.to_lowercase();
    Answer::positive(
        vec![Record::from_rdata(owner, ttl, ip_rdata(ip))],
        Vec::new(),
    )
}

/// `<node>.node.` names, as Consul answers them: A, AAAA (or a CNAME for a host-name address)
/// for A, AAAA and ANY questions; the node's metadata as TXT in the answer for TXT and ANY, in
/// the additional section for A and AAAA; other types, and no address of the asked family, an
/// empty NOERROR without SOA.
pub(crate) fn node(asked: &Name, qtype: RecordType, node: &NodeRecord, ttl: u32) -> Answer {
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    let (v4, v6) = match qtype {
        RecordType::A => (true, false),
        RecordType::AAAA => (false, true),
        RecordType::ANY => (true, true),
        _ => (false, false),
    };
    if (v4 || v6)
        && let Some(rdata) = node.address.rdata(v4, v6)
    {
        answers.push(Record::from_rdata(asked.clone(), ttl, rdata));
    }
    let txt = node.meta_txt.iter().map(|text| {
        Record::from_rdata(asked.clone(), ttl, RData::TXT(TXT::new(vec![text.clone()])))
    });
    match qtype {
        RecordType::TXT | RecordType::ANY => answers.extend(txt),
        RecordType::A | RecordType::AAAA => additionals.extend(txt),
        _ => {}
    }
    Answer {
        rcode: ResponseCode::NoError,
        authoritative: true,
        answers,
        authorities: Vec::new(),
        additionals,
    }
}

/// NS records of the domain naming the Consul servers, with their addresses as glue.
pub(crate) fn nameservers(
    servers: &ServiceAnswers,
    zone: &Zone,
    client: ClientNet,
) -> (Vec<Record>, Vec<Record>) {
    let (domain, ttl) = (&zone.domain, zone.node_ttl);
    let mut ns = Vec::new();
    let mut glue = Vec::new();
    if let Some(scope) = servers.client_scope(client) {
        mark_client_dependent(scope);
    }
    for server in servers.select(None, client) {
        ns.push(Record::from_rdata(
            domain.clone(),
            ttl,
            RData::NS(NS(server.node_name.clone())),
        ));
        if let Some(ip) = server.node_address {
            glue.push(Record::from_rdata(
                server.node_name.clone(),
                ttl,
                ip_rdata(ip),
            ));
        }
    }
    (ns, glue)
}

/// Consul answers NS questions for any name in its domain with the domain's servers.
pub(crate) fn ns_question(servers: &ServiceAnswers, zone: &Zone, client: ClientNet) -> Answer {
    let (ns, glue) = nameservers(servers, zone, client);
    Answer::positive(ns, glue)
}

/// Consul answers SOA questions for any name in its domain with the SOA, the servers as
/// authority and their addresses as glue.
pub(crate) fn soa_question(servers: &ServiceAnswers, zone: &Zone, client: ClientNet) -> Answer {
    let (ns, glue) = nameservers(servers, zone, client);
    Answer {
        authorities: ns,
        ..Answer::positive(vec![soa(zone)], glue)
    }
}
