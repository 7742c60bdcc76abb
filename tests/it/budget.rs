//! The connection budget against a real agent left at its default limits
//! (`http_max_conns_per_client` 200): a bridge asked for 1,000 services answers every one, holds
//! at most `--consul-max-connections` (32) connections to the agent while the host's other
//! clients keep registering through it, follows a health change of a service it does not park
//! within the same second, and several bridges on one agent through its cache cost the servers
//! about one execution per change.

use std::{
    net::UdpSocket,
    time::{Duration, Instant},
};

use hickory_proto::{op::ResponseCode, rr::RecordType};
use serde_json::json;

use crate::support::{
    ConsulAgent,
    binary::BridgeBinary,
    consul::{ConsulApi, service},
    dns::{ip, query_bytes},
    start_bridge, wait_until,
};

/// Registers `count` services (`svc0000` ...) of one instance each on an external node, through
/// the catalog in transactions of 64.
async fn register_services(consul: &ConsulAgent, count: usize) {
    let mut ops =
        vec![json!({"Node": {"Verb": "set", "Node": {"Node": "ext", "Address": "10.99.0.1"}}})];
    for i in 0..count {
        ops.push(
            json!({"Service": {"Verb": "set", "Node": "ext", "Service": {
            "ID": format!("svc{i:04}"), "Service": format!("svc{i:04}"),
            "Address": format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256),
            "Port": 80}}}),
        );
        ops.push(json!({"Check": {"Verb": "set", "Check": {
            "Node": "ext", "CheckID": format!("check{i:04}"), "Name": "up",
            "Status": "passing", "ServiceID": format!("svc{i:04}")}}}));
    }
    for chunk in ops.chunks(64) {
        consul.put("/v1/txn", json!(chunk)).await;
    }
}

/// Sets the check of `svc{i}` to `status`.
async fn set_service_check(api: &ConsulApi, i: usize, status: &str) {
    let check = json!([{"Check": {"Verb": "set", "Check": {
        "Node": "ext", "CheckID": format!("check{i:04}"), "Name": "up",
        "Status": status, "ServiceID": format!("svc{i:04}")}}}]);
    api.put("/v1/txn", check).await;
}

/// Established TCP connections from this machine to `port` on 127.0.0.1 (`/proc/net/tcp`).
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"01")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_services_within_the_budget_and_the_host_keeps_its_share() {
    let consul = ConsulAgent::start().await;
    register_services(&consul, 1000).await;
    let (bridge, dns) = start_bridge(&consul, &[]).await;
    let port = consul.http.port();

    // Every service asked for, 50 at a time over UDP: all answered with their instance.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut most_connections = 0;
    let mut failed = Vec::new();
    for batch in (0..1000).collect::<Vec<usize>>().chunks(50) {
        for i in batch {
            let question = query_bytes(
                *i as u16,
                &format!("svc{i:04}.service.consul."),
                RecordType::A,
                Some(1232),
            );
            socket.send_to(&question, dns.addr).expect("send");
        }
        let mut buf = [0u8; 1500];
        for _ in batch {
            let len = socket.recv(&mut buf).expect("an answer within 5 s");
            let answer = hickory_proto::op::Message::from_vec(&buf[..len]).expect("decode");
            if answer.answers.len() != 1 {
                failed.push((answer.metadata.id, answer.metadata.response_code));
            }
        }
        most_connections = most_connections.max(connections_to(port));
    }
    assert!(
        failed.is_empty(),
        "{} services not answered: {failed:?}",
        failed.len()
    );

    // The keeper parks the most asked within a second or two; the rest read on demand.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    most_connections = most_connections.max(connections_to(port));

    // The host's other clients still get through: registrations from the same address.
    for i in 0..20 {
        consul
            .register(service(
                "other",
                &format!("other{i}"),
                &format!("10.98.0.{i}"),
            ))
            .await;
    }
    most_connections = most_connections.max(connections_to(port));
    println!("1,000 services answered; at most {most_connections} connections to the agent");
    // The harness's own API client holds a few too.
    assert!(most_connections <= 32 + 8, "{most_connections} connections");
    // Within the agent's limit nothing is refused, so the bridge keeps parking its budget's
    // 28 (32 less 4 for plain requests): no false refusal lowers it.
    let metrics_url = format!(
        "http://{}/metrics",
        bridge.http_addr().expect("metrics listener")
    );
    let metrics = reqwest::get(metrics_url)
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("/metrics body");
    for series in [
        "consul_dns_bridge_consul_refused_connections_total 0",
        "consul_dns_bridge_consul_parking_limit 28",
    ] {
        assert!(metrics.lines().any(|l| l == series), "{series}:\n{metrics}");
    }

    // A health change of a service answered on demand (most are: 20 may park) shows at once.
    let flipped = Instant::now();
    set_service_check(&consul, 777, "critical").await;
    let took = wait_until("svc0777 gone", Duration::from_secs(2), async || {
        dns.addresses("svc0777.service.consul.", RecordType::A)
            .await
            .is_empty()
    })
    .await;
    println!("health change of an on-demand service seen after {took:?}");
    assert!(flipped.elapsed() < Duration::from_secs(2));
    set_service_check(&consul, 777, "passing").await;
    wait_until("svc0777 back", Duration::from_secs(2), async || {
        dns.addresses("svc0777.service.consul.", RecordType::A)
            .await
            == [ip("10.100.3.9")]
    })
    .await;
    bridge.shutdown().await;
}

/// `consul_health_service_query{service="web"}` on the agent's own telemetry.
async fn executions(consul: &ConsulAgent) -> f64 {
    let text = reqwest::get(format!(
        "{}/v1/agent/metrics?format=prometheus",
        consul.http_url()
    ))
    .await
    .expect("metrics")
    .text()
    .await
    .expect("metrics text");
    text.lines()
        .find(|line| line.starts_with("consul_health_service_query{service=\"web\"}"))
        .and_then(|line| line.split_whitespace().last())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Four bridges on one agent (with `options`) ask for `web`; `flips` health changes; returns the
/// executions of web's health query per change.
async fn executions_per_flip(options: &[&str], flips: usize) -> f64 {
    let consul = ConsulAgent::start_with(
        "dns_config { only_passing = true }\ntelemetry { prometheus_retention_time = \"60s\" }\n",
    )
    .await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    consul.register(service("web", "web2", "10.1.0.2")).await;
    let mut bridges = Vec::new();
    for _ in 0..4 {
        bridges.push(start_bridge(&consul, options).await);
    }
    for (_, dns) in &bridges {
        assert_eq!(
            dns.addresses("web.service.consul.", RecordType::A)
                .await
                .len(),
            2
        );
    }
    // The keeper parks web's watch in each bridge at its next tick (a second at most).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = executions(&consul).await;
    for flip in 0..flips {
        let (verb, expected) = match flip % 2 {
            0 => ("fail", 1),
            _ => ("pass", 2),
        };
        consul.set_check("web1", verb).await;
        for (_, dns) in &bridges {
            wait_until("every bridge follows", Duration::from_secs(3), async || {
                dns.addresses("web.service.consul.", RecordType::A)
                    .await
                    .len()
                    == expected
            })
            .await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let per_flip = (executions(&consul).await - before) / flips as f64;
    for (bridge, _) in bridges {
        bridge.shutdown().await;
    }
    per_flip
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridges_sharing_an_agent_cost_one_execution_per_change_through_its_cache() {
    let cached = executions_per_flip(&["--use-cache", "true"], 6).await;
    let uncached = executions_per_flip(&["--use-cache", "false"], 6).await;
    println!(
        "4 bridges, executions of web's health query per change: {cached} cached, {uncached} not"
    );
    assert!(cached <= 1.5, "{cached} per change through the cache");
    assert!(
        uncached >= 3.5,
        "{uncached} per change without it: one per bridge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refusing_connections_is_named_once_in_the_log() {
    // An operator set the agent's limit below the bridge's budget.
    let consul = ConsulAgent::start_with(
        "dns_config { only_passing = true }\nlimits { http_max_conns_per_client = 4 }\n",
    )
    .await;
    register_services(&consul, 40).await;
    // Not waiting for data: the agent may refuse the first read already (this test's own
    // connection from the same address counts against its limit too).
    let bridge = BridgeBinary::spawn(&consul.http_url(), &["--consul-max-connections", "16"], &[]);
    bridge.wait_listening().await;
    // Many services asked: the keeper parks them within the budget, past the agent's limit.
    for _ in 0..3 {
        let asks = (0..40).map(|i| {
            let name = format!("svc{i:04}.service.consul.");
            async move { bridge.dns.query(&name, RecordType::A).await }
        });
        futures_util::future::join_all(asks).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let named = "http_max_conns_per_client";
    let logged = crate::support::poll_until(Duration::from_secs(10), async || {
        bridge.log().contains(named)
    })
    .await;
    assert!(logged.is_some(), "not in the log:\n{}", bridge.log());
    let log = bridge.log();
    println!(
        "{}",
        log.lines().find(|l| l.contains(named)).unwrap_or_default()
    );
    assert_eq!(log.matches(named).count(), 1, "said once:\n{log}");
    let refused = bridge
        .metric("consul_refused_connections_total")
        .await
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "counted: {refused}");
}

/// An agent whose limit is below the bridge's budget (an operator set
/// `http_max_conns_per_client = 20`, the bridge keeps its default 32): once refused, the bridge
/// parks fewer watches, so that the host's own clients get through again, while every service
/// is still answered and follows its changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_agent_limit_is_learned_and_every_service_still_answered() {
    const SERVICES: usize = 100;
    let consul = ConsulAgent::start_with("limits { http_max_conns_per_client = 20 }\n").await;
    register_services(&consul, SERVICES).await;
    let api = ConsulApi::new(consul.http_url());
    let bridge = BridgeBinary::spawn(&consul.http_url(), &[], &[]);
    bridge.wait_listening().await;
    let ask_all = async || {
        let asks = (0..SERVICES).map(|i| {
            let name = format!("svc{i:04}.service.consul.");
            async move { bridge.dns.query(&name, RecordType::A).await }
        });
        futures_util::future::join_all(asks).await
    };
    // Asked for a while: the keeper parks the most asked, past the agent's limit.
    for _ in 0..6 {
        ask_all().await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Every service answered with its instance.
    let unanswered: Vec<usize> = ask_all()
        .await
        .iter()
        .enumerate()
        .filter(|(_, a)| a.answers.len() != 1)
        .map(|(i, _)| i)
        .collect();
    assert!(unanswered.is_empty(), "not answered: {unanswered:?}");
    // Refused, the bridge learned to park fewer than its budget's 28 (32 less 4 for plain
    // requests) and holds fewer connections than the agent allows.
    let value = async |name: &str| bridge.metric(name).await.unwrap_or(-1.0);
    let (limit, held, refused) = (
        value("consul_parking_limit").await,
        value("consul_connections").await,
        value("consul_refused_connections_total").await,
    );
    println!("refused {refused} times: parking limit {limit}, {held} connections held");
    assert!(refused >= 1.0, "the agent refused: {refused}");
    assert!((0.0..20.0).contains(&limit), "parking limit {limit}");
    assert!(held < 20.0, "{held} connections held");
    // The host's clients get through (a refused PUT fails the test), and a change of each of
    // 10 services is followed within less than a read's 2 s wait past an index: a burst of
    // flips is reported by the failing-checks watch at a later index than each service's own
    // change, and a read waiting past that index would wait it out.
    for i in (0..SERVICES).step_by(10) {
        set_service_check(&api, i, "critical").await;
    }
    let took = wait_until(
        "10 flips followed",
        Duration::from_millis(1500),
        async || {
            let answers = ask_all().await;
            (0..SERVICES)
                .step_by(10)
                .all(|i| answers[i].metadata.response_code == ResponseCode::NXDomain)
        },
    )
    .await;
    println!("10 health changes answered within {took:?}");
}

/// A federation of 71 datacenters (the scripted catalog answers for each), a `.service`, a
/// `.node` and a `.query` name asked in each: the lists every answer needs (service list,
/// failing checks, nodes, query definitions) park within `--consul-max-connections` with the
/// services, and what does not fit is read every few seconds instead: the bridge never holds
/// more connections than its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federation_of_many_datacenters_stays_within_the_budget() {
    use crate::support::{scripted_consul::ScriptedConsul, start_bridge_at};
    let consul = ScriptedConsul::start(&[("web", &["10.1.0.1"])]).await;
    consul.add_datacenters((2..=71).map(|n| format!("dc{n}")));
    let (bridge, dns) = start_bridge_at(&consul.url(), &[]).await;
    for n in 1..=71 {
        for name in [
            format!("web.service.dc{n}.consul."),
            format!("node1.node.dc{n}.consul."),
            format!("q.query.dc{n}.consul."),
        ] {
            dns.query(&name, RecordType::A).await;
        }
    }
    // Every remote watch started; the keeper and the lists settle within a few seconds.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let web = dns
        .addresses("web.service.dc71.consul.", RecordType::A)
        .await;
    let most = consul.most_connections();
    println!("71 datacenters, 3 names each: at most {most} connections to the agent at once");
    assert_eq!(
        web,
        [ip("10.1.0.1")],
        "the last datacenter's service answered"
    );
    assert!(most <= 32 + 2, "{most} connections for a budget of 32");
    bridge.shutdown().await;
}
