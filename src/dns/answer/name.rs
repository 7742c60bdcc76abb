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

use super::locality::{Locality, locality};
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
        datacenter: Option<String>,
    },
    /// `<hex>.addr[.<dc>].<domain>`: an address spelled in hex (the SRV targets we hand out).
    /// The hex is lower-case and not checked yet: Consul answers bad hex and bad lengths
    /// differently.
    Address { hex: String },
    /// `<node>.node[.<dc>].<domain>`; a node name with dots is its labels joined.
    Node {
        node: String,
        datacenter: Option<String>,
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
    /// `<service>.virtual[.<dc>.dc].<domain>`: the virtual IP Consul assigned the service.
    Virtual { service: String },
    /// A form newer than Consul 1.8 whose data the bridge does not read yet (a peer, a
    /// namespace or partition, a sameness group, a named port, a virtual IP): what it needs of
    /// the agent decides the answer.
    Newer { needs: Vec<NameFeature> },
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
    let Locality { datacenter, needs } = locality(suffixes, kind)?;
    let datacenter = datacenter.as_ref();
    // A prepared query takes at most one datacenter label, and nothing else.
    if kind == "query" && (suffixes.len() > 1 || !needs.is_empty()) {
        return None;
    }
    let newer = |mut needs: Vec<NameFeature>, extra: Option<NameFeature>| {
        needs.extend(extra.filter(|feature| !needs.contains(feature)));
        QueryName::Newer { needs }
    };
    match kind {
        // Consul ignores the locality of an address: the name holds all there is to answer.
        "addr" => match parts {
            [hex] => Some(QueryName::Address { hex: hex.clone() }),
            _ => None,
        },
        // A datacenter is ignored: virtual IPs are per datacenter, never asked across.
        "virtual" if needs.is_empty() => parts.last().map(|service| QueryName::Virtual {
            service: service.clone(),
        }),
        "virtual" => (!parts.is_empty()).then(|| newer(needs, Some(NameFeature::VirtualIps))),
        _ if !needs.is_empty() => match kind == "service" {
            true => service_name(parts, None).map(|_| newer(needs, None)),
            false => (!parts.is_empty()).then(|| newer(needs, None)),
        },
        "node" => (!parts.is_empty()).then(|| QueryName::Node {
            node: parts.join("."),
            datacenter: datacenter.cloned(),
        }),
        kind @ ("connect" | "ingress") => parts.last().map(|service| QueryName::Instances {
            kind: match kind {
                "ingress" => InstanceKind::Ingress,
                _ => InstanceKind::Connect,
            },
            service: service.clone(),
            tag: None,
            datacenter: datacenter.cloned(),
        }),
        "query" => (!parts.is_empty()).then(|| QueryName::PreparedQuery {
            query: parts.join("."),
            datacenter: datacenter.cloned(),
        }),
        _ => service_name(parts, datacenter),
    }
}

fn service_name(parts: &[String], datacenter: Option<&String>) -> Option<QueryName> {
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
        datacenter: datacenter.cloned(),
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
            datacenter: dc.map(Into::into),
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
            datacenter: dc.map(Into::into),
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
            datacenter: dc.map(Into::into),
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
                datacenter: Some("dc2".into())
            }
        );
        assert_eq!(
            parse_str("db.connect.dc2.dc.consul."),
            QueryName::Instances {
                kind: InstanceKind::Connect,
                service: "db".into(),
                tag: None,
                datacenter: Some("dc2".into()),
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
    fn newer_forms_say_what_they_need_of_the_agent() {
        let needs = |needs: &[NameFeature]| QueryName::Newer {
            needs: needs.to_vec(),
        };
        use NameFeature::*;
        assert_eq!(parse_str("web.service.p1.peer.consul."), needs(&[Peering]));
        assert_eq!(
            parse_str("web.service.team.ns.ap1.ap.dc2.dc.consul."),
            needs(&[Namespaces])
        );
        assert_eq!(
            parse_str("web.service.sg1.sg.consul."),
            needs(&[SamenessGroups])
        );
        assert_eq!(
            parse_as("web.service.grpc.port.consul.", RecordType::SRV),
            needs(&[NamedPorts])
        );
        assert_eq!(
            parse_str("web.service.grpc.port.p1.peer.consul."),
            needs(&[NamedPorts, Peering])
        );
        assert_eq!(
            parse_str("web.virtual.consul."),
            QueryName::Virtual {
                service: "web".into()
            }
        );
        assert_eq!(
            parse_str("web.virtual.p1.consul."),
            needs(&[Peering, VirtualIps])
        );
        assert_eq!(
            parse_str("web.virtual.p1.peer.consul."),
            needs(&[Peering, VirtualIps])
        );
        assert_eq!(parse_str("n1.node.p1.peer.consul."), needs(&[Peering]));
        // Not names: dc with peer, sg with dc, unknown keys, odd label counts, 1.19's alias.
        for bad in [
            "web.service.dc2.dc.p1.peer.consul.",
            "web.service.sg1.sg.dc2.dc.consul.",
            "web.service.x.cluster.consul.",
            "web.service.dc2.dc.x.consul.",
            "web.service.a.b.c.d.e.f.g.h.consul.",
        ] {
            assert!(
                parse_str(bad) == QueryName::OtherInDomain,
                "{bad}: {:?}",
                parse_str(bad)
            );
        }
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
