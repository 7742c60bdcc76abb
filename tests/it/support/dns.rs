//! A small DNS client over UDP (with or without EDNS) and TCP, built on hickory-proto.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{DNSClass, Name, RData, Record, RecordType},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP advertising 1232 bytes through EDNS, as `dig` does.
    Udp,
    /// UDP without EDNS: 512 bytes at most.
    UdpPlain,
    Tcp,
}

#[derive(Debug, Clone, Copy)]
pub struct DnsClient {
    pub addr: SocketAddr,
    /// The loopback address questions come from (another client network); any when `None`.
    source: Option<IpAddr>,
}

impl DnsClient {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, source: None }
    }

    /// The same server, asked from `source` (e.g. `127.0.0.9`: a client in another network).
    pub fn asked_from(&self, source: &str) -> Self {
        Self {
            addr: self.addr,
            source: Some(source.parse().expect("source address")),
        }
    }

    pub async fn query(&self, name: &str, qtype: RecordType) -> Message {
        self.query_over(name, qtype, Transport::Udp).await
    }

    pub async fn query_over(&self, name: &str, qtype: RecordType, transport: Transport) -> Message {
        let name = Name::from_ascii(name).expect("test name is valid");
        let mut request = Message::new(rand::random(), MessageType::Query, OpCode::Query);
        request.metadata.recursion_desired = true;
        request.add_query(Query::query(name, qtype));
        if transport == Transport::Udp {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            request.set_edns(edns);
        }
        let bytes = request.to_vec().expect("encode query");
        let reply = match transport {
            Transport::Udp | Transport::UdpPlain => self.exchange_udp(&bytes).await,
            Transport::Tcp => self.exchange_tcp(&bytes).await,
        };
        let response = Message::from_vec(&reply).expect("decode response");
        assert_eq!(
            response.metadata.id, request.metadata.id,
            "response ID matches"
        );
        response
    }

    /// Asks `name` with the given EDNS version and DO bit (`None`: no EDNS) and class, over
    /// TCP or UDP.
    pub async fn ask(
        &self,
        name: &str,
        qtype: RecordType,
        edns: Option<(u8, bool)>,
        class: DNSClass,
        tcp: bool,
    ) -> Message {
        let mut query = Query::query(Name::from_ascii(name).expect("name"), qtype);
        query.set_query_class(class);
        let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Query);
        message.add_query(query);
        if let Some((version, dnssec_ok)) = edns {
            let mut opt = Edns::new();
            opt.set_max_payload(1232);
            opt.set_version(version);
            opt.set_dnssec_ok(dnssec_ok);
            message.set_edns(opt);
        }
        let bytes = message.to_vec().expect("encode");
        let reply = match tcp {
            true => self.exchange_tcp(&bytes).await,
            false => self.exchange_udp(&bytes).await,
        };
        let reply = Message::from_vec(&reply).expect("decode");
        assert_eq!(reply.metadata.id, message.metadata.id);
        reply
    }

    pub async fn exchange_udp(&self, bytes: &[u8]) -> Vec<u8> {
        let socket = UdpSocket::bind(self.bind_address())
            .await
            .expect("client socket");
        socket.send_to(bytes, self.addr).await.expect("send");
        let mut buf = vec![0u8; 65535];
        let (len, _) = tokio::time::timeout(TIMEOUT, socket.recv_from(&mut buf))
            .await
            .expect("UDP answer within 5 s")
            .expect("receive");
        buf.truncate(len);
        buf
    }

    /// Asks `name` over UDP as a stub resolver does (resolv.conf's `attempts`): the same
    /// question again when no answer came within `wait`, up to `tries` times. Returns the answer
    /// and how many sends it took, or `None` when every try was lost.
    pub async fn query_as_stub(
        &self,
        name: &str,
        qtype: RecordType,
        tries: u32,
        wait: Duration,
    ) -> Option<(Message, u32)> {
        let id = rand::random();
        let bytes = query_bytes(id, name, qtype, Some(1232));
        let socket = UdpSocket::bind(self.bind_address())
            .await
            .expect("client socket");
        let mut buf = vec![0u8; 65535];
        for attempt in 1..=tries {
            socket.send_to(&bytes, self.addr).await.expect("send");
            let deadline = tokio::time::Instant::now() + wait;
            while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await
            {
                let len = received.expect("receive");
                match Message::from_vec(&buf[..len]) {
                    Ok(answer) if answer.metadata.id == id => return Some((answer, attempt)),
                    _ => continue,
                }
            }
        }
        None
    }

    fn bind_address(&self) -> SocketAddr {
        match (self.source, self.addr.is_ipv4()) {
            (Some(source), _) => SocketAddr::new(source, 0),
            (None, true) => "127.0.0.1:0".parse().expect("addr"),
            (None, false) => "[::1]:0".parse().expect("addr"),
        }
    }

    pub async fn exchange_tcp(&self, bytes: &[u8]) -> Vec<u8> {
        let work = async {
            let mut stream = match self.source {
                Some(source) => {
                    let socket = match source {
                        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
                    }
                    .expect("socket");
                    socket
                        .bind(SocketAddr::new(source, 0))
                        .expect("bind the source");
                    socket.connect(self.addr).await.expect("connect")
                }
                None => TcpStream::connect(self.addr).await.expect("connect"),
            };
            write_framed(&mut stream, bytes).await.expect("write");
            read_framed(&mut stream)
                .await
                .expect("an answer before the server closed")
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .expect("TCP answer within 5 s")
    }

    /// The addresses in the answer of an A (or AAAA) question, sorted.
    pub async fn addresses(&self, name: &str, qtype: RecordType) -> Vec<IpAddr> {
        let response = self.query(name, qtype).await;
        let mut ips: Vec<IpAddr> = response
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        ips.sort();
        ips
    }

    pub async fn rcode(&self, name: &str, qtype: RecordType) -> ResponseCode {
        self.query(name, qtype).await.metadata.response_code
    }
}

/// A query message as bytes, with EDNS advertising `edns_size` when given.
pub fn query_bytes(id: u16, name: &str, qtype: RecordType, edns_size: Option<u16>) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(
        Name::from_ascii(name).expect("test name is valid"),
        qtype,
    ));
    if let Some(size) = edns_size {
        let mut edns = Edns::new();
        edns.set_max_payload(size);
        message.set_edns(edns);
    }
    message.to_vec().expect("encode query")
}

/// Writes one message with its two length bytes (RFC 1035 4.2.2).
pub async fn write_framed(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len()).expect("message fits");
    stream
        .write_all(&[&len.to_be_bytes()[..], message].concat())
        .await
}

/// Reads one length-prefixed message; `None` when the server closed the connection.
pub async fn read_framed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("test IP")
}

/// A record as text to compare answers by: owner in lower case, TTL, type and data. `data`
/// may spell a record's data its own way (`None`: the default, where the SOA leaves out its
/// serial, the clock's second, which may tick between two answers).
pub fn comparable(record: &Record, data: impl Fn(&RData) -> Option<String>) -> String {
    let data = data(&record.data).unwrap_or_else(|| match &record.data {
        RData::SOA(soa) => format!(
            "{} {} {} {} {} {}",
            soa.mname, soa.rname, soa.refresh, soa.retry, soa.expire, soa.minimum
        ),
        other => other.to_string().to_ascii_lowercase(),
    });
    let name = record.name.to_string().to_ascii_lowercase();
    format!("{name} {} {} {data}", record.ttl, record.record_type())
}

/// The records of a section as sorted [`comparable`] texts (answers rotate), without OPT.
pub fn sorted_section(records: &[Record], data: impl Fn(&RData) -> Option<String>) -> Vec<String> {
    let mut texts: Vec<String> = records
        .iter()
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(|r| comparable(r, &data))
        .collect();
    texts.sort();
    texts
}

/// `count` questions `question` sent over UDP from `source` at about 2,000 a second; how many
/// were answered with data (an answer section).
pub fn answered_of(server: SocketAddr, source: &str, question: &[u8], count: usize) -> usize {
    let socket = std::net::UdpSocket::bind((source, 0)).expect("client socket");
    socket.set_nonblocking(true).expect("nonblocking");
    let mut answered = 0;
    let mut buf = [0u8; 1500];
    let mut drain = |answered: &mut usize| {
        while let Ok(len) = socket.recv(&mut buf) {
            if Message::from_vec(&buf[..len]).is_ok_and(|m| !m.answers.is_empty()) {
                *answered += 1;
            }
        }
    };
    for _ in 0..count {
        let _ = socket.send_to(question, server);
        std::thread::sleep(Duration::from_micros(500));
        drain(&mut answered);
    }
    std::thread::sleep(Duration::from_millis(300));
    drain(&mut answered);
    answered
}
