//! HTTPS to Consul with Consul's own variables: a real agent serving HTTPS with a CA and
//! certificates made in the test, and `verify_incoming_https` so it asks for a client certificate.

use std::{path::PathBuf, time::Duration};

use crate::support::{
    ConsulAgent,
    binary::BridgeBinary,
    consul::{free_port, service},
    dns::ip,
    pki::Pki,
    poll_until, wait_until,
};
use hickory_proto::{op::ResponseCode, rr::RecordType};

/// A dev agent with HTTPS on its own port (plain HTTP stays on for the harness's fixtures).
struct TlsAgent {
    consul: ConsulAgent,
    pki: Pki,
    https_port: u16,
    dir: PathBuf,
}

impl TlsAgent {
    async fn start() -> Self {
        let https_port = free_port();
        let dir = std::env::temp_dir().join(format!("cdb-pki-{}-{https_port}", std::process::id()));
        let pki = Pki::create(&dir);
        let hcl = format!(
            r#"
dns_config {{ only_passing = true }}
ports {{ https = {https_port} }}
ca_file = "{}"
cert_file = "{}"
key_file = "{}"
verify_incoming_https = true
"#,
            pki.ca.display(),
            pki.server_cert.display(),
            pki.server_key.display()
        );
        let consul = ConsulAgent::start_with(&hcl).await;
        consul.register(service("web", "web1", "10.1.0.1")).await;
        Self {
            consul,
            pki,
            https_port,
            dir,
        }
    }

    fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.https_port)
    }
}

impl Drop for TlsAgent {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_agents_ca_and_a_client_certificate() {
    let agent = TlsAgent::start().await;
    // host:port plus CONSUL_HTTP_SSL=true, the way Consul's CLI is usually pointed at HTTPS.
    let addr = format!("127.0.0.1:{}", agent.https_port);
    let env = [
        ("CONSUL_HTTP_SSL", "true"),
        ("CONSUL_CACERT", path(&agent.pki.ca)),
        ("CONSUL_CLIENT_CERT", path(&agent.pki.client_cert)),
        ("CONSUL_CLIENT_KEY", path(&agent.pki.client_key)),
    ];
    let bridge = BridgeBinary::start(&addr, &[], &env, "web.service.consul.").await;
    assert_eq!(
        bridge
            .dns
            .addresses("web.service.consul.", RecordType::A)
            .await,
        [ip("10.1.0.1")]
    );
    // The blocking queries run over HTTPS too: a health change arrives.
    agent.consul.set_check("web1", "fail").await;
    let took = wait_until(
        "health change over HTTPS",
        Duration::from_secs(5),
        async || {
            bridge.dns.rcode("web.service.consul.", RecordType::A).await == ResponseCode::NXDomain
        },
    )
    .await;
    println!("health change over HTTPS seen after {took:?}");
}

/// Over HTTPS Consul speaks HTTP/2, and the parked blocking queries of many watched services
/// share one connection as streams (over plain HTTP/1.1 each would hold its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_queries_of_many_services_share_one_http2_connection() {
    const SERVICES: u8 = 40;
    let agent = TlsAgent::start().await;
    for i in 1..=SERVICES {
        let name = format!("svc{i}");
        let address = format!("10.2.0.{i}");
        agent.consul.register(service(&name, &name, &address)).await;
    }
    let env = [
        ("CONSUL_CACERT", path(&agent.pki.ca)),
        ("CONSUL_CLIENT_CERT", path(&agent.pki.client_cert)),
        ("CONSUL_CLIENT_KEY", path(&agent.pki.client_key)),
    ];
    let bridge = BridgeBinary::start(&agent.https_url(), &[], &env, "web.service.consul.").await;
    for i in 1..=SERVICES {
        let name = format!("svc{i}.service.consul.");
        let address = format!("10.2.0.{i}");
        assert_eq!(
            bridge.dns.addresses(&name, RecordType::A).await,
            [ip(&address)]
        );
    }
    // Connections opened in the first burst, before HTTP/2 was agreed on, are closed once it is.
    // Besides the parked queries' connection, the requests that do not park (the agent's
    // datacenter, at most 4 at once) keep their HTTP/1.1 connections in the pool: one when
    // they came one at a time, more when they overlapped (seen on a loaded machine).
    const PLAIN_AT_ONCE: usize = 4;
    poll_until(Duration::from_secs(5), async || {
        established_to(agent.https_port) <= 2
    })
    .await;
    let open = established_to(agent.https_port);
    println!(
        "{} watched services, {open} connection(s) to the HTTPS port",
        SERVICES + 1
    );
    assert!(
        open <= 1 + PLAIN_AT_ONCE,
        "parked queries should share one HTTP/2 connection (+ the plain requests' pool)"
    );
    // Each of them still sees its service change.
    agent.consul.set_check("svc7", "fail").await;
    wait_until(
        "health change over the shared connection",
        Duration::from_secs(5),
        async || {
            bridge
                .dns
                .rcode("svc7.service.consul.", RecordType::A)
                .await
                == ResponseCode::NXDomain
        },
    )
    .await;
}

/// The agent behind the shared HTTP/2 connection dies and comes back (empty, as a dev agent
/// does): answers are served stale meanwhile, and the parked queries reach the new agent over a
/// new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_http2_queries_come_back_after_the_agent_restarts() {
    let mut agent = TlsAgent::start().await;
    let env = [
        ("CONSUL_CACERT", path(&agent.pki.ca)),
        ("CONSUL_CLIENT_CERT", path(&agent.pki.client_cert)),
        ("CONSUL_CLIENT_KEY", path(&agent.pki.client_key)),
    ];
    let bridge = BridgeBinary::start(&agent.https_url(), &[], &env, "web.service.consul.").await;
    let web = "web.service.consul.";
    assert_eq!(
        bridge.dns.addresses(web, RecordType::A).await,
        [ip("10.1.0.1")]
    );
    agent.consul.kill();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        bridge.dns.addresses(web, RecordType::A).await,
        [ip("10.1.0.1")],
        "served stale while the agent is down"
    );
    agent.consul.spawn().await;
    agent
        .consul
        .register(service("web", "web9", "10.1.0.9"))
        .await;
    let took = wait_until(
        "the restarted agent's instance",
        Duration::from_secs(20),
        async || bridge.dns.addresses(web, RecordType::A).await == [ip("10.1.0.9")],
    )
    .await;
    println!("fresh again {took:?} after the restarted agent had the new instance");
}

/// Established TCP connections to `port` on this machine, from /proc/net/tcp (only the bridge
/// connects to the agent's HTTPS port here).
fn established_to(port: u16) -> usize {
    let remote = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    fields.get(2).is_some_and(|rem| rem.ends_with(&remote))
                        && fields.get(3) == Some(&"01")
                })
                .collect::<Vec<_>>()
        })
        .filter(|&established| established)
        .count()
}

/// Asks for `web` once the bridge listens, and returns the RCODE and the first log line (within
/// 10 s of retries) that holds `expect`. The bridges here log every failed request (debug):
/// which error one attempt reports can vary, e.g. a refused client certificate sometimes shows
/// first as a connection closed before it was ready.
async fn refused(bridge: &BridgeBinary, expect: &str) -> (ResponseCode, String) {
    bridge.wait_listening().await;
    let rcode = bridge.dns.rcode("web.service.consul.", RecordType::A).await;
    let found = async || bridge.log().lines().any(|line| line.contains(expect));
    if poll_until(Duration::from_secs(10), found).await.is_none() {
        panic!("expected {expect:?} in the log:\n{}", bridge.log());
    }
    let log = bridge.log();
    let line = log
        .lines()
        .find(|line| line.contains(expect))
        .unwrap_or_default();
    println!("{line}");
    (rcode, line.to_owned())
}

/// Every failed request in the log, not only the first of a streak.
const LOG_EVERY_FAILURE: [&str; 2] = ["--log-level", "info,consul_dns_bridge=debug"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_ca_or_a_missing_client_certificate_is_refused_and_logged() {
    let agent = TlsAgent::start().await;
    let url = agent.https_url();

    // The agent's certificate is not signed by the CA we trust.
    let wrong_ca = [
        ("CONSUL_CACERT", path(&agent.pki.other_ca)),
        ("CONSUL_CLIENT_CERT", path(&agent.pki.client_cert)),
        ("CONSUL_CLIENT_KEY", path(&agent.pki.client_key)),
    ];
    let bridge = BridgeBinary::spawn(&url, &LOG_EVERY_FAILURE, &wrong_ca);
    let (rcode, _) = refused(&bridge, "UnknownIssuer").await;
    assert_eq!(rcode, ResponseCode::ServFail);
    drop(bridge);

    // The right CA, but no client certificate for an agent that requires one.
    let no_client_cert = [("CONSUL_CACERT", path(&agent.pki.ca))];
    let bridge = BridgeBinary::spawn(&url, &LOG_EVERY_FAILURE, &no_client_cert);
    let (rcode, _) = refused(&bridge, "BadCertificate").await;
    assert_eq!(rcode, ResponseCode::ServFail);
    drop(bridge);

    // CONSUL_HTTP_SSL_VERIFY=false: no CA needed (the client certificate still is).
    let no_verify = [
        ("CONSUL_HTTP_SSL_VERIFY", "false"),
        ("CONSUL_CLIENT_CERT", path(&agent.pki.client_cert)),
        ("CONSUL_CLIENT_KEY", path(&agent.pki.client_key)),
    ];
    let bridge = BridgeBinary::start(&url, &[], &no_verify, "web.service.consul.").await;
    assert_eq!(
        bridge
            .dns
            .addresses("web.service.consul.", RecordType::A)
            .await,
        [ip("10.1.0.1")]
    );
}
