//! The seed's deployment on loopback: three Consul servers (Raft, `-bootstrap-expect=3`) on
//! 127.0.0.2-127.0.0.4 and one client agent on 127.0.0.5, every agent on the same ports of its
//! own address. The flags are `SERVER_FLAGS` / `CLIENT_FLAGS`, which `docker/` uses as well.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::consul::{ConsulApi, consul_binary, free_port};

/// Flags every server gets, beside addresses, ports, node name, data directory and joins.
/// `docker/docker-compose.yml` gives its servers the same (tests/docker.rs checks).
pub const SERVER_FLAGS: &[&str] = &[
    "agent",
    "-server",
    "-bootstrap-expect=3",
    "-retry-interval=1s",
    // Consul's recommended Raft timing for production servers (the default 5 is for dev boxes).
    "-hcl=performance { raft_multiplier = 1 }",
    "-hcl=dns_config { only_passing = true }",
];
/// Flags the client agent gets, likewise.
pub const CLIENT_FLAGS: &[&str] = &[
    "agent",
    "-ui",
    "-retry-interval=1s",
    "-hcl=dns_config { only_passing = true }",
];

const SERVER_IPS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const CLIENT_IP: &str = "127.0.0.5";

/// Ports shared by every agent of the cluster, each on its own address.
#[derive(Clone, Copy)]
struct Ports {
    http: u16,
    dns: u16,
    serf_lan: u16,
    serf_wan: u16,
    server: u16,
}

struct Agent {
    ip: &'static str,
    name: String,
    child: Option<Child>,
}

/// A running cluster; every agent is killed on drop.
pub struct ConsulCluster {
    servers: Vec<Agent>,
    client: Agent,
    ports: Ports,
    dir: PathBuf,
    /// The client agent's API: what the bridge talks to.
    pub api: ConsulApi,
}

impl ConsulCluster {
    /// Starts the servers and the client, and waits until a leader is elected and the client
    /// has joined.
    pub async fn start() -> Self {
        let ports = Ports {
            http: free_port(),
            dns: free_port(),
            serf_lan: free_port(),
            serf_wan: free_port(),
            server: free_port(),
        };
        let dir =
            std::env::temp_dir().join(format!("cdb-cluster-{}-{}", std::process::id(), ports.http));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut cluster = Self {
            servers: SERVER_IPS
                .iter()
                .enumerate()
                .map(|(i, ip)| Agent {
                    ip,
                    name: format!("server{}", i + 1),
                    child: None,
                })
                .collect(),
            client: Agent {
                ip: CLIENT_IP,
                name: "client1".into(),
                child: None,
            },
            ports,
            api: ConsulApi::new(format!("http://{CLIENT_IP}:{}", ports.http)),
            dir,
        };
        for i in 0..cluster.servers.len() {
            let child = cluster.spawn(&cluster.servers[i], SERVER_FLAGS);
            cluster.servers[i].child = Some(child);
        }
        let child = cluster.spawn(&cluster.client, CLIENT_FLAGS);
        cluster.client.child = Some(child);
        cluster.wait_for_leader(None, Duration::from_secs(60)).await;
        cluster
    }

    fn spawn(&self, agent: &Agent, flags: &[&str]) -> Child {
        let data = self.dir.join(&agent.name);
        std::fs::create_dir_all(&data).expect("data dir");
        let log =
            std::fs::File::create(self.dir.join(format!("{}.log", agent.name))).expect("agent log");
        let port = |p: u16| p.to_string();
        let join: Vec<String> = SERVER_IPS
            .iter()
            .map(|ip| format!("-retry-join={ip}:{}", self.ports.serf_lan))
            .collect();
        Command::new(consul_binary())
            .args(flags)
            .args(["-node", &agent.name, "-bind", agent.ip, "-client", agent.ip])
            .args(["-data-dir", data.to_str().expect("utf-8 temp path")])
            .args(["-http-port", &port(self.ports.http)])
            .args(["-dns-port", &port(self.ports.dns)])
            .args(["-serf-lan-port", &port(self.ports.serf_lan)])
            .args(["-serf-wan-port", &port(self.ports.serf_wan)])
            .args(["-server-port", &port(self.ports.server), "-grpc-port", "-1"])
            .args(&join)
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start consul")
    }

    /// The index into the servers of the Raft leader, as the client agent sees it.
    pub async fn leader(&self) -> Option<usize> {
        let leader = self.api.get("/v1/status/leader").await.ok()?;
        let leader = leader.as_str()?;
        let ip = leader.split(':').next()?;
        SERVER_IPS.iter().position(|s| *s == ip)
    }

    /// Waits until the client sees a leader other than `not`, and returns it and the wait.
    pub async fn wait_for_leader(&self, not: Option<usize>, limit: Duration) -> (usize, Duration) {
        let started = Instant::now();
        loop {
            if let Some(leader) = self.leader().await
                && Some(leader) != not
                && self.api.get("/v1/catalog/nodes").await.is_ok_and(|nodes| {
                    nodes.as_array().is_some_and(|n| {
                        n.iter()
                            .any(|node| node["Node"] == self.client.name.as_str())
                    })
                })
            {
                return (leader, started.elapsed());
            }
            assert!(
                started.elapsed() < limit,
                "no leader within {limit:?}; server1 log:\n{}",
                std::fs::read_to_string(self.dir.join("server1.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills a server (SIGKILL), as a crash would.
    pub fn kill_server(&mut self, index: usize) {
        if let Some(mut child) = self.servers[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ConsulCluster {
    fn drop(&mut self) {
        for agent in self.servers.iter_mut().chain([&mut self.client]) {
            if let Some(mut child) = agent.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
