//! The seed's deployment: a 3-server Raft cluster and a client agent on loopback addresses, the
//! bridge pointed at the client. Killing the Raft leader under a steady query load must not cost
//! one answer, and a health change made after the new election must reach the answers.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::support::{
    DnsClient, cluster::ConsulCluster, consul::service, dns::ip, start_bridge_at, wait_until,
};
use consul_dns_bridge::BridgeStatus;
use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};

/// What the load generator saw.
#[derive(Default, Debug)]
struct Load {
    answered: u64,
    /// (elapsed, rcode, addresses) of every answer that was not NOERROR with a passing instance.
    bad: Vec<(Duration, ResponseCode, Vec<IpAddr>)>,
    /// The most watches seen stale at once: whether the bridge noticed the election.
    most_stale_watches: usize,
}

/// Asks for `name` every `period` until `stop`, and records every answer.
async fn steady_load(
    dns: DnsClient,
    status: BridgeStatus,
    name: &str,
    period: Duration,
    stop: Arc<AtomicBool>,
) -> Load {
    let started = Instant::now();
    let mut load = Load::default();
    let mut tick = tokio::time::interval(period);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        load.most_stale_watches = load.most_stale_watches.max(status.stale_watches());
        let response = dns.query(name, RecordType::A).await;
        let addresses: Vec<IpAddr> = response
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        load.answered += 1;
        let rcode = response.metadata.response_code;
        if rcode != ResponseCode::NoError || addresses.is_empty() {
            load.bad.push((started.elapsed(), rcode, addresses));
        }
    }
    load
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_raft_leader_costs_no_answer() {
    let mut cluster = ConsulCluster::start().await;
    cluster
        .api
        .register(service("web", "web1", "10.1.0.1"))
        .await;
    cluster
        .api
        .register(service("web", "web2", "10.1.0.2"))
        .await;
    let (bridge, dns) = start_bridge_at(&cluster.api.url, &["--watch-wait", "30s"]).await;
    let both = [ip("10.1.0.1"), ip("10.1.0.2")];
    wait_until(
        "both instances served",
        Duration::from_secs(10),
        async || dns.addresses("web.service.consul.", RecordType::A).await == both,
    )
    .await;

    // 200 queries a second from now until the end.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(steady_load(
        dns,
        bridge.status(),
        "web.service.consul.",
        Duration::from_millis(5),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let leader = cluster.leader().await.expect("a leader");
    cluster.kill_server(leader);
    let killed = Instant::now();
    let (new_leader, election) = cluster
        .wait_for_leader(Some(leader), Duration::from_secs(30))
        .await;
    println!(
        "killed server{} (leader); server{} elected after {election:?}",
        leader + 1,
        new_leader + 1
    );

    // A change made under the new leader reaches the answers.
    cluster.api.set_check("web2", "fail").await;
    // Within a second, in the default read modes (stale reads through the agent's cache).
    let took = wait_until(
        "health change after the election served",
        Duration::from_secs(1),
        async || dns.addresses("web.service.consul.", RecordType::A).await == [ip("10.1.0.1")],
    )
    .await;
    println!("health change after the election served {took:?} after the check update");
    tokio::time::sleep(Duration::from_secs(1)).await;

    stop.store(true, Ordering::Relaxed);
    let load = load.await.expect("load generator");
    println!(
        "{} queries answered over {:?} around the leader kill; {} not NOERROR with a passing \
         instance; at most {} watches stale at once",
        load.answered,
        killed.elapsed() + Duration::from_secs(1),
        load.bad.len(),
        load.most_stale_watches
    );
    assert!(load.answered > 500, "the load ran: {load:?}");
    assert!(load.bad.is_empty(), "bad answers: {:?}", load.bad);
    bridge.shutdown().await;
}
