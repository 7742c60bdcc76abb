//! The setups operators run: dnsmasq forwarding the `consul` domain to the bridge (the stub-zone
//! setup), the bridge forwarding outside names to dnsmasq, and the bridge on port 53 (what
//! `resolv.conf` needs) answering a Consul name and forwarding an outside one.

use std::{net::SocketAddr, process::Command, time::Duration};

use crate::support::{
    ConsulAgent, DnsClient, consul::service, dns::ip, dnsmasq::Dnsmasq, is_root, start_bridge,
    start_bridge_at, wait_until, zones::ZoneDir,
};
use hickory_proto::{op::ResponseCode, rr::RecordType};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnsmasq_forwards_the_consul_domain_to_the_bridge() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    consul.register(service("web", "web2", "10.1.0.2")).await;
    consul
        .register(service("web", "web3", "10.1.0.3").critical())
        .await;
    let (bridge, _) = start_bridge(&consul, &[]).await;
    let upstream = bridge.dns_addrs()[0];
    let dnsmasq = Dnsmasq::start(&[format!(
        "--server=/consul/{}#{}",
        upstream.ip(),
        upstream.port()
    )])
    .await;
    let through = DnsClient::new(dnsmasq.addr);

    assert_eq!(
        through
            .addresses("web.service.consul.", RecordType::A)
            .await,
        [ip("10.1.0.1"), ip("10.1.0.2")],
        "the passing instances, through dnsmasq"
    );
    let srv = through
        .query("_web._tcp.service.consul.", RecordType::SRV)
        .await;
    assert_eq!(srv.metadata.response_code, ResponseCode::NoError);
    assert_eq!(srv.answers.len(), 2);
    assert_eq!(
        through.rcode("nope.service.consul.", RecordType::A).await,
        ResponseCode::NXDomain
    );
    // TTL 0 by default: dnsmasq does not cache, so a health change shows through it at once.
    consul.set_check("web2", "fail").await;
    let took = wait_until("flip through dnsmasq", Duration::from_secs(5), async || {
        through
            .addresses("web.service.consul.", RecordType::A)
            .await
            == [ip("10.1.0.1")]
    })
    .await;
    println!("health change seen through dnsmasq after {took:?}");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_forwards_outside_names_to_dnsmasq() {
    let dnsmasq = Dnsmasq::start(&["--address=/example.test/10.7.0.1".into()]).await;
    let dead_consul = format!("http://127.0.0.1:{}", crate::support::consul::free_port());
    let (bridge, dns) =
        start_bridge_at(&dead_consul, &["--recursor", &dnsmasq.addr.to_string()]).await;
    assert_eq!(
        dns.addresses("www.example.test.", RecordType::A).await,
        [ip("10.7.0.1")]
    );
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_port_53_it_answers_consul_names_and_forwards_others() {
    if !is_root() {
        println!("SKIPPED: binding port 53 needs root (or CAP_NET_BIND_SERVICE); not root here");
        return;
    }
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    // The upstream: a bridge serving example.test. from a zone file.
    let zones = ZoneDir::new("port53");
    zones.write("example.test", "www IN A 10.8.0.1\n");
    let dead_consul = format!("http://127.0.0.1:{}", crate::support::consul::free_port());
    let (upstream, _) = start_bridge_at(&dead_consul, &["--zones-dir", zones.as_str()]).await;

    let on_53: SocketAddr = "127.0.0.153:53".parse().expect("addr");
    let (bridge, _) = start_bridge(
        &consul,
        &[
            "--listen",
            &on_53.to_string(),
            "--recursor",
            &upstream.dns_addrs()[0].to_string(),
        ],
    )
    .await;
    let dns = DnsClient::new(on_53);
    assert_eq!(
        dns.addresses("web.service.consul.", RecordType::A).await,
        [ip("10.1.0.1")]
    );
    assert_eq!(
        dns.addresses("www.example.test.", RecordType::A).await,
        [ip("10.8.0.1")]
    );
    // dig's default, no port: what a resolv.conf line `nameserver 127.0.0.153` gets.
    let dig = Command::new("dig")
        .args(["@127.0.0.153", "web.service.consul", "A", "+short"])
        .output();
    if let Ok(out) = dig {
        println!(
            "dig @127.0.0.153 web.service.consul: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    bridge.shutdown().await;
    upstream.shutdown().await;
}
