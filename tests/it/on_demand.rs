//! The service watches read on demand, against the scripted catalog
//! (`support::scripted_consul`), where each change lands at a chosen moment of a read: before it,
//! while it is in flight (the read then comes back with what it found on arrival, as a lagging
//! server or agent cache answers), or after it; and where the failing-checks list can be held
//! back so that several changes reach it as one. Every interleaving must converge to Consul's
//! answer, a health failure must show without a read, and a check that failed, passed and
//! failed again behind one answer of the list must not be taken for unchanged.
//!
//! `web` is kept on demand: four services asked all the time take the four parking places a
//! budget of 16 connections leaves for services.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use hickory_proto::rr::RecordType;

use crate::support::{DnsClient, scripted_consul::ScriptedConsul, start_bridge_at};

/// Asks `web` every 10 ms until its addresses are what Consul holds; panics after `limit`.
async fn converges(dns: &DnsClient, consul: &ScriptedConsul, what: &str) -> Duration {
    let started = Instant::now();
    let mut last = Vec::new();
    while started.elapsed() < Duration::from_secs(3) {
        let expected = consul.passing("web");
        let mut got: Vec<String> = dns
            .addresses("web.service.consul.", RecordType::A)
            .await
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        got.sort();
        if got == expected {
            return started.elapsed();
        }
        last = got;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{what}: web answers {last:?}, Consul holds {:?}",
        consul.passing("web")
    );
}

/// Waits until the catalog has received more than `before` health reads of web.
async fn read_arrived(consul: &ScriptedConsul, before: u64) {
    let started = Instant::now();
    while consul.health_reads("web").0 <= before {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "no read of web arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Fail,
    Recover,
    Move,
}

#[derive(Debug, Clone, Copy)]
enum Moment {
    Before,
    During,
    After,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_interleaving_of_changes_and_reads_converges() {
    let busy: &[&str] = &["10.9.0.1"];
    let consul = ScriptedConsul::start(&[
        ("web", &["10.1.0.1", "10.1.0.2", "10.1.0.3"]),
        ("busy1", busy),
        ("busy2", busy),
        ("busy3", busy),
        ("busy4", busy),
    ])
    .await;
    let options = [
        "--consul-max-connections",
        "16",
        // Only signals and the catch-up after a move may heal what goes wrong here.
        "--reverify-interval",
        "1h",
    ];
    let (bridge, dns) = start_bridge_at(&consul.url(), &options).await;
    let stop = Arc::new(AtomicBool::new(false));
    let asking = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for i in 1..=4 {
                    dns.addresses(&format!("busy{i}.service.consul."), RecordType::A)
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    converges(&dns, &consul, "first answer").await;
    // The keeper hands the parking places to the busy services within a tick or two.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, parked_at_start) = consul.health_reads("web");
    let mut address = 0;
    let mut next_address = || {
        address += 1;
        format!("10.2.0.{address}")
    };

    // A failure shows from the failing checks alone, without a read of web.
    let (reads, _) = consul.health_reads("web");
    consul.set_passing("web", "web1", false);
    let took = converges(&dns, &consul, "a failure").await;
    assert_eq!(
        consul.health_reads("web").0,
        reads,
        "a failure needed a read"
    );
    println!("a failure shown without a read after {took:?}");
    consul.set_passing("web", "web1", true);
    converges(&dns, &consul, "recovered").await;

    // Failed, passed and failed again while the list was held back, with a read (after a
    // move) that saw it passing in between: the list then looks as before, but is later.
    consul.set_passing("web", "web3", false);
    converges(&dns, &consul, "web3 failed").await;
    consul.freeze_failing_checks(true);
    consul.set_passing("web", "web3", true);
    let (reads, _) = consul.health_reads("web");
    consul.move_instance("web", "web2", &next_address());
    read_arrived(&consul, reads).await;
    converges(&dns, &consul, "web2 moved, web3 passing").await;
    consul.set_passing("web", "web3", false);
    consul.freeze_failing_checks(false);
    converges(
        &dns,
        &consul,
        "web3 failed again behind one answer of the list",
    )
    .await;
    consul.set_passing("web", "web3", true);
    converges(&dns, &consul, "web3 back").await;

    // Each change at each moment of a read (the read is caused by web2 moving).
    for moment in [Moment::Before, Moment::During, Moment::After] {
        for change in [Change::Fail, Change::Recover, Change::Move] {
            let apply = |address: String| match change {
                Change::Fail => consul.set_passing("web", "web1", false),
                Change::Recover => consul.set_passing("web", "web1", true),
                Change::Move => consul.move_instance("web", "web1", &address),
            };
            let what = format!("{change:?} {moment:?}");
            let (reads, _) = consul.health_reads("web");
            match moment {
                Moment::Before => {
                    apply(next_address());
                    consul.move_instance("web", "web2", &next_address());
                }
                Moment::During => {
                    consul.hold_reads_of("web");
                    consul.move_instance("web", "web2", &next_address());
                    read_arrived(&consul, reads).await;
                    apply(next_address());
                    consul.release();
                }
                Moment::After => {
                    consul.move_instance("web", "web2", &next_address());
                    read_arrived(&consul, reads).await;
                    converges(&dns, &consul, &format!("{what}: the move first")).await;
                    apply(next_address());
                }
            }
            let took = converges(&dns, &consul, &what).await;
            println!("{what}: converged after {took:?}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = asking.await;
    assert_eq!(
        consul.health_reads("web").1,
        parked_at_start,
        "web parked, so its reads on demand were not tested"
    );
    bridge.shutdown().await;
}
