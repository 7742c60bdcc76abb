//! The parts of Consul's JSON answers that the bridge reads, as serde structs.
//!
//! Fields Consul may send as `null` (tags, meta, checks) default to empty, so a sparse
//! registration never fails to decode.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

/// `/v1/catalog/services`: service name to its tags.
pub(crate) type ServiceNames = HashMap<String, Option<Vec<String>>>;

/// One element of `/v1/health/service/<name>`: an instance with its node and checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthEntry {
    pub(crate) node: Node,
    pub(crate) service: Service,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) checks: Vec<Check>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Node {
    pub(crate) node: String,
    #[serde(default)]
    pub(crate) address: String,
    /// The cluster peer the node is imported from; absent or empty for a local one.
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) peer_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Service {
    #[serde(rename = "ID", default)]
    pub(crate) id: String,
    pub(crate) service: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) tags: Vec<String>,
    #[serde(default)]
    pub(crate) address: String,
    #[serde(default)]
    pub(crate) port: u16,
    #[serde(default)]
    pub(crate) weights: Option<Weights>,
    /// `ServiceMeta`: where the visibility rule lives.
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) meta: BTreeMap<String, String>,
    /// Service tagged addresses (`lan_ipv4`, `wan`, `consul-virtual`, ...), each
    /// `{Address, Port}`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) tagged_addresses: BTreeMap<String, TaggedAddress>,
    /// Consul 1.22's named ports (`[{Name, Port, Default}]`, with `Port` the default one).
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) ports: Vec<NamedPort>,
}

/// One of a service's named ports (Consul 1.22; `structs.ServicePorts`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct NamedPort {
    #[serde(rename = "Name", alias = "name", default)]
    pub(crate) name: String,
    #[serde(rename = "Port", alias = "port", default)]
    pub(crate) port: u16,
}

/// `/v1/config/sameness-group/<name>` (Enterprise 1.16): its members, in failover order.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SamenessGroup {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) members: Vec<SamenessMember>,
}

/// A member of a sameness group: a local partition or a cluster peer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SamenessMember {
    #[serde(default)]
    pub(crate) partition: String,
    #[serde(default)]
    pub(crate) peer: String,
}

/// One element of `/v1/peerings` (`api/peering.go`): a peer's name and the services the
/// local cluster imports from it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Peering {
    pub(crate) name: String,
    /// `ACTIVE`, `FAILING`, `DELETING`, ...
    #[serde(default)]
    pub(crate) state: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) stream_status: PeeringStreamStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PeeringStreamStatus {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) imported_services: Vec<String>,
}

/// One service tagged address. Consul writes the keys capitalised (the struct has no JSON
/// tags); some documentation samples show them in lower case, so both are read.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TaggedAddress {
    #[serde(rename = "Address", alias = "address", default)]
    pub(crate) address: String,
}

/// SRV weights by health state, as registered (`Weights` in the service definition).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Weights {
    #[serde(default)]
    pub(crate) passing: u16,
    #[serde(default)]
    pub(crate) warning: u16,
}

/// A check as a health read lists it with its instance: enough to tell, by its `ModifyIndex`,
/// whether the failing-checks list of the datacenter knows of a later state.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Check {
    #[serde(rename = "CheckID", default)]
    pub(crate) check_id: String,
    pub(crate) status: String,
    /// Empty for a node-level check.
    #[serde(default)]
    pub(crate) service_name: String,
    #[serde(default)]
    pub(crate) modify_index: u64,
}

impl HealthEntry {
    /// Passing in Consul's strict sense: every check of the instance and of its node says
    /// `passing` (a `warning` is not passing, as with `only_passing = true`).
    pub(crate) fn is_passing(&self) -> bool {
        self.checks.iter().all(|check| check.status == "passing")
    }

    /// The SRV weight Consul gives this instance: its `Weights` for the worst state of its own
    /// and its node's checks (1 and 1 when it has none), 0 when one is critical.
    pub(crate) fn srv_weight(&self) -> u16 {
        let weights = self.service.weights.unwrap_or(Weights {
            passing: 1,
            warning: 1,
        });
        let checks = self
            .checks
            .iter()
            .filter(|c| c.service_name.is_empty() || c.service_name == self.service.service);
        let (mut warning, mut critical, mut unknown) = (false, false, false);
        for check in checks {
            match check.status.as_str() {
                "passing" => {}
                "warning" => warning = true,
                "critical" => critical = true,
                _ => unknown = true,
            }
        }
        match (unknown, critical, warning) {
            (true, _, _) => 1,
            (_, true, _) => 0,
            (_, _, true) => weights.warning,
            _ => weights.passing,
        }
    }
}

/// One element of `/v1/health/state/...`: a check, what it belongs to, and the Raft index of
/// its last change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HealthCheck {
    #[serde(default)]
    pub(crate) node: String,
    #[serde(rename = "CheckID", default)]
    pub(crate) check_id: String,
    /// Empty for a node-level check.
    #[serde(rename = "ServiceID", default)]
    pub(crate) service_id: String,
    /// Empty for a node-level check.
    #[serde(default)]
    pub(crate) service_name: String,
    #[serde(default)]
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) modify_index: u64,
}

/// One element of `/v1/query`: what decides whether a DNS name can match the query.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PreparedQuery {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) template: QueryTemplate,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QueryTemplate {
    /// `name_prefix_match` for a template, empty for a plain query.
    #[serde(rename = "Type", default)]
    pub(crate) kind: String,
}

/// `/v1/query/<name>/execute`: the instances chosen, where they live, and the DNS TTL.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QueryExecution {
    #[serde(default)]
    pub(crate) service: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) nodes: Vec<HealthEntry>,
    #[serde(rename = "DNS", default)]
    pub(crate) dns: QueryDns,
    /// The datacenter that answered (another one after a failover).
    pub(crate) datacenter: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QueryDns {
    /// A Go duration (`10s`, `1m30s`), empty when the query sets none.
    #[serde(rename = "TTL", default)]
    pub(crate) ttl: String,
}

/// `/v1/agent/self`: the datacenter, the version and the edition.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AgentSelf {
    pub(crate) config: AgentConfig,
    #[serde(default)]
    pub(crate) stats: AgentStats,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AgentConfig {
    pub(crate) datacenter: String,
    /// `1.21.3+ent` on Enterprise; absent from very old agents.
    #[serde(default)]
    pub(crate) version: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AgentStats {
    #[serde(default)]
    pub(crate) build: AgentBuild,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AgentBuild {
    /// `ent` on Enterprise, empty on Community Edition.
    #[serde(default)]
    pub(crate) version_metadata: String,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_sparse_health_entry() {
        let json = r#"[{"Node":{"Node":"n1","Address":"10.0.0.9","Meta":null},
            "Service":{"ID":"web1","Service":"web","Tags":null,"Address":"","Port":80},
            "Checks":[{"Status":"passing"},{"Status":"warning"}]}]"#;
        let entries: Vec<HealthEntry> = serde_json::from_str(json).unwrap();
        assert_eq!(entries[0].node.address, "10.0.0.9");
        assert!(entries[0].service.tags.is_empty());
        assert!(!entries[0].is_passing());
    }
}
