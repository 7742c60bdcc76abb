//! The gate fuzzed on every transport (UDP, TCP, DoT, DoH): valid questions whose name ends in
//! a compression pointer at a random place (to a zero byte of the header: a legal way to
//! write the root) must be answered exactly as the same question written plainly, whatever
//! the source (the catalog, a zone file, the recursor); random bytes must get a well-formed
//! answer or none; and the bridge must answer a real question afterwards.
//!
//! `PROPTEST_CASES` sets the number of cases (default 200 here).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use consul_dns_bridge::Bridge;
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use proptest::{
    prelude::*,
    test_runner::{Config as RunnerConfig, TestRunner},
};
use tokio::runtime::Runtime;

use crate::support::{
    ConsulAgent,
    consul::{free_port, service},
    dns::{ip, query_bytes, read_framed, write_framed},
    encrypted_client::{doh_get, dot_exchange},
    pki::Pki,
    start_bridge, start_bridge_at,
    zones::ZoneDir,
};

#[derive(Debug, Clone, Copy)]
enum Via {
    Udp,
    Tcp,
    Dot,
    Doh,
}

/// Names from each source, and a few that exist nowhere.
const NAMES: &[&str] = &[
    "web.service.consul.",
    "primary.web.service.consul.",
    "_web._tcp.service.consul.",
    "nope.service.consul.",
    "www.near.test.",
    "nope.near.test.",
    "www.far.test.",
    "consul.",
];

/// The question for `name`, its labels written in full up to label `cut` and the rest
/// replaced by a pointer to `target` (a zero byte of the header), so the name is the first
/// `cut` labels under the root. `cut` past the labels: written plainly.
fn question(id: u16, name: &str, qtype: RecordType, cut: usize, target: u8) -> Vec<u8> {
    let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
    let plain = query_bytes(id, name, qtype, Some(1232));
    let mut bytes = plain[..12].to_vec();
    bytes[2] |= 0x01; // recursion desired, so the recursor is asked
    for label in labels.iter().take(cut) {
        bytes.push(label.len() as u8);
        bytes.extend_from_slice(label.as_bytes());
    }
    match cut < labels.len() {
        true => bytes.extend_from_slice(&[0xc0, target]),
        false => bytes.push(0),
    }
    bytes.extend_from_slice(&u16::from(qtype).to_be_bytes());
    bytes.extend_from_slice(&[0, 1]);
    // The OPT record of the plain question, as it was written after its question.
    let question_end = plain
        .iter()
        .skip(12)
        .position(|b| *b == 0)
        .map_or(plain.len(), |at| 12 + at + 5);
    bytes.extend_from_slice(&plain[question_end..]);
    bytes
}

/// The name as the compressed question spells it.
fn spelled(name: &str, cut: usize) -> String {
    let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
    format!("{}.", labels[..cut.min(labels.len())].join("."))
}

struct Fixture {
    _consul: ConsulAgent,
    bridges: Vec<Bridge>,
    _zones: (ZoneDir, ZoneDir),
    pki: Pki,
    dir: PathBuf,
    dns: SocketAddr,
    dot: SocketAddr,
    doh: SocketAddr,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn exchange(fixture: &Fixture, via: Via, message: &[u8]) -> Option<Vec<u8>> {
    match via {
        Via::Udp => {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
            socket.send_to(message, fixture.dns).await.ok()?;
            let mut buf = vec![0u8; 65535];
            let len = tokio::time::timeout(Duration::from_millis(700), socket.recv(&mut buf))
                .await
                .ok()?
                .ok()?;
            Some(buf[..len].to_vec())
        }
        Via::Tcp => {
            let mut stream = tokio::net::TcpStream::connect(fixture.dns).await.ok()?;
            write_framed(&mut stream, message).await.ok()?;
            tokio::time::timeout(Duration::from_secs(3), read_framed(&mut stream))
                .await
                .ok()?
        }
        Via::Dot => dot_exchange(fixture.dot, "127.0.0.1", &fixture.pki.ca, message)
            .await
            .ok(),
        Via::Doh => doh_get(fixture.doh, "127.0.0.1", &fixture.pki.ca, message)
            .await
            .ok()
            .map(|(body, _)| body)
            .filter(|body| !body.is_empty()),
    }
}

/// What an answer says, to compare two of them: the code and the records, sorted.
fn gist(bytes: &[u8]) -> Option<(ResponseCode, Vec<String>)> {
    let message = Message::from_vec(bytes).ok()?;
    let mut records: Vec<String> = message
        .answers
        .iter()
        .map(|r| format!("{} {}", r.record_type(), r.data))
        .collect();
    records.sort();
    Some((message.metadata.response_code, records))
}

fn start(runtime: &Runtime) -> Fixture {
    runtime.block_on(async {
        let consul = ConsulAgent::start().await;
        consul
            .register(service("web", "web1", "10.1.0.1").tags(&["primary"]))
            .await;
        consul.register(service("web", "web2", "10.1.0.2")).await;
        let far = ZoneDir::new("fuzz-far");
        far.write("far.test", "www IN A 10.8.0.2\n");
        let (upstream, _) = start_bridge_at(
            &format!("http://127.0.0.1:{}", free_port()),
            &["--zones-dir", far.as_str()],
        )
        .await;
        let recursor = upstream.dns_addrs()[0].to_string();
        let near = ZoneDir::new("fuzz-near");
        near.write("near.test", "www IN A 10.8.0.1\n");
        let dir = std::env::temp_dir().join(format!("cdb-fuzz-transports-{}", std::process::id()));
        let pki = Pki::create(&dir);
        let dot: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let doh: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let (dot_text, doh_text) = (dot.to_string(), doh.to_string());
        let (cert, key) = (
            pki.server_cert.display().to_string(),
            pki.server_key.display().to_string(),
        );
        let options = [
            "--zones-dir",
            near.as_str(),
            "--recursor",
            &recursor,
            "--tls-listen",
            &dot_text,
            "--https-listen",
            &doh_text,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ];
        let (bridge, dns) = start_bridge(&consul, &options).await;
        assert_eq!(
            dns.addresses("web.service.consul.", RecordType::A)
                .await
                .len(),
            2
        );
        Fixture {
            _consul: consul,
            bridges: vec![bridge, upstream],
            _zones: (far, near),
            pki,
            dir,
            dns: dns.addr,
            dot,
            doh,
        }
    })
}

fn via() -> impl Strategy<Value = Via> {
    prop_oneof![
        Just(Via::Udp),
        Just(Via::Tcp),
        Just(Via::Dot),
        Just(Via::Doh)
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

#[test]
fn compressed_questions_and_random_bytes_on_every_transport() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let fixture = start(&runtime);
    let mut runner = TestRunner::new(RunnerConfig {
        cases: cases(),
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let questions = (
        via(),
        proptest::sample::select(NAMES),
        proptest::sample::select(&[RecordType::A, RecordType::SRV, RecordType::TXT][..]),
        0usize..6,
        proptest::sample::select(&[4u8, 6, 8, 10][..]),
        any::<u16>(),
    );
    let result = runner.run(&questions, |(via, name, qtype, cut, target, id)| {
        runtime.block_on(async {
            let compressed = question(id, name, qtype, cut, target);
            let plain = question(id, &spelled(name, cut), qtype, usize::MAX, 0);
            let (a, b) = (
                exchange(&fixture, via, &compressed).await,
                exchange(&fixture, via, &plain).await,
            );
            let (a, b) = (a.as_deref().and_then(gist), b.as_deref().and_then(gist));
            prop_assert!(
                b.is_some(),
                "{via:?}: no answer to the plain {name} {qtype}"
            );
            prop_assert_eq!(
                a,
                b,
                "{:?}: {} cut at {} differs from plain",
                via,
                name,
                cut
            );
            Ok(())
        })
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let junk = (via(), proptest::collection::vec(any::<u8>(), 0..300));
    let result = runner.run(&junk, |(via, bytes)| {
        runtime.block_on(async {
            if let Some(reply) = exchange(&fixture, via, &bytes).await {
                let message = Message::from_vec(&reply);
                prop_assert!(message.is_ok(), "{via:?}: an answer that does not parse");
                if bytes.len() >= 2 {
                    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
                    prop_assert_eq!(message.map(|m| m.metadata.id).ok(), Some(id));
                }
            }
            Ok(())
        })
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    runtime.block_on(async {
        let after = query_bytes(1, "web.service.consul.", RecordType::A, None);
        for via in [Via::Udp, Via::Tcp, Via::Dot, Via::Doh] {
            let reply = exchange(&fixture, via, &after).await.expect("an answer");
            let message = Message::from_vec(&reply).expect("parse");
            let mut got: Vec<_> = message
                .answers
                .iter()
                .filter_map(|r| r.data.ip_addr())
                .collect();
            got.sort();
            assert_eq!(
                got,
                [ip("10.1.0.1"), ip("10.1.0.2")],
                "{via:?} after the fuzz"
            );
        }
    });
    let mut fixture = fixture;
    runtime.block_on(async {
        for bridge in fixture.bridges.drain(..) {
            bridge.shutdown().await;
        }
    });
}
