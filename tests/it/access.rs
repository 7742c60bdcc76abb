//! Who may ask and what they see, from several client networks (sockets bound to 127.0.0.x
//! and 127.0.1.x): `--allow-query` refuses clients outside its networks on UDP and TCP; an
//! instance whose `dns-allow` metadata names networks exists only for clients in them, across
//! every name form (A, SRV and its additionals, tag, RFC 2782, `.connect`, `.ingress`, prepared
//! query, PTR); an unreadable rule hides the instance from everyone and is logged once.

use std::{net::IpAddr, time::Duration};

use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};
use serde_json::{Value, json};

use crate::support::{
    ConsulAgent, DnsClient,
    binary::BridgeBinary,
    dns::{Transport, ip},
    wait_until,
};

/// A service instance with `meta`, registered on the agent's node with a passing TTL check.
fn instance(name: &str, id: &str, address: &str, tags: &[&str], meta: Value) -> Value {
    json!({
        "Name": name, "ID": id, "Address": address, "Port": 8080, "Tags": tags, "Meta": meta,
        "Check": {"TTL": "1h", "Status": "passing"}
    })
}

async fn fixture(consul: &ConsulAgent) {
    let only_9 = json!({"dns-allow": "127.0.0.9/32, 10.250.0.0/16"});
    for body in [
        instance("web", "web1", "10.1.0.1", &["v1"], json!({})),
        instance("web", "web2", "10.1.0.2", &["v2"], only_9.clone()),
        instance(
            "web",
            "web3",
            "10.1.0.3",
            &["v2"],
            json!({"dns-allow": "everyone"}),
        ),
        instance("secret", "secret1", "10.2.0.1", &[], only_9.clone()),
        json!({
            "Kind": "connect-proxy", "Name": "web-proxy", "ID": "web-proxy1",
            "Address": "10.1.5.1", "Port": 21000, "Meta": only_9.clone(),
            "Proxy": {"DestinationServiceName": "web", "LocalServicePort": 8080},
            "Check": {"TTL": "1h", "Status": "passing"}
        }),
        json!({
            "Kind": "ingress-gateway", "Name": "ingress", "ID": "ingress1",
            "Address": "10.1.7.1", "Port": 8443, "Meta": only_9,
            "Check": {"TTL": "1h", "Status": "passing"}
        }),
    ] {
        consul.put("/v1/agent/service/register", body).await;
    }
    consul.expose_through_ingress("ingress", "web").await;
    consul
        .create_query(json!({"Name": "webq", "Service": {"Service": "web"}}))
        .await;
}

/// The addresses of A answers, or of the additional section's A records for SRV.
async fn seen(dns: &DnsClient, name: &str, qtype: RecordType) -> (ResponseCode, Vec<IpAddr>) {
    let answer = dns.query_over(name, qtype, Transport::Udp).await;
    let records = match qtype {
        RecordType::SRV => &answer.additionals,
        _ => &answer.answers,
    };
    let mut ips: Vec<IpAddr> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    (answer.metadata.response_code, ips)
}

async fn ptr(dns: &DnsClient, name: &str) -> Option<String> {
    let answer = dns.query(name, RecordType::PTR).await;
    answer.answers.iter().find_map(|r| match &r.data {
        RData::PTR(target) => Some(target.0.to_string()),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_only_what_their_network_may() {
    let consul = ConsulAgent::start().await;
    fixture(&consul).await;
    let bridge = BridgeBinary::start(
        &consul.http_url(),
        &["--allow-query", "127.0.0.0/24"],
        &[],
        "web.service.consul.",
    )
    .await;
    let (everyone, nine, outside) = (
        bridge.dns.asked_from("127.0.0.1"),
        bridge.dns.asked_from("127.0.0.9"),
        bridge.dns.asked_from("127.0.1.1"),
    );
    let ok = ResponseCode::NoError;
    let nx = ResponseCode::NXDomain;
    for (name, qtype, for_everyone, for_nine) in [
        (
            "web.service.consul.",
            RecordType::A,
            (ok, vec!["10.1.0.1"]),
            (ok, vec!["10.1.0.1", "10.1.0.2"]),
        ),
        (
            "web.service.consul.",
            RecordType::SRV,
            (ok, vec!["10.1.0.1"]),
            (ok, vec!["10.1.0.1", "10.1.0.2"]),
        ),
        (
            "v2.web.service.consul.",
            RecordType::A,
            (nx, vec![]),
            (ok, vec!["10.1.0.2"]),
        ),
        (
            "_web._v2.service.consul.",
            RecordType::SRV,
            (nx, vec![]),
            (ok, vec!["10.1.0.2"]),
        ),
        (
            "secret.service.consul.",
            RecordType::A,
            (nx, vec![]),
            (ok, vec!["10.2.0.1"]),
        ),
        (
            "web.connect.consul.",
            RecordType::A,
            (nx, vec![]),
            (ok, vec!["10.1.5.1"]),
        ),
        (
            "web.ingress.consul.",
            RecordType::A,
            (nx, vec![]),
            (ok, vec!["10.1.7.1"]),
        ),
        (
            "webq.query.consul.",
            RecordType::A,
            (ok, vec!["10.1.0.1"]),
            (ok, vec!["10.1.0.1", "10.1.0.2"]),
        ),
    ] {
        for (client, (rcode, ips), who) in [
            (&everyone, for_everyone, "127.0.0.1"),
            (&nine, for_nine, "127.0.0.9"),
        ] {
            let expected: Vec<IpAddr> = ips.iter().map(|a| ip(a)).collect();
            let got = seen(client, name, qtype).await;
            assert_eq!(got, (rcode, expected), "{name} {qtype} from {who}");
        }
    }
    // Reverse lookups name a service only to clients that see an instance at the address.
    assert_eq!(
        ptr(&everyone, "1.0.1.10.in-addr.arpa.").await.as_deref(),
        Some("web.service.dc1.consul.")
    );
    assert_eq!(ptr(&everyone, "2.0.1.10.in-addr.arpa.").await, None);
    assert_eq!(
        ptr(&nine, "2.0.1.10.in-addr.arpa.").await.as_deref(),
        Some("web.service.dc1.consul.")
    );
    assert_eq!(ptr(&everyone, "1.0.2.10.in-addr.arpa.").await, None);
    // web3's rule is unreadable: no one sees it, and the log says so once.
    for client in [&everyone, &nine] {
        let (_, ips) = seen(client, "web.service.consul.", RecordType::A).await;
        assert!(!ips.contains(&ip("10.1.0.3")));
    }
    let warned = "visibility rule is not a list of networks";
    wait_until(
        "the unreadable rule in the log",
        Duration::from_secs(5),
        async || bridge.log().contains(warned),
    )
    .await;
    assert_eq!(bridge.log().matches(warned).count(), 1, "{}", bridge.log());

    // Outside --allow-query: REFUSED over UDP (a fast-path question) and TCP, nothing else.
    for transport in [Transport::Udp, Transport::UdpPlain, Transport::Tcp] {
        let answer = outside
            .query_over("web.service.consul.", RecordType::A, transport)
            .await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::Refused,
            "{transport:?}"
        );
        assert!(answer.answers.is_empty());
    }
    let answer = outside
        .query("1.0.1.10.in-addr.arpa.", RecordType::PTR)
        .await;
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
}
