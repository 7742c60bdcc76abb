//! A real Consul dev agent (the binary from `scripts/install-consul.sh`) on free loopback ports,
//! with helpers to register fixtures and flip health.

use std::{
    collections::HashSet,
    net::{SocketAddr, TcpListener, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// Ports handed out in this process, so two agents started in parallel never get the same one.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port free on loopback for both TCP and UDP (Consul's serf and DNS use both).
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
        let port = tcp.local_addr().expect("probe address").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut taken = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if taken.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

pub fn consul_binary() -> PathBuf {
    if let Ok(path) = std::env::var("CONSUL_BIN") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let local = root.join(".consul-bin/consul");
    if local.exists() {
        return local;
    }
    let out = Command::new(root.join("scripts/install-consul.sh"))
        .output()
        .expect("run scripts/install-consul.sh");
    assert!(
        out.status.success(),
        "installing Consul failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A running dev agent; killed on drop.
pub struct ConsulAgent {
    child: Option<Child>,
    ports: [u16; 5],
    /// Loopback address it binds and serves on.
    ip: std::net::Ipv4Addr,
    datacenter: String,
    node: String,
    pub http: SocketAddr,
    pub dns: SocketAddr,
    dir: PathBuf,
    api: ConsulApi,
}

impl ConsulAgent {
    /// A dev agent with `dns_config { only_passing = true }`, as the bridge's reference.
    pub async fn start() -> Self {
        Self::start_with("dns_config { only_passing = true }\n").await
    }

    pub async fn start_with(hcl: &str) -> Self {
        let ports = [
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        ];
        Self::start_at([127, 0, 0, 1].into(), ports, "dc1", "node1", hcl).await
    }

    /// A dev agent of another datacenter, `datacenter`, on loopback address `ip` with the same
    /// ports as `first` (as a real WAN peer would have), joined to `first` over the WAN.
    pub async fn start_wan_peer(first: &ConsulAgent, ip: [u8; 4], datacenter: &str) -> Self {
        let hcl = std::fs::read_to_string(first.dir.join("extra.hcl")).expect("first agent config");
        let node = format!("node-{datacenter}");
        let peer = Self::start_at(ip.into(), first.ports, datacenter, &node, &hcl).await;
        let wan = format!("{}:{}", first.ip, first.ports[3]);
        peer.put(&format!("/v1/agent/join/{wan}?wan=1"), Value::Null)
            .await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let both = |body: Result<Value, reqwest::Error>| {
                body.ok()
                    .and_then(|v| v.as_array().map(|dcs| dcs.len()))
                    .unwrap_or(0)
                    >= 2
            };
            if both(first.get("/v1/catalog/datacenters").await)
                && both(peer.get("/v1/catalog/datacenters").await)
            {
                return peer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the {datacenter} agent did not join {} over the WAN",
            first.datacenter
        );
    }

    async fn start_at(
        ip: std::net::Ipv4Addr,
        ports: [u16; 5],
        datacenter: &str,
        node: &str,
        hcl: &str,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cdb-consul-{}-{}-{datacenter}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).expect("agent dir");
        std::fs::write(dir.join("extra.hcl"), hcl).expect("agent config");
        let mut agent = Self {
            child: None,
            ports,
            ip,
            datacenter: datacenter.into(),
            node: node.into(),
            http: (ip, ports[0]).into(),
            dns: (ip, ports[1]).into(),
            dir,
            api: ConsulApi::new(format!("http://{ip}:{}", ports[0])),
        };
        agent.spawn().await;
        agent
    }

    /// Starts the agent process (again) on the same ports; a dev agent starts with an empty
    /// catalog and a low index.
    pub async fn spawn(&mut self) {
        let [http, dns, lan, wan, server] = self.ports.map(|p| p.to_string());
        let ip = self.ip.to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .expect("agent log");
        let child = Command::new(consul_binary())
            .args([
                "agent",
                "-dev",
                "-client",
                &ip,
                "-bind",
                &ip,
                "-datacenter",
                &self.datacenter,
                "-grpc-port",
                "-1",
            ])
            .args([
                "-http-port",
                &http,
                "-dns-port",
                &dns,
                "-serf-lan-port",
                &lan,
            ])
            .args([
                "-serf-wan-port",
                &wan,
                "-server-port",
                &server,
                "-node",
                &self.node,
                "-config-file",
            ])
            .arg(self.dir.join("extra.hcl"))
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start consul");
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Kills the agent process (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(body) = self.get("/v1/catalog/services").await
                && body.get("consul").is_some()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default();
        panic!("Consul did not become ready within 30 s; its log:\n{log}");
    }
}

impl std::ops::Deref for ConsulAgent {
    type Target = ConsulApi;

    fn deref(&self) -> &ConsulApi {
        &self.api
    }
}

/// Consul's HTTP API at one address, for fixtures: registration, health flips, reads.
#[derive(Clone)]
pub struct ConsulApi {
    /// `http://host:port`
    pub url: String,
    http: reqwest::Client,
}

impl ConsulApi {
    pub fn new(url: String) -> Self {
        consul_dns_bridge::install_crypto_provider();
        Self {
            url,
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, reqwest::Error> {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    pub async fn put(&self, path: &str, body: Value) {
        let response = self
            .http
            .put(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("PUT to Consul");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "PUT {path} -> {status}: {text}");
    }

    /// Configures the ingress gateway `gateway` to expose `service` on TCP port 8080 (what
    /// `<service>.ingress` answers with, once the gateway is registered).
    pub async fn expose_through_ingress(&self, gateway: &str, service: &str) {
        let entry = json!({
            "Kind": "ingress-gateway", "Name": gateway,
            "Listeners": [{"Port": 8080, "Protocol": "tcp", "Services": [{"Name": service}]}]
        });
        self.put("/v1/config", entry).await;
    }

    /// Creates a prepared query; returns its ID.
    pub async fn create_query(&self, definition: Value) -> String {
        let response = self
            .http
            .post(format!("{}/v1/query", self.url))
            .json(&definition)
            .send()
            .await
            .expect("POST /v1/query");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST /v1/query -> {status}: {body}");
        body["ID"].as_str().expect("query ID").to_owned()
    }

    /// Deletes a prepared query.
    pub async fn delete_query(&self, id: &str) {
        let response = self
            .http
            .delete(format!("{}/v1/query/{id}", self.url))
            .send()
            .await
            .expect("DELETE /v1/query");
        assert!(response.status().is_success(), "DELETE /v1/query/{id}");
    }

    /// Registers a service on the agent's own node with a TTL check in `status`.
    pub async fn register(&self, service: ServiceFixture) {
        self.put("/v1/agent/service/register", service.agent_json())
            .await;
    }

    /// Registers `count` passing instances `<name>1..` at `<prefix>.1..`.
    pub async fn register_numbered(&self, name: &str, count: u8, prefix: &str) {
        for i in 1..=count {
            self.register(service(
                name,
                &format!("{name}{i}"),
                &format!("{prefix}.{i}"),
            ))
            .await;
        }
    }

    /// Registers an external node with its own address and meta, and a service on it, through the
    /// catalog API (with a node-level check when `node_status` is given).
    pub async fn register_external(
        &self,
        node: &str,
        node_address: &str,
        node_status: Option<&str>,
        service: ServiceFixture,
    ) {
        let mut checks = vec![serde_json::json!({
            "CheckID": format!("service:{}", service.id), "Name": "svc", "ServiceID": service.id,
            "Status": service.status,
        })];
        if let Some(status) = node_status {
            checks.push(
                serde_json::json!({"CheckID": "node-health", "Name": "node", "Status": status}),
            );
        }
        let body = serde_json::json!({
            "Node": node, "Address": node_address, "NodeMeta": {"rack": "r1"},
            "Service": {
                "ID": service.id, "Service": service.name, "Address": service.address,
                "Port": service.port, "Tags": service.tags,
            },
            "Checks": checks,
        });
        self.put("/v1/catalog/register", body).await;
    }

    /// Sets the TTL check of an agent-registered service: `pass`, `warn` or `fail`.
    pub async fn set_check(&self, service_id: &str, verb: &str) {
        let response = self
            .http
            .put(format!(
                "{}/v1/agent/check/{verb}/service:{service_id}",
                self.url
            ))
            .send()
            .await
            .expect("check update");
        assert!(
            response.status().is_success(),
            "check {verb} for {service_id}: {}",
            response.status()
        );
    }
}

impl Drop for ConsulAgent {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A service to register; build with [`service`] and the chained setters.
#[derive(Clone)]
pub struct ServiceFixture {
    pub name: String,
    pub id: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub status: String,
    /// SRV weights when passing and when warning; Consul's default (1, 1) when `None`.
    pub weights: Option<(u16, u16)>,
}

/// `service("web", "web1", "10.1.0.1")`; an empty address means "use the node's address".
pub fn service(name: &str, id: &str, address: &str) -> ServiceFixture {
    ServiceFixture {
        name: name.into(),
        id: id.into(),
        address: address.into(),
        port: 80,
        tags: Vec::new(),
        status: "passing".into(),
        weights: None,
    }
}

impl ServiceFixture {
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }
    pub fn weights(mut self, passing: u16, warning: u16) -> Self {
        self.weights = Some((passing, warning));
        self
    }
    pub fn warning(mut self) -> Self {
        self.status = "warning".into();
        self
    }
    pub fn critical(mut self) -> Self {
        self.status = "critical".into();
        self
    }

    pub fn agent_json(&self) -> Value {
        let mut json = serde_json::json!({
            "Name": self.name, "ID": self.id, "Address": self.address, "Port": self.port,
            "Tags": self.tags,
            "Check": {"CheckID": format!("service:{}", self.id), "TTL": "1h", "Status": self.status},
        });
        if let Some((passing, warning)) = self.weights {
            json["Weights"] = serde_json::json!({"Passing": passing, "Warning": warning});
        }
        json
    }
}
