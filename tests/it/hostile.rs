//! Hostile and broken DNS input: malformed queries get FORMERR (or are dropped when no ID can be
//! read), other opcodes NOTIMP, several questions FORMERR; a flood of random, truncated and
//! oversized packets over UDP and junk over TCP leaves the real binary alive and answering; a UDP
//! answer never exceeds the size the client advertised.

use std::{net::SocketAddr, time::Duration};

use crate::support::{
    ConsulAgent,
    binary::BridgeBinary,
    consul::service,
    dns::{ip, query_bytes},
    start_bridge,
};
use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RecordType},
};
use rand::Rng;
use tokio::{io::AsyncWriteExt, net::TcpStream, net::UdpSocket};

async fn udp_exchange(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    socket.send_to(bytes, addr).await.expect("send");
    let mut buf = vec![0u8; 65535];
    let received =
        tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await;
    let (len, _) = received.ok()?.expect("receive");
    buf.truncate(len);
    Some(buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queries_get_clear_answers() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let (bridge, dns) = start_bridge(&consul, &[]).await;
    let addr = dns.addr;

    // A header that promises a question which is not there: FORMERR, same ID.
    let header_only = [0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    let reply = udp_exchange(addr, &header_only)
        .await
        .expect("FORMERR answer");
    let reply = Message::from_vec(&reply).expect("decodable");
    assert_eq!(reply.metadata.id, 0x1234);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

    // A name cut in the middle.
    let mut cut = query_bytes(0x2222, "web.service.consul.", RecordType::A, None);
    cut.truncate(20);
    let reply =
        Message::from_vec(&udp_exchange(addr, &cut).await.expect("answer")).expect("decodable");
    assert_eq!(
        (reply.metadata.id, reply.metadata.response_code),
        (0x2222, ResponseCode::FormErr)
    );

    // Fewer than 12 bytes: no ID to answer to, dropped.
    assert!(udp_exchange(addr, &[0x12, 0x34, 0x01]).await.is_none());

    // Other opcodes: NOTIMP.
    for opcode in [OpCode::Status, OpCode::Notify] {
        let mut message = Message::new(0x3333, MessageType::Query, opcode);
        message.add_query(Query::query(
            Name::from_ascii("web.service.consul.").expect("name"),
            RecordType::A,
        ));
        let bytes = message.to_vec().expect("encode");
        let reply = Message::from_vec(&udp_exchange(addr, &bytes).await.expect("answer"))
            .expect("decodable");
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NotImp,
            "{opcode:?}"
        );
    }

    // Two questions: FORMERR.
    let mut message = Message::new(0x4444, MessageType::Query, OpCode::Query);
    for name in ["web.service.consul.", "db.service.consul."] {
        message.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
    }
    let reply = udp_exchange(addr, &message.to_vec().expect("encode"))
        .await
        .expect("answer");
    assert_eq!(
        Message::from_vec(&reply)
            .expect("decodable")
            .metadata
            .response_code,
        ResponseCode::FormErr
    );

    // Still answering properly.
    assert_eq!(
        dns.addresses("web.service.consul.", RecordType::A).await,
        [ip("10.1.0.1")]
    );
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_answers_never_exceed_the_advertised_size() {
    let consul = ConsulAgent::start().await;
    consul.register_numbered("big", 40, "10.9.0").await;
    let (bridge, dns) = start_bridge(&consul, &[]).await;
    for (edns, limit) in [
        (None, 512),
        (Some(600), 600),
        (Some(1232), 1232),
        (Some(65000), 1232),
        (Some(100), 512),
    ] {
        for qtype in [RecordType::A, RecordType::SRV] {
            let bytes = query_bytes(7, "big.service.consul.", qtype, edns);
            let reply = udp_exchange(dns.addr, &bytes).await.expect("answer");
            assert!(
                reply.len() <= limit,
                "{qtype} with EDNS {edns:?}: {} > {limit}",
                reply.len()
            );
            let message = Message::from_vec(&reply).expect("decodable");
            assert!(
                message.metadata.truncation || message.answers.len() == 40,
                "{qtype} with EDNS {edns:?}: complete, or TC set"
            );
        }
    }
    bridge.shutdown().await;
}

/// Kills the child on drop, so a failing assertion leaves no bridge behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_junk_leaves_the_binary_answering() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let mut bridge = BridgeBinary::start(&consul.http_url(), &[], &[], "web.service.consul.").await;
    let (dns, addr) = (bridge.dns, bridge.dns.addr);

    let valid = query_bytes(9, "web.service.consul.", RecordType::SRV, Some(1232));
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    let mut sent = 0u32;
    {
        let mut rng = rand::rng();
        for i in 0..100_000u32 {
            let packet: Vec<u8> = match i % 4 {
                0 => (0..rng.random_range(0..600))
                    .map(|_| rng.random())
                    .collect(),
                1 => valid[..rng.random_range(0..valid.len())].to_vec(),
                2 => {
                    let mut flipped = valid.clone();
                    let at = rng.random_range(0..flipped.len());
                    flipped[at] = rng.random();
                    flipped
                }
                _ => (0..rng.random_range(1500..4000))
                    .map(|_| rng.random())
                    .collect(),
            };
            if socket.try_send_to(&packet, addr).is_ok() {
                sent += 1;
            }
            if i % 2000 == 0 {
                tokio::task::yield_now().await;
            }
        }
    }
    for i in 0..200u32 {
        if let Ok(mut stream) = TcpStream::connect(addr).await {
            let junk: Vec<u8> = {
                let mut rng = rand::rng();
                match i % 3 {
                    0 => (0..rng.random_range(1..300))
                        .map(|_| rng.random())
                        .collect(),
                    1 => vec![0xff, 0xff, 1, 2, 3],
                    _ => [&[0u8, 40][..], &valid[..valid.len().min(20)]].concat(),
                }
            };
            let _ = stream.write_all(&junk).await;
        }
    }
    println!("sent {sent} junk UDP packets and 200 junk TCP connections");
    assert!(sent > 90_000, "only {sent} packets sent");

    assert!(bridge.is_running(), "the bridge exited");
    assert_eq!(
        dns.addresses("web.service.consul.", RecordType::A).await,
        [ip("10.1.0.1")]
    );
    let tcp = dns
        .query_over(
            "web.service.consul.",
            RecordType::A,
            crate::support::dns::Transport::Tcp,
        )
        .await;
    assert_eq!(tcp.answers.len(), 1);
}
