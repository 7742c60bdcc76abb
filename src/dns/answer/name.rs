//! Turns a query name into what it asks for, with Consul's parsing rules.
//!
//! Consul reads a name from the right: the domain, then at most one datacenter label, then the
//! kind (`service`), then the parts. `<tag>.<service>`, a tag holding dots
//! (`a.b.<service>`), and RFC 2782's `_<service>._<tag>` (where only `_tcp` means "any tag":
//! Consul treats `_udp` as a tag like any other) are the service forms.

use hickory_proto::rr::{Name, RecordType};

use crate::catalog::InstanceKind;

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
    /// Inside the domain but not a name we serve (a malformed or unsupported form).
    OtherInDomain,
    /// Not ours.
    OutOfDomain,
}

/// Whether `name` is in `in-addr.arpa.` or `ip6.arpa.` (cheap: no allocation).
pub(crate) fn is_reverse(name: &Name) -> bool {
    let mut labels = name.iter().rev();
    let (Some(arpa), Some(zone)) = (labels.next(), labels.next()) else {
        return false;
    };
    arpa.eq_ignore_ascii_case(b"arpa")
        && (zone.eq_ignore_ascii_case(b"in-addr") || zone.eq_ignore_ascii_case(b"ip6"))
}

/// The address a reverse-lookup name stands for: `d.c.b.a.in-addr.arpa.` or the 32 nibbles of
/// `ip6.arpa.`; `None` for any other name (including partial ones).
pub(crate) fn reverse_address(name: &Name) -> Option<std::net::IpAddr> {
    if !is_reverse(name) {
        return None;
    }
    let labels: Vec<String> = name
        .iter()
        .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
        .collect();
    match labels.as_slice() {
        [d, c, b, a, in_addr, arpa] if in_addr == "in-addr" && arpa == "arpa" => {
            let octet = |text: &String| text.parse::<u8>().ok();
            Some(std::net::IpAddr::from([
                octet(a)?,
                octet(b)?,
                octet(c)?,
                octet(d)?,
            ]))
        }
        [nibbles @ .., ip6, arpa] if nibbles.len() == 32 && ip6 == "ip6" && arpa == "arpa" => {
            let mut bytes = [0u8; 16];
            for (i, nibble) in nibbles.iter().rev().enumerate() {
                let value = u8::from_str_radix(nibble, 16)
                    .ok()
                    .filter(|_| nibble.len() == 1)?;
                bytes[i / 2] |= if i % 2 == 0 { value << 4 } else { value };
            }
            Some(std::net::IpAddr::from(bytes))
        }
        _ => None,
    }
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

/// `srv`: the question is for SRV records, where Consul also takes `_<svc>._<tag>` without the
/// `service` label (RFC 2782's own form).
fn parse_labels(labels: &[String], srv: bool) -> Option<QueryName> {
    // As Consul: the last label is the kind, or else it is a datacenter and the one before it is
    // the kind; a kind's parts that do not fit make the whole name invalid (no second reading).
    const KINDS: [&str; 6] = ["service", "connect", "ingress", "node", "query", "addr"];
    let is_kind = |label: &String| KINDS.contains(&label.as_str());
    let is_srv_shorthand = |label: &String| srv && label.starts_with('_');
    let no_records = |datacenter: Option<&String>| QueryName::NoRecords {
        datacenter: datacenter.cloned(),
    };
    match labels {
        [] => return Some(no_records(None)),
        [kind] if is_kind(kind) => return Some(no_records(None)),
        [kind, dc] if is_kind(kind) => return Some(no_records(Some(dc))),
        [dc] if !is_srv_shorthand(dc) => return Some(no_records(Some(dc))),
        _ => {}
    }
    let (kind_at, datacenter) = match labels {
        [.., kind] if is_kind(kind) => (labels.len() - 1, None),
        [.., last] if is_srv_shorthand(last) => return service_name(labels, None),
        [.., kind, dc] if is_kind(kind) => (labels.len() - 2, Some(dc)),
        [parts @ .., last, dc] if is_srv_shorthand(last) => {
            return service_name(&labels[..parts.len() + 1], Some(dc));
        }
        _ => return None,
    };
    let parts = &labels[..kind_at];
    match labels[kind_at].as_str() {
        // Consul ignores the datacenter of an address: the name holds all there is to answer.
        "addr" => match parts {
            [hex] => Some(QueryName::Address { hex: hex.clone() }),
            _ => None,
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
    fn reverse_names() {
        let reverse = |text: &str| reverse_address(&Name::from_ascii(text).unwrap());
        assert_eq!(
            reverse("1.0.2.10.in-addr.arpa."),
            Some("10.2.0.1".parse().unwrap())
        );
        assert_eq!(
            reverse("3.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."),
            Some("fd00::23".parse().unwrap())
        );
        assert_eq!(reverse("0.2.10.in-addr.arpa."), None);
        assert_eq!(reverse("256.0.2.10.in-addr.arpa."), None);
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
