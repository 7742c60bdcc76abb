//! How the bridge's reads reach Consul, seen from a scripted fake that records every request:
//! `?stale` by default (any server answers, as Consul's DNS reads), `?cached` for health reads
//! (the agent cache, one background watch per service for all clients of the agent), and a
//! stale read from a server further behind than `--max-stale` asked again of the leader.

use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::support::{dns::ip, fake_consul::FakeConsul, start_bridge_at, wait_until};

/// The query parameters of `target` (`path?a=1&b`), by name.
fn params(target: &str) -> Vec<&str> {
    let query = target.split_once('?').map_or("", |(_, query)| query);
    query
        .split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .collect()
}

async fn web_answered(fake: &FakeConsul, options: &[&str]) -> consul_dns_bridge::Bridge {
    let (bridge, dns) = start_bridge_at(&fake.url(), options).await;
    assert_eq!(
        dns.addresses("web.service.consul.", RecordType::A).await,
        [ip("10.1.0.1")]
    );
    bridge
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_stale_and_health_reads_cached_by_default() {
    let fake = FakeConsul::start("10.1.0.1").await;
    let bridge = web_answered(&fake, &[]).await;
    let lists = fake.targets("/v1/catalog/services");
    assert!(!lists.is_empty());
    assert!(
        lists.iter().all(|t| params(t).contains(&"stale")),
        "{lists:?}"
    );
    let health = fake.targets("/v1/health/service/web");
    assert!(
        health.iter().all(|t| params(t).contains(&"cached")),
        "{health:?}"
    );
    bridge.shutdown().await;

    let fake = FakeConsul::start("10.1.0.1").await;
    let bridge = web_answered(&fake, &["--use-cache", "false", "--allow-stale", "false"]).await;
    let reads: Vec<String> = [
        fake.targets("/v1/catalog/services"),
        fake.targets("/v1/health/"),
    ]
    .concat();
    assert!(
        reads
            .iter()
            .all(|t| !params(t).contains(&"stale") && !params(t).contains(&"cached")),
        "consistent reads: {reads:?}"
    );
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_from_too_far_behind_is_asked_again_of_the_leader() {
    let fake = FakeConsul::start("10.1.0.1").await;
    // Every server answer says it last heard from the leader 20 s ago.
    fake.set_last_contact(20_000);
    let options = ["--use-cache", "false", "--max-stale", "5s"];
    let bridge = web_answered(&fake, &options).await;
    let health = fake.targets("/v1/health/service/web");
    // The first stale read is followed by the same read without stale (a slow machine may
    // show another such pair after it, when the watch reads again).
    let stale = health.iter().position(|t| params(t).contains(&"stale"));
    let pair = stale.and_then(|s| Some((&health[s], health.get(s + 1)?)));
    let without_stale = |t: &str| -> Vec<String> {
        let mut kept: Vec<String> = t.split(['?', '&']).map(String::from).collect();
        kept.retain(|part| !part.starts_with("stale"));
        kept
    };
    assert!(
        pair.is_some_and(|(read, again)| !params(again).contains(&"stale")
            && without_stale(read) == without_stale(again)),
        "a stale read, then the same without stale: {health:?}"
    );
    bridge.shutdown().await;

    // Within --max-stale (Consul's default 87600h), no second read.
    let fake = FakeConsul::start("10.1.0.1").await;
    fake.set_last_contact(20_000);
    let bridge = web_answered(&fake, &["--use-cache", "false"]).await;
    wait_until(
        "the first reads are in",
        Duration::from_secs(2),
        async || !fake.targets("/v1/catalog/services").is_empty(),
    )
    .await;
    let reads = fake.targets("/v1/catalog/services");
    assert!(
        reads.iter().all(|t| params(t).contains(&"stale")),
        "{reads:?}"
    );
    bridge.shutdown().await;
}
