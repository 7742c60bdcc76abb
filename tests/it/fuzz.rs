//! A property test (a fuzz target in CI size) of the whole request path, from raw bytes on a UDP
//! socket to the bytes that come back. Each case is a query built field by field (odd flags, counts,
//! names, types, classes and EDNS) and then mutated, or plain random bytes. Every case checks the
//! answer against rules that hold for any input; the bridge must still answer a real query at the end.
//!
//! `PROPTEST_CASES` sets the number of cases (default 3000 here); run it longer by hand with e.g.
//! `PROPTEST_CASES=200000 cargo test --release --test fuzz -- --nocapture`.

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use crate::support::{ConsulAgent, consul::service, dns::ip, start_bridge};
use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{DNSClass, Name, RecordType},
};
use proptest::{
    prelude::*,
    test_runner::{Config as RunnerConfig, TestRunner},
};

/// Labels that steer names into the interesting parts of the Consul namespace.
const LABELS: &[&str] = &[
    "web", "db", "service", "consul", "dc1", "dc9", "_web", "_tcp", "_udp", "primary", "node",
    "addr", "query", "com", "x",
];

fn label() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::sample::select(LABELS).prop_map(|l| l.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..70),
    ]
}

fn qtype() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => proptest::sample::select(&[1u16, 28, 33, 16, 255, 2, 6, 252, 251, 12, 5, 0][..]),
        1 => any::<u16>(),
    ]
}

/// A query written field by field, so that counts and contents may disagree.
#[derive(Debug, Clone)]
struct RawQuery {
    id: u16,
    flags: u16,
    counts: [u16; 4],
    labels: Vec<Vec<u8>>,
    qtype: u16,
    qclass: u16,
    /// Payload size, version, first flags byte (DO is its top bit), options.
    edns: Option<(u16, u8, u8, Vec<u8>)>,
    mutations: Vec<(usize, u8)>,
    cut: Option<usize>,
}

impl RawQuery {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&self.id.to_be_bytes());
        bytes.extend_from_slice(&self.flags.to_be_bytes());
        for count in self.counts {
            bytes.extend_from_slice(&count.to_be_bytes());
        }
        for label in &self.labels {
            // The length byte is taken as given (it may lie), so this reaches pointer and
            // extended-label bit patterns too.
            bytes.push(label.len().min(255) as u8);
            bytes.extend_from_slice(label);
        }
        bytes.push(0);
        bytes.extend_from_slice(&self.qtype.to_be_bytes());
        bytes.extend_from_slice(&self.qclass.to_be_bytes());
        if let Some((size, version, flags, options)) = &self.edns {
            bytes.push(0); // root owner
            bytes.extend_from_slice(&41u16.to_be_bytes());
            bytes.extend_from_slice(&size.to_be_bytes());
            bytes.extend_from_slice(&[0, *version, *flags, 0]);
            bytes.extend_from_slice(&(options.len() as u16).to_be_bytes());
            bytes.extend_from_slice(options);
        }
        for (at, value) in &self.mutations {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = *value;
            }
        }
        if let Some(cut) = self.cut {
            bytes.truncate(cut);
        }
        bytes
    }
}

fn raw_query() -> impl Strategy<Value = RawQuery> {
    let flags = prop_oneof![
        4 => Just(0x0100u16),                         // a plain query with RD
        1 => (0u16..16).prop_map(|opcode| opcode << 11),
        1 => any::<u16>(),
    ];
    let counts = prop_oneof![
        6 => Just(None),
        1 => proptest::array::uniform4(0u16..4).prop_map(Some),
    ];
    let edns = proptest::option::weighted(
        0.5,
        (
            prop_oneof![Just(1232u16), Just(512), Just(0), any::<u16>()],
            prop_oneof![4 => Just(0u8), 1 => any::<u8>()],
            prop_oneof![2 => Just(0u8), 2 => Just(0x80u8), 1 => any::<u8>()],
            proptest::collection::vec(any::<u8>(), 0..12),
        ),
    );
    (
        any::<u16>(),
        flags,
        counts,
        proptest::collection::vec(label(), 0..8),
        qtype(),
        prop_oneof![4 => Just(1u16), 1 => any::<u16>()],
        edns,
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        proptest::option::weighted(0.15, 0usize..80),
    )
        .prop_map(
            |(id, flags, counts, labels, qtype, qclass, edns, mutations, cut)| {
                let additional = u16::from(edns.is_some());
                RawQuery {
                    id,
                    flags,
                    counts: counts.unwrap_or([1, 0, 0, additional]),
                    labels,
                    qtype,
                    qclass,
                    edns,
                    mutations,
                    cut,
                }
            },
        )
}

fn packet() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        5 => raw_query().prop_map(|query| query.encode()),
        1 => proptest::collection::vec(any::<u8>(), 0..600),
    ]
}

/// What every answer to `request` must satisfy, whatever the request holds.
fn check_answer(request: &[u8], reply: Option<&[u8]>) -> Result<(), TestCaseError> {
    if request.len() < 12 {
        // No ID to answer to: nothing may come back.
        prop_assert!(reply.is_none(), "answered a packet without a header");
        return Ok(());
    }
    let parsed = Message::from_vec(request).ok();
    let is_response = request[2] & 0x80 != 0;
    let Some(reply) = reply else {
        // Silence is right only for messages that are themselves responses (no reflection).
        prop_assert!(
            is_response && parsed.is_some(),
            "no answer to a {}-byte request",
            request.len()
        );
        return Ok(());
    };
    let answer = Message::from_vec(reply)
        .map_err(|e| TestCaseError::fail(format!("undecodable answer: {e}")))?;
    prop_assert_eq!(
        answer.metadata.id,
        u16::from_be_bytes([request[0], request[1]])
    );
    prop_assert_eq!(answer.metadata.message_type, MessageType::Response);
    let limit = parsed
        .as_ref()
        .and_then(|m| m.edns.as_ref())
        .map_or(512, |edns| usize::from(edns.max_payload()).clamp(512, 1232));
    prop_assert!(reply.len() <= limit, "{} bytes > {limit}", reply.len());
    let rcode = answer.metadata.response_code;
    // An EDNS version we do not speak: BADVERS with ours, whatever else the query asks.
    if let Some(edns) = parsed.as_ref().and_then(|m| m.edns.as_ref()) {
        if edns.version() > 0 {
            // BADVERS (16; hickory reads the code as BADSIG, its twin).
            prop_assert_eq!(u16::from(rcode), 16);
            prop_assert_eq!(answer.edns.as_ref().map(|e| e.version()), Some(0));
            return Ok(());
        }
        if let Some(opt) = answer.edns.as_ref() {
            prop_assert_eq!(opt.flags().dnssec_ok, edns.flags().dnssec_ok, "DO copied");
        }
    }
    let class_in = parsed
        .as_ref()
        .is_some_and(|m| m.queries.len() == 1 && m.queries[0].query_class() == DNSClass::IN);
    // Reverse names are looked up in the catalog as Consul does: a PTR, or SERVFAIL when no node
    // or service has the address (Consul would recurse; there are no recursors here).
    let reverse = parsed.as_ref().is_some_and(|m| {
        m.queries.len() == 1 && {
            let name = m.queries[0].name().to_lowercase().to_ascii();
            name.ends_with(".in-addr.arpa.")
                || name.ends_with(".ip6.arpa.")
                || name == "in-addr.arpa."
                || name == "ip6.arpa."
        }
    });
    if reverse && class_in && is_standard_query(parsed.as_ref()) {
        prop_assert!(
            matches!(rcode, ResponseCode::NoError | ResponseCode::ServFail),
            "reverse name got {rcode}"
        );
        return Ok(());
    }
    // The catalog is loaded: no case may fail on our side.
    prop_assert_ne!(rcode, ResponseCode::ServFail);
    let Some(request) = parsed else {
        prop_assert_eq!(rcode, ResponseCode::FormErr);
        return Ok(());
    };
    if request.metadata.op_code != OpCode::Query {
        prop_assert!(
            matches!(rcode, ResponseCode::NotImp | ResponseCode::FormErr),
            "opcode {:?} got {rcode}",
            request.metadata.op_code
        );
        return Ok(());
    }
    if request.queries.len() != 1 {
        prop_assert_eq!(rcode, ResponseCode::FormErr);
        return Ok(());
    }
    let query = &request.queries[0];
    // By labels, not text: a label may itself hold "\x06consul" and print like the domain.
    let in_domain = Name::from_ascii("consul.")
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .zone_of(query.name());
    if !in_domain {
        prop_assert_eq!(rcode, ResponseCode::Refused, "outside the domain");
    } else if query.query_class() != DNSClass::IN {
        prop_assert_eq!(
            rcode,
            ResponseCode::Refused,
            "class {:?}",
            query.query_class()
        );
    } else if matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR) {
        prop_assert_eq!(rcode, ResponseCode::NotImp);
    } else {
        prop_assert!(
            matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain),
            "{} {} got {rcode}",
            query.name(),
            query.query_type()
        );
        prop_assert_eq!(answer.queries.as_slice(), request.queries.as_slice());
        if rcode == ResponseCode::NXDomain {
            prop_assert!(
                answer
                    .authorities
                    .iter()
                    .any(|r| r.record_type() == RecordType::SOA)
            );
        }
    }
    Ok(())
}

/// A standard query (the only kind the reverse rule applies to).
fn is_standard_query(message: Option<&Message>) -> bool {
    message.is_some_and(|m| m.metadata.op_code == OpCode::Query)
}

fn exchange(socket: &UdpSocket, to: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    socket.send_to(request, to).ok()?;
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, from) = socket.recv_from(&mut buf).ok()?;
        // A late answer to an earlier case would carry its ID; skip anything not from the bridge.
        if from == to {
            buf.truncate(len);
            return Some(buf);
        }
    }
}

#[test]
fn any_bytes_get_a_well_formed_answer_or_none() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (consul, bridge, dns) = runtime.block_on(async {
        let consul = ConsulAgent::start().await;
        consul
            .register(service("web", "web1", "10.1.0.1").tags(&["primary"]))
            .await;
        consul.register_numbered("db", 30, "10.2.0").await;
        let (bridge, dns) = start_bridge(&consul, &[]).await;
        // Warm both watches, so no case waits for a first answer from Consul.
        for name in ["web.service.consul.", "db.service.consul."] {
            assert!(!dns.query(name, RecordType::A).await.answers.is_empty());
        }
        (consul, bridge, dns)
    });

    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let answered = std::cell::Cell::new(0u32);
    let silent = std::cell::Cell::new(0u32);
    let result = runner.run(&packet(), |request| {
        // Only a query is sure to be answered; don't sit long on packets that may get none.
        let maybe_silent = request.len() < 12 || request[2] & 0x80 != 0;
        let wait = if maybe_silent { 100 } else { 1000 };
        socket
            .set_read_timeout(Some(Duration::from_millis(wait)))
            .expect("timeout");
        let reply = exchange(&socket, dns.addr, &request);
        match reply {
            Some(_) => answered.set(answered.get() + 1),
            None => silent.set(silent.get() + 1),
        }
        check_answer(&request, reply.as_deref())
    });
    println!(
        "{cases} cases: {} answered, {} without answer",
        answered.get(),
        silent.get()
    );
    runtime.block_on(async {
        assert_eq!(
            dns.addresses("web.service.consul.", RecordType::A).await,
            [ip("10.1.0.1")]
        );
        bridge.shutdown().await;
    });
    drop(consul);
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// One message's worth of bytes on a TCP connection.
#[derive(Debug, Clone)]
enum Frame {
    /// A query built as above (mutated or not), with its true length.
    Query(Vec<u8>),
    /// Random bytes, with their true length.
    Junk(Vec<u8>),
    /// A length prefix that does not match what follows.
    LyingLength(u16, Vec<u8>),
}

impl Frame {
    fn bytes(&self) -> Vec<u8> {
        let (len, body) = match self {
            Frame::Query(body) | Frame::Junk(body) => (body.len() as u16, body),
            Frame::LyingLength(len, body) => (*len, body),
        };
        [&len.to_be_bytes()[..], body].concat()
    }

    /// The ID an answer to this frame would carry, if it can have one.
    fn id(&self) -> Option<u16> {
        match self {
            Frame::Query(body) | Frame::Junk(body) if body.len() >= 12 => {
                Some(u16::from_be_bytes([body[0], body[1]]))
            }
            _ => None,
        }
    }
}

fn frames() -> impl Strategy<Value = (Vec<Frame>, Option<usize>)> {
    let frame = prop_oneof![
        4 => raw_query().prop_map(|q| Frame::Query(q.encode())),
        1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Frame::Junk),
        1 => (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(len, body)| Frame::LyingLength(len, body)),
    ];
    (
        proptest::collection::vec(frame, 1..6),
        proptest::option::weighted(0.3, 1usize..40),
    )
}

#[test]
fn tcp_framing_holds_for_any_frames() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (consul, bridge, dns) = runtime.block_on(async {
        let consul = ConsulAgent::start().await;
        consul.register(service("web", "web1", "10.1.0.1")).await;
        let (bridge, dns) = start_bridge(&consul, &["--tcp-idle-timeout", "1s"]).await;
        assert!(
            !dns.query("web.service.consul.", RecordType::A)
                .await
                .answers
                .is_empty()
        );
        (consul, bridge, dns)
    });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .map_or(150, |cases| (cases / 20).max(10));
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let answers = std::cell::Cell::new(0u32);
    let result = runner.run(&frames(), |(frames, split)| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(dns.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(150)))
            .expect("timeout");
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::bytes).collect();
        // Some cases arrive in two writes, cut anywhere, as a slow network delivers them.
        let cut = split.map_or(bytes.len(), |at| at.min(bytes.len()));
        let _ = stream.write_all(&bytes[..cut]);
        std::thread::sleep(Duration::from_millis(5));
        let _ = stream.write_all(&bytes[cut..]);
        let ids: Vec<u16> = frames.iter().filter_map(Frame::id).collect();
        // After a lying length the server reads the following bytes as other frames, whose
        // IDs and number are whatever those bytes say: only the answers' form is checked.
        let realigned = frames.iter().any(|f| matches!(f, Frame::LyingLength(..)));
        let mut got = 0;
        loop {
            let mut len = [0u8; 2];
            if stream.read_exact(&mut len).is_err() {
                break;
            }
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream
                .read_exact(&mut reply)
                .map_err(|e| TestCaseError::fail(format!("answer cut short: {e}")))?;
            let answer = Message::from_vec(&reply)
                .map_err(|e| TestCaseError::fail(format!("undecodable answer: {e}")))?;
            prop_assert_eq!(answer.metadata.message_type, MessageType::Response);
            prop_assert!(
                realigned || ids.contains(&answer.metadata.id),
                "an answer to no frame"
            );
            got += 1;
        }
        prop_assert!(
            realigned || got <= frames.len(),
            "{got} answers to {} frames",
            frames.len()
        );
        answers.set(answers.get() + got as u32);
        Ok(())
    });
    println!("{cases} TCP cases: {} answers", answers.get());
    runtime.block_on(async {
        let reply = dns
            .query_over(
                "web.service.consul.",
                RecordType::A,
                crate::support::dns::Transport::Tcp,
            )
            .await;
        assert_eq!(reply.answers.len(), 1, "still answering over TCP");
        bridge.shutdown().await;
    });
    drop(consul);
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
