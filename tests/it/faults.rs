//! Consul going away and coming back, with real agents: the last known answers are served
//! (stale) up to `--serve-stale`, then SERVFAIL, never NXDOMAIN; after a restart (empty catalog,
//! lower index) the answers are fresh again without restarting the bridge.

use std::time::{Duration, Instant};

use crate::support::{ConsulAgent, DnsClient, consul::service, dns::ip, start_bridge, wait_until};
use consul_dns_bridge::Bridge;
use hickory_proto::{op::ResponseCode, rr::RecordType};

/// A bridge with `--serve-stale serve_stale` that has answered for `web` and for the prepared
/// query `webq`, whose agent was then killed, once the bridge has noticed.
async fn answer_then_lose_consul(serve_stale: &str) -> (ConsulAgent, Bridge, DnsClient) {
    let mut consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    consul
        .create_query(serde_json::json!({"Name": "webq", "Service": {"Service": "web"}}))
        .await;
    let (bridge, dns) = start_bridge(&consul, &["--serve-stale", serve_stale]).await;
    for name in ["web.service.consul.", "webq.query.consul."] {
        assert_eq!(dns.addresses(name, RecordType::A).await, [ip("10.1.0.1")]);
    }
    consul.kill();
    let status = bridge.status();
    wait_until("stale detected", Duration::from_secs(5), async || {
        status.stale_watches() > 0
    })
    .await;
    (consul, bridge, dns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_answers_while_consul_is_down_then_fresh_after_restart() {
    // 72h is the default serve-stale.
    let (mut consul, bridge, dns) = answer_then_lose_consul("72h").await;
    let status = bridge.status();
    for _ in 0..20 {
        for name in ["web.service.consul.", "webq.query.consul."] {
            assert_eq!(dns.addresses(name, RecordType::A).await, [ip("10.1.0.1")]);
        }
        for name in ["nope.service.consul.", "nope.query.consul."] {
            assert_eq!(dns.rcode(name, RecordType::A).await, ResponseCode::NXDomain);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A dev agent restarts empty, with an index lower than the one the bridge holds.
    consul.spawn().await;
    consul.register(service("web", "web9", "10.1.0.9")).await;
    let took = wait_until(
        "fresh data after restart",
        Duration::from_secs(20),
        async || dns.addresses("web.service.consul.", RecordType::A).await == [ip("10.1.0.9")],
    )
    .await;
    println!("fresh again {took:?} after the restarted agent had the new instance");
    // The restarted agent has no prepared query: the name is gone, then back once created.
    wait_until(
        "query gone after restart",
        Duration::from_secs(20),
        async || dns.rcode("webq.query.consul.", RecordType::A).await == ResponseCode::NXDomain,
    )
    .await;
    consul
        .create_query(serde_json::json!({"Name": "webq", "Service": {"Service": "web"}}))
        .await;
    wait_until("query back", Duration::from_secs(20), async || {
        dns.addresses("webq.query.consul.", RecordType::A).await == [ip("10.1.0.9")]
    })
    .await;
    wait_until("no stale watch left", Duration::from_secs(5), async || {
        status.stale_watches() == 0
    })
    .await;
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_serve_stale_answers_servfail_never_nxdomain() {
    let (_consul, bridge, dns) = answer_then_lose_consul("1s").await;
    assert_eq!(
        dns.rcode("web.service.consul.", RecordType::A).await,
        ResponseCode::NoError
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for name in [
        "web.service.consul.",
        "webq.query.consul.",
        "nope.query.consul.",
    ] {
        assert_eq!(
            dns.rcode(name, RecordType::A).await,
            ResponseCode::ServFail,
            "{name}"
        );
    }
    assert_eq!(
        dns.rcode("web.service.consul.", RecordType::SRV).await,
        ResponseCode::ServFail
    );
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stale_zero_disables_serving_stale() {
    let (_consul, bridge, dns) = answer_then_lose_consul("0s").await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        dns.rcode("web.service.consul.", RecordType::A).await,
        ResponseCode::ServFail
    );
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_next_agent_and_comes_back() {
    // Two agents whose catalogs differ, so the answer tells which one the bridge reads.
    let mut first = ConsulAgent::start().await;
    let mut second = ConsulAgent::start().await;
    first.register(service("web", "web1", "10.1.0.1")).await;
    second.register(service("web", "web2", "10.1.0.2")).await;
    let second_url = second.http_url();
    let (bridge, dns) = start_bridge(&first, &["--consul-addr", &second_url]).await;
    assert_eq!(
        dns.addresses("web.service.consul.", RecordType::A).await,
        [ip("10.1.0.1")]
    );

    first.kill();
    let took = wait_until(
        "failover to the second agent",
        Duration::from_secs(15),
        async || dns.addresses("web.service.consul.", RecordType::A).await == [ip("10.1.0.2")],
    )
    .await;
    println!("answers from the second agent {took:?} after the first was killed");

    first.spawn().await;
    first.register(service("web", "web1", "10.1.0.1")).await;
    second.kill();
    let took = wait_until(
        "back to the first agent",
        Duration::from_secs(15),
        async || dns.addresses("web.service.consul.", RecordType::A).await == [ip("10.1.0.1")],
    )
    .await;
    println!("answers from the restarted first agent {took:?} after the second was killed");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_prepared_query_answers_at_once_when_consul_is_gone() {
    let mut consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    consul
        .create_query(serde_json::json!({"Name": "webq", "Service": {"Service": "web"}}))
        .await;
    let (bridge, dns) = start_bridge(&consul, &["--prepared-query-refresh", "200ms"]).await;
    assert_eq!(
        dns.addresses("webq.query.consul.", RecordType::A).await,
        [ip("10.1.0.1")]
    );
    // Nobody asks for a few refresh periods: the next question would wait for an execution.
    tokio::time::sleep(Duration::from_millis(700)).await;
    consul.kill();
    let started = Instant::now();
    assert_eq!(
        dns.addresses("webq.query.consul.", RecordType::A).await,
        [ip("10.1.0.1")]
    );
    let took = started.elapsed();
    println!("quiet query answered {took:?} after the agent was killed");
    assert!(took < Duration::from_millis(1200), "took {took:?}");
    bridge.shutdown().await;
}
