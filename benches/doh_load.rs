//! A DoH load generator, for `benches/encrypted.sh` (dnsperf 2.10's DoH mode waits for each
//! answer before it sends the next, so it measures itself). `DOH_LOAD_CONCURRENCY` tasks each
//! POST the query mix in turn for `DOH_LOAD_SECONDS`, over one HTTP/2 connection (streams
//! multiplexed) or, with `DOH_LOAD_HTTP=1.1`, a connection per task. The certificate is not
//! checked (a throwaway self-signed one). Prints `qps completed errors avg_ms`.
//! Run: `DOH_LOAD_URL=https://127.0.0.1:8443/dns-query cargo bench --bench doh_load`; without
//! `DOH_LOAD_URL` (as under `cargo test --all-targets`) it does nothing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query},
    rr::{Name, RecordType},
};

const NAMES: [(&str, RecordType); 6] = [
    ("web.service.consul.", RecordType::A),
    ("web.service.consul.", RecordType::SRV),
    ("db.service.consul.", RecordType::A),
    ("primary.db.service.consul.", RecordType::A),
    ("_api._tcp.service.consul.", RecordType::SRV),
    ("nope.service.consul.", RecordType::A),
];

/// The first few failures go to stderr, so a run with errors says what they were.
fn report(errors: &AtomicU64, what: &str) {
    if errors.load(Ordering::Relaxed) < 3 {
        eprintln!("doh_load: {what}");
    }
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn queries() -> Vec<Vec<u8>> {
    NAMES
        .iter()
        .filter_map(|(name, qtype)| {
            let mut message = Message::new(0, MessageType::Query, OpCode::Query);
            message.add_query(Query::query(Name::from_ascii(name).ok()?, *qtype));
            message.to_vec().ok()
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let Ok(url) = std::env::var("DOH_LOAD_URL") else {
        return;
    };
    let seconds: u64 = setting("DOH_LOAD_SECONDS", "5").parse().unwrap_or(5);
    let concurrency: usize = setting("DOH_LOAD_CONCURRENCY", "200")
        .parse()
        .unwrap_or(200);
    let http1 = setting("DOH_LOAD_HTTP", "2") == "1.1";
    consul_dns_bridge::install_crypto_provider();
    let builder = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        // As dnsperf's -t: a request unanswered in 5 s is lost, and the run still ends.
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(concurrency);
    let client = match http1 {
        true => builder.http1_only(),
        false => builder,
    }
    .build();
    let client = match client {
        Ok(client) => client,
        Err(error) => {
            eprintln!("doh_load: {error}");
            return;
        }
    };
    let queries = Arc::new(queries());
    let (completed, errors, micros) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let (client, url, queries) = (client.clone(), url.clone(), queries.clone());
        let (completed, errors, micros) = (completed.clone(), errors.clone(), micros.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = task;
            while Instant::now() < until {
                let body = queries[next % queries.len()].clone();
                next += 1;
                let asked = Instant::now();
                let sent = client
                    .post(&url)
                    .header("content-type", "application/dns-message")
                    .body(body)
                    .send()
                    .await;
                let answered = match sent {
                    Ok(response) if response.status().is_success() => {
                        response.bytes().await.is_ok()
                    }
                    Ok(response) => {
                        report(&errors, &response.status().to_string());
                        false
                    }
                    Err(error) => {
                        report(&errors, &format!("{error:?}"));
                        false
                    }
                };
                match answered {
                    true => {
                        completed.fetch_add(1, Ordering::Relaxed);
                        let took = u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX);
                        micros.fetch_add(took, Ordering::Relaxed);
                    }
                    false => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done = completed.load(Ordering::Relaxed);
    let average_ms = micros.load(Ordering::Relaxed) as f64 / done.max(1) as f64 / 1000.0;
    println!(
        "{:.0} {done} {} {average_ms:.3}",
        done as f64 / elapsed,
        errors.load(Ordering::Relaxed)
    );
}
