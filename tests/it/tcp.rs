//! DNS over TCP: pipelined queries are answered in order, open connections are capped
//! (`--tcp-max-connections`), and a silent connection is closed after `--tcp-idle-timeout`.

use std::time::{Duration, Instant};

use crate::support::{
    ConsulAgent,
    consul::service,
    dns::{query_bytes, read_framed, write_framed},
    start_bridge,
};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const WAIT: Duration = Duration::from_secs(5);

async fn ask(stream: &mut TcpStream, id: u16, name: &str) -> Option<Message> {
    write_framed(stream, &query_bytes(id, name, RecordType::A, None))
        .await
        .ok()?;
    let reply = tokio::time::timeout(WAIT, read_framed(stream))
        .await
        .expect("answer or close within 5 s")?;
    Some(Message::from_vec(&reply).expect("decodable"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_are_answered_in_order() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    consul.register_numbered("db", 3, "10.2.0").await;
    let (bridge, _) = start_bridge(&consul, &[]).await;
    let addr = bridge.dns_addrs()[0];

    // 60 queries in one write, cycling through a hit, a miss, an SRV and an outside name.
    let cases = [
        ("web.service.consul.", RecordType::A, ResponseCode::NoError),
        (
            "nope.service.consul.",
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        ("db.service.consul.", RecordType::SRV, ResponseCode::NoError),
        ("example.com.", RecordType::A, ResponseCode::Refused),
    ];
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut batch = Vec::new();
    for id in 0..60u16 {
        let (name, qtype, _) = cases[usize::from(id) % cases.len()];
        let query = query_bytes(id, name, qtype, None);
        batch.extend_from_slice(&(query.len() as u16).to_be_bytes());
        batch.extend_from_slice(&query);
    }
    stream.write_all(&batch).await.expect("write the batch");
    for id in 0..60u16 {
        let reply = tokio::time::timeout(WAIT, read_framed(&mut stream))
            .await
            .expect("answer within 5 s")
            .expect("connection still open");
        let reply = Message::from_vec(&reply).expect("decodable");
        let (name, _, rcode) = cases[usize::from(id) % cases.len()];
        assert_eq!(reply.metadata.id, id, "answers come in the order asked");
        assert_eq!(reply.metadata.response_code, rcode, "{name}");
        assert_eq!(reply.queries[0].name().to_ascii(), name);
    }
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let (bridge, _) = start_bridge(&consul, &["--tcp-max-connections", "3"]).await;
    let addr = bridge.dns_addrs()[0];

    let mut open = Vec::new();
    for id in 0..3u16 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let reply = ask(&mut stream, id, "web.service.consul.").await;
        assert_eq!(
            reply.map(|m| m.answers.len()),
            Some(1),
            "connection {id} is served"
        );
        open.push(stream);
    }
    // The kernel completes the handshake, but the bridge closes the fourth without an answer.
    let mut fourth = TcpStream::connect(addr).await.expect("connect");
    assert!(
        ask(&mut fourth, 9, "web.service.consul.").await.is_none(),
        "a connection over the cap got an answer"
    );

    // The three still work, and once one ends a new one is served.
    for (id, stream) in open.iter_mut().enumerate() {
        assert!(
            ask(stream, id as u16, "web.service.consul.")
                .await
                .is_some()
        );
    }
    drop(open.pop());
    let served = async {
        loop {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            if ask(&mut stream, 10, "web.service.consul.").await.is_some() {
                return;
            }
            // The bridge may not have seen the close yet.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, served)
        .await
        .expect("a slot freed by a closed connection is reused");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_idle_timeout() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let (bridge, _) = start_bridge(&consul, &["--tcp-idle-timeout", "1s"]).await;
    let addr = bridge.dns_addrs()[0];

    // One that never speaks, one that asks once and then goes quiet.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut quiet = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    assert!(ask(&mut quiet, 1, "web.service.consul.").await.is_some());
    for stream in [&mut silent, &mut quiet] {
        let read = tokio::time::timeout(WAIT, read_framed(stream)).await;
        assert_eq!(
            read,
            Ok(None),
            "closed by the bridge, without anything sent"
        );
    }
    let closed_after = started.elapsed();
    println!("idle connections closed after {closed_after:?}");
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}, want about 1 s"
    );
    bridge.shutdown().await;
}
