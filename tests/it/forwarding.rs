//! Names outside the Consul domain and the zone files go to `--recursor`s (hickory's forwarder):
//! answers and NXDOMAIN pass through, a big answer comes back whole (TCP retry on TC), a dead
//! upstream gives SERVFAIL within the recursor timeout, the next recursor is tried, and without
//! recursors such names are REFUSED.

use std::time::{Duration, Instant};

use crate::support::{
    DnsClient,
    consul::free_port,
    dns::{Transport, ip},
    start_bridge_at,
    zones::ZoneDir,
};
use consul_dns_bridge::Bridge;
use hickory_proto::{op::ResponseCode, rr::RecordType};

/// Nothing listens there: these tests need no Consul.
fn no_consul() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// An upstream: a second bridge serving `example.test.` from a zone file.
async fn upstream(tag: &str) -> (Bridge, ZoneDir) {
    let zones = ZoneDir::new(tag);
    let many: String = (1..=100)
        .map(|i| format!("big IN A 10.9.0.{i}\n"))
        .collect();
    zones.write(
        "example.test",
        &format!("www IN A 10.8.0.1\nwww IN AAAA fd00::801\n{many}"),
    );
    let (bridge, _) = start_bridge_at(&no_consul(), &["--zones-dir", zones.as_str()]).await;
    (bridge, zones)
}

fn dead_recursor() -> String {
    // A bound UDP socket that never answers is a recursor that times out.
    format!("127.0.0.1:{}", free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_names_are_forwarded_to_the_recursor() {
    let (upstream, _zones) = upstream("fwd").await;
    let recursor = upstream.dns_addrs()[0].to_string();
    let (bridge, dns) = start_bridge_at(&no_consul(), &["--recursor", &recursor]).await;

    assert_eq!(
        dns.addresses("www.example.test.", RecordType::A).await,
        [ip("10.8.0.1")]
    );
    assert_eq!(
        dns.addresses("www.example.test.", RecordType::AAAA).await,
        [ip("fd00::801")]
    );
    let missing = dns.query("nope.example.test.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    // With recursors, recursion is available on every answer, Consul's own names too.
    assert!(missing.metadata.recursion_available);
    let consul_name = dns.query("web.service.consul.", RecordType::A).await;
    assert!(consul_name.metadata.recursion_available);

    // 100 A records (about 1,700 bytes) do not fit the 1,232 bytes the forwarder asks for over
    // UDP: the upstream sets TC, the forwarder retries over TCP, and a client asking us over TCP
    // gets all of them.
    let big = dns
        .query_over("big.example.test.", RecordType::A, Transport::Tcp)
        .await;
    assert_eq!(big.metadata.response_code, ResponseCode::NoError);
    assert_eq!(big.answers.len(), 100, "the whole answer came through");
    bridge.shutdown().await;
    upstream.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_recursor_gives_servfail_quickly_and_the_next_one_is_tried() {
    let (upstream, _zones) = upstream("dead").await;
    let dead = dead_recursor();
    let _hold = std::net::UdpSocket::bind(&dead).expect("hold the dead port");

    // Only a dead recursor: SERVFAIL within about the recursor timeout.
    let (bridge, dns) = start_bridge_at(
        &no_consul(),
        &["--recursor", &dead, "--recursor-timeout", "500ms"],
    )
    .await;
    let started = Instant::now();
    assert_eq!(
        dns.rcode("www.example.test.", RecordType::A).await,
        ResponseCode::ServFail
    );
    let took = started.elapsed();
    println!("SERVFAIL from a dead recursor after {took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    bridge.shutdown().await;

    // Dead first, then a live one (sequential): answered after the first times out.
    let live = upstream.dns_addrs()[0].to_string();
    let (bridge, dns) = start_bridge_at(
        &no_consul(),
        &[
            "--recursor",
            &dead,
            "--recursor",
            &live,
            "--recursor-timeout",
            "500ms",
        ],
    )
    .await;
    let started = Instant::now();
    assert_eq!(
        dns.addresses("www.example.test.", RecordType::A).await,
        [ip("10.8.0.1")]
    );
    println!(
        "answered by the second recursor after {:?}",
        started.elapsed()
    );
    bridge.shutdown().await;
    upstream.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_recursors_outside_names_are_refused() {
    let (bridge, dns): (Bridge, DnsClient) = start_bridge_at(&no_consul(), &[]).await;
    let refused = dns.query("www.example.test.", RecordType::A).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(!refused.metadata.recursion_available);
    bridge.shutdown().await;
}

/// An upstream whose `example.test.` answers `www` with `address`.
async fn upstream_answering(tag: &str, address: &str) -> (Bridge, ZoneDir) {
    let zones = ZoneDir::new(tag);
    zones.write("example.test", &format!("www IN A {address}\n"));
    let (bridge, _) = start_bridge_at(&no_consul(), &["--zones-dir", zones.as_str()]).await;
    (bridge, zones)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_asks_the_first_recursor_and_random_spreads_over_all() {
    let (first, _z1) = upstream_answering("seq1", "10.8.1.1").await;
    let (second, _z2) = upstream_answering("seq2", "10.8.1.2").await;
    let recursors = [
        first.dns_addrs()[0].to_string(),
        second.dns_addrs()[0].to_string(),
    ];
    let seen = async |strategy: &str| {
        let (bridge, dns) = start_bridge_at(
            &no_consul(),
            &[
                "--recursor",
                &recursors[0],
                "--recursor",
                &recursors[1],
                "--recursor-strategy",
                strategy,
            ],
        )
        .await;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            seen.extend(dns.addresses("www.example.test.", RecordType::A).await);
        }
        bridge.shutdown().await;
        seen
    };
    let sequential = seen("sequential").await;
    assert_eq!(sequential.into_iter().collect::<Vec<_>>(), [ip("10.8.1.1")]);
    let random = seen("random").await;
    assert_eq!(
        random.into_iter().collect::<Vec<_>>(),
        [ip("10.8.1.1"), ip("10.8.1.2")],
        "random reaches both recursors"
    );
    first.shutdown().await;
    second.shutdown().await;
}
