//! The cached form of a datacenter's node list, as `.node.` and reverse answers need it: by
//! name, and by address.

use std::{collections::HashMap, net::IpAddr};

use hickory_proto::rr::Name;

use super::entry::{InstanceAddress, meta_txt};
use crate::consul::Node;

/// A node as `.node.` answers need it.
#[derive(Debug, Clone)]
pub(crate) struct NodeRecord {
    /// As registered (PTR answers keep its case, as Consul's do).
    pub(crate) name: String,
    pub(crate) address: InstanceAddress,
    /// The node's metadata as TXT strings (`key=value`, or the bare value for `rfc1035-` keys).
    pub(crate) meta_txt: Vec<String>,
}

/// The nodes of one datacenter.
#[derive(Debug, Default)]
pub(crate) struct Nodes {
    /// By lower-case name (Consul matches node names in any case).
    by_name: HashMap<String, NodeRecord>,
    /// The node a reverse lookup of each address names, as the PTR answer's name
    /// (`<node>.node.<dc>.<domain>`): of several nodes on one address, the first by name, so
    /// the answer is the same every time.
    by_address: HashMap<IpAddr, (String, Name)>,
}

impl Nodes {
    /// Builds both maps from the node list of `dc`; PTR names end in `domain`.
    pub(crate) fn build(nodes: Vec<Node>, dc: &str, domain: &Name) -> Self {
        let mut built = Self::default();
        for node in nodes {
            let record = NodeRecord {
                name: node.node.clone(),
                // A host name that is not a valid DNS name: CNAME to the root, as before.
                address: InstanceAddress::parse(&node.address)
                    .unwrap_or_else(|| InstanceAddress::Host(Name::root())),
                meta_txt: meta_txt(&node.meta),
            };
            let key = node.node.to_ascii_lowercase();
            let target = Name::from_labels([node.node.as_bytes(), b"node", dc.as_bytes()])
                .and_then(|name| name.append_domain(domain));
            if let (InstanceAddress::Ip(ip), Ok(target)) = (&record.address, target) {
                let first = built.by_address.get(ip).map(|(first, _)| first.as_str());
                let first_name = first
                    .and_then(|key| built.by_name.get(key))
                    .map(|n| n.name.as_str());
                if first_name.is_none_or(|first_name| record.name.as_str() < first_name) {
                    built.by_address.insert(*ip, (key.clone(), target));
                }
            }
            built.by_name.insert(key, record);
        }
        built
    }

    /// The node `name` (any case).
    pub(crate) fn get(&self, name: &str) -> Option<&NodeRecord> {
        self.by_name.get(&name.to_ascii_lowercase())
    }

    /// The PTR name a reverse lookup of `ip` gives, when a node has that address.
    pub(crate) fn ptr_target(&self, ip: IpAddr) -> Option<&Name> {
        self.by_address.get(&ip).map(|(_, target)| target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, address: &str) -> Node {
        serde_json::from_value(serde_json::json!({"Node": name, "Address": address}))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn several_nodes_on_one_address_give_the_first_by_name() {
        let domain = Name::from_ascii("consul.").unwrap_or_else(|e| panic!("{e}"));
        let list = vec![
            node("zeta", "10.0.0.1"),
            node("Alpha", "10.0.0.1"),
            node("beta", "10.0.0.2"),
        ];
        let nodes = Nodes::build(list, "dc1", &domain);
        let ip = |text: &str| text.parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}"));
        let ptr = |text: &str| nodes.ptr_target(ip(text)).map(|n| n.to_string());
        assert_eq!(ptr("10.0.0.1").as_deref(), Some("Alpha.node.dc1.consul."));
        assert_eq!(ptr("10.0.0.2").as_deref(), Some("beta.node.dc1.consul."));
        assert!(ptr("10.0.0.3").is_none());
        assert_eq!(nodes.get("ALPHA").map(|n| n.name.as_str()), Some("Alpha"));
    }
}
