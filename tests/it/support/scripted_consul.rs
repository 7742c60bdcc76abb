//! A scripted Consul catalog for the moments a real agent cannot be made to choose: a health
//! read held in flight while the catalog changes (answered afterwards with the data it found on
//! arrival, as a lagging server or agent cache would), and the failing-checks list held back so
//! that several changes reach it as one (as a blocking query coalesces them). Beside the
//! real-agent tests, never instead of them.
//!
//! It keeps a Raft-like index: every change takes the next one, and each service, its checks,
//! the service list and the check list remember the index of their last change, as Consul 1.8
//! does (`X-Consul-Index` of `/v1/health/service/<name>` is the service's own; of
//! `/v1/health/state/any`, the checks'; of `/v1/catalog/services`, the services'). Blocking
//! queries park until their index passes the one asked or `wait` ends. JSON shapes follow
//! Consul 1.8's (`Checks` with `CheckID`, `Status`, `ServiceName`, `ModifyIndex`).

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::scoped_catalog::{Scopes, scope_of};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// One instance: its address and its one check.
#[derive(Debug, Clone)]
struct Instance {
    id: String,
    address: String,
    passing: bool,
    check_index: u64,
}

#[derive(Default)]
struct Catalog {
    index: u64,
    services: BTreeMap<String, Vec<Instance>>,
    service_index: HashMap<String, u64>,
    list_index: u64,
    checks_index: u64,
    /// Health reads of this service are held until released, answered with what they found.
    held_service: Option<String>,
    /// The failing-checks list answers no blocking query while set.
    failing_frozen: bool,
    /// Health reads per service, and those that parked (a blocking query with a long wait).
    health_reads: HashMap<String, u64>,
    parked_reads: HashMap<String, u64>,
    /// What `/v1/catalog/datacenters` lists (every one answers with this same catalog).
    datacenters: Vec<String>,
    /// Connections open now, and the most at once.
    open: usize,
    most_open: usize,
    /// `/v1/agent/self`'s body; empty: Consul 1.8's shape without a version.
    agent_self: String,
    /// The virtual IP of a service, on its Connect proxies (`/v1/health/connect/<name>`).
    virtual_ips: HashMap<String, String>,
    /// Consul 1.22's named ports of a service (`Ports`, as `structs.ServicePorts`).
    named_ports: HashMap<String, Value>,
    /// Peers' imported catalogs, Enterprise namespaces and partitions.
    scoped: Scopes,
}

impl Catalog {
    fn next(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// The index a read of `service` blocks on: its own, else the list's.
    fn index_of(&self, service: &str) -> u64 {
        self.service_index
            .get(service)
            .copied()
            .unwrap_or(self.list_index)
    }

    fn health_body(&self, service: &str) -> (u64, String) {
        let entries: Vec<Value> = self
            .services
            .get(service)
            .into_iter()
            .flatten()
            .map(|i| {
                let ports = self.named_ports.get(service);
                let default_port = ports
                    .and_then(|all| all.as_array()?.iter().find(|p| p["Default"] == true))
                    .and_then(|port| port["Port"].as_u64())
                    .unwrap_or(80);
                json!({
                    "Node": {"Node": "node1", "Address": "127.0.0.1", "Meta": {}},
                    "Service": {"ID": i.id, "Service": service, "Tags": [],
                                "Address": i.address, "Port": default_port,
                                "Ports": ports.cloned().unwrap_or(Value::Null)},
                    "Checks": [{"CheckID": format!("chk-{}", i.id), "Node": "node1",
                                "Status": if i.passing { "passing" } else { "critical" },
                                "ServiceID": i.id, "ServiceName": service,
                                "ModifyIndex": i.check_index}]
                })
            })
            .collect();
        (self.index_of(service), Value::Array(entries).to_string())
    }

    /// `/v1/health/connect/<service>`: a sidecar proxy for each instance, with the service's
    /// virtual IP as its `consul-virtual` tagged address when it has one. Shaped as section
    /// 3.2 of `../shared/CONSUL-NAMES.md` gives the element (`Kind`, `Proxy`, capitalised
    /// `{Address, Port}` tagged addresses, `PeerName` empty for local instances).
    fn connect_body(&self, service: &str) -> (u64, String) {
        let virtual_ip = self.virtual_ips.get(service);
        let entries: Vec<Value> = self
            .services
            .get(service)
            .into_iter()
            .flatten()
            .map(|i| {
                let mut tagged = json!({"lan_ipv4": {"Address": i.address, "Port": 21000}});
                if let Some(ip) = virtual_ip {
                    tagged["consul-virtual"] = json!({"Address": ip, "Port": 21000});
                }
                let proxy = format!("{}-sidecar-proxy", i.id);
                json!({
                    "Node": {"Node": "node1", "Address": "127.0.0.1", "Datacenter": "dc1",
                             "TaggedAddresses": {"lan": "127.0.0.1", "lan_ipv4": "127.0.0.1"},
                             "Meta": {}},
                    "Service": {"Kind": "connect-proxy", "ID": proxy,
                                "Service": format!("{service}-sidecar-proxy"), "Tags": [],
                                "Address": i.address, "Port": 21000, "Meta": {},
                                "TaggedAddresses": tagged,
                                "Weights": {"Passing": 1, "Warning": 1},
                                "Proxy": {"DestinationServiceName": service}, "Connect": {},
                                "PeerName": ""},
                    "Checks": [{"CheckID": format!("chk-{proxy}"), "Node": "node1",
                                "Status": if i.passing { "passing" } else { "critical" },
                                "ServiceID": proxy,
                                "ServiceName": format!("{service}-sidecar-proxy"),
                                "ModifyIndex": i.check_index}]
                })
            })
            .collect();
        (self.index_of(service), Value::Array(entries).to_string())
    }

    /// A health read with `?sg=`: the first member, in order, with a passing instance (the
    /// local catalog for the default partition); the index is the highest of those read.
    fn group_health(&self, path: &str, group: &str) -> Option<(u64, String)> {
        let service = path.strip_prefix("/v1/health/service/")?;
        let (mut index, mut last) = (0, "[]".to_owned());
        for member in self.scoped.groups.get(group)? {
            let (at, body) = match member.as_str() {
                "partition=default" => self.health_body(service),
                scope => self.scoped.body(path, scope)?,
            };
            index = index.max(at);
            if Scopes::any_passing(&body) {
                return Some((index, body));
            }
            last = body;
        }
        Some((index, last))
    }

    fn failing_body(&self) -> String {
        let failing: Vec<Value> = self
            .services
            .iter()
            .flat_map(|(service, instances)| {
                instances.iter().filter(|i| !i.passing).map(move |i| {
                    json!({"Node": "node1", "CheckID": format!("chk-{}", i.id),
                           "Status": "critical", "ServiceID": i.id, "ServiceName": service,
                           "ModifyIndex": i.check_index})
                })
            })
            .collect();
        Value::Array(failing).to_string()
    }

    fn list_body(&self) -> String {
        let list: serde_json::Map<String, Value> = self
            .services
            .keys()
            .map(|name| (name.clone(), json!([])))
            .collect();
        Value::Object(list).to_string()
    }
}

/// A running scripted catalog; stops when dropped.
pub struct ScriptedConsul {
    addr: SocketAddr,
    state: Arc<Mutex<Catalog>>,
    changed: watch::Sender<u64>,
    released: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl ScriptedConsul {
    /// Starts on a free loopback port with `services`: each name with the addresses of its
    /// passing instances (`<name>1`, `<name>2`...).
    pub async fn start(services: &[(&str, &[&str])]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut catalog = Catalog::default();
        for (name, addresses) in services {
            let index = catalog.next();
            let instances = addresses
                .iter()
                .enumerate()
                .map(|(n, address)| Instance {
                    id: format!("{name}{}", n + 1),
                    address: (*address).to_owned(),
                    passing: true,
                    check_index: index,
                })
                .collect();
            catalog.services.insert((*name).to_owned(), instances);
            catalog.service_index.insert((*name).to_owned(), index);
            catalog.list_index = index;
            catalog.checks_index = index;
        }
        let state = Arc::new(Mutex::new(catalog));
        let (changed, _) = watch::channel(0);
        let (released, _) = watch::channel(0);
        let task = tokio::spawn(accept(
            listener,
            state.clone(),
            changed.clone(),
            released.clone(),
        ));
        Self {
            addr,
            state,
            changed,
            released,
            task,
        }
    }

    /// Makes `/v1/agent/self` say the agent runs `version` (`1.21.3+ent`), with `metadata` as
    /// its build metadata (`ent` on Enterprise, empty on Community Edition): the shape of
    /// `AgentSelf` in Consul's `agent/agent_endpoint.go` (`Config.Version` with `+ent`,
    /// `Stats.build.version_metadata`), trimmed to the fields the bridge reads and a few more.
    pub fn set_agent(&self, version: &str, metadata: &str) {
        let bare = version.split('+').next().unwrap_or(version);
        let body = serde_json::json!({
            "Config": {"Datacenter": "dc1", "PrimaryDatacenter": "dc1", "NodeName": "n1",
                       "Server": true, "Version": version, "Revision": "9f62fb41"},
            "DebugConfig": {"DNSDomain": "consul.", "DNSAltDomain": "", "Experiments": []},
            "Stats": {"build": {"version": bare, "version_metadata": metadata,
                                "prerelease": "", "revision": "9f62fb41"}},
            "Member": {}, "Meta": {}
        });
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .agent_self = body.to_string();
    }

    /// Gives `service` the virtual IP `ip` on its Connect proxies.
    pub fn set_virtual_ip(&self, service: &str, ip: &str) {
        let mut catalog = self.state.lock().unwrap_or_else(|e| e.into_inner());
        catalog
            .virtual_ips
            .insert(service.to_owned(), ip.to_owned());
    }

    /// Adds `service` to `scope` (`peer=p1`, `ns=team`, `ns=team&partition=ap1`) with
    /// `instances` (node, node address, service address or empty), all passing.
    pub fn add_scoped_service(&self, scope: &str, service: &str, instances: &[(&str, &str, &str)]) {
        self.change(|c| {
            let index = c.next();
            c.scoped.add(index, scope, service, instances);
        });
    }

    /// Sets instance `id` (`<service>1`, ...) of `service` in `scope` passing or critical.
    pub fn set_passing_in(&self, scope: &str, service: &str, id: &str, passing: bool) {
        self.change(|c| {
            let index = c.next();
            c.scoped.set_passing(index, scope, service, id, passing);
        });
    }

    /// Makes the sameness group `name` with `members` in order (`partition=default`,
    /// `peer=p1`).
    pub fn set_sameness_group(&self, name: &str, members: &[&str]) {
        let members = members.iter().map(|m| (*m).to_owned()).collect();
        self.change(|c| {
            c.scoped.groups.insert(name.to_owned(), members);
        });
    }

    /// Gives `service` of `scope` the virtual IP `ip` on its Connect proxies.
    pub fn set_scoped_virtual_ip(&self, scope: &str, service: &str, ip: &str) {
        self.change(|c| c.scoped.set_virtual_ip(scope, service, ip));
    }

    /// Registers `service`'s instances with Consul 1.22's named ports (`[{Name, Port,
    /// Default}]`, section 3.2 of `../shared/CONSUL-NAMES.md`), `Port` the default one.
    pub fn set_named_ports(&self, service: &str, ports: Value) {
        self.change(|c| {
            let index = c.next();
            c.named_ports.insert(service.to_owned(), ports);
            c.service_index.insert(service.to_owned(), index);
        });
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn change(&self, apply: impl FnOnce(&mut Catalog)) {
        apply(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.send_modify(|n| *n += 1);
    }

    /// Sets the check of instance `id` of `service` passing or critical.
    pub fn set_passing(&self, service: &str, id: &str, passing: bool) {
        self.change(|c| {
            let index = c.next();
            if let Some(i) = c
                .services
                .get_mut(service)
                .and_then(|all| all.iter_mut().find(|i| i.id == id))
            {
                i.passing = passing;
                i.check_index = index;
            }
            c.service_index.insert(service.to_owned(), index);
            c.checks_index = index;
        });
    }

    /// Moves instance `id` of `service` to `address` (a registration: the service list's index
    /// moves, and nothing names the service).
    pub fn move_instance(&self, service: &str, id: &str, address: &str) {
        self.change(|c| {
            let index = c.next();
            if let Some(i) = c
                .services
                .get_mut(service)
                .and_then(|all| all.iter_mut().find(|i| i.id == id))
            {
                i.address = address.to_owned();
            }
            c.service_index.insert(service.to_owned(), index);
            c.list_index = index;
        });
    }

    /// Health reads of `service` from now on are held in flight until [`Self::release`], then
    /// answered with the data they found when they arrived.
    pub fn hold_reads_of(&self, service: &str) {
        self.change(|c| c.held_service = Some(service.to_owned()));
    }

    /// Answers the held reads (with what they found), and holds no more.
    pub fn release(&self) {
        self.change(|c| c.held_service = None);
        self.released.send_modify(|n| *n += 1);
    }

    /// While frozen, the failing-checks list answers no blocking query: the changes made
    /// meanwhile reach it as one, when it thaws.
    pub fn freeze_failing_checks(&self, frozen: bool) {
        self.change(|c| c.failing_frozen = frozen);
    }

    /// Lists `names` as datacenters besides dc1, each answering with this catalog.
    pub fn add_datacenters(&self, names: impl IntoIterator<Item = String>) {
        self.change(|c| c.datacenters.extend(names));
    }

    /// The most connections the bridge held open at once so far.
    pub fn most_connections(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .most_open
    }

    /// Health reads of `service` so far, and how many of them parked (a long `wait`).
    pub fn health_reads(&self, service: &str) -> (u64, u64) {
        let c = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (
            c.health_reads.get(service).copied().unwrap_or(0),
            c.parked_reads.get(service).copied().unwrap_or(0),
        )
    }

    /// The addresses of `service`'s passing instances, sorted.
    pub fn passing(&self, service: &str) -> Vec<String> {
        let c = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut addresses: Vec<String> = c
            .services
            .get(service)
            .into_iter()
            .flatten()
            .filter(|i| i.passing)
            .map(|i| i.address.clone())
            .collect();
        addresses.sort();
        addresses
    }
}

impl Drop for ScriptedConsul {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    state: Arc<Mutex<Catalog>>,
    changed: watch::Sender<u64>,
    released: watch::Sender<u64>,
) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        {
            let mut c = state.lock().unwrap_or_else(|e| e.into_inner());
            c.open += 1;
            c.most_open = c.most_open.max(c.open);
        }
        let (state, changed, released) = (state.clone(), changed.subscribe(), released.subscribe());
        connections.spawn(async move {
            serve(stream, state.clone(), changed, released).await;
            state.lock().unwrap_or_else(|e| e.into_inner()).open -= 1;
        });
        while connections.try_join_next().is_some() {}
    }
}

/// One request per connection (`Connection: close`).
async fn serve(
    mut stream: TcpStream,
    state: Arc<Mutex<Catalog>>,
    mut changed: watch::Receiver<u64>,
    mut released: watch::Receiver<u64>,
) {
    let Some(target) = read_target(&mut stream).await else {
        return;
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: HashMap<&str, &str> = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    let asked: u64 = params
        .get("index")
        .and_then(|i| i.parse().ok())
        .unwrap_or(0);
    let wait = params
        .get("wait")
        .and_then(|w| w.strip_suffix("ms"))
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::ZERO, Duration::from_millis);
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    let scope = scope_of(&params);
    // The index this path blocks on, and its body, now.
    let current = |c: &Catalog| -> Option<(u64, String)> {
        if path == "/v1/peerings" {
            return Some(c.scoped.peerings());
        }
        if let Some(name) = path.strip_prefix("/v1/config/sameness-group/") {
            return c.scoped.group_entry(name);
        }
        if let Some(group) = scope.strip_prefix("sg=") {
            return c.group_health(path, group);
        }
        if let Some(found) = (!scope.is_empty())
            .then(|| c.scoped.body(path, &scope))
            .flatten()
        {
            return Some(found);
        }
        match path {
            "/v1/agent/self" if c.agent_self.is_empty() => {
                Some((c.index, r#"{"Config":{"Datacenter":"dc1"}}"#.into()))
            }
            "/v1/agent/self" => Some((c.index, c.agent_self.clone())),
            "/v1/catalog/datacenters" => {
                let mut all = vec!["dc1".to_owned()];
                all.extend(c.datacenters.iter().cloned());
                Some((c.index, serde_json::json!(all).to_string()))
            }
            "/v1/catalog/services" => Some((c.list_index, c.list_body())),
            "/v1/health/state/any" => Some((c.checks_index, c.failing_body())),
            "/v1/catalog/nodes" | "/v1/query" => Some((c.index, "[]".into())),
            _ => match path.strip_prefix("/v1/health/connect/") {
                Some(service) => Some(c.connect_body(service)),
                None => Some(c.health_body(path.strip_prefix("/v1/health/service/")?)),
            },
        }
    };
    let service = path.strip_prefix("/v1/health/service/").map(str::to_owned);
    let (held, found) = {
        let mut c = lock();
        if let Some(service) = &service {
            *c.health_reads.entry(service.clone()).or_default() += 1;
            if wait > Duration::from_secs(10) {
                *c.parked_reads.entry(service.clone()).or_default() += 1;
            }
        }
        let held = service.is_some() && c.held_service == service;
        (held, current(&c))
    };
    let Some(found) = found else {
        return respond(&mut stream, 404, 0, "not found").await;
    };
    if held {
        // In flight while the catalog changes; answered with what it found. (The receiver has
        // seen every release up to the connection's arrival, so a release since wakes it.)
        let _ = released.changed().await;
        return respond(&mut stream, 200, found.0, &found.1).await;
    }
    let frozen = |c: &Catalog| path == "/v1/health/state/any" && c.failing_frozen;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let now = {
            let c = lock();
            match current(&c) {
                Some(now) if !frozen(&c) && (now.0 > asked || wait.is_zero()) => Some(now),
                _ => None,
            }
        };
        if let Some((index, body)) = now {
            return respond(&mut stream, 200, index, &body).await;
        }
        if tokio::time::timeout_at(deadline, changed.changed())
            .await
            .is_err()
        {
            let (index, body) = current(&lock()).unwrap_or_default();
            return respond(&mut stream, 200, index, &body).await;
        }
    }
}

async fn read_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split(' ')
        .nth(1)
        .map(str::to_owned)
}

async fn respond(stream: &mut TcpStream, status: u16, index: u64, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\nX-Consul-Index: {index}\r\nX-Consul-LastContact: 0\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}
