//! EDNS Client Subnet from trusted forwarders (RFC 7871, `--trust-client-subnet`): behind one
//! Debian dnsmasq (`--add-subnet=24`), clients of two networks (sockets bound to 127.1.0.5 and
//! 127.2.0.5) see the instances their network's `dns-allow` rule names, as if they asked the
//! bridge themselves; the answer carries the rule's prefix as scope (0 when no rule shaped it);
//! a source that is not trusted gets nothing more for claiming a subnet, and no option back;
//! a trusted forwarder's malformed option is FORMERR; rate limiting keys on the reported
//! subnet.

use std::{net::IpAddr, time::Duration};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{
        Name, RData, RecordType,
        rdata::opt::{ClientSubnet, EdnsCode, EdnsOption},
    },
    serialize::binary::BinEncodable,
};
use serde_json::json;

use consul_dns_bridge::Bridge;

use crate::support::{
    ConsulAgent, DnsClient, dnsmasq::Dnsmasq, metric, run_tool, start_bridge, wait_until,
};

/// An agent holding the fixture, and a bridge trusting 127.0.0.1 that answers `app` already.
async fn trusting_bridge() -> (ConsulAgent, Bridge, DnsClient) {
    let consul = ConsulAgent::start().await;
    fixture(&consul).await;
    let (bridge, dns) = start_bridge(&consul, &["--trust-client-subnet", "127.0.0.1"]).await;
    wait_until("app answered", Duration::from_secs(10), || async {
        dns.rcode("app.service.consul.", RecordType::A).await == ResponseCode::NoError
    })
    .await;
    (consul, bridge, dns)
}

/// `app`: one instance for each of two client networks, one for everyone; `plain`: no rule.
async fn fixture(consul: &ConsulAgent) {
    for (name, id, address, rule) in [
        ("app", "app1", "10.1.0.1", Some("127.1.0.0/16")),
        ("app", "app2", "10.2.0.1", Some("127.2.0.0/16, fd00::/8")),
        ("app", "app3", "10.3.0.1", None),
        ("plain", "plain1", "10.4.0.1", None),
    ] {
        let meta = match rule {
            Some(rule) => json!({"dns-allow": rule}),
            None => json!({}),
        };
        let body = json!({
            "Name": name, "ID": id, "Address": address, "Port": 80, "Meta": meta,
            "Check": {"TTL": "1h", "Status": "passing"}
        });
        consul.put("/v1/agent/service/register", body).await;
    }
}

fn addresses(answer: &Message) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter()
        .map(|ip| ip.parse().expect("an address"))
        .collect()
}

/// An A question for `name` carrying `subnet`, as a forwarder sends it.
fn question(name: &str, subnet: ClientSubnet) -> Vec<u8> {
    let mut message = Message::new(0x5ec5, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("a name"),
        RecordType::A,
    ));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.options_mut().insert(EdnsOption::Subnet(subnet));
    message.set_edns(edns);
    message.to_bytes().expect("encode")
}

async fn ask(dns: &DnsClient, name: &str, subnet: ClientSubnet) -> Message {
    let answer = dns.exchange_udp(&question(name, subnet)).await;
    Message::from_vec(&answer).expect("an answer")
}

/// The client subnet option of `answer`, if it has one.
fn subnet_of(answer: &Message) -> Option<ClientSubnet> {
    match answer.edns.as_ref()?.options().get(EdnsCode::Subnet)? {
        EdnsOption::Subnet(subnet) => Some(*subnet),
        _ => None,
    }
}

fn subnet(address: &str, prefix: u8) -> ClientSubnet {
    ClientSubnet::new(address.parse().expect("an address"), prefix, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_networks_behind_one_dnsmasq_see_their_own_instances() {
    // dnsmasq asks from 127.0.0.1: the only forwarder trusted.
    let (consul, _bridge, dns) = trusting_bridge().await;
    let dnsmasq = Dnsmasq::start(&[
        format!("--server=/consul/127.0.0.1#{}", dns.addr.port()),
        "--add-subnet=24".into(),
    ])
    .await;
    let through = DnsClient::new(dnsmasq.addr);
    let expected = [
        ("127.1.0.5", ips(&["10.1.0.1", "10.3.0.1"])),
        ("127.2.0.5", ips(&["10.2.0.1", "10.3.0.1"])),
        ("127.3.0.5", ips(&["10.3.0.1"])),
    ];
    // Interleaved, more than once: what one network saw is never served to another.
    for round in 0..3 {
        for (source, want) in &expected {
            let answer = through
                .asked_from(source)
                .query("app.service.consul.", RecordType::A)
                .await;
            assert_eq!(&addresses(&answer), want, "round {round}, from {source}");
        }
    }
    // Without trust, the same dnsmasq's clients all look like dnsmasq: none sees a ruled one.
    let (_untrusting, plain_dns) = start_bridge(&consul, &[]).await;
    let plain = Dnsmasq::start(&[
        format!("--server=/consul/127.0.0.1#{}", plain_dns.addr.port()),
        "--add-subnet=24".into(),
    ])
    .await;
    wait_until("app answered", Duration::from_secs(10), || async {
        plain_dns.rcode("app.service.consul.", RecordType::A).await == ResponseCode::NoError
    })
    .await;
    for (source, _) in &expected {
        let answer = DnsClient::new(plain.addr)
            .asked_from(source)
            .query("app.service.consul.", RecordType::A)
            .await;
        assert_eq!(
            addresses(&answer),
            ips(&["10.3.0.1"]),
            "untrusted, {source}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_is_the_rules_prefix_and_untrusted_claims_are_ignored() {
    let (_consul, _bridge, dns) = trusting_bridge().await;
    let dig = |source: &str, claim: &str, name: &str| {
        let (name, extra) = name.split_once(' ').unwrap_or((name, "+notcp"));
        let args = [
            format!("@{}", dns.addr.ip()),
            "-p".into(),
            dns.addr.port().to_string(),
            "-b".into(),
            source.into(),
            "+tries=1".into(),
            "+time=5".into(),
            format!("+subnet={claim}"),
            extra.into(),
            name.into(),
        ];
        run_tool("dig", args.to_vec())
    };
    // Trusted: the subnet decides, and the scope says for how much of it (the longest prefix
    // of the IPv4 rules: 16), or 0 where no rule shaped the answer.
    let trusted = dig("127.0.0.1", "127.1.0.0/24", "app.service.consul")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        trusted.contains("CLIENT-SUBNET: 127.1.0.0/24/16"),
        "{trusted}"
    );
    assert!(
        trusted.contains("10.1.0.1") && trusted.contains("10.3.0.1"),
        "{trusted}"
    );
    assert!(!trusted.contains("10.2.0.1"), "{trusted}");
    let plain = dig("127.0.0.1", "127.1.0.0/24", "plain.service.consul")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(plain.contains("CLIENT-SUBNET: 127.1.0.0/24/0"), "{plain}");
    // A subnet wider than a rule's network is not inside it.
    let wide = dig("127.0.0.1", "127.0.0.0/8", "app.service.consul")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(wide.contains("CLIENT-SUBNET: 127.0.0.0/8/16"), "{wide}");
    assert!(
        !wide.contains("10.1.0.1") && !wide.contains("10.2.0.1"),
        "{wide}"
    );
    // Untrusted: who it is decides, whatever it claims, and the claim is not answered.
    let untrusted = dig("127.3.0.5", "127.1.0.0/24", "app.service.consul")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(untrusted.contains("10.3.0.1"), "{untrusted}");
    assert!(!untrusted.contains("10.1.0.1"), "{untrusted}");
    assert!(!untrusted.contains("CLIENT-SUBNET"), "{untrusted}");
    // The same over TCP (the gate's access check, not the transport's, decides).
    let over_tcp = dig("127.0.0.1", "127.2.0.0/24", "app.service.consul +tcp")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(over_tcp.contains("10.2.0.1"), "{over_tcp}");

    // Malformed (address bits past the prefix; a scope in a query): FORMERR from a trusted
    // forwarder; from anyone else the option is not read.
    for bad in [
        ClientSubnet::new("127.1.0.0".parse().expect("ip"), 12, 0),
        ClientSubnet::new("127.1.0.0".parse().expect("ip"), 24, 8),
    ] {
        let answer = ask(&dns, "app.service.consul.", bad).await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::FormErr,
            "{bad:?}"
        );
        let answer = ask(&dns.asked_from("127.3.0.5"), "app.service.consul.", bad).await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NoError,
            "{bad:?}"
        );
        assert_eq!(subnet_of(&answer), None);
    }
    let answer = ask(&dns, "app.service.consul.", subnet("127.2.0.0", 24)).await;
    assert_eq!(addresses(&answer), ips(&["10.2.0.1", "10.3.0.1"]));
    assert_eq!(
        subnet_of(&answer),
        Some(ClientSubnet::new("127.2.0.0".parse().expect("ip"), 24, 16))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_keys_on_the_reported_subnet() {
    let consul = ConsulAgent::start().await;
    fixture(&consul).await;
    let options = [
        "--trust-client-subnet",
        "127.0.0.1",
        "--rrl-exempt",
        "none",
        "--rrl-ratelimit",
        "5",
        "--rrl-slip",
        "0",
        "--http-listen",
        "127.0.0.1:0",
    ];
    let (bridge, dns) = start_bridge(&consul, &options).await;
    wait_until("plain answered", Duration::from_secs(10), || async {
        dns.rcode("plain.service.consul.", RecordType::A).await == ResponseCode::NoError
    })
    .await;
    // Let the bucket the wait used refill.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dropped_so_far = || async {
        metric(&bridge, "rate_limited_total{action=\"dropped\"}")
            .await
            .unwrap_or(0.0)
    };
    let before = dropped_so_far().await;
    // One forwarder, two client networks: 100 questions from the first exhaust its budget;
    // the second still gets its whole budget.
    let (first, second) = (subnet("127.1.0.0", 24), subnet("127.2.0.0", 24));
    let flood = question("plain.service.consul.", first);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for _ in 0..100 {
        socket.send_to(&flood, dns.addr).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dropped = dropped_so_far().await - before;
    assert!(
        dropped >= 80.0,
        "the first network's flood was limited: {dropped} dropped"
    );
    let answered = {
        let mut answered = 0;
        for _ in 0..4 {
            let answer = ask(&dns, "plain.service.consul.", second).await;
            answered += usize::from(answer.metadata.response_code == ResponseCode::NoError);
        }
        answered
    };
    assert_eq!(answered, 4, "the second network has its own budget");
}

/// What a test compares of an answer: its code, its records and the client subnet it carries.
fn summary(bytes: &[u8]) -> String {
    let answer = Message::from_vec(bytes).expect("an answer");
    let mut records: Vec<String> = answer
        .answers
        .iter()
        .chain(&answer.additionals)
        .map(|r| format!("{} {} {}", r.name, r.ttl, r.data))
        .collect();
    records.sort();
    format!(
        "{:?} {records:?} {:?}",
        answer.metadata.response_code,
        subnet_of(&answer)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_forwarders_questions_take_the_fast_path_with_the_same_answers() {
    let (_consul, bridge, dns) = trusting_bridge().await;
    wait_until("plain answered", Duration::from_secs(10), || async {
        dns.rcode("plain.service.consul.", RecordType::A).await == ResponseCode::NoError
    })
    .await;
    let before = bridge.fast_answers();
    let mut compared = 0;
    for claim in [
        subnet("127.1.0.0", 24),
        subnet("127.2.0.0", 16),
        subnet("127.0.0.0", 8),
        subnet("fd00::", 56),
    ] {
        for name in [
            "app.service.consul.",
            "plain.service.consul.",
            "nope.service.consul.",
        ] {
            let asked = question(name, claim);
            let fast = dns.exchange_udp(&asked).await;
            let general = dns.exchange_tcp(&asked).await;
            assert_eq!(summary(&fast), summary(&general), "{name} {claim:?}");
            compared += 1;
        }
    }
    let fast = bridge.fast_answers() - before;
    println!("{compared} questions with a client subnet: {fast} from the fast path");
    assert_eq!(fast, compared, "every one took the fast path");
    // What the fast path answered: the subnet decided, with the rules' prefix as scope.
    let answer = Message::from_vec(
        &dns.exchange_udp(&question("app.service.consul.", subnet("127.1.0.0", 24)))
            .await,
    )
    .expect("an answer");
    assert_eq!(addresses(&answer), ips(&["10.1.0.1", "10.3.0.1"]));
    assert_eq!(
        subnet_of(&answer),
        Some(ClientSubnet::new("127.1.0.0".parse().expect("ip"), 24, 16))
    );
}
