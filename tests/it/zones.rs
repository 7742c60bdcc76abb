//! Zone files served beside the Consul domain (`--zones-dir`): the shipped example zone, a broken
//! file named with its line at start, and SIGHUP reloading the files without dropping a query.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::support::{
    ConsulAgent, binary::BridgeBinary, consul::service, dns::ip, start_bridge, zones::ZoneDir,
};
use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};

const SHIPPED_ZONES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/zones");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_zone_is_served_beside_consul() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let (bridge, dns) = start_bridge(&consul, &["--zones-dir", SHIPPED_ZONES]).await;

    let www = dns.query("www.example.internal.", RecordType::A).await;
    assert_eq!(www.metadata.response_code, ResponseCode::NoError);
    assert!(www.metadata.authoritative, "zone answers are authoritative");
    let kinds: Vec<String> = www
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::CNAME(target) => format!("CNAME {}", target.0),
            RData::A(a) => format!("A {}", a.0),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["CNAME db.example.internal.", "A 10.20.0.5"]);
    assert_eq!(
        dns.addresses("db.example.internal.", RecordType::AAAA)
            .await,
        [ip("fd00::5")]
    );
    let missing = dns.query("nope.example.internal.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        matches!(
            missing.authorities.first().map(|r| &r.data),
            Some(RData::SOA(_))
        ),
        "NXDOMAIN carries the zone's SOA"
    );
    // The Consul domain is untouched, and other names are still refused (no recursors).
    assert_eq!(
        dns.addresses("web.service.consul.", RecordType::A).await,
        [ip("10.1.0.1")]
    );
    assert_eq!(
        dns.rcode("www.example.com.", RecordType::A).await,
        ResponseCode::Refused
    );
    bridge.shutdown().await;
}

#[test]
fn a_broken_zone_file_stops_the_start_naming_file_and_line() {
    let zones = ZoneDir::new("broken");
    let path = zones.write(
        "bad.internal",
        "ok IN A 10.0.0.1\nbroken IN A not-an-address\n",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_consul-dns-bridge"))
        .args(["--listen", "127.0.0.1:0", "--zones-dir", zones.as_str()])
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused to start: {stderr}");
    // The SOA, NS and ns lines come first (see ZoneDir::write): the bad record is on line 7.
    let expected = format!("{}:7:", path.display());
    assert!(stderr.contains(&expected), "{expected} in: {stderr}");
    println!("{}", stderr.lines().last().unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_zones_without_dropping_queries() {
    let zones = ZoneDir::new("reload");
    let zone_file = zones.write("app.internal", "db IN A 10.30.0.1\n");
    let dead_consul = format!("http://127.0.0.1:{}", crate::support::consul::free_port());
    let bridge = BridgeBinary::spawn(&dead_consul, &["--zones-dir", zones.as_str()], &[]);
    bridge.wait_listening().await;
    assert_eq!(
        bridge
            .dns
            .addresses("db.app.internal.", RecordType::A)
            .await,
        [ip("10.30.0.1")]
    );

    // Queries every 2 ms through both reloads; any answer that is not one of the two addresses
    // counts as dropped.
    let stop = Arc::new(AtomicBool::new(false));
    let (asked, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (dns, stop, asked, bad) = (bridge.dns, stop.clone(), asked.clone(), bad.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let got = dns.addresses("db.app.internal.", RecordType::A).await;
                asked.fetch_add(1, Ordering::Relaxed);
                if got != [ip("10.30.0.1")] && got != [ip("10.30.0.2")] {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    std::fs::write(
        &zone_file,
        std::fs::read_to_string(&zone_file)
            .expect("zone")
            .replace("10.30.0.1", "10.30.0.2"),
    )
    .expect("rewrite zone");
    bridge.signal("HUP");
    let started = Instant::now();
    while bridge
        .dns
        .addresses("db.app.internal.", RecordType::A)
        .await
        != [ip("10.30.0.2")]
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "reload not served; log:\n{}",
            bridge.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("reloaded zone served {:?} after SIGHUP", started.elapsed());

    // A broken file on reload: the zones in use stay, and the log says why.
    std::fs::write(
        zones.path().join("worse.internal.zone"),
        "@ IN SOA broken\n",
    )
    .expect("write");
    bridge.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        bridge.log().contains("zone files not reloaded"),
        "{}",
        bridge.log()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load task");
    let (asked, bad) = (asked.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    println!("{asked} queries during two reloads, {bad} not answered with the zone's address");
    assert!(asked > 100, "the load ran");
    assert_eq!(bad, 0);
    assert_eq!(
        bridge
            .dns
            .addresses("db.app.internal.", RecordType::A)
            .await,
        [ip("10.30.0.2")]
    );
}
