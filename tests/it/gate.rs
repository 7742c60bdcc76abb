//! The gate every question and answer passes (`src/dns/gate.rs`), tried as a hostile client
//! would on loopback, every flood bounded in count and time:
//! - DoH requests whose body never comes give their places back: new TCP and DoT clients are
//!   answered, and the stalled connections are closed;
//! - a question name ending in a compression pointer is rate limited as the plain name;
//! - answers of zone files and recursors fit the client's UDP size like the catalog's;
//! - a flood of forwarded names to a recursor that never answers keeps memory, descriptors
//!   and the latency of Consul names bounded;
//! - DoH answers that depend on the client are `Cache-Control: private`;
//! - each transport (UDP fast and general path, TCP, DoT, DoH) and each answer source (the
//!   catalog, a zone file, a recursor) passes access, size, rate limiting, log and metrics.

use std::{
    collections::BTreeSet,
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::support::{
    ConsulAgent, GATE_LIMITS,
    binary::BridgeBinary,
    consul::{free_port, service},
    dns::{answered_of, query_bytes, read_framed, write_framed},
    encrypted_client::{doh_get, dot_exchange, tls_stream},
    pki::Pki,
    start_bridge, start_bridge_at,
    zones::ZoneDir,
};

fn no_consul() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// A question with recursion desired, as stub resolvers send (a recursor is only asked then).
fn recursive(id: u16, name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut question = query_bytes(id, name, qtype, edns);
    question[2] |= 0x01;
    question
}

/// A TXT set of 40 strings of 200 bytes: about 8 KB, far past any UDP size.
fn big_txt(owner: &str) -> String {
    (0..40)
        .map(|i| format!("{owner} IN TXT \"{i:03}{}\"\n", "x".repeat(197)))
        .collect()
}

/// DoT and DoH on free ports with a test certificate: the options, the PKI, and the addresses.
fn encrypted_options(tag: &str) -> (Vec<String>, Pki, SocketAddr, SocketAddr) {
    let dir = std::env::temp_dir().join(format!("cdb-gate-{tag}-{}", std::process::id()));
    let pki = Pki::create(&dir);
    let dot: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let doh: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let options = vec![
        "--tls-listen".into(),
        dot.to_string(),
        "--https-listen".into(),
        doh.to_string(),
        "--tls-cert".into(),
        pki.server_cert.display().to_string(),
        "--tls-key".into(),
        pki.server_key.display().to_string(),
    ];
    (options, pki, dot, doh)
}

/// One question over TCP from `source`: the answer, or `None` when the connection was
/// refused, closed or silent for 1 s.
async fn tcp_answer(server: SocketAddr, source: &str, question: &[u8]) -> Option<Message> {
    let attempt = async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(source.parse().ok()?, 0)).ok()?;
        let mut stream = socket.connect(server).await.ok()?;
        write_framed(&mut stream, question).await.ok()?;
        Message::from_vec(&read_framed(&mut stream).await?).ok()
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_doh_requests_give_their_places_back() {
    let zones = ZoneDir::new("gate-stall");
    zones.write("example.test", "www IN A 10.8.0.1\n");
    let (mut options, pki, dot, doh) = encrypted_options("stall");
    options.extend(["--zones-dir".into(), zones.as_str().to_owned()]);
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let (bridge, dns) = start_bridge_at(&no_consul(), &options).await;
    let question = query_bytes(7, "www.example.test.", RecordType::A, None);

    // 150 DoH connections from 5 addresses (the table's 150 places, 30 per client), each
    // sending a POST's headers and 10 of the 100 bytes it announces, then nothing.
    let mut stalled = Vec::new();
    for i in 0..150 {
        let source = format!("127.0.5{}.{}", i % 5, 1 + i / 5);
        let Ok(mut stream) = tls_stream(doh, &source, &pki.ca, &[b"http/1.1"]).await else {
            continue;
        };
        let head = "POST /dns-query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: \
                    application/dns-message\r\nContent-Length: 100\r\n\r\n";
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&question[..10]).await;
        let _ = stream.flush().await;
        stalled.push(stream);
    }
    assert!(
        stalled.len() >= 140,
        "{} stalled connections",
        stalled.len()
    );

    // New clients over TCP and DoT get their answers: the stalled requests give way.
    let started = Instant::now();
    let mut tcp_took = None;
    while started.elapsed() < Duration::from_secs(5) {
        if tcp_answer(dns.addr, "127.0.0.1", &question).await.is_some() {
            tcp_took = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dot_started = Instant::now();
    let mut dot_took = None;
    while dot_started.elapsed() < Duration::from_secs(5) {
        if dot_exchange(dot, "127.0.0.1", &pki.ca, &question)
            .await
            .is_ok()
        {
            dot_took = Some(dot_started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "with 150 stalled DoH requests: a new TCP client answered after {tcp_took:?}, a new DoT client after {dot_took:?}"
    );
    assert!(tcp_took.is_some(), "no new TCP client answered in 5 s");
    assert!(dot_took.is_some(), "no new DoT client answered in 5 s");

    // Every stalled request ends within the idle timeout (10 s): its connection is closed.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut open = 0;
    for stream in &mut stalled {
        let mut buf = [0u8; 512];
        let remaining = deadline.saturating_duration_since(Instant::now());
        let closed = tokio::time::timeout(remaining, async {
            loop {
                match tokio::io::AsyncReadExt::read(stream, &mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        if closed.is_err() {
            open += 1;
        }
    }
    assert_eq!(open, 0, "stalled connections still open after 15 s");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_connections_leave_room_for_new_clients() {
    let zones = ZoneDir::new("gate-silent");
    zones.write("example.test", "www IN A 10.8.0.1\n");
    let (mut options, pki, dot, doh) = encrypted_options("silent");
    options.extend(["--zones-dir".into(), zones.as_str().to_owned()]);
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let (bridge, dns) = start_bridge_at(&no_consul(), &options).await;
    let question = query_bytes(8, "www.example.test.", RecordType::A, None);
    // 160 connections to the DoT and DoH ports from 8 addresses that never send a ClientHello.
    let mut silent = Vec::new();
    for i in 0..160 {
        let port = if i % 2 == 0 { dot } else { doh };
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        let source: std::net::IpAddr = format!("127.0.6{}.{}", i % 8, 1 + i / 8)
            .parse()
            .expect("source");
        socket.bind(SocketAddr::new(source, 0)).expect("bind");
        if let Ok(stream) = socket.connect(port).await {
            silent.push(stream);
        }
    }
    let started = Instant::now();
    let tcp = tcp_answer(dns.addr, "127.0.0.1", &question).await;
    let tcp_took = started.elapsed();
    let started = Instant::now();
    let over_tls = dot_exchange(dot, "127.0.0.1", &pki.ca, &question).await;
    let dot_took = started.elapsed();
    println!(
        "with {} silent TLS connections: a new TCP client answered in {tcp_took:?}, a new DoT \
         client in {dot_took:?}",
        silent.len()
    );
    assert!(tcp.is_some() && over_tls.is_ok());
    assert!(tcp_took < Duration::from_secs(2) && dot_took < Duration::from_secs(2));
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_question_name_is_rate_limited_as_the_plain_one() {
    let zones = ZoneDir::new("gate-rrl");
    zones.write("example.test", "www IN A 10.8.0.1\n");
    let options = [
        "--zones-dir",
        zones.as_str(),
        "--rrl-exempt",
        "none",
        "--rrl-ratelimit",
        "5",
        "--rrl-slip",
        "0",
    ];
    let (bridge, dns) = start_bridge_at(&no_consul(), &options).await;
    let plain = query_bytes(1, "www.example.test.", RecordType::A, None);
    // The same question, its name ending in a pointer to a zero byte (the first byte of the
    // question count) instead of the root label: a legal name.
    let mut compressed = plain[..12].to_vec();
    compressed.extend_from_slice(b"\x03www\x07example\x04test\xc0\x04");
    compressed.extend_from_slice(&[0, 1, 0, 1]);
    let server = dns.addr;
    let (plain_answered, compressed_answered) = tokio::task::spawn_blocking(move || {
        (
            answered_of(server, "127.0.60.1", &plain, 400),
            answered_of(server, "127.0.61.1", &compressed, 400),
        )
    })
    .await
    .expect("senders");
    println!(
        "400 questions at ~2,000/s, limit 5/s: plain name {plain_answered} answered, compressed \
         name {compressed_answered}"
    );
    assert!(plain_answered <= 10, "{plain_answered} plain answered");
    assert!(
        compressed_answered <= 10,
        "{compressed_answered} compressed answered: the limiter was walked around"
    );
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_and_zone_answers_fit_the_clients_udp_size() {
    let upstream_zones = ZoneDir::new("gate-size-up");
    upstream_zones.write("far.test", &big_txt("big"));
    let (upstream, _) =
        start_bridge_at(&no_consul(), &["--zones-dir", upstream_zones.as_str()]).await;
    let zones = ZoneDir::new("gate-size");
    zones.write("near.test", &big_txt("big"));
    let recursor = upstream.dns_addrs()[0].to_string();
    let options = ["--zones-dir", zones.as_str(), "--recursor", &recursor];
    let (bridge, dns) = start_bridge_at(&no_consul(), &options).await;
    for name in ["big.far.test.", "big.near.test."] {
        for (edns, most) in [(Some(65535), 1232), (None, 512)] {
            let question = recursive(9, name, RecordType::TXT, edns);
            let reply = dns.exchange_udp(&question).await;
            let message = Message::from_vec(&reply).expect("an answer");
            println!("{name} over UDP, EDNS {edns:?}: {} bytes", reply.len());
            assert!(
                reply.len() <= most,
                "{name}: a {}-byte UDP answer for a client taking {most}",
                reply.len()
            );
            assert!(message.metadata.truncation, "{name}: TC set");
        }
        // Over TCP the whole set comes.
        let question = recursive(9, name, RecordType::TXT, Some(1232));
        let whole = Message::from_vec(&dns.exchange_tcp(&question).await).expect("answer");
        assert_eq!(whole.answers.len(), 40, "{name} over TCP");
    }
    bridge.shutdown().await;
    upstream.shutdown().await;
}

/// Open descriptors of process `pid`.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forwarded_names_stays_bounded() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    // A recursor that never answers: a bound socket nobody reads.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("silent recursor");
    let recursor = silent.local_addr().expect("addr").to_string();
    let bridge = BridgeBinary::start(
        &consul.http_url(),
        &["--recursor", &recursor, "--recursor-timeout", "2s"],
        &[],
        "web.service.consul.",
    )
    .await;
    let (server, pid) = (bridge.dns.addr, bridge.pid());
    let rss_before = bridge.rss_mb();
    let rate: u64 = std::env::var("FLOOD_QPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seconds = 10;
    // The flood: random names outside the domain from four addresses, in its own threads.
    let flood: Vec<_> = (0..4)
        .map(|n| {
            std::thread::spawn(move || {
                let socket = UdpSocket::bind((format!("127.0.70.{}", n + 1), 0)).expect("bind");
                socket.set_nonblocking(true).expect("nonblocking");
                let started = Instant::now();
                let per_thread = rate / 4;
                let mut sent = 0u64;
                let mut buf = [0u8; 1500];
                while started.elapsed() < Duration::from_secs(seconds) {
                    let due = started.elapsed().as_secs_f64() * per_thread as f64;
                    while (sent as f64) < due {
                        let name = format!("n{}x{sent}.flood.example.", n);
                        let question = recursive(sent as u16, &name, RecordType::A, None);
                        let _ = socket.send_to(&question, server);
                        sent += 1;
                    }
                    while socket.recv(&mut buf).is_ok() {}
                    std::thread::sleep(Duration::from_millis(1));
                }
                sent
            })
        })
        .collect();
    // Meanwhile: a Consul name every 10 ms, and the bridge's memory and descriptors.
    let mut latencies = Vec::new();
    let (mut rss_most, mut fds_most) = (0.0_f64, 0);
    let probe = UdpSocket::bind("127.0.0.1:0").expect("probe");
    probe
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let started = Instant::now();
    let mut n: u16 = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        n = n.wrapping_add(1);
        let question = query_bytes(n, "web.service.consul.", RecordType::A, None);
        let asked = Instant::now();
        probe.send_to(&question, server).expect("send");
        let mut buf = [0u8; 512];
        let answered = loop {
            match probe.recv(&mut buf) {
                Ok(len) if len >= 2 && buf[..2] == n.to_be_bytes() => break true,
                Ok(_) => continue,
                Err(_) => break false,
            }
        };
        latencies.push(match answered {
            true => asked.elapsed().as_secs_f64() * 1000.0,
            false => f64::INFINITY,
        });
        rss_most = rss_most.max(bridge.rss_mb());
        fds_most = fds_most.max(descriptors(pid));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent: u64 = flood.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies[latencies.len() * 99 / 100];
    let overloaded = bridge
        .metric("overloaded_total{reason=\"recursors\"}")
        .await
        .unwrap_or(0.0);
    println!(
        "forward flood: {sent} questions in {seconds} s; bridge RSS {rss_before:.1} -> at most \
         {rss_most:.1} MB, descriptors at most {fds_most}; web.service.consul p50 {:.2} ms, p99 \
         {p99:.2} ms over {} questions; refused upstream places: {overloaded}",
        latencies[latencies.len() / 2],
        latencies.len()
    );
    assert!(rss_most < 64.0, "RSS {rss_most:.1} MB");
    assert!(fds_most < 1000, "{fds_most} descriptors");
    assert!(
        p99 < 10.0,
        "p99 {p99:.2} ms for a Consul name during the flood"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_answers_that_depend_on_the_client_are_private() {
    let consul = ConsulAgent::start().await;
    consul.register(service("open", "open1", "10.1.0.1")).await;
    for (id, address, meta) in [
        ("secret1", "10.2.0.1", json!({"dns-allow": "127.0.0.9/32"})),
        ("secret2", "10.2.0.2", json!({})),
    ] {
        let body = json!({"Name": "secret", "ID": id, "Address": address, "Port": 80,
            "Meta": meta, "Check": {"TTL": "1h", "Status": "passing"}});
        consul.put("/v1/agent/service/register", body).await;
    }
    let (options, pki, _, doh) = encrypted_options("private");
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let (bridge, dns) = start_bridge(&consul, &options).await;
    crate::support::wait_until("data", Duration::from_secs(10), async || {
        !dns.addresses("secret.service.consul.", RecordType::A)
            .await
            .is_empty()
    })
    .await;
    let ask = |name: &str| query_bytes(3, name, RecordType::A, None);
    let (_, open) = doh_get(doh, "127.0.0.1", &pki.ca, &ask("open.service.consul."))
        .await
        .expect("DoH");
    let (answer, shaped) = doh_get(doh, "127.0.0.9", &pki.ca, &ask("secret.service.consul."))
        .await
        .expect("DoH");
    assert_eq!(Message::from_vec(&answer).expect("answer").answers.len(), 2);
    println!("Cache-Control: open {open:?}, shaped by a visibility rule {shaped:?}");
    assert_eq!(open.as_deref(), Some("max-age=0"));
    assert_eq!(shaped.as_deref(), Some("private, max-age=0"));
    bridge.shutdown().await;

    // With --allow-query every answer depends on who asks, REFUSED ones too.
    let mut options = options.clone();
    options.extend(["--allow-query", "127.0.0.1"]);
    let (bridge, _) = start_bridge(&consul, &options).await;
    let (_, allowed) = doh_get(doh, "127.0.0.1", &pki.ca, &ask("open.service.consul."))
        .await
        .expect("DoH");
    let (refused, to_others) = doh_get(doh, "127.0.0.9", &pki.ca, &ask("open.service.consul."))
        .await
        .expect("DoH");
    let refused = Message::from_vec(&refused).expect("answer");
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert_eq!(allowed.as_deref(), Some("private, max-age=0"));
    assert_eq!(to_others.as_deref(), Some("private"));
    bridge.shutdown().await;
}

/// How one answer came back: its code, whether it has data, its size, TC.
#[derive(Debug)]
struct Got {
    rcode: ResponseCode,
    answers: usize,
    bytes: usize,
    truncated: bool,
}

fn got(bytes: &[u8]) -> Got {
    let message = Message::from_vec(bytes).expect("a DNS message");
    Got {
        rcode: message.metadata.response_code,
        answers: message.answers.len(),
        bytes: bytes.len(),
        truncated: message.metadata.truncation,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Via {
    UdpFast,
    UdpGeneral,
    Tcp,
    Dot,
    Doh,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_and_source_passes_every_step() {
    let consul = ConsulAgent::start().await;
    for i in 1..=60 {
        let id = format!("big{i}");
        consul
            .register(service("big", &id, &format!("10.5.0.{i}")))
            .await;
    }
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let upstream_zones = ZoneDir::new("gate-matrix-up");
    upstream_zones.write(
        "far.test",
        &format!("www IN A 10.8.0.2\n{}", big_txt("big")),
    );
    let (upstream, _) =
        start_bridge_at(&no_consul(), &["--zones-dir", upstream_zones.as_str()]).await;
    let zones = ZoneDir::new("gate-matrix");
    zones.write(
        "near.test",
        &format!("www IN A 10.8.0.1\n{}", big_txt("big")),
    );
    let recursor = upstream.dns_addrs()[0].to_string();
    let log = std::env::temp_dir().join(format!("cdb-gate-log-{}.jsonl", std::process::id()));
    let log_text = log.display().to_string();
    let (mut options, pki, dot, doh) = encrypted_options("matrix");
    options.extend(
        [
            "--zones-dir",
            zones.as_str(),
            "--recursor",
            &recursor,
            "--query-log",
            &log_text,
        ]
        .into_iter()
        .chain(GATE_LIMITS)
        .map(str::to_owned),
    );
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let bridge =
        BridgeBinary::start(&consul.http_url(), &options, &[], "web.service.consul.").await;
    let server = bridge.dns.addr;
    // Each source: a small name and a name whose answer passes 512 bytes.
    let sources = [
        ("catalog", "web.service.consul.", "big.service.consul."),
        ("zone file", "www.near.test.", "big.near.test."),
        ("recursor", "www.far.test.", "big.far.test."),
    ];
    let ask = |via: Via, from: &'static str, name: String, qtype: RecordType| {
        let ca = pki.ca.clone();
        async move {
            // The UDP general path: a question type the fast path leaves (TXT answers a
            // service's addresses, as Consul).
            let (qtype, edns) = match via {
                Via::UdpGeneral if name.ends_with(".consul.") => (RecordType::TXT, None),
                _ => (qtype, None),
            };
            let question = recursive(5, &name, qtype, edns);
            match via {
                Via::UdpFast | Via::UdpGeneral => {
                    let socket = tokio::net::UdpSocket::bind((from, 0)).await.ok()?;
                    socket.send_to(&question, server).await.ok()?;
                    let mut buf = vec![0u8; 65535];
                    let len = tokio::time::timeout(Duration::from_secs(3), socket.recv(&mut buf))
                        .await
                        .ok()?
                        .ok()?;
                    Some(buf[..len].to_vec())
                }
                Via::Tcp => tcp_answer(server, from, &question)
                    .await
                    .and_then(|m| m.to_vec().ok()),
                Via::Dot => dot_exchange(dot, from, &ca, &question).await.ok(),
                Via::Doh => doh_get(doh, from, &ca, &question).await.ok().map(|r| r.0),
            }
        }
    };
    let vias = [Via::UdpFast, Via::UdpGeneral, Via::Tcp, Via::Dot, Via::Doh];
    let mut asked = 0u64;
    for via in vias {
        for (source, small, large) in sources {
            // Access: allowed, answered; refused, REFUSED.
            let answer = ask(via, "127.0.0.1", small.to_owned(), RecordType::A)
                .await
                .map(|b| got(&b));
            assert!(
                answer
                    .as_ref()
                    .is_some_and(|a| a.rcode == ResponseCode::NoError && a.answers > 0),
                "{via:?} {source}: {answer:?}"
            );
            let refused = ask(via, "127.0.0.200", small.to_owned(), RecordType::A)
                .await
                .map(|b| got(&b));
            assert!(
                refused
                    .as_ref()
                    .is_some_and(|a| a.rcode == ResponseCode::Refused && a.answers == 0),
                "{via:?} {source} from outside --allow-query: {refused:?}"
            );
            asked += 2;
            // Size: over UDP without EDNS, at most 512 bytes, TC beyond.
            if matches!(via, Via::UdpFast | Via::UdpGeneral) {
                let qtype = match source {
                    "catalog" => RecordType::A,
                    _ => RecordType::TXT,
                };
                let large = ask(via, "127.0.0.1", large.to_owned(), qtype)
                    .await
                    .map(|b| got(&b));
                assert!(
                    large
                        .as_ref()
                        .is_some_and(|a| a.bytes <= 512 && a.truncated),
                    "{via:?} {source} large over UDP: {large:?}"
                );
                asked += 1;
            }
        }
    }
    // Rate limiting over UDP, for every source: 20 questions from a limited client in under a
    // second, at most 3 a second answered (6 when a second turns over).
    for (source, small, _) in sources {
        let question = recursive(6, small, RecordType::A, None);
        let answered =
            tokio::task::spawn_blocking(move || answered_of(server, "127.0.0.50", &question, 20))
                .await
                .expect("sender");
        asked += 20;
        println!("{source}: 20 UDP questions from a limited client, {answered} answered");
        assert!(
            answered <= 6,
            "{source}: {answered} answered past the limit"
        );
    }
    // The log and the metrics saw every question that was answered or held back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = std::fs::read_to_string(&log).unwrap_or_default();
    let mut seen = BTreeSet::new();
    for line in lines.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let transport = entry["transport"].as_str().unwrap_or_default().to_owned();
        let name = entry["name"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        seen.insert((transport, name));
    }
    for (transport, vias) in [("udp", 2), ("tcp", 1), ("tls", 1), ("https", 1)] {
        for (source, small, _) in sources {
            assert!(
                seen.contains(&(transport.to_owned(), small.to_owned())),
                "no {transport} log line for the {source} name {small} ({vias} paths)"
            );
        }
    }
    // The recursor's own questions are not ours; ours are all logged and counted.
    bridge.assert_logged_and_counted(&log, asked).await;
    upstream.shutdown().await;
}
