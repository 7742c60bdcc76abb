//! What the bridge tells clients besides the answer, read with BIND's `dig` as operators read
//! it: the server's identifier (NSID, RFC 5001) when asked for and configured, and Extended DNS
//! Errors (RFC 8914) that say why: 18 outside `--allow-query`, 14 before Consul's first
//! answer, 3 while serving stale, 22 when no recursor answers. An instance hidden by a
//! visibility rule stays indistinguishable from none.

use std::{net::SocketAddr, time::Duration};

use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::support::{
    ConsulAgent,
    consul::{free_port, service},
    run_tool, start_bridge, start_bridge_at, wait_until,
    zones::ZoneDir,
};

/// `dig` at `server` from `source` with `options`; its output.
async fn dig(server: SocketAddr, source: &str, name: &str, options: &[&str]) -> String {
    let mut args = vec![
        format!("@{}", server.ip()),
        "-p".into(),
        server.port().to_string(),
        "-b".into(),
        source.into(),
        "+tries=1".into(),
        "+time=5".into(),
        name.into(),
    ];
    args.extend(options.iter().map(|o| o.to_string()));
    run_tool("dig", args)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn status(output: &str) -> &str {
    output
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("none")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsid_when_asked_and_configured() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let zones = ZoneDir::new("signals-nsid");
    zones.write("example.test", "www IN A 10.8.0.1\n");
    let options = ["--nsid", "bridge-7", "--zones-dir", zones.as_str()];
    let (bridge, dns) = start_bridge(&consul, &options).await;
    for name in [
        "web.service.consul",
        "www.example.test",
        "nope.service.consul",
    ] {
        let asked = dig(dns.addr, "127.0.0.1", name, &["+nsid"]).await;
        assert!(
            asked.contains("NSID: 62 72 69 64 67 65 2d 37 (\"bridge-7\")"),
            "{name}:\n{asked}"
        );
        let not_asked = dig(dns.addr, "127.0.0.1", name, &[]).await;
        assert!(
            !not_asked.contains("NSID"),
            "{name} without +nsid:\n{not_asked}"
        );
    }
    bridge.shutdown().await;
    // Off by default.
    let (bridge, dns) = start_bridge(&consul, &[]).await;
    let asked = dig(dns.addr, "127.0.0.1", "web.service.consul", &["+nsid"]).await;
    assert!(!asked.contains("NSID:"), "{asked}");
    bridge.shutdown().await;
    // `hostname`: the host's name.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let (bridge, dns) = start_bridge(&consul, &["--nsid", "hostname"]).await;
    let asked = dig(dns.addr, "127.0.0.1", "web.service.consul", &["+nsid"]).await;
    assert!(asked.contains(&format!("(\"{}\")", host.trim())), "{asked}");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_errors_say_why_and_hidden_instances_stay_hidden() {
    let mut consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let hidden = json!({"Name": "secret", "ID": "secret1", "Address": "10.2.0.1", "Port": 80,
        "Meta": {"dns-allow": "127.0.0.9/32"}, "Check": {"TTL": "1h", "Status": "passing"}});
    consul.put("/v1/agent/service/register", hidden).await;
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent recursor");
    let recursor = silent.local_addr().expect("addr").to_string();
    let options = [
        "--allow-query",
        "127.0.0.0/25",
        "--recursor",
        &recursor,
        "--recursor-timeout",
        "300ms",
    ];
    let (bridge, dns) = start_bridge(&consul, &options).await;
    wait_until("data", Duration::from_secs(10), async || {
        !dns.addresses("web.service.consul.", RecordType::A)
            .await
            .is_empty()
    })
    .await;

    let refused = dig(dns.addr, "127.0.0.200", "web.service.consul", &[]).await;
    assert_eq!(status(&refused), "REFUSED");
    assert!(refused.contains("EDE: 18 (Prohibited)"), "{refused}");

    let unreachable = dig(dns.addr, "127.0.0.1", "www.example.org", &[]).await;
    assert_eq!(status(&unreachable), "SERVFAIL");
    assert!(
        unreachable.contains("EDE: 22 (No Reachable Authority)"),
        "{unreachable}"
    );

    // A hidden instance: exactly what a name with no instance gets, no EDE.
    let hidden = dig(dns.addr, "127.0.0.1", "secret.service.consul", &[]).await;
    let missing = dig(dns.addr, "127.0.0.1", "nope.service.consul", &[]).await;
    assert_eq!(status(&hidden), "NXDOMAIN");
    assert_eq!(status(&missing), "NXDOMAIN");
    assert!(
        !hidden.contains("EDE") && !missing.contains("EDE"),
        "{hidden}"
    );

    // Consul gone: the last answer, said to be stale.
    consul.kill();
    wait_until("stale", Duration::from_secs(20), async || {
        dig(dns.addr, "127.0.0.1", "web.service.consul", &[])
            .await
            .contains("EDE: 3 (Stale Answer)")
    })
    .await;
    let stale = dig(dns.addr, "127.0.0.1", "web.service.consul", &[]).await;
    assert_eq!(status(&stale), "NOERROR");
    assert!(stale.contains("10.1.0.1"), "{stale}");
    bridge.shutdown().await;

    // Consul never answered: the first question's SERVFAIL is "Not Ready".
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let (bridge, dns) = start_bridge_at(&nowhere, &[]).await;
    let not_ready = dig(dns.addr, "127.0.0.1", "web.service.consul", &[]).await;
    assert_eq!(status(&not_ready), "SERVFAIL");
    assert!(not_ready.contains("EDE: 14 (Not Ready)"), "{not_ready}");
    bridge.shutdown().await;
}
