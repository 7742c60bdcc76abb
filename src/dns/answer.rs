//! Turns cache lookups into the sections of a response, as Consul's DNS would fill them.
//!
//! Owner names of answers are the query name exactly as asked (Consul does the same), so the
//! records are made per query from the ready record data of the cache entry.

use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::{
    op::ResponseCode,
    rr::{
        Name, RData, Record, RecordType,
        rdata::{NS, SOA},
    },
};

use crate::catalog::{ServiceAnswers, ip_rdata};

/// A response without its header and question: what the handler writes.
#[derive(Debug)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Answer {
    pub fn error(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            authoritative: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }

    /// NXDOMAIN with the zone's SOA, so resolvers cache the negative answer properly.
    pub fn nxdomain(domain: &Name) -> Self {
        Self::negative(ResponseCode::NXDomain, domain)
    }

    /// NOERROR without data, with the SOA.
    pub fn nodata(domain: &Name) -> Self {
        Self::negative(ResponseCode::NoError, domain)
    }

    fn negative(rcode: ResponseCode, domain: &Name) -> Self {
        Self {
            rcode,
            authoritative: true,
            answers: Vec::new(),
            authorities: vec![soa(domain)],
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

/// Consul's SOA: `ns.<domain> hostmaster.<domain>`, serial the current time, its default timers
/// (refresh 3600, retry 600, expire 86400, minimum 0), and the minimum as its TTL.
pub fn soa(domain: &Name) -> Record {
    let serial = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let under = |label: &str| {
        Name::from_ascii(label)
            .and_then(|l| l.append_domain(domain))
            .unwrap_or_else(|_| domain.clone())
    };
    let data = SOA::new(
        under("ns"),
        under("hostmaster"),
        serial,
        3600,
        600,
        86400,
        0,
    );
    Record::from_rdata(domain.clone(), 0, RData::SOA(data))
}

/// A service question answered from its cache entry, `tag` already lower-case.
pub fn service(
    asked: &Name,
    qtype: RecordType,
    answers: &ServiceAnswers,
    tag: Option<&str>,
    domain: &Name,
) -> Answer {
    let mut selected = answers.select(tag).peekable();
    if selected.peek().is_none() {
        return Answer::nxdomain(domain);
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
            for instance in selected {
                records.push(Record::from_rdata(
                    asked.clone(),
                    ttl,
                    RData::SRV(instance.srv.clone()),
                ));
                additionals.extend(instance.srv_additionals.iter().cloned());
            }
            return Answer::positive(records, additionals);
        }
        _ => return Answer::nodata(domain),
    };
    let records: Vec<Record> = selected
        .filter_map(|instance| instance.address.rdata(v4, v6))
        .map(|rdata| Record::from_rdata(asked.clone(), ttl, rdata))
        .collect();
    if records.is_empty() {
        return Answer::nodata(domain);
    }
    Answer::positive(records, Vec::new())
}

/// NS records of the domain naming the Consul servers, with their addresses as glue.
pub fn nameservers(
    servers: &ServiceAnswers,
    domain: &Name,
    ttl: u32,
) -> (Vec<Record>, Vec<Record>) {
    let mut ns = Vec::new();
    let mut glue = Vec::new();
    for server in servers.select(None) {
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
pub fn ns_question(servers: &ServiceAnswers, domain: &Name, ttl: u32) -> Answer {
    let (ns, glue) = nameservers(servers, domain, ttl);
    Answer::positive(ns, glue)
}

/// Consul answers SOA questions for any name in its domain with the SOA, the servers as
/// authority and their addresses as glue.
pub fn soa_question(servers: &ServiceAnswers, domain: &Name, ttl: u32) -> Answer {
    let (ns, glue) = nameservers(servers, domain, ttl);
    Answer {
        authorities: ns,
        ..Answer::positive(vec![soa(domain)], glue)
    }
}
