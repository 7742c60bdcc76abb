//! Names that read beyond the local catalog, against the scripted Consul (no agent here is
//! newer than 1.8.7; the fixtures' shapes and their sources are in
//! `support/scoped_catalog.rs`): a cluster peer's imported services (`.peer`), Enterprise
//! namespaces and partitions (`.ns`, `.ap`) and sameness groups (`.sg`), and Consul 1.22's
//! named ports (`.port`). Each is answered from its own watch, kept fresh by blocking queries
//! and served stale while Consul is away, and passes every step of the gate, as local
//! services do.

use std::time::{Duration, Instant};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};
use serde_json::json;

use crate::support::{
    GATE_LIMITS,
    binary::BridgeBinary,
    dns::{DnsClient, Transport, answered_of, ip, query_bytes},
    scripted_consul::ScriptedConsul,
    wait_until,
};

const NX: ResponseCode = ResponseCode::NXDomain;
const OK: ResponseCode = ResponseCode::NoError;

/// SRV answers as `port target`, sorted.
fn srv_of(answer: &Message) -> Vec<String> {
    let mut srv: Vec<String> = (answer.answers.iter())
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(format!("{} {}", srv.port, srv.target)),
            _ => None,
        })
        .collect();
    srv.sort();
    srv
}

/// Additional A records as `owner address`, sorted.
fn glue_of(answer: &Message) -> Vec<String> {
    let mut glue: Vec<String> = (answer.additionals.iter())
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(format!("{} {}", r.name, a.0)),
            _ => None,
        })
        .collect();
    glue.sort();
    glue
}

/// How long until `name`'s A answer is `want` (polled every 5 ms, at most 5 s).
async fn until_answer(dns: &DnsClient, name: &str, want: &[&str]) -> Option<Duration> {
    let want: Vec<_> = want.iter().map(|a| ip(a)).collect();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if dns.addresses(name, RecordType::A).await == want {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_imported_services_answer_as_current_consul() {
    let consul = ScriptedConsul::start(&[("web", &["10.1.0.1"]), ("db", &["10.2.0.1"])]).await;
    consul.set_agent("1.21.3", "");
    // web1 on its node's address, web2 with an address of its own.
    let instances = [
        ("peernode1", "10.9.0.1", ""),
        ("peernode2", "10.9.0.2", "10.9.1.2"),
    ];
    consul.add_scoped_service("peer=p1", "web", &instances);
    consul.set_scoped_virtual_ip("peer=p1", "web", "240.0.0.9");
    let bridge = BridgeBinary::start(&consul.url(), &[], &[], "web.service.consul.").await;
    let dns = &bridge.dns;
    let peer_addresses = [ip("10.9.0.1"), ip("10.9.1.2")];
    for name in [
        "web.service.p1.peer.consul.",
        "WEB.Service.P1.Peer.consul.",
        "_web._tcp.service.p1.peer.consul.",
    ] {
        assert_eq!(
            dns.addresses(name, RecordType::A).await,
            peer_addresses,
            "{name}"
        );
    }
    assert_eq!(
        dns.addresses("web.service.consul.", RecordType::A).await,
        [ip("10.1.0.1")],
        "the local web is another service"
    );
    // SRV targets carry no datacenter: `<hex>.addr.<domain>`, `<node>.node.<peer>.peer`.
    let srv = dns
        .query("web.service.p1.peer.consul.", RecordType::SRV)
        .await;
    assert_eq!(
        srv_of(&srv),
        [
            "8080 0a090102.addr.consul.",
            "8080 peernode1.node.p1.peer.consul."
        ]
    );
    assert_eq!(
        glue_of(&srv),
        [
            "0a090102.addr.consul. 10.9.1.2",
            "peernode1.node.p1.peer.consul. 10.9.0.1"
        ]
    );
    // The target names resolve: the node from the imported instances, the address from itself.
    assert_eq!(
        dns.addresses("peernode1.node.p1.peer.consul.", RecordType::A)
            .await,
        [ip("10.9.0.1")]
    );
    assert_eq!(
        dns.rcode("nobody.node.p1.peer.consul.", RecordType::A)
            .await,
        NX
    );
    // An unknown peer, or a service the peer does not export: NXDOMAIN with the SOA.
    for name in ["web.service.p9.peer.consul.", "db.service.p1.peer.consul."] {
        let answer = dns.query(name, RecordType::A).await;
        assert_eq!(answer.metadata.response_code, NX, "{name}");
        assert!(
            answer
                .authorities
                .iter()
                .any(|r| matches!(r.data, RData::SOA(_))),
            "{name}: {answer:?}"
        );
    }
    // The peer's virtual IP, with the peer labelled or not.
    for name in ["web.virtual.p1.peer.consul.", "web.virtual.p1.consul."] {
        assert_eq!(
            dns.addresses(name, RecordType::A).await,
            [ip("240.0.0.9")],
            "{name}"
        );
    }
    // Consul's `.connect` ignores a peer: the local proxies answer.
    assert_eq!(
        dns.addresses("web.connect.p1.peer.consul.", RecordType::A)
            .await,
        dns.addresses("web.connect.consul.", RecordType::A).await
    );
    // No PTR names a peer's instance (current Consul has none); the local ones keep theirs.
    let ptr = |answer: Message| -> Vec<String> {
        (answer.answers.iter())
            .filter_map(|r| match &r.data {
                RData::PTR(ptr) => Some(ptr.to_string()),
                _ => None,
            })
            .collect()
    };
    let peer_ptr = dns.query("2.1.9.10.in-addr.arpa.", RecordType::PTR).await;
    assert!(ptr(peer_ptr).is_empty());
    let local_ptr = dns.query("1.0.1.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(ptr(local_ptr), ["web.service.dc1.consul."]);
    // A health change of an imported instance reaches the answer by the service's own query.
    consul.set_passing_in("peer=p1", "web", "web2", false);
    let failed = until_answer(dns, "web.service.p1.peer.consul.", &["10.9.0.1"]).await;
    consul.set_passing_in("peer=p1", "web", "web2", true);
    let recovered = until_answer(
        dns,
        "web.service.p1.peer.consul.",
        &["10.9.0.1", "10.9.1.2"],
    )
    .await;
    println!("peer: failure answered after {failed:?}, recovery after {recovered:?}");
    assert!(failed.is_some() && recovered.is_some());
    let metrics = bridge.metrics().await;
    assert!(
        metrics.lines().any(
            |line| line.starts_with("consul_dns_bridge_service_queries_total")
                && line.contains(r#"peer="p1""#)
                && line.contains(r#"service="web""#)
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enterprise_namespaces_and_partitions_read_their_own_catalog() {
    let consul = ScriptedConsul::start(&[("web", &["10.1.0.1"])]).await;
    consul.set_agent("1.22.0+ent", "ent");
    consul.add_scoped_service("ns=team", "web", &[("n7", "10.7.0.1", "")]);
    consul.add_scoped_service(
        "ns=team&partition=ap1",
        "web",
        &[("n8", "10.8.0.1", ""), ("n9", "10.8.0.2", "")],
    );
    let bridge = BridgeBinary::start(&consul.url(), &[], &[], "web.service.consul.").await;
    let dns = &bridge.dns;
    for (name, want) in [
        ("web.service.team.ns.consul.", vec![ip("10.7.0.1")]),
        ("web.service.team.ns.dc1.dc.consul.", vec![ip("10.7.0.1")]),
        (
            "web.service.team.ns.ap1.ap.consul.",
            vec![ip("10.8.0.1"), ip("10.8.0.2")],
        ),
        (
            "web.service.ap1.ap.team.ns.consul.",
            vec![ip("10.8.0.1"), ip("10.8.0.2")],
        ),
        ("web.service.consul.", vec![ip("10.1.0.1")]),
    ] {
        assert_eq!(dns.addresses(name, RecordType::A).await, want, "{name}");
    }
    let srv = dns
        .query("web.service.team.ns.consul.", RecordType::SRV)
        .await;
    assert_eq!(srv_of(&srv), ["8080 n7.node.dc1.consul."]);
    assert_eq!(
        dns.rcode("db.service.team.ns.consul.", RecordType::A).await,
        NX
    );
    assert_eq!(
        dns.rcode("web.service.dc7.dc.team.ns.consul.", RecordType::A)
            .await,
        NX
    );
    // A health change in the namespace arrives through its failing checks.
    consul.set_passing_in("ns=team&partition=ap1", "web", "web1", false);
    let failed = until_answer(dns, "web.service.team.ns.ap1.ap.consul.", &["10.8.0.2"]).await;
    println!("namespace: failure answered after {failed:?}");
    assert!(failed.is_some());
    let metrics = bridge.metrics().await;
    assert!(
        metrics.lines().any(|line| line.contains(r#"namespace="team""#)
            && line.contains(r#"partition="ap1""#)),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_ports_give_srv_answers_their_port() {
    let consul = ScriptedConsul::start(&[("web", &["10.1.0.1", "10.1.0.2"])]).await;
    consul.set_agent("1.22.0", "");
    consul.set_named_ports(
        "web",
        json!([{"Name": "http", "Port": 8080, "Default": true},
               {"Name": "grpc", "Port": 9090, "Default": false}]),
    );
    let bridge = BridgeBinary::start(&consul.url(), &[], &[], "web.service.consul.").await;
    let dns = &bridge.dns;
    let ports = |answer: &Message| -> Vec<u16> {
        let mut ports: Vec<u16> = (answer.answers.iter())
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some(srv.port),
                _ => None,
            })
            .collect();
        ports.sort();
        ports
    };
    for (name, want) in [
        ("web.service.consul.", [8080, 8080]),
        ("web.service.http.port.consul.", [8080, 8080]),
        ("web.service.grpc.port.consul.", [9090, 9090]),
        ("web.service.GRPC.port.dc1.dc.consul.", [9090, 9090]),
        ("web.service.dc1.dc.grpc.port.consul.", [9090, 9090]),
    ] {
        let answer = dns.query(name, RecordType::SRV).await;
        assert_eq!(ports(&answer), want, "{name}");
    }
    assert_eq!(
        dns.addresses("web.service.grpc.port.consul.", RecordType::A)
            .await,
        [ip("10.1.0.1"), ip("10.1.0.2")]
    );
    // An unknown port name, a port on another kind, a port beside a one-label datacenter.
    for name in [
        "web.service.nope.port.consul.",
        "web.connect.grpc.port.consul.",
        "web.service.grpc.port.dc1.consul.",
    ] {
        assert_eq!(dns.rcode(name, RecordType::SRV).await, NX, "{name}");
    }
    assert_eq!(dns.rcode("web.service.consul.", RecordType::SRV).await, OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sameness_group_answers_with_its_first_healthy_member() {
    // db first: an index of 1 (web's otherwise) is one the bridge never blocks on.
    let consul = ScriptedConsul::start(&[("db", &["10.2.0.1"]), ("web", &["10.1.0.1"])]).await;
    consul.set_agent("1.22.0+ent", "ent");
    consul.add_scoped_service("peer=p1", "web", &[("peernode1", "10.9.0.1", "")]);
    consul.add_scoped_service("peer=p1", "api", &[("peernode2", "10.9.0.2", "")]);
    consul.set_sameness_group("sg1", &["partition=default", "peer=p1"]);
    let bridge = BridgeBinary::start(&consul.url(), &[], &[], "web.service.consul.").await;
    let dns = &bridge.dns;
    // The local partition first; a service only one member has, from that member.
    for (name, want) in [
        ("web.service.sg1.sg.consul.", ip("10.1.0.1")),
        ("db.service.sg1.sg.consul.", ip("10.2.0.1")),
        ("api.service.sg1.sg.consul.", ip("10.9.0.2")),
    ] {
        assert_eq!(dns.addresses(name, RecordType::A).await, [want], "{name}");
    }
    // Targets as the member's own: the local datacenter's, or the peer's.
    let local = dns
        .query("web.service.sg1.sg.consul.", RecordType::SRV)
        .await;
    assert_eq!(srv_of(&local), ["80 0a010001.addr.dc1.consul."]);
    let peer = dns
        .query("api.service.sg1.sg.consul.", RecordType::SRV)
        .await;
    assert_eq!(srv_of(&peer), ["8080 peernode2.node.p1.peer.consul."]);
    // No member has it, or no such group: NXDOMAIN.
    for name in ["nope.service.sg1.sg.consul.", "web.service.sg9.sg.consul."] {
        assert_eq!(dns.rcode(name, RecordType::A).await, NX, "{name}");
    }
    // The local instance fails: the peer's answers; it recovers: the local one again.
    consul.set_passing("web", "web1", false);
    let failover = until_answer(dns, "web.service.sg1.sg.consul.", &["10.9.0.1"]).await;
    consul.set_passing("web", "web1", true);
    let back = until_answer(dns, "web.service.sg1.sg.consul.", &["10.1.0.1"]).await;
    println!("sameness group: failover answered after {failover:?}, failback after {back:?}");
    assert!(failover.is_some() && back.is_some());
}

/// A name of each scoped form, as [`scoped_consul`] answers them.
const SCOPED_NAMES: [(&str, RecordType); 4] = [
    ("api.service.p1.peer.consul.", RecordType::A),
    ("web.service.team.ns.consul.", RecordType::A),
    ("api.service.sg1.sg.consul.", RecordType::A),
    ("web.service.grpc.port.consul.", RecordType::SRV),
];

/// The scripted Consul as an Enterprise 1.22 agent with a name of each scoped form: `api`
/// imported from peer `p1`, `web` in namespace `team`, group `sg1` (the local partition, then
/// `p1`) and `web`'s named port `grpc`.
async fn scoped_consul() -> ScriptedConsul {
    let consul = ScriptedConsul::start(&[("db", &["10.2.0.1"]), ("web", &["10.1.0.1"])]).await;
    consul.set_agent("1.22.0+ent", "ent");
    consul.add_scoped_service("peer=p1", "api", &[("peernode2", "10.9.0.2", "")]);
    consul.add_scoped_service("ns=team", "web", &[("n7", "10.7.0.1", "")]);
    consul.set_sameness_group("sg1", &["partition=default", "peer=p1"]);
    consul.set_named_ports(
        "web",
        json!([{"Name": "grpc", "Port": 9090, "Default": true}]),
    );
    consul
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_names_are_served_while_consul_is_down() {
    let consul = scoped_consul().await;
    let bridge = BridgeBinary::start(&consul.url(), &[], &[], "web.service.consul.").await;
    let dns = &bridge.dns;
    let mut before = Vec::new();
    for (name, qtype) in SCOPED_NAMES {
        let answer = dns.query(name, qtype).await;
        assert!(!answer.answers.is_empty(), "{name}: {answer:?}");
        before.push(answer);
    }
    drop(consul);
    // Every watch's next read fails and marks its answers stale; they are still served.
    wait_until(
        "the bridge serving stale",
        Duration::from_secs(5),
        async || bridge.log().contains("serving the last known answers"),
    )
    .await;
    for ((name, qtype), earlier) in SCOPED_NAMES.iter().zip(&before) {
        let answer = dns.query(name, *qtype).await;
        assert_eq!(answer.response_code, OK, "{name}");
        assert_eq!(answer.answers.len(), earlier.answers.len(), "{name}");
        for (now, then) in answer.answers.iter().zip(&earlier.answers) {
            assert_eq!(now.data, then.data, "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_names_pass_every_step_of_the_gate() {
    let consul = scoped_consul().await;
    // 60 instances: an A answer far past 512 bytes.
    let many: Vec<(String, String)> = (1..=60)
        .map(|i| (format!("peernode{i}"), format!("10.9.0.{i}")))
        .collect();
    let many: Vec<(&str, &str, &str)> = (many.iter())
        .map(|(node, address)| (node.as_str(), address.as_str(), ""))
        .collect();
    consul.add_scoped_service("peer=p1", "big", &many);
    let log = std::env::temp_dir().join(format!("cdb-scoped-log-{}.jsonl", std::process::id()));
    let log_text = log.display().to_string();
    let mut options = vec!["--query-log", &log_text];
    options.extend(GATE_LIMITS);
    let bridge = BridgeBinary::start(&consul.url(), &options, &[], "web.service.consul.").await;
    let allowed = bridge.dns.asked_from("127.0.0.1");
    let outside = bridge.dns.asked_from("127.0.0.200");
    let mut asked = 0u64;
    for (name, qtype) in SCOPED_NAMES {
        for transport in [Transport::UdpPlain, Transport::Tcp] {
            let answer = allowed.query_over(name, qtype, transport).await;
            assert_eq!(answer.response_code, OK, "{name} {transport:?}");
            assert!(!answer.answers.is_empty(), "{name} {transport:?}");
            let refused = outside.query_over(name, qtype, transport).await;
            assert_eq!(
                refused.response_code,
                ResponseCode::Refused,
                "{name} {transport:?} from outside --allow-query"
            );
            assert!(refused.answers.is_empty(), "{name} {transport:?}");
            asked += 2;
        }
    }
    // Size: over UDP without EDNS, at most 512 bytes, TC beyond; TCP has them all.
    let question = query_bytes(7, "big.service.p1.peer.consul.", RecordType::A, None);
    let large = allowed.exchange_udp(&question).await;
    let message = Message::from_vec(&large).expect("a DNS message");
    assert!(
        large.len() <= 512 && message.metadata.truncation,
        "{} bytes, {:?}",
        large.len(),
        message.metadata
    );
    let whole =
        (allowed.query_over("big.service.p1.peer.consul.", RecordType::A, Transport::Tcp)).await;
    assert_eq!(whole.answers.len(), 60);
    asked += 2;
    // Rate limiting: 20 questions from a limited client in under a second, at most 3 a second
    // answered (6 when a second turns over).
    for (name, qtype) in SCOPED_NAMES {
        let question = query_bytes(8, name, qtype, None);
        let server = bridge.dns.addr;
        let answered =
            tokio::task::spawn_blocking(move || answered_of(server, "127.0.0.50", &question, 20))
                .await
                .expect("sender");
        asked += 20;
        assert!(
            (1..=6).contains(&answered),
            "{name}: {answered} answered of 20 (limit 3 a second)"
        );
    }
    // The log and the metrics saw every question, answered or held back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = std::fs::read_to_string(&log).unwrap_or_default();
    for (name, _) in SCOPED_NAMES {
        let wire = name.trim_end_matches('.');
        assert!(
            lines
                .lines()
                .any(|line| line.contains(name) || line.contains(wire)),
            "no log line for {name}"
        );
    }
    bridge.assert_logged_and_counted(&log, asked).await;
}
