//! Faults a real Consul agent will not show on demand, played by the scripted fake Consul: for
//! each, the bridge binary keeps answering from the last good data, says what went wrong in one
//! clear log line, does not hammer the server, and picks up new data once the server is sane.

use std::time::{Duration, Instant};

use crate::support::{
    binary::BridgeBinary,
    dns::ip,
    fake_consul::{Behaviour, FakeConsul},
};
use hickory_proto::{op::ResponseCode, rr::RecordType};

/// The watched endpoints, whose request rate must stay bounded under every fault.
const WATCHED: [&str; 2] = ["/v1/catalog/services", "/v1/health/service/web"];
/// Requests per watched endpoint allowed in a fault window: back-off and pauses keep a healthy
/// bridge to a handful; a tight loop would make thousands.
const MAX_REQUESTS_PER_WINDOW: u64 = 15;

/// Runs one fault: good data first, then `fault` for `window` while checking answers every
/// 100 ms, then good new data again. `expect_log` must appear in the bridge's log.
async fn survive(fault: Behaviour, window: Duration, expect_log: &str) {
    let fake = FakeConsul::start("10.1.0.1").await;
    let mut bridge = BridgeBinary::start(
        &fake.url(),
        &["--watch-wait", "2s"],
        &[],
        "web.service.consul.",
    )
    .await;
    // Let the first blocking queries park, so the fault is what answers next.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before: Vec<u64> = WATCHED.iter().map(|path| fake.requests(path)).collect();
    fake.set_behaviour(fault.clone());
    let started = Instant::now();
    let mut checks = 0;
    while started.elapsed() < window {
        assert_eq!(
            bridge
                .dns
                .addresses("web.service.consul.", RecordType::A)
                .await,
            [ip("10.1.0.1")],
            "under {fault:?}: last good data kept"
        );
        assert_eq!(
            bridge
                .dns
                .rcode("nope.service.consul.", RecordType::A)
                .await,
            ResponseCode::NXDomain,
            "under {fault:?}: the last known catalog still answers"
        );
        checks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during: Vec<u64> = WATCHED
        .iter()
        .zip(&before)
        .map(|(path, before)| fake.requests(path) - before)
        .collect();
    println!("{fault:?}: {checks} checks answered in {window:?}; requests per watch {during:?}");
    for (path, count) in WATCHED.iter().zip(&during) {
        assert!(
            *count <= MAX_REQUESTS_PER_WINDOW,
            "{fault:?}: {count} requests to {path} in {window:?}"
        );
    }
    let log = bridge.log();
    if let Some(line) = log.lines().find(|line| line.contains(expect_log)) {
        println!("{fault:?}: logged: {line}");
    }
    assert!(
        log.contains(expect_log),
        "{fault:?}: expected {expect_log:?} in the log:\n{log}"
    );

    fake.set_behaviour(Behaviour::Normal);
    fake.move_web("10.1.0.2");
    let recovering = Instant::now();
    while bridge
        .dns
        .addresses("web.service.consul.", RecordType::A)
        .await
        != [ip("10.1.0.2")]
    {
        assert!(
            recovering.elapsed() < Duration::from_secs(15),
            "{fault:?}: new data not served within 15 s of the server recovering; log:\n{}",
            bridge.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{fault:?}: new data served {:?} after the server recovered",
        recovering.elapsed()
    );
    assert!(
        bridge.is_running(),
        "{fault:?}: the bridge is still running"
    );
}

const WINDOW: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_500() {
    survive(
        Behaviour::Status(500, "rpc error: No cluster leader"),
        WINDOW,
        "HTTP 500 Internal Server Error: rpc error: No cluster leader",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_429() {
    survive(
        Behaviour::Status(429, "Your IP is issuing too many concurrent connections"),
        WINDOW,
        "HTTP 429 Too Many Requests",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_403_bad_token() {
    survive(
        Behaviour::Status(403, "ACL not found"),
        WINDOW,
        "HTTP 403 Forbidden: ACL not found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_cut_short() {
    survive(Behaviour::CutBody, WINDOW, "request failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json() {
    survive(Behaviour::InvalidJson, WINDOW, "cannot decode the answer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_of_50_mb() {
    survive(Behaviour::Huge, WINDOW, "answer larger than 33554432 bytes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangs_past_the_wait() {
    // --watch-wait 2s: the request gives up at 2 s + 1/16 + 5 s, so 10 s sees it happen.
    survive(Behaviour::Hang, Duration::from_secs(10), "timed out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_zero() {
    survive(Behaviour::IndexZero, WINDOW, "Consul answered with index 0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_going_backwards() {
    survive(
        Behaviour::IndexBackwards,
        WINDOW,
        "Consul index went backwards",
    )
    .await;
}
