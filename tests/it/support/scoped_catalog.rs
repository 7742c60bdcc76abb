//! The scripted Consul's catalogs beyond the local one, for names no agent here can show (the
//! real agent is 1.8.7): a cluster peer's imported services (`?peer=` on the health reads,
//! `/v1/peerings`) and Enterprise namespaces and partitions (`?ns=`, `?partition=` on the
//! health reads, the service list and the failing checks).
//!
//! Where each shape comes from (`../shared/CONSUL-NAMES.md`):
//! - health elements: section 3.2 (`Node.PeerName` and `Node.Partition` only when set,
//!   `Service.PeerName` always, `Namespace`/`Partition` on Enterprise, capitalised
//!   `{Address, Port}` tagged addresses, `consul-virtual` on Connect proxies);
//! - `/v1/peerings`: `api/peering.go` in hashicorp/consul (`Name`, `State`,
//!   `StreamStatus.ImportedServices`, `Remote.Datacenter`, `CreateIndex`/`ModifyIndex`). Whether
//!   it blocks is not documented (section 8); here it blocks like the other lists, its index
//!   moving when what a peer exports changes.
//! - sameness groups (Enterprise 1.16): `/v1/config/sameness-group/<name>` as the config entry
//!   (`Kind`, `Name`, `DefaultForFailover`, `Members` of `{Partition}` or `{Peer}`; 404 when
//!   missing), and `?sg=` on a health read answering with the first member, in order, that has
//!   a passing instance (section 4.4 of the spec);
//! - `peer` is read by the service-specific endpoints only (`parsePeerName` takes a
//!   `ServiceSpecificRequest` in `agent/http.go`): `/v1/catalog/services` and
//!   `/v1/health/state/any` ignore it and answer with the local catalog, as here.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

/// One instance in a scope: its node, the node's address, its own address (empty: the node's).
#[derive(Debug, Clone)]
pub(super) struct ScopedInstance {
    pub(super) id: String,
    pub(super) node: String,
    pub(super) node_address: String,
    pub(super) address: String,
    pub(super) passing: bool,
    pub(super) check_index: u64,
}

#[derive(Default)]
pub(super) struct Scopes {
    /// By scope (`peer=p1`, `ns=team`, `ns=team&partition=ap1`), then service.
    services: BTreeMap<String, BTreeMap<String, Vec<ScopedInstance>>>,
    service_index: HashMap<(String, String), u64>,
    list_index: HashMap<String, u64>,
    checks_index: HashMap<String, u64>,
    peerings_index: u64,
    virtual_ips: HashMap<(String, String), String>,
    /// Sameness groups: their members as scopes (`partition=default`, `peer=p1`).
    pub(super) groups: BTreeMap<String, Vec<String>>,
}

/// The scope a request asks for, from its `peer`, `sg`, `ns` and `partition` parameters (in
/// that order); empty for the local catalog (which is the default namespace and partition).
pub(super) fn scope_of(params: &HashMap<&str, &str>) -> String {
    ["peer", "sg", "ns", "partition"]
        .iter()
        .filter_map(|key| Some((key, params.get(key)?)))
        // The default namespace and partition are the local catalog's.
        .filter(|(key, value)| !(matches!(**key, "ns" | "partition") && **value == "default"))
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn part<'a>(scope: &'a str, key: &str) -> Option<&'a str> {
    scope
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

impl Scopes {
    /// Adds `service` to `scope` with `instances` (node, node address, service address), all
    /// passing, at `index`.
    pub(super) fn add(
        &mut self,
        index: u64,
        scope: &str,
        service: &str,
        instances: &[(&str, &str, &str)],
    ) {
        let all = instances
            .iter()
            .enumerate()
            .map(|(n, (node, node_address, address))| ScopedInstance {
                id: format!("{service}{}", n + 1),
                node: (*node).to_owned(),
                node_address: (*node_address).to_owned(),
                address: (*address).to_owned(),
                passing: true,
                check_index: index,
            })
            .collect();
        let services = self.services.entry(scope.to_owned()).or_default();
        services.insert(service.to_owned(), all);
        let key = (scope.to_owned(), service.to_owned());
        self.service_index.insert(key, index);
        self.list_index.insert(scope.to_owned(), index);
        self.checks_index.insert(scope.to_owned(), index);
        if scope.starts_with("peer=") {
            self.peerings_index = index;
        }
    }

    /// Sets instance `id` of `service` in `scope` passing or critical, at `index`.
    pub(super) fn set_passing(
        &mut self,
        index: u64,
        scope: &str,
        service: &str,
        id: &str,
        passing: bool,
    ) {
        let found = (self.services.get_mut(scope))
            .and_then(|services| services.get_mut(service))
            .and_then(|all| all.iter_mut().find(|i| i.id == id));
        if let Some(instance) = found {
            instance.passing = passing;
            instance.check_index = index;
        }
        let key = (scope.to_owned(), service.to_owned());
        self.service_index.insert(key, index);
        self.checks_index.insert(scope.to_owned(), index);
    }

    /// Gives `service` of `scope` the virtual IP `ip` on its Connect proxies.
    pub(super) fn set_virtual_ip(&mut self, scope: &str, service: &str, ip: &str) {
        let key = (scope.to_owned(), service.to_owned());
        self.virtual_ips.insert(key, ip.to_owned());
    }

    /// `/v1/config/sameness-group/<name>`: the entry, or `None` (404) when there is none.
    pub(super) fn group_entry(&self, name: &str) -> Option<(u64, String)> {
        let members: Vec<Value> = (self.groups.get(name)?.iter())
            .map(|member| match member.split_once('=') {
                Some(("peer", peer)) => json!({"Peer": peer}),
                Some((_, partition)) => json!({"Partition": partition}),
                None => json!({}),
            })
            .collect();
        let entry = json!({"Kind": "sameness-group", "Name": name, "Partition": "default",
                           "DefaultForFailover": true, "IncludeLocal": true,
                           "Members": members, "CreateIndex": 3, "ModifyIndex": 3});
        Some((3, entry.to_string()))
    }

    /// Whether `body` (a health read's) lists a passing instance.
    pub(super) fn any_passing(body: &str) -> bool {
        body.contains(r#""Status":"passing""#)
    }

    /// `/v1/peerings`, with its index.
    pub(super) fn peerings(&self) -> (u64, String) {
        let peers: Vec<Value> = (self.services.iter())
            .filter_map(|(scope, services)| Some((part(scope, "peer")?, services)))
            .map(|(peer, services)| {
                json!({"ID": format!("{peer}-id"), "Name": peer, "State": "ACTIVE",
                       "PeerID": format!("{peer}-remote-id"), "PeerServerName": "server.dc9.peering",
                       "StreamStatus": {"ImportedServices": services.keys().collect::<Vec<_>>(),
                                        "ExportedServices": [], "LastHeartbeat": null,
                                        "LastReceive": null, "LastSend": null},
                       "CreateIndex": 2, "ModifyIndex": 2,
                       "Remote": {"Partition": "", "Datacenter": "dc9"}})
            })
            .collect();
        (self.peerings_index.max(1), Value::Array(peers).to_string())
    }

    /// What `path` answers in `scope` with its index; `None` where the scope does not apply
    /// (the path then answers from the local catalog, as Consul ignoring the parameter).
    pub(super) fn body(&self, path: &str, scope: &str) -> Option<(u64, String)> {
        let peer = part(scope, "peer");
        let services = self.services.get(scope);
        let empty = BTreeMap::new();
        let services = services.unwrap_or(&empty);
        let list_index = self.list_index.get(scope).copied().unwrap_or(1);
        if let Some(service) = path.strip_prefix("/v1/health/service/") {
            return Some(self.health(scope, service, false));
        }
        if let Some(service) = path.strip_prefix("/v1/health/connect/") {
            return Some(self.health(scope, service, true));
        }
        if peer.is_some() {
            return None;
        }
        match path {
            "/v1/catalog/services" => {
                let list: serde_json::Map<String, Value> = (services.keys())
                    .map(|name| (name.clone(), json!([])))
                    .collect();
                Some((list_index, Value::Object(list).to_string()))
            }
            "/v1/health/state/any" => {
                let failing: Vec<Value> = (services.iter())
                    .flat_map(|(service, all)| {
                        all.iter().filter(|i| !i.passing).map(move |i| {
                            json!({"Node": i.node, "CheckID": format!("chk-{}", i.id),
                                   "Status": "critical", "ServiceID": i.id,
                                   "ServiceName": service, "ModifyIndex": i.check_index})
                        })
                    })
                    .collect();
                let index = self.checks_index.get(scope).copied().unwrap_or(1);
                Some((index, Value::Array(failing).to_string()))
            }
            _ => None,
        }
    }

    fn health(&self, scope: &str, service: &str, connect: bool) -> (u64, String) {
        let peer = part(scope, "peer").unwrap_or_default();
        let (namespace, partition) = (part(scope, "ns"), part(scope, "partition"));
        let key = (scope.to_owned(), service.to_owned());
        let virtual_ip = self.virtual_ips.get(&key);
        let entries: Vec<Value> = (self.services.get(scope))
            .and_then(|services| services.get(service))
            .into_iter()
            .flatten()
            .map(|i| {
                let mut node = json!({"ID": format!("{}-id", i.node), "Node": i.node,
                    "Address": i.node_address, "Datacenter": if peer.is_empty() { "dc1" } else { "dc9" },
                    "TaggedAddresses": {"lan": i.node_address, "lan_ipv4": i.node_address},
                    "Meta": {"rack": "r1"}, "CreateIndex": 2, "ModifyIndex": 2});
                let (id, name, port) = match connect {
                    true => (format!("{}-sidecar-proxy", i.id), format!("{service}-sidecar-proxy"), 21000),
                    false => (i.id.clone(), service.to_owned(), 8080),
                };
                let mut tagged = json!({});
                if !i.address.is_empty() {
                    tagged["lan_ipv4"] = json!({"Address": i.address, "Port": port});
                }
                if let (true, Some(ip)) = (connect, virtual_ip) {
                    tagged["consul-virtual"] = json!({"Address": ip, "Port": port});
                }
                let mut instance = json!({"ID": id, "Service": name, "Tags": [],
                    "Address": i.address, "Port": port, "Meta": {}, "TaggedAddresses": tagged,
                    "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false,
                    "PeerName": peer});
                if connect {
                    instance["Kind"] = json!("connect-proxy");
                    instance["Proxy"] = json!({"DestinationServiceName": service});
                }
                if !peer.is_empty() {
                    node["PeerName"] = json!(peer);
                    instance["Connect"] = json!({"PeerMeta": {"SNI": [], "SpiffeID": [], "Protocol": "tcp"}});
                }
                if let Some(partition) = partition {
                    node["Partition"] = json!(partition);
                }
                if namespace.is_some() || partition.is_some() {
                    instance["Namespace"] = json!(namespace.unwrap_or("default"));
                    instance["Partition"] = json!(partition.unwrap_or("default"));
                }
                json!({"Node": node, "Service": instance,
                       "Checks": [{"CheckID": format!("chk-{}", i.id), "Node": i.node,
                                   "Status": if i.passing { "passing" } else { "critical" },
                                   "ServiceID": i.id, "ServiceName": service,
                                   "ModifyIndex": i.check_index, "PeerName": peer}]})
            })
            .collect();
        let index = self.service_index.get(&key).copied();
        let index = index.unwrap_or_else(|| self.list_index.get(scope).copied().unwrap_or(1));
        (index, Value::Array(entries).to_string())
    }
}
