//! The request handler of the general path: reads the question, asks the catalog, and writes
//! the answer through hickory-server's request and response types (which truncate with TC to
//! the client's UDP size). Names outside the Consul domain go to the zone files and recursors.
//! Every transport hands its messages here through [`super::general`]; a request error becomes
//! a response code here and nowhere else.

use std::sync::Arc;

use hickory_proto::{
    op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode},
    rr::{DNSClass, Name, RData, RecordType},
};
use hickory_server::{
    net::{runtime::Time, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};
use tracing::warn;

use super::name::{self, QueryName};
use super::records::{self, Answer, Zone};
use super::reverse_name;
use crate::cidr::ClientNet;
use crate::dns::fallback::Fallback;
use crate::dns::gate::{ExtendedError, Gate, mark_client_dependent, note_extended_error};
use crate::wire::{MAX_UDP_ANSWER_LIMIT, udp_payload};
use crate::{
    catalog::{
        CONSUL_SERVICE, Catalog, InstanceKind, NameFeature, NodeLookup, ServiceAnswers,
        ServiceLookup,
    },
    config::{Config, DnsOptions},
};

/// A question for a reverse name, with the address it spells (`None` for a partial name, which
/// Consul also finds nothing for).
struct ReverseQuestion {
    asked: Name,
    qtype: RecordType,
    address: Option<std::net::IpAddr>,
}

/// Answers queries for the Consul domain from the catalog, and hands other names to the zone
/// files and recursors when there are any.
#[derive(Clone)]
pub(crate) struct ConsulHandler {
    catalog: Catalog,
    zone: Zone,
    options: DnsOptions,
    fallback: Option<Arc<Fallback>>,
    /// Who may ask (the gate's access step; the handler renders the refusal).
    gate: Arc<Gate>,
}

impl ConsulHandler {
    pub(crate) fn new(
        catalog: Catalog,
        config: &Config,
        fallback: Option<Arc<Fallback>>,
        gate: Arc<Gate>,
    ) -> Self {
        Self {
            catalog,
            zone: Zone::from_config(config),
            options: config.dns.clone(),
            fallback,
            gate,
        }
    }

    /// Whether `name` is in the domain or the alternative domain.
    fn is_ours(&self, name: &Name) -> bool {
        self.zone.domain.zone_of(name)
            || self
                .options
                .alt_domain
                .as_ref()
                .is_some_and(|alt| alt.zone_of(name))
    }

    /// Whether answers carry RA: exactly when outside names are forwarded, as Consul.
    pub(crate) fn recursion_available(&self) -> bool {
        self.fallback.as_ref().is_some_and(|f| f.forwards())
    }

    /// A well-formed query for a name in `in-addr.arpa.` / `ip6.arpa.`.
    fn reverse_question(&self, request: &Request) -> Option<ReverseQuestion> {
        if request.metadata.op_code != OpCode::Query {
            return None;
        }
        let info = request.request_info().ok()?;
        let asked = info.query.original().name();
        let class_in = info.query.query_class() == DNSClass::IN;
        (class_in && reverse_name::is_reverse(asked)).then(|| ReverseQuestion {
            asked: asked.clone(),
            qtype: info.query.query_type(),
            address: reverse_name::reverse_address(asked),
        })
    }

    /// Whether `request` is a well-formed query for a name outside the Consul domains.
    fn is_outside(&self, request: &Request) -> bool {
        request.metadata.op_code == OpCode::Query
            && request
                .request_info()
                .is_ok_and(|info| !self.is_ours(info.query.original().name()))
    }

    /// The answer to `request`; for a question in the alternative domain on an agent that
    /// answers in it (1.11 and later), with the names of the answer moved there, as that agent.
    async fn answer(&self, request: &Request, client: ClientNet) -> Answer {
        let mut answer = self.answer_in_domain(request, client).await;
        if let (Some(alt), Ok(info)) = (&self.options.alt_domain, request.request_info()) {
            let asked = info.query.original().name();
            let in_alt = !self.zone.domain.zone_of(asked) && alt.zone_of(asked);
            let agent = self.catalog.agent_version();
            if in_alt && agent.is_some_and(|agent| agent.answers_in_alt_domain()) {
                records::move_to_domain(&mut answer, &self.zone.domain, alt);
            }
        }
        answer
    }

    async fn answer_in_domain(&self, request: &Request, client: ClientNet) -> Answer {
        if request.metadata.op_code != OpCode::Query {
            return Answer::error(ResponseCode::NotImp);
        }
        let Ok(info) = request.request_info() else {
            return Answer::error(ResponseCode::FormErr);
        };
        let asked = info.query.original().name();
        let qtype = info.query.query_type();
        let zone = &self.zone;
        let mut parsed = name::parse(asked, &zone.domain, qtype);
        if parsed == QueryName::OutOfDomain
            && let Some(alt) = &self.options.alt_domain
        {
            parsed = name::parse(asked, alt, qtype);
        }
        if parsed == QueryName::OutOfDomain {
            return Answer::error(ResponseCode::Refused);
        }
        // The catalog holds IN data only; another class must not get it (NSD refuses too).
        if info.query.query_class() != DNSClass::IN {
            return Answer::error(ResponseCode::Refused);
        }
        match qtype {
            RecordType::AXFR | RecordType::IXFR => return Answer::error(ResponseCode::NotImp),
            RecordType::NS | RecordType::SOA => return self.zone_question(qtype, client).await,
            _ => {}
        }
        if let QueryName::Address { hex } = &parsed {
            return records::address(asked, hex, zone);
        }
        if let QueryName::Newer { needs, name } = parsed {
            parsed = match (self.catalog.agent_version(), name) {
                // As that agent's own DNS: a label it does not know makes the name not exist.
                (Some(agent), _) if !needs.iter().all(|need| agent.supports(*need)) => {
                    return Answer::nxdomain(zone);
                }
                (Some(_), Some(name)) => *name,
                (Some(_), None) => {
                    note_extended_error(ExtendedError::NOT_SUPPORTED);
                    return Answer::error(ResponseCode::ServFail);
                }
                (None, _) => {
                    note_extended_error(ExtendedError::NOT_READY);
                    return Answer::error(ResponseCode::ServFail);
                }
            };
        }
        if let QueryName::Virtual { service, scope } = &parsed {
            return self
                .virtual_ip(asked, qtype, service, scope.as_deref())
                .await;
        }
        if let QueryName::Node { node, scope } = &parsed {
            // Consul looks a node up only for these types; any other gets an empty NOERROR,
            // even for a node that does not exist.
            if !matches!(
                qtype,
                RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::TXT
            ) {
                return records::empty();
            }
            return match self.catalog.node(scope.as_deref(), node).await {
                NodeLookup::Found(record) => records::node(asked, qtype, &record, zone.node_ttl),
                NodeLookup::Unknown => Answer::nxdomain(zone),
                NodeLookup::NotReady => {
                    note_extended_error(ExtendedError::NOT_READY);
                    Answer::error(ResponseCode::ServFail)
                }
            };
        }
        let (lookup, tag) = match parsed {
            QueryName::Instances {
                kind,
                service,
                tag,
                scope,
                port,
            } => {
                let lookup = self.catalog.instances(scope.as_deref(), &service, kind);
                (with_named_port(lookup.await, port.as_deref()), tag)
            }
            QueryName::PreparedQuery { query, datacenter } => (
                self.catalog
                    .prepared_query(datacenter.as_deref(), &query)
                    .await,
                None,
            ),
            QueryName::NoRecords { datacenter } => {
                let exists = match datacenter {
                    Some(dc) => self.catalog.datacenter_exists(&dc).await,
                    None => Some(true),
                };
                return match exists {
                    Some(true) => Answer::nodata(zone),
                    Some(false) => Answer::nxdomain(zone),
                    None => Answer::error(ResponseCode::ServFail),
                };
            }
            _ => return Answer::nxdomain(zone),
        };
        match lookup {
            ServiceLookup::Found(answers) => {
                records::service(asked, qtype, &answers, tag.as_deref(), zone, client)
            }
            ServiceLookup::Stale(answers) => {
                note_extended_error(ExtendedError::STALE_ANSWER);
                records::service(asked, qtype, &answers, tag.as_deref(), zone, client)
            }
            ServiceLookup::Unknown => Answer::nxdomain(zone),
            ServiceLookup::NotReady => {
                note_extended_error(ExtendedError::NOT_READY);
                Answer::error(ResponseCode::ServFail)
            }
        }
    }

    /// `<service>.virtual` on an agent that knows it: the virtual IP read from the service's
    /// Connect instances; none (or no such service): NOERROR without records, as Consul.
    async fn virtual_ip(
        &self,
        asked: &Name,
        qtype: RecordType,
        service: &str,
        scope: Option<&str>,
    ) -> Answer {
        match self.catalog.agent_version() {
            Some(agent) if agent.supports(NameFeature::VirtualIps) => {}
            Some(_) => return Answer::nxdomain(&self.zone),
            None => {
                note_extended_error(ExtendedError::NOT_READY);
                return Answer::error(ResponseCode::ServFail);
            }
        }
        let lookup = self
            .catalog
            .instances(scope, service, InstanceKind::Connect)
            .await;
        match lookup {
            ServiceLookup::Found(answers) => {
                records::virtual_ip(asked, qtype, answers.virtual_ip(), &self.zone)
            }
            ServiceLookup::Stale(answers) => {
                note_extended_error(ExtendedError::STALE_ANSWER);
                records::virtual_ip(asked, qtype, answers.virtual_ip(), &self.zone)
            }
            ServiceLookup::Unknown => records::empty(),
            ServiceLookup::NotReady => {
                note_extended_error(ExtendedError::NOT_READY);
                Answer::error(ResponseCode::ServFail)
            }
        }
    }

    /// NS and SOA questions, which Consul answers alike for every name in its domain.
    async fn zone_question(&self, qtype: RecordType, client: ClientNet) -> Answer {
        match self.catalog.service(None, CONSUL_SERVICE).await {
            ServiceLookup::Found(servers) | ServiceLookup::Stale(servers)
                if qtype == RecordType::NS =>
            {
                records::ns_question(&servers, &self.zone, client)
            }
            ServiceLookup::Found(servers) | ServiceLookup::Stale(servers) => {
                records::soa_question(&servers, &self.zone, client)
            }
            ServiceLookup::Unknown | ServiceLookup::NotReady => {
                Answer::error(ResponseCode::ServFail)
            }
        }
    }
}

impl ConsulHandler {
    /// Consul's `udp_answer_limit` for a UDP question without EDNS: at most that many answers,
    /// and of the additional records only the first for each SRV target kept. Returns whether
    /// TC is to be set: answers were cut and `enable_truncate` asks for it.
    fn limit_udp_answers(&self, answer: &mut Answer) -> bool {
        let Some(limit) = self.options.udp_answer_limit else {
            return false;
        };
        let limit = limit.min(MAX_UDP_ANSWER_LIMIT);
        if answer.answers.len() <= limit {
            return false;
        }
        answer.answers.truncate(limit);
        let targets: Vec<Name> = answer
            .answers
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(srv.target.to_lowercase()),
                _ => None,
            })
            .collect();
        let mut kept: Vec<Name> = Vec::new();
        answer.additionals.retain(|record| {
            let name = record.name.to_lowercase();
            let keep = targets.contains(&name) && !kept.contains(&name);
            if keep {
                kept.push(name);
            }
            keep
        });
        self.options.enable_truncate
    }
}

#[async_trait::async_trait]
impl RequestHandler for ConsulHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.respond::<R, T>(request, response_handle).await
    }
}

impl ConsulHandler {
    async fn respond<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        // RFC 6891 §6.1.3: an EDNS version we do not speak gets BADVERS, with ours (0).
        let unknown_edns = request.edns.as_ref().is_some_and(|edns| edns.version() > 0);
        // Who asked: the peer, or the subnet a trusted forwarder reports (a malformed report
        // was answered FORMERR before the question came here).
        let peer = request.src().ip();
        let client = self
            .gate
            .client_of(peer, request.edns.as_ref())
            .map_or(ClientNet::from(peer), |(client, _)| client);
        // A client outside --allow-query is refused, whatever it asks; then every answer
        // depends on who asks (a cache shared by clients must not keep it for others).
        let allowed = self.gate.allows(client);
        if let Some(scope) = self.gate.access_scope(client) {
            mark_client_dependent(scope);
        }
        // Reverse names: the catalog first, as Consul, then the zones and recursors.
        let reverse = match allowed && !unknown_edns {
            true => self.reverse_question(request),
            false => None,
        };
        let pointer = match reverse.as_ref().and_then(|r| r.address) {
            Some(ip) => {
                if let Some(scope) = self.catalog.reverse_client_scope(ip, client) {
                    mark_client_dependent(scope);
                }
                self.catalog.reverse(ip, client).await
            }
            None => None,
        };
        if allowed
            && !unknown_edns
            && pointer.is_none()
            && let Some(fallback) = &self.fallback
            && self.is_outside(request)
        {
            return fallback.handle::<R, T>(request, response_handle).await;
        }
        let mut answer = match (reverse, pointer) {
            _ if !allowed => {
                note_extended_error(ExtendedError::PROHIBITED);
                Answer::error(ResponseCode::Refused)
            }
            _ if unknown_edns => Answer::error(ResponseCode::BADVERS),
            (Some(r), Some(target)) => records::pointer(&r.asked, r.qtype, target, &self.zone),
            // Consul recurses when it has no name for the address; without recursors: SERVFAIL.
            (Some(_), None) => Answer::error(ResponseCode::ServFail),
            (None, _) => self.answer(request, client).await,
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        if request.protocol() == Protocol::Udp && request.edns.is_none() {
            metadata.truncation = self.limit_udp_answers(&mut answer);
        }
        metadata.authoritative = answer.authoritative;
        // As Consul: recursion is available exactly when recursors are configured.
        metadata.recursion_available = self.recursion_available();
        metadata.response_code = answer.rcode;
        // hickory caps a UDP answer at the response's advertised payload, so the client's own
        // size (bounded) goes there: the answer never exceeds what the client can take.
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(udp_payload(Some(asked.max_payload())));
            // RFC 3225: the DO bit is copied into the answer (there are no signatures to add).
            edns.set_dnssec_ok(asked.flags().dnssec_ok);
            edns
        });
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let response = builder.build(
            metadata,
            answer.answers.iter(),
            answer.authorities.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                warn!(%error, "cannot send a DNS response");
                let mut metadata = Metadata::new(
                    request.metadata.id,
                    MessageType::Response,
                    request.metadata.op_code,
                );
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// A service's lookup for a `<port>.port` name: its instances with that named port, their SRV
/// records carrying it; none has it: the name does not exist.
fn with_named_port(lookup: ServiceLookup, port: Option<&str>) -> ServiceLookup {
    let Some(port) = port else {
        return lookup;
    };
    let narrowed = |answers: &ServiceAnswers| answers.with_port(port).map(Arc::new);
    match lookup {
        ServiceLookup::Found(answers) => {
            narrowed(&answers).map_or(ServiceLookup::Unknown, ServiceLookup::Found)
        }
        ServiceLookup::Stale(answers) => {
            narrowed(&answers).map_or(ServiceLookup::Unknown, ServiceLookup::Stale)
        }
        other => other,
    }
}
