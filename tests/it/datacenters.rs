//! A second datacenter and prepared queries against real agents: health flips in dc2 reach the
//! answers of `<svc>.service.dc2` and of a query that fails over to dc2; new, changed and deleted
//! query definitions are seen; random query and dc2 names cost Consul nothing.
//!
//! dc1 is the agent the bridge uses; dc2 a second dev agent on 127.0.0.2 with the same ports,
//! joined over the WAN. Times are printed (`-- --nocapture`) from the moment Consul accepted the
//! change to the first answer that shows it.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::support::{ConsulAgent, DnsClient, consul::service, dns::ip, start_bridge};
use consul_dns_bridge::{Endpoint, InstanceKind};
use hickory_proto::{op::ResponseCode, rr::RecordType};
use serde_json::json;

/// Asks `name` every millisecond until its A answer is `expected` (sorted; empty means
/// NXDOMAIN), and returns how long that took; fails after 10 s.
async fn time_until(dns: &DnsClient, name: &str, expected: &[&str]) -> Duration {
    let expected: Vec<IpAddr> = expected.iter().map(|a| ip(a)).collect();
    let started = Instant::now();
    let mut last = (ResponseCode::NoError, Vec::new());
    while started.elapsed() < Duration::from_secs(10) {
        let response = dns.query(name, RecordType::A).await;
        let mut got: Vec<IpAddr> = response
            .answers
            .iter()
            .filter_map(|r| r.data.ip_addr())
            .collect();
        got.sort();
        let rcode = response.metadata.response_code;
        let done = match expected.is_empty() {
            true => rcode == ResponseCode::NXDomain,
            false => rcode == ResponseCode::NoError && got == expected,
        };
        if done {
            return started.elapsed();
        }
        last = (rcode, got);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{name} never answered {expected:?}; last answer {last:?}");
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_flips_in_dc2_reach_service_and_failover_query_answers() {
    let dc1 = ConsulAgent::start().await;
    let dc2 = ConsulAgent::start_wan_peer(&dc1, [127, 0, 0, 2], "dc2").await;
    dc2.register(service("web", "web9", "10.9.0.1")).await;
    dc2.register(service("web", "web10", "10.9.0.2")).await;
    dc1.register(service("failsvc", "fail1", "10.1.9.1").critical())
        .await;
    dc2.register(service("failsvc", "fail2", "10.9.1.1")).await;
    dc1.create_query(json!({
        "Name": "failq",
        "Service": {"Service": "failsvc", "Failover": {"Datacenters": ["dc2"]}}
    }))
    .await;
    let (bridge, dns) = start_bridge(&dc1, &[]).await;

    time_until(&dns, "web.service.dc2.consul.", &["10.9.0.1", "10.9.0.2"]).await;
    time_until(&dns, "failq.query.consul.", &["10.9.1.1"]).await;

    dc2.set_check("web9", "fail").await;
    let dc2_down = time_until(&dns, "web.service.dc2.consul.", &["10.9.0.2"]).await;
    dc2.set_check("web9", "pass").await;
    let dc2_up = time_until(&dns, "web.service.dc2.consul.", &["10.9.0.1", "10.9.0.2"]).await;

    // The failover query: dc2's only instance fails (no instance anywhere: NXDOMAIN), dc1's
    // comes back (answered locally), dc1's fails again (failover to dc2 once dc2 passes).
    dc2.set_check("fail2", "fail").await;
    let failover_gone = time_until(&dns, "failq.query.consul.", &[]).await;
    dc1.set_check("fail1", "pass").await;
    let back_local = time_until(&dns, "failq.query.consul.", &["10.1.9.1"]).await;
    dc2.set_check("fail2", "pass").await;
    dc1.set_check("fail1", "fail").await;
    let failed_over = time_until(&dns, "failq.query.consul.", &["10.9.1.1"]).await;

    println!(
        "dc2 service: instance down {}, up {}; failover query: dc2 down {}, back in dc1 {}, failed over to dc2 {}",
        ms(dc2_down),
        ms(dc2_up),
        ms(failover_gone),
        ms(back_local),
        ms(failed_over)
    );
    // Far below the 3 s refresh: the changes came through the watches, not the timer.
    for taken in [dc2_down, dc2_up, failover_gone, back_local, failed_over] {
        assert!(taken < Duration::from_secs(1), "took {taken:?}");
    }
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_changed_and_deleted_queries_are_seen() {
    let dc1 = ConsulAgent::start().await;
    dc1.register(service("web", "web1", "10.1.0.1").tags(&["v1"]))
        .await;
    dc1.register(service("web", "web2", "10.1.0.2")).await;
    let (bridge, dns) = start_bridge(&dc1, &[]).await;
    assert_eq!(
        dns.rcode("lateq.query.consul.", RecordType::A).await,
        ResponseCode::NXDomain
    );

    let definition =
        |tags: &[&str]| json!({"Name": "lateq", "Service": {"Service": "web", "Tags": tags}});
    let id = dc1.create_query(definition(&[])).await;
    let created = time_until(&dns, "lateq.query.consul.", &["10.1.0.1", "10.1.0.2"]).await;
    dc1.put(&format!("/v1/query/{id}"), definition(&["v1"]))
        .await;
    let changed = time_until(&dns, "lateq.query.consul.", &["10.1.0.1"]).await;
    dc1.delete_query(&id).await;
    let deleted = time_until(&dns, "lateq.query.consul.", &[]).await;
    println!(
        "query definitions: created {}, changed {}, deleted {}",
        ms(created),
        ms(changed),
        ms(deleted)
    );
    // A dev agent's empty query table has index 1, which the watch does not trust to block on:
    // it asks again after a pause of 0.5-1 s (jittered), so a first query can take that long.
    assert!(
        created < Duration::from_secs(2),
        "created: took {created:?}"
    );
    for taken in [changed, deleted] {
        assert!(taken < Duration::from_secs(1), "took {taken:?}");
    }
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_query_gateway_and_dc2_names_cause_no_consul_requests() {
    let dc1 = ConsulAgent::start().await;
    let dc2 = ConsulAgent::start_wan_peer(&dc1, [127, 0, 0, 3], "dc2").await;
    dc1.register(service("web", "web1", "10.1.0.1")).await;
    dc2.register(service("web", "web9", "10.9.0.1")).await;
    dc1.create_query(json!({"Name": "webq", "Service": {"Service": "web"}}))
        .await;
    dc1.create_query(json!({
        "Name": "tmpl-", "Template": {"Type": "name_prefix_match"},
        "Service": {"Service": "${name.suffix}"}
    }))
    .await;
    let (bridge, dns) = start_bridge(&dc1, &[]).await;
    // Start the watches random names are answered from: dc1's queries, dc2's services and nodes.
    time_until(&dns, "webq.query.consul.", &["10.1.0.1"]).await;
    time_until(&dns, "web.service.dc2.consul.", &["10.9.0.1"]).await;
    assert_eq!(
        dns.rcode("node-dc2.node.dc2.consul.", RecordType::A).await,
        ResponseCode::NoError
    );
    let status = bridge.status();
    let counts = || -> Vec<u64> {
        Endpoint::ALL
            .iter()
            .map(|e| status.consul_requests(*e))
            .collect()
    };
    let at = |endpoint| {
        Endpoint::ALL
            .iter()
            .position(|e| *e == endpoint)
            .unwrap_or(0)
    };
    let before = counts();

    for i in 0..1000 {
        let kind = ["query", "node.dc2", "service.dc2", "connect", "ingress"][i % 5];
        let name = format!("r{:x}{i}.{kind}.consul.", rand::random::<u64>());
        assert_eq!(
            dns.rcode(&name, RecordType::A).await,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    let after = counts();
    for ((endpoint, b), a) in Endpoint::ALL.iter().zip(&before).zip(&after) {
        println!("{}: {b} -> {a}", endpoint.path());
    }
    let moved = |endpoint: Endpoint| after[at(endpoint)] - before[at(endpoint)];
    assert_eq!(moved(Endpoint::QueryExecute), 0, "no random name executed");
    // Each health watch parked before (one per service asked) may come back once: Consul
    // wakes a blocking query on an index change that leaves its answer as it was (the agent's
    // anti-entropy sync after a registration), and on a loaded machine that lands here. 200
    // random dc2 service names asking Consul would show as hundreds.
    let health = Endpoint::Health(InstanceKind::Service);
    assert!(
        moved(health) <= before[at(health)],
        "no health request for random names: {} -> {}",
        before[at(health)],
        after[at(health)]
    );
    assert_eq!(
        moved(Endpoint::Health(InstanceKind::Connect)),
        0,
        "no Connect health request"
    );
    // At most a parked watch coming back at the end of its wait.
    for endpoint in [
        Endpoint::PreparedQueries,
        Endpoint::CatalogServices,
        Endpoint::CatalogNodes,
    ] {
        assert!(
            moved(endpoint) <= 2,
            "{}: {}",
            endpoint.path(),
            moved(endpoint)
        );
    }

    // A name a template matches is executed: once, then answered from the cache.
    for _ in 0..3 {
        time_until(&dns, "tmpl-web.query.consul.", &["10.1.0.1"]).await;
    }
    let executed =
        status.consul_requests(Endpoint::QueryExecute) - after[at(Endpoint::QueryExecute)];
    println!("tmpl-web.query asked 3 times: {executed} execution(s)");
    assert!((1..=2).contains(&executed), "{executed} executions");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_not_asked_for_is_not_executed_again_until_asked() {
    let dc1 = ConsulAgent::start().await;
    dc1.register(service("web", "web1", "10.1.0.1")).await;
    dc1.register(service("web", "web2", "10.1.0.2")).await;
    dc1.create_query(json!({"Name": "webq", "Service": {"Service": "web"}}))
        .await;
    let (bridge, dns) = start_bridge(&dc1, &["--prepared-query-refresh", "200ms"]).await;
    let status = bridge.status();
    let executions = || status.consul_requests(Endpoint::QueryExecute);
    assert_eq!(
        dns.addresses("webq.query.consul.", RecordType::A).await,
        [ip("10.1.0.1"), ip("10.1.0.2")]
    );
    assert_eq!(executions(), 1);

    // Five health changes and many refresh periods with nobody asking: no execution.
    for verb in ["fail", "pass", "fail", "pass", "fail"] {
        dc1.set_check("web1", verb).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(executions(), 1, "executed while nobody asked");

    // The next question waits for the execution the changes called for: the answer is current.
    let started = Instant::now();
    assert_eq!(
        dns.addresses("webq.query.consul.", RecordType::A).await,
        [ip("10.1.0.2")]
    );
    println!(
        "first question after the changes answered in {} with {} execution(s) in all",
        ms(started.elapsed()),
        executions()
    );
    assert_eq!(executions(), 2);
    bridge.shutdown().await;
}

/// The instances of `rsvc{i}` in dc2: `10.77.<i>.1` and `.2`, each with its own check.
fn remote_instance_ops(i: usize, failing_first: bool) -> Vec<serde_json::Value> {
    (1..=2)
        .flat_map(|j| {
            let id = format!("rsvc{i}-{j}");
            let status = match (failing_first, j) {
                (true, 1) => "critical",
                _ => "passing",
            };
            [
                json!({"Service": {"Verb": "set", "Node": "dc2-ext", "Service": {
                    "ID": id, "Service": format!("rsvc{i}"),
                    "Address": format!("10.77.{i}.{j}"), "Port": 80}}}),
                json!({"Check": {"Verb": "set", "Check": {"Node": "dc2-ext",
                    "CheckID": format!("chk-{id}"), "Name": "up", "Status": status,
                    "ServiceID": id}}}),
            ]
        })
        .collect()
}

/// More dc2 services asked for than the budget parks (80, of which 20 park): one instance of
/// each fails, and every answer shows it within 1 s: dc2's own failing checks tell the
/// services read on demand, as the local datacenter's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_datacenters_services_follow_changes_beyond_the_parked_ones() {
    const SERVICES: usize = 80;
    let dc1 = ConsulAgent::start().await;
    let dc2 = ConsulAgent::start_wan_peer(&dc1, [127, 0, 0, 2], "dc2").await;
    let mut ops =
        vec![json!({"Node": {"Verb": "set", "Node": {"Node": "dc2-ext", "Address": "10.77.0.1"}}})];
    ops.extend((0..SERVICES).flat_map(|i| remote_instance_ops(i, false)));
    for chunk in ops.chunks(64) {
        dc2.put("/v1/txn", json!(chunk)).await;
    }
    let (bridge, dns) = start_bridge(&dc1, &[]).await;
    let name = |i: usize| format!("rsvc{i}.service.dc2.consul.");
    for i in 0..SERVICES {
        let both = [format!("10.77.{i}.1"), format!("10.77.{i}.2")];
        let both: Vec<&str> = both.iter().map(String::as_str).collect();
        time_until(&dns, &name(i), &both).await;
    }
    // The keeper parks what the budget allows (a second or two); the rest read on demand.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let flips: Vec<_> = (0..SERVICES)
        .flat_map(|i| remote_instance_ops(i, true))
        .filter(|op| op.get("Check").is_some())
        .collect();
    for chunk in flips.chunks(64) {
        dc2.put("/v1/txn", json!(chunk)).await;
    }
    let flipped = Instant::now();
    let mut wrong: Vec<usize> = (0..SERVICES).collect();
    while !wrong.is_empty() && flipped.elapsed() < Duration::from_secs(5) {
        let mut still = Vec::new();
        for i in wrong {
            let got = dns.addresses(&name(i), RecordType::A).await;
            if got != [ip(&format!("10.77.{i}.2"))] {
                still.push(i);
            }
        }
        wrong = still;
    }
    let took = flipped.elapsed();
    println!(
        "{SERVICES} dc2 services, one instance of each failed: all answers right after {}; \
         wrong after 5 s: {}",
        ms(took),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {SERVICES} dc2 services still answer the failed instance after 5 s",
        wrong.len()
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    bridge.shutdown().await;
}

/// A client that asks only a `.query` name: the query's service is watched for it (a health
/// change executes the query again at once), also after that watch idles out of the cache,
/// since nobody asks the service's own name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_follows_its_service_after_the_service_watch_idles_out() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    consul.register(service("web", "web2", "10.1.0.2")).await;
    consul
        .create_query(json!({"Name": "webq", "Service": {"Service": "web"}}))
        .await;
    // No refresh by timer: only the service's changes execute the query again.
    let options = [
        "--watch-idle-timeout",
        "2s",
        "--prepared-query-refresh",
        "1h",
    ];
    let (bridge, dns) = start_bridge(&consul, &options).await;
    time_until(&dns, "webq.query.consul.", &["10.1.0.1", "10.1.0.2"]).await;
    // Asked every 300 ms for longer than the idle timeout; web's own name never.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        dns.query("webq.query.consul.", RecordType::A).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    consul.set_check("web1", "fail").await;
    let took = time_until(&dns, "webq.query.consul.", &["10.1.0.2"]).await;
    println!("the query followed its service's change after {}", ms(took));
    assert!(took < Duration::from_secs(2), "took {took:?}");
    bridge.shutdown().await;
}
