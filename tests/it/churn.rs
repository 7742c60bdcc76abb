//! A busy catalog (`support::churn`): 300 long-lived and 200 rolling services of 3 instances
//! on a dev agent at its default limits, changed every second (5 deploys, 20 health flips, 5
//! address moves) while clients ask live, deregistered and random names from four addresses.
//! During the churn every change must reach the bridge's answers (none lost, times printed);
//! 1 s after it stops every live service must answer exactly its passing instances, and no
//! registered name may have been answered SERVFAIL.
//!
//! `CHURN_LONG_LIVED`, `CHURN_ROLLING`, `CHURN_SECONDS` and `CHURN_QPS` scale it
//! (`benches/churn.sh` runs it at 5,000 services and for 10 minutes).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use hickory_proto::{op::ResponseCode, rr::RecordType};
use tokio::sync::Mutex;

use crate::support::{
    ConsulAgent, DnsClient,
    binary::BridgeBinary,
    churn::{BusyCatalog, ChurnRate, DnsLoad},
};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The bridge's A answer for `service`: its addresses sorted, empty for NXDOMAIN; `None` for
/// any other outcome (SERVFAIL, no answer in time).
async fn answered(dns: &DnsClient, service: &str) -> Option<Vec<IpAddr>> {
    let name = format!("{service}.service.consul.");
    let (response, _) = dns
        .query_as_stub(&name, RecordType::A, 3, Duration::from_millis(500))
        .await?;
    match response.metadata.response_code {
        ResponseCode::NXDomain => Some(Vec::new()),
        ResponseCode::NoError => {
            let mut ips: Vec<IpAddr> = response
                .answers
                .iter()
                .filter_map(|r| r.data.ip_addr())
                .collect();
            ips.sort();
            Some(ips)
        }
        _ => None,
    }
}

/// What became of the changes followed during the churn.
#[derive(Default)]
struct Followed {
    /// Milliseconds from a change's write returning to the first answer that showed it.
    took_ms: Vec<f64>,
    /// The same, by kind of change.
    took_by_kind: std::collections::BTreeMap<&'static str, Vec<f64>>,
    /// Changes whose answer never came within 5 s (and no later change replaced them).
    lost: Vec<String>,
    /// Changes replaced by a later change to the same service before they showed.
    replaced: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_catalog_loses_no_change() {
    let long_lived = env_or("CHURN_LONG_LIVED", 300) as usize;
    let rolling = env_or("CHURN_ROLLING", 200) as usize;
    let seconds = env_or("CHURN_SECONDS", 40);
    let qps = env_or("CHURN_QPS", 1000) as u32;
    let consul = ConsulAgent::start().await;
    let mut catalog = BusyCatalog::register(&consul, long_lived, rolling, 3).await;
    let bridge = BridgeBinary::start(
        &consul.http_url(),
        &["--watch-idle-timeout", "30s"],
        &[],
        "live0000.service.consul.",
    )
    .await;
    let dns = bridge.dns;
    let mut load = DnsLoad::start(
        dns.addr,
        &["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"],
        qps,
    );
    load.follow(&catalog);
    // Every service asked once before the churn, as clients would within a few seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let rate = ChurnRate {
        deploys: 5,
        flips: 20,
        moves: 5,
    };
    let followed = Arc::new(Mutex::new(Followed::default()));
    // The latest change of each service, so that a follower knows when it was replaced.
    let generation: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut round: u64 = 0;
    let rss_at_start = bridge.rss_mb();
    let mut rss_most = rss_at_start;
    let churn_started = Instant::now();
    let mut followers = Vec::new();
    while churn_started.elapsed() < Duration::from_secs(seconds) {
        let tick = Instant::now();
        round += 1;
        let changes = catalog.step(rate).await;
        load.follow(&catalog);
        for change in changes {
            generation
                .lock()
                .await
                .insert(change.service.clone(), round);
            let expected = catalog.expected(&change.service);
            let (followed, generation) = (followed.clone(), generation.clone());
            followers.push(tokio::spawn(async move {
                let label = format!("{} of {}", change.kind, change.service);
                loop {
                    if generation.lock().await.get(&change.service) != Some(&round) {
                        followed.lock().await.replaced += 1;
                        return;
                    }
                    if answered(&dns, &change.service).await.as_ref() == Some(&expected) {
                        let took = change.at.elapsed().as_secs_f64() * 1000.0;
                        let mut followed = followed.lock().await;
                        followed.took_ms.push(took);
                        followed
                            .took_by_kind
                            .entry(change.kind)
                            .or_default()
                            .push(took);
                        return;
                    }
                    if change.at.elapsed() > Duration::from_secs(5) {
                        followed.lock().await.lost.push(label);
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        rss_most = rss_most.max(bridge.rss_mb());
        let spent = tick.elapsed();
        if spent < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_secs(1) - spent).await;
        }
    }
    let stopped = Instant::now();
    for follower in followers {
        let _ = follower.await;
    }

    // 1 s after the last change: every live service answers its passing instances.
    let since_stop = stopped.elapsed();
    if since_stop < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_secs(1) - since_stop).await;
    }
    let mut wrong = Vec::new();
    for service in catalog.live_names() {
        let expected = catalog.expected(&service);
        let got = answered(&dns, &service).await;
        if got.as_ref() != Some(&expected) {
            wrong.push((service, expected, got));
        }
    }
    let checked = catalog.live_names().len();
    // The model is what Consul holds: checked on a sample, so a wrong answer is the bridge's.
    for service in catalog.live_names().iter().step_by(25) {
        assert_eq!(
            catalog.consul_passing(service).await,
            catalog.expected(service),
            "the churn's model of {service} disagrees with Consul"
        );
    }
    let mut still_wrong = 0;
    if !wrong.is_empty() {
        tokio::time::sleep(Duration::from_secs(5)).await;
        for (service, expected, _) in &wrong {
            if answered(&dns, service).await.as_ref() != Some(expected) {
                still_wrong += 1;
            }
        }
    }
    load.stop();

    let followed = followed.lock().await;
    let mut took = followed.took_ms.clone();
    took.sort_by(f64::total_cmp);
    let by_kind: Vec<String> = followed
        .took_by_kind
        .iter()
        .map(|(kind, took)| {
            let mut took = took.clone();
            took.sort_by(f64::total_cmp);
            format!(
                "{kind}: {} (p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms)",
                took.len(),
                percentile(&took, 0.5),
                percentile(&took, 0.99),
                took.last().copied().unwrap_or(f64::NAN)
            )
        })
        .collect();
    println!("by kind: {}", by_kind.join("; "));
    println!(
        "bridge RSS: {rss_at_start:.1} MB at the start of the churn, at most {rss_most:.1} MB, \
         {:.1} MB at the end",
        bridge.rss_mb()
    );
    let servfails = load
        .servfail_for_live
        .load(std::sync::atomic::Ordering::Relaxed);
    let metrics = bridge.metrics().await;
    let reads: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("consul_dns_bridge_consul_requests_total")
                || l.starts_with("consul_dns_bridge_reads_on_demand_total")
                || l.starts_with("consul_dns_bridge_service_watches")
                || l.starts_with("consul_dns_bridge_unannounced_changes_total")
        })
        .collect();
    println!(
        "churn: {} services, {seconds} s, {} questions; changes shown: {} (p50 {:.1} ms, p99 \
         {:.1} ms, max {:.1} ms), replaced before shown: {}, lost: {}; wrong 1 s after: {} of \
         {checked} ({still_wrong} still wrong 5 s later); SERVFAIL for registered names: \
         {servfails}\n{}",
        long_lived + rolling,
        load.sent.load(std::sync::atomic::Ordering::Relaxed),
        took.len(),
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took.last().copied().unwrap_or(f64::NAN),
        followed.replaced,
        followed.lost.len(),
        wrong.len(),
        reads.join("\n"),
    );
    assert!(
        followed.lost.is_empty(),
        "{} changes never shown within 5 s, e.g. {:?}",
        followed.lost.len(),
        &followed.lost[..followed.lost.len().min(10)]
    );
    assert!(
        wrong.is_empty(),
        "{} of {checked} services answered wrong 1 s after the churn, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(
        servfails,
        0,
        "registered names answered SERVFAIL, e.g. {:?}",
        load.servfail_names()
    );
}
