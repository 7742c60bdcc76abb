//! Turns a query name into what it asks for, with Consul's parsing rules.
//!
//! One grammar for every kind of name, as current Consul reads it: the domain is removed, the
//! rightmost kind label (`service`, `connect`, `virtual`, `ingress`, `node`, `query`, `addr`)
//! ends the parts, and the labels after it are the locality: one datacenter label, or
//! labelled pairs (`dc2.dc`, `p1.peer`, `team.ns`, `ap1.ap`, `sg1.sg`, `grpc.port`).
//! `<tag>.<service>`, a tag holding dots (`a.b.<service>`), and RFC 2782's `_<service>._<tag>`
//! (where only `_tcp` means "any tag": Consul treats `_udp` as a tag like any other) are the
//! service forms. Consul 1.8's own reading (a kind as the last or second-last label) gives the
//! same meaning for every name it accepts.

use hickory_proto::rr::{Name, RecordType};

use super::locality::locality;
use crate::catalog::{InstanceKind, NameFeature};

/// What a query name inside or outside our domain means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryName {
    /// Instances of a service: `[<tag>.]<service>.service[.<dc>].<domain>` or
    /// `_<service>._<tag>.service[...]` (kind `Service`); `[<tag>.]<service>.connect[...]`
    /// (the service's Connect proxies and Connect-native instances) or `.ingress` (the ingress
    /// gateways exposing it), where Consul ignores a tag, so `tag` is `None`.
    Instances {
        kind: InstanceKind,
        service: String,
        tag: Option<String>,
        /// Where it is read: a datacenter, or a key of [`crate::catalog::Scope`] (a peer, a
        /// namespace and partition); `None`: the local datacenter.
        scope: Option<String>,
        /// Consul 1.22's `<name>.port`: the named port SRV answers carry.
        port: Option<String>,
    },
    /// `<hex>.addr[.<dc>].<domain>`: an address spelled in hex (the SRV targets we hand out).
    /// The hex is lower-case and not checked yet: Consul answers bad hex and bad lengths
    /// differently.
    Address { hex: String },
    /// `<node>.node[.<dc>].<domain>`; a node name with dots is its labels joined.
    Node {
        node: String,
        /// A datacenter, or a key of [`crate::catalog::Scope`] (a peer, a partition).
        scope: Option<String>,
    },
    /// `<name or id>.query[.<dc>].<domain>`; a query name with dots is its labels joined.
    PreparedQuery {
        query: String,
        datacenter: Option<String>,
    },
    /// A name that exists without records of its own (RFC 8020 asks for NODATA, not NXDOMAIN,
    /// as names exist below it): the domain itself, a kind (`service`), a datacenter, or a kind
    /// in a datacenter. A `datacenter` Consul does not know makes the name not exist.
    NoRecords { datacenter: Option<String> },
    /// `<service>.virtual[.<peer>].<domain>`: the virtual IP Consul assigned the service
    /// (in `scope`, a peer's or a namespace's; `None`: the local one).
    Virtual {
        service: String,
        scope: Option<String>,
    },
    /// A form newer than Consul 1.8 (a peer, a namespace or partition, a sameness group, a
    /// named port, a peer's virtual IP): answered as `name` when the agent supports all it
    /// `needs`; `name` is `None` for a form whose data the bridge does not read (a sameness
    /// group with another kind than `.service`).
    Newer {
        needs: Vec<NameFeature>,
        name: Option<Box<QueryName>>,
    },
    /// Inside the domain but not a name we serve (a malformed or unsupported form).
    OtherInDomain,
    /// Not ours.
    OutOfDomain,
}

/// Parses `name` (any case), asked with `qtype`, against `domain` (lower-case, fully qualified).
pub(crate) fn parse(name: &Name, domain: &Name, qtype: RecordType) -> QueryName {
    if !domain.zone_of(name) {
        return QueryName::OutOfDomain;
    }
    let inside = usize::from(name.num_labels()) - usize::from(domain.num_labels());
    let labels: Option<Vec<String>> = name
        .iter()
        .take(inside)
        .map(|label| std::str::from_utf8(label).ok().map(str::to_ascii_lowercase))
        .collect();
    let Some(labels) = labels else {
        return QueryName::OtherInDomain;
    };
    parse_labels(&labels, qtype == RecordType::SRV).unwrap_or(QueryName::OtherInDomain)
}

/// The kinds Consul reads, right to left, as the end of a name's parts.
const KINDS: [&str; 7] = [
    "service", "connect", "virtual", "ingress", "node", "query", "addr",
];

/// `srv`: the question is for SRV records, where Consul also takes `_<svc>._<tag>` without the
/// `service` label (RFC 2782's own form).
fn parse_labels(labels: &[String], srv: bool) -> Option<QueryName> {
    let is_kind = |label: &String| KINDS.contains(&label.as_str());
    let no_records = |datacenter: Option<&String>| QueryName::NoRecords {
        datacenter: datacenter.cloned(),
    };
    // Names above the records (RFC 8020): the domain, a kind, a datacenter, a kind in one.
    match labels {
        [] => return Some(no_records(None)),
        [kind] if is_kind(kind) => return Some(no_records(None)),
        [kind, dc] if is_kind(kind) => return Some(no_records(Some(dc))),
        [dc] if !(srv && dc.starts_with('_')) => return Some(no_records(Some(dc))),
        _ => {}
    }
    // As Consul: the rightmost kind ends the parts, the labels after it are the locality;
    // without a kind, an SRV question's rightmost `_label` ends an RFC 2782 service name.
    let (parts_end, suffixes_start, kind) = match labels.iter().rposition(is_kind) {
        Some(at) => (at, at + 1, labels[at].as_str()),
        None if srv => match labels.iter().rposition(|label| label.starts_with('_')) {
            Some(at) => (at + 1, at + 1, "service"),
            None => return None,
        },
        None => return None,
    };
    let parts = &labels[..parts_end];
    let suffixes = &labels[suffixes_start..];
    let found = locality(suffixes, kind)?;
    // A prepared query takes at most one datacenter label, and nothing else.
    if kind == "query" && (suffixes.len() > 1 || !found.needs.is_empty()) {
        return None;
    }
    // Consul ignores the locality of an address: the name holds all there is to answer.
    if kind == "addr" {
        return match parts {
            [hex] => Some(QueryName::Address { hex: hex.clone() }),
            _ => None,
        };
    }
    let scope = found.scope_for(kind)?;
    // Named ports are read for services only; a sameness group's data is not read yet.
    let port = found.port.clone();
    if port.is_some() && kind != "service" {
        return None;
    }
    let named = match kind {
        "virtual" => QueryName::Virtual {
            service: parts.last()?.clone(),
            scope,
        },
        "node" if parts.is_empty() => return None,
        "node" => QueryName::Node {
            node: parts.join("."),
            scope,
        },
        kind @ ("connect" | "ingress") => QueryName::Instances {
            kind: match kind {
                "ingress" => InstanceKind::Ingress,
                _ => InstanceKind::Connect,
            },
            service: parts.last()?.clone(),
            tag: None,
            scope,
            port: None,
        },
        "query" if parts.is_empty() => return None,
        "query" => QueryName::PreparedQuery {
            query: parts.join("."),
            datacenter: scope,
        },
        _ => service_name(parts, scope, port)?,
    };
    let mut needs = found.needs;
    if needs.is_empty() {
        return Some(named);
    }
    if kind == "virtual" && !needs.contains(&NameFeature::VirtualIps) {
        needs.push(NameFeature::VirtualIps);
    }
    // A sameness group is read for services only (its other kinds are not documented).
    let served = found.group.is_none() || kind == "service";
    Some(QueryName::Newer {
        needs,
        name: served.then(|| Box::new(named)),
    })
}

fn service_name(
    parts: &[String],
    scope: Option<String>,
    port: Option<String>,
) -> Option<QueryName> {
    let (service, tag) = match parts {
        [] => return None,
        [service, tag] if service.starts_with('_') && tag.starts_with('_') => {
            let tag = &tag[1..];
            (
                service[1..].to_owned(),
                (tag != "tcp").then(|| tag.to_owned()),
            )
        }
        [tag @ .., service] => {
            let tag = (!tag.is_empty()).then(|| tag.join("."));
            (service.clone(), tag)
        }
    };
    if service.is_empty() {
        return None;
    }
    Some(QueryName::Instances {
        kind: InstanceKind::Service,
        service,
        tag,
        scope,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(name: &str) -> QueryName {
        parse_as(name, RecordType::A)
    }

    fn parse_as(name: &str, qtype: RecordType) -> QueryName {
        parse(
            &Name::from_ascii(name).unwrap(),
            &Name::from_ascii("consul.").unwrap(),
            qtype,
        )
    }

    fn service(service: &str, tag: Option<&str>, dc: Option<&str>) -> QueryName {
        QueryName::Instances {
            kind: InstanceKind::Service,
            service: service.into(),
            tag: tag.map(Into::into),
            scope: dc.map(Into::into),
            port: None,
        }
    }

    #[test]
    fn service_forms() {
        assert_eq!(parse_str("web.service.consul."), service("web", None, None));
        assert_eq!(parse_str("WeB.SeRvIcE.CoNsUl."), service("web", None, None));
        assert_eq!(
            parse_str("v1.web.service.consul."),
            service("web", Some("v1"), None)
        );
        assert_eq!(
            parse_str("a.b.web.service.consul."),
            service("web", Some("a.b"), None)
        );
        assert_eq!(
            parse_str("web.service.dc2.consul."),
            service("web", None, Some("dc2"))
        );
        assert_eq!(
            parse_str("_web._tcp.service.consul."),
            service("web", None, None)
        );
        assert_eq!(
            parse_str("_web._udp.service.consul."),
            service("web", Some("udp"), None)
        );
        assert_eq!(
            parse_str("_web._v1.service.dc1.consul."),
            service("web", Some("v1"), Some("dc1"))
        );
        assert_eq!(
            parse_str("_web.v1.service.consul."),
            service("v1", Some("_web"), None)
        );
    }

    #[test]
    fn rfc2782_form_without_the_service_label_only_for_srv() {
        assert_eq!(
            parse_as("_web._tcp.consul.", RecordType::SRV),
            service("web", None, None)
        );
        assert_eq!(
            parse_as("_web._v1.dc2.consul.", RecordType::SRV),
            service("web", Some("v1"), Some("dc2"))
        );
        assert_eq!(parse_str("_web._tcp.consul."), QueryName::OtherInDomain);
    }

    #[test]
    fn address_forms() {
        let address = |hex: &str| QueryName::Address { hex: hex.into() };
        assert_eq!(parse_str("0a010001.addr.dc1.consul."), address("0a010001"));
        assert_eq!(parse_str("0A010001.ADDR.consul."), address("0a010001"));
        assert_eq!(
            parse_str("x.0a010001.addr.consul."),
            QueryName::OtherInDomain
        );
    }

    #[test]
    fn node_forms() {
        let node = |name: &str, dc: Option<&str>| QueryName::Node {
            node: name.into(),
            scope: dc.map(Into::into),
        };
        assert_eq!(parse_str("ext1.node.consul."), node("ext1", None));
        assert_eq!(
            parse_str("EXT1.Node.dc2.consul."),
            node("ext1", Some("dc2"))
        );
        assert_eq!(parse_str("x.ext1.node.consul."), node("x.ext1", None));
        assert_eq!(parse_str("x.node.consul."), node("x", None));
    }

    #[test]
    fn prepared_query_forms() {
        let query = |name: &str, dc: Option<&str>| QueryName::PreparedQuery {
            query: name.into(),
            datacenter: dc.map(Into::into),
        };
        assert_eq!(parse_str("WebQ.query.consul."), query("webq", None));
        assert_eq!(
            parse_str("webq.query.dc2.consul."),
            query("webq", Some("dc2"))
        );
        assert_eq!(parse_str("x.webq.query.consul."), query("x.webq", None));
    }

    #[test]
    fn connect_and_ingress_forms_ignore_the_tag() {
        let gateway = |service: &str, dc: Option<&str>, kind| QueryName::Instances {
            kind,
            service: service.into(),
            tag: None,
            scope: dc.map(Into::into),
            port: None,
        };
        let (connect, ingress) = (InstanceKind::Connect, InstanceKind::Ingress);
        assert_eq!(
            parse_str("db.connect.consul."),
            gateway("db", None, connect)
        );
        assert_eq!(
            parse_str("v1.DB.connect.dc2.consul."),
            gateway("db", Some("dc2"), connect)
        );
        assert_eq!(
            parse_str("web.ingress.consul."),
            gateway("web", None, ingress)
        );
    }

    #[test]
    fn the_last_label_is_read_as_a_kind_before_a_datacenter() {
        // As Consul: `service` ends the name, so `addr` here is a service and `x` its tag.
        assert_eq!(
            parse_str("x.addr.service.consul."),
            service("addr", Some("x"), None)
        );
        assert_eq!(
            parse_str("web.service.query.consul."),
            QueryName::PreparedQuery {
                query: "web.service".into(),
                datacenter: None
            }
        );
        assert_eq!(
            parse_str("0a010001.addr.x.y.consul."),
            QueryName::OtherInDomain
        );
    }

    #[test]
    fn labelled_localities_are_read_as_current_consul_reads_them() {
        assert_eq!(
            parse_str("web.service.dc2.dc.consul."),
            service("web", None, Some("dc2"))
        );
        assert_eq!(
            parse_str("v1.web.service.DC2.dc.consul."),
            service("web", Some("v1"), Some("dc2"))
        );
        assert_eq!(
            parse_as("_web._tcp.service.dc2.dc.consul.", RecordType::SRV),
            service("web", None, Some("dc2"))
        );
        assert_eq!(
            parse_as("_web._v1.dc2.dc.consul.", RecordType::SRV),
            service("web", Some("v1"), Some("dc2"))
        );
        assert_eq!(
            parse_str("n1.node.dc2.dc.consul."),
            QueryName::Node {
                node: "n1".into(),
                scope: Some("dc2".into())
            }
        );
        assert_eq!(
            parse_str("db.connect.dc2.dc.consul."),
            QueryName::Instances {
                kind: InstanceKind::Connect,
                service: "db".into(),
                tag: None,
                scope: Some("dc2".into()),
                port: None,
            }
        );
        // A later pair of a key replaces an earlier one.
        assert_eq!(
            parse_str("web.service.dc1.dc.dc2.dc.consul."),
            service("web", None, Some("dc2"))
        );
        // A prepared query takes one unlabelled datacenter only.
        assert_eq!(
            parse_str("q.query.dc2.dc.consul."),
            QueryName::OtherInDomain
        );
    }

    #[test]
    fn names_above_the_records_exist_without_records() {
        let no_records = |dc: Option<&str>| QueryName::NoRecords {
            datacenter: dc.map(Into::into),
        };
        assert_eq!(parse_str("consul."), no_records(None));
        assert_eq!(parse_str("Service.consul."), no_records(None));
        assert_eq!(parse_str("query.consul."), no_records(None));
        assert_eq!(parse_str("dc2.consul."), no_records(Some("dc2")));
        assert_eq!(parse_str("node.dc2.consul."), no_records(Some("dc2")));
        assert_eq!(parse_str("x.dc2.consul."), QueryName::OtherInDomain);
    }

    #[test]
    fn other_names() {
        assert_eq!(
            parse_str("web.service.dc1.extra.consul."),
            QueryName::OtherInDomain
        );
        assert_eq!(
            parse_str("web.service.example.com."),
            QueryName::OutOfDomain
        );
        assert_eq!(parse_str("notconsul."), QueryName::OutOfDomain);
    }
}
