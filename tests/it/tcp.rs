//! DNS over TCP: pipelined queries are answered in order; at the connection cap
//! (`--tcp-max-connections`) an idle connection gives way to a new client, so 1,000 idle and 300
//! slow connections cannot keep one out; a silent connection is closed after
//! `--tcp-idle-timeout`.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::support::{
    ConsulAgent,
    binary::BridgeBinary,
    consul::service,
    dns::{Transport, query_bytes, read_framed, write_framed},
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
async fn at_the_cap_the_oldest_idle_connection_gives_way_to_a_new_client() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let (bridge, _) = start_bridge(&consul, &["--tcp-max-connections", "3"]).await;
    let addr = bridge.dns_addrs()[0];

    let mut open = Vec::new();
    for id in 0..3u16 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let reply = ask(&mut stream, id, "web.service.consul.").await;
        assert_eq!(reply.map(|m| m.answers.len()), Some(1), "connection {id}");
        open.push(stream);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A fourth client is served; the connection idle the longest is closed for it.
    let mut fourth = TcpStream::connect(addr).await.expect("connect");
    let reply = ask(&mut fourth, 9, "web.service.consul.").await;
    assert_eq!(reply.map(|m| m.answers.len()), Some(1), "the new client");
    let closed = tokio::time::timeout(WAIT, read_framed(&mut open[0])).await;
    assert_eq!(closed, Ok(None), "the oldest idle connection was closed");
    for (id, stream) in open.iter_mut().enumerate().skip(1) {
        let reply = ask(stream, id as u16, "web.service.consul.").await;
        assert!(reply.is_some(), "connection {id} still open");
    }
    bridge.shutdown().await;
}

/// A connection to `addr` from the loopback address `source`, standing for another client.
async fn connect_from(source: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(addr).await
}

/// One connection of the flood, from `source`, that asks every `period`; counts its answers.
async fn chatty(source: [u8; 4], addr: SocketAddr, period: Duration, until: Instant) -> (u32, u32) {
    let (mut asked, mut answered) = (0, 0);
    let Ok(mut stream) = connect_from(source, addr).await else {
        return (0, 0);
    };
    // Spread the first questions over the period, as independent clients would.
    tokio::time::sleep(period.mul_f64(rand::random::<f64>())).await;
    while Instant::now() < until {
        asked += 1;
        let mut reply = ask(&mut stream, 7, "web.service.consul.").await;
        if reply.is_none() {
            // Closed to make room for a newer client: a real client reconnects and asks again.
            let Ok(fresh) = connect_from(source, addr).await else {
                return (asked, answered);
            };
            stream = fresh;
            reply = ask(&mut stream, 7, "web.service.consul.").await;
        }
        answered += u32::from(reply.is_some());
        tokio::time::sleep(period).await;
    }
    (asked, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_cannot_keep_a_new_client_out() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    consul.register_numbered("big", 40, "10.3.0").await;
    let bridge = BridgeBinary::start(&consul.http_url(), &[], &[], "web.service.consul.").await;
    let addr = bridge.dns.addr;

    // 1,000 connections that never speak, from 40 addresses (each under its own share of
    // connections, so the overall cap is what they press on), and 300 that ask every 5 s from
    // 10 more, for 8 s.
    let mut idle = Vec::new();
    for i in 0..1000u32 {
        let source = [127, 0, 2, (i % 40) as u8 + 1];
        idle.push(
            connect_from(source, addr)
                .await
                .expect("connect an idle one"),
        );
    }
    let until = Instant::now() + Duration::from_secs(8);
    let chatty: Vec<_> = (0..300u32)
        .map(|i| {
            let source = [127, 0, 3, (i % 10) as u8 + 1];
            tokio::spawn(chatty(source, addr, Duration::from_secs(5), until))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut latencies = Vec::new();
    for id in 0..20u16 {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr)
            .await
            .expect("connect a new client");
        let reply = ask(&mut stream, id, "web.service.consul.").await;
        assert_eq!(reply.map(|m| m.answers.len()), Some(1), "new client {id}");
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A truncated UDP answer (40 instances, no EDNS) and the retry over TCP it calls for.
    let udp = bridge
        .dns
        .query_over("big.service.consul.", RecordType::A, Transport::UdpPlain)
        .await;
    assert!(
        udp.metadata.truncation,
        "40 addresses do not fit in 512 bytes"
    );
    let tcp = bridge
        .dns
        .query_over("big.service.consul.", RecordType::A, Transport::Tcp)
        .await;
    assert_eq!(tcp.answers.len(), 40, "the retry over TCP gets them all");
    let with_edns = bridge
        .dns
        .addresses("web.service.consul.", RecordType::A)
        .await;
    assert_eq!(with_edns.len(), 1, "UDP answers meanwhile");

    let (mut asked, mut answered) = (0, 0);
    for task in chatty {
        let (a, b) = task.await.expect("chatty connection");
        asked += a;
        answered += b;
    }
    latencies.sort();
    println!(
        "new TCP clients under 1,000 idle + 300 slow connections: median {:?}, max {:?}; \
         slow connections: {answered}/{asked} answered",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(latencies[latencies.len() / 2] < Duration::from_millis(100));
    assert!(
        answered * 10 >= asked * 9,
        "slow clients that reconnect are answered"
    );
    assert!(latencies[latencies.len() - 1] < Duration::from_secs(1));
    drop(idle);
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
