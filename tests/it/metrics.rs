//! `/metrics`, `/health` and `/ready` on `--http-listen`: after a few queries the counters have
//! moved by exactly what was asked, and when Consul goes away the staleness shows.

use std::{collections::HashMap, time::Duration};

use crate::support::{ConsulAgent, consul::service, start_bridge, start_bridge_at};
use hickory_proto::rr::RecordType;

/// The samples of a scrape: `name{labels}` → value.
async fn scrape(addr: std::net::SocketAddr) -> HashMap<String, f64> {
    let text = get(addr, "/metrics").await.1;
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    consul_dns_bridge::install_crypto_provider();
    let response = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("HTTP endpoint answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

fn sample(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("{key} not in /metrics: {:?}", samples.keys()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_with_queries_and_staleness_shows() {
    let mut consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let (bridge, dns) = start_bridge(&consul, &[]).await;
    let http = bridge.http_addr().expect("metrics served");
    assert_eq!(get(http, "/health").await.0, 200);

    let before = scrape(http).await;
    for _ in 0..3 {
        assert_eq!(
            dns.addresses("web.service.consul.", RecordType::A)
                .await
                .len(),
            1
        );
    }
    for _ in 0..2 {
        dns.query("nope.service.consul.", RecordType::A).await;
    }
    dns.query("web.service.consul.", RecordType::SRV).await;
    dns.query("www.example.com.", RecordType::A).await;
    assert_eq!(get(http, "/ready").await.0, 200);

    let after = scrape(http).await;
    let moved = |key: &str| sample(&after, key) - before.get(key).copied().unwrap_or(0.0);
    assert_eq!(
        moved(r#"consul_dns_bridge_queries_total{qtype="A",rcode="NOERROR"}"#),
        3.0
    );
    assert_eq!(
        moved(r#"consul_dns_bridge_queries_total{qtype="A",rcode="NXDOMAIN"}"#),
        2.0
    );
    assert_eq!(
        moved(r#"consul_dns_bridge_queries_total{qtype="SRV",rcode="NOERROR"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"consul_dns_bridge_queries_total{qtype="A",rcode="REFUSED"}"#),
        1.0
    );
    assert_eq!(
        moved("consul_dns_bridge_answer_duration_seconds_count"),
        7.0
    );
    // web was asked 4 times: the first waited for Consul (a new watch), the rest were cached.
    assert_eq!(moved("consul_dns_bridge_cache_misses_total"), 1.0);
    assert_eq!(moved("consul_dns_bridge_cache_hits_total"), 3.0);
    assert_eq!(sample(&after, "consul_dns_bridge_watched_services"), 1.0);
    assert_eq!(sample(&after, "consul_dns_bridge_ready"), 1.0);
    assert_eq!(sample(&after, "consul_dns_bridge_stale_watches"), 0.0);
    // The connection budget: web's watch parked (within the budget, the keeper's second
    // tick may not have come yet, so parked or about to be), a few connections held, the
    // health read through the agent's cache.
    let watches = sample(
        &after,
        r#"consul_dns_bridge_service_watches{mode="parked"}"#,
    ) + sample(
        &after,
        r#"consul_dns_bridge_service_watches{mode="on_demand"}"#,
    );
    assert!(watches <= 1.0, "{watches}");
    let connections = sample(&after, "consul_dns_bridge_consul_connections");
    assert!((1.0..=32.0).contains(&connections), "{connections}");
    assert!(sample(&after, "consul_dns_bridge_consul_parked_queries") >= 2.0);
    assert!(
        sample(
            &after,
            r#"consul_dns_bridge_consul_agent_cache_total{result="hit"}"#
        ) + sample(
            &after,
            r#"consul_dns_bridge_consul_agent_cache_total{result="miss"}"#
        ) >= 1.0,
        "web read through the agent cache"
    );
    assert_eq!(
        sample(&after, "consul_dns_bridge_consul_refused_connections_total"),
        0.0
    );
    assert!(
        sample(
            &after,
            r#"consul_dns_bridge_consul_requests_total{endpoint="/v1/health/service"}"#
        ) >= 1.0
    );
    assert!(
        sample(
            &after,
            r#"consul_dns_bridge_blocking_query_wakeups_total{changed="true"}"#
        ) >= 2.0,
        "the service list and web each delivered data"
    );
    let web_age = r#"consul_dns_bridge_watch_staleness_seconds{watch="service web in dc1"}"#;
    assert!(sample(&after, web_age) < 5.0);

    // Consul goes away: the watches go stale, their age grows, errors are counted.
    consul.kill();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let down = scrape(http).await;
    println!(
        "Consul down 2.5 s: stale_watches {}, web staleness {} s, health errors {}",
        sample(&down, "consul_dns_bridge_stale_watches"),
        sample(&down, web_age),
        sample(
            &down,
            r#"consul_dns_bridge_consul_errors_total{endpoint="/v1/health/service"}"#
        )
    );
    // The service list, web, and the failing checks the keeper of the connection budget watches.
    assert_eq!(sample(&down, "consul_dns_bridge_stale_watches"), 3.0);
    assert!(sample(&down, web_age) >= 2.0);
    assert!(
        sample(
            &down,
            r#"consul_dns_bridge_consul_errors_total{endpoint="/v1/health/service"}"#
        ) >= 1.0
    );
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_consul_has_answered() {
    let dead = format!("http://127.0.0.1:{}", crate::support::consul::free_port());
    let (bridge, _) = start_bridge_at(&dead, &[]).await;
    let http = bridge.http_addr().expect("metrics served");
    assert_eq!(get(http, "/health").await.0, 200);
    let (status, body) = get(http, "/ready").await;
    assert_eq!(status, 503, "{body}");
    bridge.shutdown().await;
}
