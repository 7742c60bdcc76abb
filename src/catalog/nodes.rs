//! The cached form of a datacenter's node list, as `.node.` and reverse answers need it.

use std::collections::HashMap;

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

/// The nodes of one datacenter by lower-case name (Consul matches node names in any case).
pub(crate) type NodeMap = HashMap<String, NodeRecord>;

/// Builds the map from Consul's node list.
pub(crate) fn node_map(nodes: Vec<Node>) -> NodeMap {
    nodes
        .into_iter()
        .map(|node| {
            let record = NodeRecord {
                name: node.node.clone(),
                // A host name that is not a valid DNS name: CNAME to the root, as before.
                address: InstanceAddress::parse(&node.address)
                    .unwrap_or_else(|| InstanceAddress::Host(Name::root())),
                meta_txt: meta_txt(&node.meta),
            };
            (node.node.to_ascii_lowercase(), record)
        })
        .collect()
}
