//! HTTPS to Consul with Consul's own variables: a real agent serving HTTPS with a CA and
//! certificates made in the test, and `verify_incoming_https` so it asks for a client certificate.

mod support;

use std::path::PathBuf;

use hickory_proto::{op::ResponseCode, rr::RecordType};
use support::{
    ConsulAgent,
    binary::BridgeBinary,
    consul::{free_port, service},
    dns::ip,
    pki::Pki,
};

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
    let started = std::time::Instant::now();
    while bridge.dns.rcode("web.service.consul.", RecordType::A).await != ResponseCode::NXDomain {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "health change not seen over HTTPS"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    println!(
        "health change over HTTPS seen after {:?}",
        started.elapsed()
    );
}

/// Asks for `web` once the bridge listens, and returns the RCODE and the first log line (within
/// 10 s of retries) that holds `expect`. The bridges here log every failed request (debug):
/// which error one attempt reports can vary, e.g. a refused client certificate sometimes shows
/// first as a connection closed before it was ready.
async fn refused(bridge: &BridgeBinary, expect: &str) -> (ResponseCode, String) {
    bridge.wait_listening().await;
    let rcode = bridge.dns.rcode("web.service.consul.", RecordType::A).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = bridge.log();
        if let Some(line) = log.lines().find(|line| line.contains(expect)) {
            println!("{line}");
            return (rcode, line.to_owned());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {expect:?} in the log:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
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
