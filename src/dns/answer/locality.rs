//! The locality of a Consul name: the labels right of its kind (`web.service.<here>.consul`),
//! read as current Consul reads them (`parseLocality` in `agent/dns_ce.go`, with Enterprise's
//! keys): each key's value, which features beyond Consul 1.8 the name uses, and the scope
//! (datacenter, peer, namespace, partition) a name of each kind reads from.

use crate::catalog::{NameFeature, Scope};

/// What the labels right of a name's kind say (its locality): each key's value, and what names
/// since Consul 1.8 add.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Locality {
    pub(crate) datacenter: Option<String>,
    pub(crate) peer: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) partition: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) port: Option<String>,
    /// Features beyond a datacenter the name uses (`.peer`, `.ns`, `.ap`, `.sg`, `.port`).
    pub(crate) needs: Vec<NameFeature>,
}

impl Locality {
    /// Where a name of `kind` with this locality is read (a key of [`Scope`]; `Some(None)`:
    /// the local datacenter), as Consul's DNS reads it: a peer is ignored by `.connect` and
    /// `.ingress`, a datacenter by `.virtual`, and nodes live in the default namespace. `None`:
    /// no such name.
    pub(crate) fn scope_for(&self, kind: &str) -> Option<Option<String>> {
        let (dc, peer) = (self.datacenter.as_deref(), self.peer.as_deref());
        let (namespace, partition) = (self.namespace.as_deref(), self.partition.as_deref());
        let scope = match kind {
            "connect" | "ingress" => Scope {
                datacenter: dc,
                namespace,
                partition,
                ..Scope::default()
            },
            "virtual" => Scope {
                peer,
                namespace,
                partition,
                ..Scope::default()
            },
            "node" if namespace.is_some_and(|ns| ns != "default") => return None,
            "node" => Scope {
                datacenter: dc,
                peer,
                partition,
                ..Scope::default()
            },
            _ => Scope {
                datacenter: dc,
                peer,
                namespace,
                partition,
                group: self.group.as_deref(),
            },
        };
        if scope == Scope::default() {
            return Some(None);
        }
        scope.key().map(Some)
    }
}

/// As current Consul parses the labels right of the kind (`parseLocality`, CE and Enterprise
/// keys): none; one unlabelled label (a datacenter, for `.virtual` a peer); or 2, 4 or 6
/// labels as `<value>.<key>` pairs, `dc`, `peer`, `port`, `ns`, `ap` or `sg`, a later pair of
/// a key replacing an earlier one; `dc` with `peer`, or `sg` with either, is no name. `None`:
/// not a locality (the name does not exist).
pub(crate) fn locality(suffixes: &[String], kind: &str) -> Option<Locality> {
    let mut found = Locality::default();
    match suffixes {
        [] => return Some(found),
        [peer] if kind == "virtual" => {
            found.peer = Some(peer.clone());
            found.needs.push(NameFeature::Peering);
            return Some(found);
        }
        [one] => {
            found.datacenter = Some(one.clone());
            return Some(found);
        }
        _ if suffixes.len() % 2 == 1 || suffixes.len() > 6 => return None,
        _ => {}
    }
    for pair in suffixes.chunks(2) {
        let [value, key] = pair else {
            return None;
        };
        let (place, feature) = match key.as_str() {
            "dc" => (&mut found.datacenter, None),
            "peer" => (&mut found.peer, Some(NameFeature::Peering)),
            "ns" => (&mut found.namespace, Some(NameFeature::Namespaces)),
            "ap" => (&mut found.partition, Some(NameFeature::Namespaces)),
            "sg" => (&mut found.group, Some(NameFeature::SamenessGroups)),
            "port" => (&mut found.port, Some(NameFeature::NamedPorts)),
            _ => return None,
        };
        *place = Some(value.clone());
        if let Some(feature) = feature.filter(|feature| !found.needs.contains(feature)) {
            found.needs.push(feature);
        }
    }
    let (datacenter, peer) = (found.datacenter.is_some(), found.peer.is_some());
    if (datacenter && peer) || (found.group.is_some() && (datacenter || peer)) {
        return None;
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::{Name, RecordType};

    use super::super::name::{QueryName, parse};
    use super::*;
    use crate::catalog::InstanceKind;

    fn labels(text: &str) -> Vec<String> {
        text.split('.')
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn pairs_unlabelled_datacenters_and_what_is_no_locality() {
        let read = |text: &str, kind: &str| locality(&labels(text), kind);
        let dc = |name: &str| Locality {
            datacenter: Some(name.into()),
            ..Locality::default()
        };
        assert_eq!(read("", "service"), Some(Locality::default()));
        assert_eq!(read("dc2", "service"), Some(dc("dc2")));
        assert_eq!(read("dc2.dc", "node"), Some(dc("dc2")));
        assert_eq!(read("dc1.dc.dc2.dc", "service"), Some(dc("dc2")));
        assert_eq!(
            read("p1", "virtual"),
            Some(Locality {
                peer: Some("p1".into()),
                needs: vec![NameFeature::Peering],
                ..Locality::default()
            })
        );
        assert_eq!(
            read("team.ns.ap1.ap.grpc.port", "service"),
            Some(Locality {
                namespace: Some("team".into()),
                partition: Some("ap1".into()),
                port: Some("grpc".into()),
                needs: vec![NameFeature::Namespaces, NameFeature::NamedPorts],
                ..Locality::default()
            })
        );
        for bad in [
            "a.b.c",
            "x.cluster",
            "dc2.dc.p1.peer",
            "sg1.sg.p1.peer",
            "a.dc.b.dc.c.dc.d.dc",
        ] {
            assert_eq!(read(bad, "service"), None, "{bad}");
        }
    }

    fn parse_str(name: &str) -> QueryName {
        parse_as(name, RecordType::A)
    }

    fn parse_as(name: &str, qtype: RecordType) -> QueryName {
        let domain = Name::from_ascii("consul.").unwrap_or_else(|e| panic!("{e}"));
        let name = Name::from_ascii(name).unwrap_or_else(|e| panic!("{e}"));
        parse(&name, &domain, qtype)
    }

    #[test]
    fn newer_forms_say_what_they_need_of_the_agent_and_where_they_read() {
        let newer = |needs: &[NameFeature], name: QueryName| QueryName::Newer {
            needs: needs.to_vec(),
            name: Some(Box::new(name)),
        };
        let scoped = |scope: &str, port: Option<&str>| QueryName::Instances {
            kind: InstanceKind::Service,
            service: "web".into(),
            tag: None,
            scope: Some(scope.into()),
            port: port.map(Into::into),
        };
        use NameFeature::*;
        assert_eq!(
            parse_str("web.service.p1.peer.consul."),
            newer(&[Peering], scoped("peer=p1", None))
        );
        assert_eq!(
            parse_str("web.service.team.ns.ap1.ap.dc2.dc.consul."),
            newer(&[Namespaces], scoped("dc2;ns=team;ap=ap1", None))
        );
        assert_eq!(
            parse_str("web.service.sg1.sg.consul."),
            newer(&[SamenessGroups], scoped("sg=sg1", None))
        );
        assert_eq!(
            parse_str("web.service.sg1.sg.ap1.ap.consul."),
            newer(&[SamenessGroups, Namespaces], scoped("sg=sg1;ap=ap1", None))
        );
        // A group with another kind: no source says what it means.
        assert_eq!(
            parse_str("web.connect.sg1.sg.consul."),
            QueryName::Newer {
                needs: vec![SamenessGroups],
                name: None
            }
        );
        let local_port = QueryName::Instances {
            kind: InstanceKind::Service,
            service: "web".into(),
            tag: None,
            scope: None,
            port: Some("grpc".into()),
        };
        assert_eq!(
            parse_as("web.service.grpc.port.consul.", RecordType::SRV),
            newer(&[NamedPorts], local_port)
        );
        assert_eq!(
            parse_str("web.service.grpc.port.p1.peer.consul."),
            newer(&[NamedPorts, Peering], scoped("peer=p1", Some("grpc")))
        );
        assert_eq!(
            parse_str("web.virtual.consul."),
            QueryName::Virtual {
                service: "web".into(),
                scope: None
            }
        );
        let peer_virtual = QueryName::Virtual {
            service: "web".into(),
            scope: Some("peer=p1".into()),
        };
        for name in ["web.virtual.p1.consul.", "web.virtual.p1.peer.consul."] {
            assert_eq!(
                parse_str(name),
                newer(&[Peering, VirtualIps], peer_virtual.clone())
            );
        }
        // Consul's `.connect` ignores a peer; a node of a peer is named in the peer.
        assert_eq!(
            parse_str("db.connect.p1.peer.consul."),
            newer(
                &[Peering],
                QueryName::Instances {
                    kind: InstanceKind::Connect,
                    service: "db".into(),
                    tag: None,
                    scope: None,
                    port: None,
                }
            )
        );
        assert_eq!(
            parse_str("n1.node.p1.peer.consul."),
            newer(
                &[Peering],
                QueryName::Node {
                    node: "n1".into(),
                    scope: Some("peer=p1".into())
                }
            )
        );
        // Not names: dc with peer, sg with dc, unknown keys, odd label counts, 1.19's alias.
        for bad in [
            "web.service.dc2.dc.p1.peer.consul.",
            "web.service.sg1.sg.dc2.dc.consul.",
            "web.service.x.cluster.consul.",
            "web.service.dc2.dc.x.consul.",
            "web.service.a.b.c.d.e.f.g.h.consul.",
            "n1.node.team.ns.consul.",
            "db.connect.grpc.port.consul.",
        ] {
            assert!(
                parse_str(bad) == QueryName::OtherInDomain,
                "{bad}: {:?}",
                parse_str(bad)
            );
        }
    }
}
