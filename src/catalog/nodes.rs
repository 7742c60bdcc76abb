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
    /// The lower-case name of the node a reverse lookup of each address gives: of several nodes
    /// on one address, the first by name, so the answer is the same every time.
    by_address: HashMap<IpAddr, String>,
}

impl Nodes {
    /// Builds both maps from Consul's node list.
    pub(crate) fn build(nodes: Vec<Node>) -> Self {
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
            if let InstanceAddress::Ip(ip) = record.address {
                let first = built.by_address.entry(ip).or_insert_with(|| key.clone());
                let first_name = built.by_name.get(first.as_str()).map(|n| n.name.as_str());
                if first_name.is_some_and(|first_name| record.name.as_str() < first_name) {
                    *first = key.clone();
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

    /// The node a reverse lookup of `ip` names.
    pub(crate) fn at(&self, ip: IpAddr) -> Option<&NodeRecord> {
        self.by_address
            .get(&ip)
            .and_then(|name| self.by_name.get(name))
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
        let nodes = Nodes::build(vec![
            node("zeta", "10.0.0.1"),
            node("Alpha", "10.0.0.1"),
            node("beta", "10.0.0.2"),
        ]);
        let ip = |text: &str| text.parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            nodes.at(ip("10.0.0.1")).map(|n| n.name.as_str()),
            Some("Alpha")
        );
        assert_eq!(
            nodes.at(ip("10.0.0.2")).map(|n| n.name.as_str()),
            Some("beta")
        );
        assert!(nodes.at(ip("10.0.0.3")).is_none());
        assert_eq!(nodes.get("ALPHA").map(|n| n.name.as_str()), Some("Alpha"));
    }
}
