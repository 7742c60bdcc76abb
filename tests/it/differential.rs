//! The bridge must answer as Consul's own DNS does for the same catalog: the same RCODE and the
//! same records in every section (order ignored; SRV compared by priority, weight, port and the
//! address its target resolves to; the SOA by everything but its serial, which is the clock).
//!
//! Two datacenters: dc1 (the agent the bridge uses) and dc2, a second dev agent on 127.0.0.2
//! with the same ports, joined over the WAN; prepared queries in both, one failing over from
//! dc1 to dc2.

use std::collections::BTreeSet;

use crate::support::{
    ConsulAgent, DnsClient,
    consul::service,
    dns::{Transport, comparable},
    start_bridge,
};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{DNSClass, RData, Record, RecordType},
};
use serde_json::json;

async fn fixture(consul: &ConsulAgent) {
    consul
        .register(
            service("web", "web1", "10.1.0.1")
                .port(8080)
                .tags(&["v1", "Primary"]),
        )
        .await;
    consul
        .register(
            service("web", "web2", "10.1.0.2")
                .port(8081)
                .tags(&["v2", "udp"]),
        )
        .await;
    consul
        .register(
            service("web", "web3", "10.1.0.3")
                .port(8082)
                .tags(&["v1"])
                .warning(),
        )
        .await;
    consul
        .register(service("web", "web4", "10.1.0.4").port(8083).critical())
        .await;
    consul.register(service("db", "db1", "").port(5432)).await;
    consul
        .register(service("v6", "v61", "fd00::1").port(80))
        .await;
    consul
        .register(service("mixed", "mixed1", "10.6.0.1").port(81))
        .await;
    consul
        .register(service("mixed", "mixed2", "fd00::6").port(82))
        .await;
    consul
        .register(service("dead", "dead1", "10.7.0.1").critical())
        .await;
    consul
        .register(service("warned", "warned1", "10.7.0.2").warning())
        .await;
    consul
        .register_external(
            "ext1",
            "10.2.0.1",
            None,
            service("ext", "ext1", "").port(9000).tags(&["a.b"]),
        )
        .await;
    consul
        .register_external(
            "ext2",
            "10.2.0.2",
            Some("critical"),
            service("ext", "ext2", "10.2.0.22").port(9001),
        )
        .await;
    consul
        .register_external(
            "ext3",
            "fd00::23",
            None,
            service("ext6", "ext3", "").port(9002),
        )
        .await;
    // A Connect proxy for web (what `web.connect` answers with), and a Connect-native instance.
    consul
        .put(
            "/v1/agent/service/register",
            json!({
                "Kind": "connect-proxy", "Name": "web-proxy", "ID": "web-proxy1",
                "Address": "10.1.5.1", "Port": 21000,
                "Proxy": {"DestinationServiceName": "web", "LocalServicePort": 8080},
                "Check": {"TTL": "1h", "Status": "passing"}
            }),
        )
        .await;
    consul
        .put(
            "/v1/agent/service/register",
            json!({
                "Name": "native", "ID": "native1", "Address": "10.1.6.1", "Port": 443,
                "Connect": {"Native": true}, "Check": {"TTL": "1h", "Status": "passing"}
            }),
        )
        .await;
    // An ingress gateway exposing web (what `web.ingress` answers with).
    consul.expose_through_ingress("ingress", "web").await;
    consul
        .put(
            "/v1/agent/service/register",
            json!({
                "Kind": "ingress-gateway", "Name": "ingress", "ID": "ingress1",
                "Address": "10.1.7.1", "Port": 8443, "Check": {"TTL": "1h", "Status": "passing"}
            }),
        )
        .await;
    // A node whose address is a host name: Consul answers its A question with a CNAME.
    consul
        .register_external(
            "exth",
            "db.example.com",
            None,
            service("exths", "exth1", "10.8.8.8").port(9003),
        )
        .await;
}

/// dc2's catalog: some of dc1's names with other addresses, and the instance dc1's `failsvc`
/// fails over to.
async fn fixture_dc2(dc2: &ConsulAgent) {
    dc2.register(service("web", "web9", "10.9.0.1").port(8090).tags(&["v1"]))
        .await;
    dc2.register(service("web", "web10", "10.9.0.2").port(8091))
        .await;
    dc2.register(service("failsvc", "fail2", "10.9.1.1").port(7000))
        .await;
    dc2.register(service("v6", "v69", "fd00::99").port(80))
        .await;
    dc2.register_external(
        "ext9",
        "10.9.2.1",
        None,
        service("ext", "ext9", "").port(9009),
    )
    .await;
}

/// Prepared queries of dc1 (and one of dc2); returns the ID of `webq`, asked for by ID too.
async fn queries(dc1: &ConsulAgent, dc2: &ConsulAgent) -> String {
    dc1.register(service("failsvc", "fail1", "10.1.9.1").critical())
        .await;
    let id = dc1
        .create_query(json!({"Name": "webq", "Service": {"Service": "web"}}))
        .await;
    dc1.create_query(json!({"Name": "webp", "Service": {"Service": "web", "OnlyPassing": true}}))
        .await;
    dc1.create_query(json!({
        "Name": "webtag", "Service": {"Service": "web", "Tags": ["v1"]}, "DNS": {"TTL": "7s"}
    }))
    .await;
    dc1.create_query(json!({
        "Name": "failq",
        "Service": {"Service": "failsvc", "Failover": {"Datacenters": ["dc2"]}}
    }))
    .await;
    dc1.create_query(json!({
        "Name": "nearq", "Service": {"Service": "failsvc", "Failover": {"NearestN": 1}}
    }))
    .await;
    dc1.create_query(json!({"Name": "v6q", "Service": {"Service": "v6"}}))
        .await;
    dc1.create_query(json!({
        "Name": "tmpl-", "Template": {"Type": "name_prefix_match"},
        "Service": {"Service": "${name.suffix}"}
    }))
    .await;
    dc2.create_query(json!({"Name": "dc2q", "Service": {"Service": "web"}}))
        .await;
    id
}

/// Names of the second datacenter and of prepared queries.
fn names_of_dc2_and_queries(query_id: &str) -> Vec<String> {
    let mut names: Vec<String> = [
        "web.service.dc2.consul.",
        "v1.web.service.dc2.consul.",
        "_web._tcp.service.dc2.consul.",
        "_web._tcp.consul.",
        "_web._v1.dc2.consul.",
        "failsvc.service.consul.",
        "failsvc.service.dc2.consul.",
        "v6.service.dc2.consul.",
        "ext.service.dc2.consul.",
        "node-dc2.node.dc2.consul.",
        "ext9.node.dc2.consul.",
        "ext1.node.dc2.consul.",
        "0a090001.addr.dc2.consul.",
        "fd000000000000000000000000000099.addr.dc2.consul.",
        "web.connect.consul.",
        "v1.web.connect.consul.",
        "WEB.connect.dc1.consul.",
        "native.connect.consul.",
        "db.connect.consul.",
        "nope.connect.consul.",
        "web.connect.dc2.consul.",
        "web.connect.dc9.consul.",
        "web.ingress.consul.",
        "v1.web.ingress.dc1.consul.",
        "db.ingress.consul.",
        "nope.ingress.consul.",
        "web.ingress.dc2.consul.",
        "webq.query.consul.",
        "WebQ.Query.dc1.consul.",
        "webp.query.consul.",
        "webtag.query.consul.",
        "failq.query.consul.",
        "nearq.query.consul.",
        "v6q.query.consul.",
        "tmpl-web.query.consul.",
        "tmpl-nope.query.consul.",
        "nope.query.consul.",
        "x.webq.query.consul.",
        "webq.query.dc9.consul.",
        "dc2q.query.dc2.consul.",
        "webq.query.dc2.consul.",
        "query.consul.",
        "1.0.9.10.in-addr.arpa.",
    ]
    .map(String::from)
    .to_vec();
    names.push(format!("{query_id}.query.consul."));
    names
}

const NAMES: &[&str] = &[
    "web.service.consul.",
    "WeB.SeRvIcE.CoNsUl.",
    "v1.web.service.consul.",
    "primary.web.service.consul.",
    "v2.web.service.dc1.consul.",
    "zz.web.service.consul.",
    "_web._tcp.service.consul.",
    "_web._v1.service.consul.",
    "_web._udp.service.consul.",
    "_web.v1.service.consul.",
    "web.service.dc1.consul.",
    "web.service.dc9.consul.",
    "web.service.dc1.extra.consul.",
    "db.service.consul.",
    "v6.service.consul.",
    "mixed.service.consul.",
    "ext.service.consul.",
    "a.b.ext.service.consul.",
    "ext6.service.consul.",
    "dead.service.consul.",
    "warned.service.consul.",
    "nope.service.consul.",
    // The SRV targets handed out for service addresses, and broken variants of them.
    "0a010001.addr.dc1.consul.",
    "0A010001.ADDR.dc1.consul.",
    "0a010001.addr.consul.",
    "0a010001.addr.dc9.consul.",
    "fd000000000000000000000000000001.addr.dc1.consul.",
    "0a0100.addr.dc1.consul.",
    "0a01000.addr.dc1.consul.",
    "0a0100011.addr.dc1.consul.",
    "zz010001.addr.dc1.consul.",
    "x.0a010001.addr.dc1.consul.",
    // Nodes: the harness agent's own (with Consul's segment meta), external ones with meta, an
    // IPv6 one, a host-name one, unknown ones.
    "node1.node.consul.",
    "NODE1.node.dc1.consul.",
    "ext1.node.consul.",
    "ext3.node.consul.",
    "exth.node.consul.",
    "nope.node.consul.",
    "x.ext1.node.consul.",
    "ext1.node.dc9.consul.",
    // Reverse lookups: node addresses (IPv4 and IPv6), a service address, no match, partial.
    "1.0.0.127.in-addr.arpa.",
    "1.0.2.10.in-addr.arpa.",
    "1.0.1.10.in-addr.arpa.",
    "3.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
    // The IPv6 service address of `v6` (fd00::1).
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
    "9.9.9.10.in-addr.arpa.",
    "0.2.10.in-addr.arpa.",
    // Names above the records: the domain, kinds, datacenters (dc9 is unknown).
    "service.consul.",
    "node.consul.",
    "dc1.consul.",
    "query.dc1.consul.",
    "dc9.consul.",
    "foo.consul.",
    "consul.",
];

const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::ANY,
    RecordType::MX,
    RecordType::CNAME,
    RecordType::NS,
    RecordType::SOA,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_answers_equal_consuls_own_dns() {
    let consul = ConsulAgent::start().await;
    let dc2 = ConsulAgent::start_wan_peer(&consul, [127, 0, 0, 2], "dc2").await;
    fixture(&consul).await;
    fixture_dc2(&dc2).await;
    let query_id = queries(&consul, &dc2).await;
    let (bridge, ours) = start_bridge(&consul, &[]).await;
    let theirs = DnsClient::new(consul.dns);
    let mut names: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    names.extend(names_of_dc2_and_queries(&query_id));

    // The fixture must give Consul something to answer, or equal answers prove nothing.
    for (name, expected) in [
        ("web.service.dc2.consul.", "10.9.0."),
        ("webq.query.consul.", "10.1.0.3"),
        ("failq.query.consul.", "10.9.1.1"),
        ("nearq.query.consul.", "10.9.1.1"),
        ("dc2q.query.dc2.consul.", "10.9.0."),
        ("tmpl-web.query.consul.", "10.1.0."),
        ("web.connect.consul.", "10.1.5.1"),
        ("native.connect.consul.", "10.1.6.1"),
        ("web.ingress.consul.", "10.1.7.1"),
    ] {
        let answer = theirs.query(name, RecordType::A).await;
        let text: Vec<String> = answer.answers.iter().map(|r| r.data.to_string()).collect();
        assert!(
            text.iter().any(|a| a.starts_with(expected)),
            "Consul's own answer for {name}: {text:?}, expected {expected}*"
        );
    }

    settle(&ours, names.iter().map(String::as_str)).await;
    let mut compared = 0;
    let mut differences = Vec::new();
    let mut deliberate = 0;
    for transport in [Transport::Udp, Transport::Tcp] {
        for name in &names {
            for qtype in TYPES {
                let expected = theirs.query_over(name, *qtype, transport).await;
                let got = ours.query_over(name, *qtype, transport).await;
                compared += 1;
                let (mut expected, got) = (normalize(&expected), normalize(&got));
                if names_without_records(name, &mut expected) {
                    deliberate += 1;
                }
                if expected != got {
                    differences.push(format!(
                        "{name} {qtype} over {transport:?}:\n  consul: {expected:?}\n  bridge: {got:?}"
                    ));
                }
            }
        }
    }
    println!(
        "differential: {compared} queries compared, {} different, {deliberate} of them the \
         deliberate NODATA for names without records",
        differences.len()
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    assert!(deliberate > 0, "the names without records were asked");
    deliberate_protocol_differences(&theirs, &ours).await;
    bridge.shutdown().await;
}

/// Current Consul's labelled datacenter (`web.service.dc2.dc.consul`) answers as its legacy
/// twin (`web.service.dc2.consul`), which equals Consul's own answer to the twin. Consul 1.8.7
/// itself does not know the labelled form (NXDOMAIN); the bridge answers it on every agent. The
/// forms 1.8.7 does not know and the bridge gives 1.8.7's answer to (peers, namespaces,
/// sameness groups, named ports, virtual IPs) equal Consul's own answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_datacenter_names_answer_as_their_legacy_twins() {
    let consul = ConsulAgent::start().await;
    let dc2 = ConsulAgent::start_wan_peer(&consul, [127, 0, 0, 2], "dc2").await;
    fixture(&consul).await;
    fixture_dc2(&dc2).await;
    let (bridge, ours) = start_bridge(&consul, &[]).await;
    let theirs = DnsClient::new(consul.dns);
    let twins = [
        ("web.service.dc2.dc.consul.", "web.service.dc2.consul."),
        (
            "v1.web.service.dc2.dc.consul.",
            "v1.web.service.dc2.consul.",
        ),
        (
            "_web._tcp.service.dc2.dc.consul.",
            "_web._tcp.service.dc2.consul.",
        ),
        ("_web._v1.dc2.dc.consul.", "_web._v1.dc2.consul."),
        ("v6.service.dc2.dc.consul.", "v6.service.dc2.consul."),
        ("ext.service.dc2.dc.consul.", "ext.service.dc2.consul."),
        ("ext9.node.dc2.dc.consul.", "ext9.node.dc2.consul."),
        ("nope.service.dc2.dc.consul.", "nope.service.dc2.consul."),
        ("web.service.dc1.dc.consul.", "web.service.dc1.consul."),
        ("web.connect.dc1.dc.consul.", "web.connect.dc1.consul."),
        ("web.ingress.dc1.dc.consul.", "web.ingress.dc1.consul."),
        ("web.service.dc9.dc.consul.", "web.service.dc9.consul."),
    ];
    let legacy: Vec<&str> = twins.iter().map(|(_, legacy)| *legacy).collect();
    settle(&ours, legacy.iter().copied()).await;
    let dc2_web = theirs.query("web.service.dc2.consul.", RecordType::A).await;
    assert_eq!(
        dc2_web.answers.len(),
        2,
        "Consul answers the fixture: {dc2_web:?}"
    );
    let mut compared = 0;
    for (labelled, legacy) in twins {
        for qtype in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::SRV,
            RecordType::TXT,
        ] {
            let consul_twin = normalize(&theirs.query(legacy, qtype).await);
            let bridge_twin = normalize(&ours.query(legacy, qtype).await);
            let mut bridge_labelled = normalize(&ours.query(labelled, qtype).await);
            // The owner name is the question's, as in Consul's answers.
            for section in [
                &mut bridge_labelled.answers,
                &mut bridge_labelled.authorities,
                &mut bridge_labelled.additionals,
            ] {
                *section = section
                    .iter()
                    .map(|r| r.replace(labelled, legacy))
                    .collect();
            }
            assert_eq!(
                bridge_twin, consul_twin,
                "{legacy} {qtype}: bridge vs Consul"
            );
            assert_eq!(
                bridge_labelled, bridge_twin,
                "{labelled} {qtype} vs {legacy}"
            );
            compared += 1;
        }
    }
    let consul_labelled = theirs
        .query("web.service.dc2.dc.consul.", RecordType::A)
        .await;
    assert_eq!(
        consul_labelled.metadata.response_code,
        ResponseCode::NXDomain
    );
    for name in [
        "web.service.p1.peer.consul.",
        "web.service.team.ns.consul.",
        "web.service.sg1.sg.consul.",
        "web.service.grpc.port.consul.",
        "web.virtual.consul.",
        "web.virtual.p1.peer.consul.",
        "n1.node.p1.peer.consul.",
        "web.service.dc2.dc.p1.peer.consul.",
    ] {
        let expected = normalize(&theirs.query(name, RecordType::A).await);
        let got = normalize(&ours.query(name, RecordType::A).await);
        assert_eq!(got, expected, "{name}");
        compared += 1;
    }
    println!("labelled names: {compared} compared, all equal");
    bridge.shutdown().await;
}

/// Whether `name` exists without records of its own: the domain (or the alternative one), a
/// kind, a known datacenter, or a kind in it.
fn without_records(name: &str) -> bool {
    const KINDS: [&str; 6] = ["service", "connect", "ingress", "node", "query", "addr"];
    let known_dc = |label: &str| ["dc1", "dc2"].contains(&label);
    let lower = name.to_ascii_lowercase();
    let Some(inside) = ["consul.", "alt."]
        .iter()
        .find_map(|domain| lower.strip_suffix(domain))
    else {
        return false;
    };
    let labels: Vec<&str> = inside.split('.').filter(|l| !l.is_empty()).collect();
    match labels.as_slice() {
        [] => true,
        [one] => KINDS.contains(one) || known_dc(one),
        [kind, dc] => KINDS.contains(kind) && known_dc(dc),
        _ => false,
    }
}

/// The README's deliberate difference: where Consul answers NXDOMAIN for a name that exists
/// without records (which tells a resolver nothing exists below it), the bridge answers NODATA
/// with the same SOA (RFC 8020). Changes `consul`'s expected answer accordingly; `true` when it
/// did.
fn names_without_records(name: &str, consul: &mut Normalized) -> bool {
    without_records(name) && nodata_for_nxdomain(&mut consul.rcode)
}

/// NXDOMAIN (as text) becomes NOERROR; `true` when it did.
fn nodata_for_nxdomain(rcode: &mut String) -> bool {
    if *rcode == ResponseCode::NXDomain.to_string() {
        *rcode = ResponseCode::NoError.to_string();
        return true;
    }
    false
}

/// The README's deliberate differences in the protocol, each asked of both: Consul answers an
/// unknown EDNS version, drops the DO bit and answers class CH with IN data; the bridge follows
/// RFC 6891, RFC 3225 and answers REFUSED, as NSD does.
async fn deliberate_protocol_differences(consul: &DnsClient, bridge: &DnsClient) {
    let ask = async |client: &DnsClient, edns: Option<(u8, bool)>, class: DNSClass| {
        client
            .ask("web.service.consul.", RecordType::A, edns, class, false)
            .await
    };
    let version_1 = Some((1, false));
    let theirs = ask(consul, version_1, DNSClass::IN).await;
    assert_eq!(theirs.metadata.response_code, ResponseCode::NoError);
    let ours = ask(bridge, version_1, DNSClass::IN).await;
    // BADVERS and BADSIG share the code 16; hickory reads it as the latter.
    assert_eq!(u16::from(ours.metadata.response_code), 16);
    assert_eq!(ours.edns.as_ref().map(|e| e.version()), Some(0));
    assert!(ours.answers.is_empty());

    let dnssec_ok = Some((0, true));
    let theirs = ask(consul, dnssec_ok, DNSClass::IN).await;
    assert!(!theirs.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
    let ours = ask(bridge, dnssec_ok, DNSClass::IN).await;
    assert!(ours.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
    assert!(!ours.answers.is_empty());

    let theirs = ask(consul, None, DNSClass::CH).await;
    assert!(!theirs.answers.is_empty(), "Consul answers CH with IN data");
    let ours = ask(bridge, None, DNSClass::CH).await;
    assert_eq!(ours.metadata.response_code, ResponseCode::Refused);
    assert!(ours.answers.is_empty());
}

/// What must be equal: RCODE, and each section as a set of records written in a form that
/// ignores what may legitimately differ (order, SOA serial, SRV target spelling).
#[derive(Debug, PartialEq, Eq)]
struct Normalized {
    rcode: String,
    truncated: bool,
    answers: BTreeSet<String>,
    authorities: BTreeSet<String>,
    additionals: BTreeSet<String>,
}

fn normalize(message: &Message) -> Normalized {
    let section = |records: &[Record]| records.iter().map(|r| record(r, message)).collect();
    Normalized {
        rcode: message.metadata.response_code.to_string(),
        truncated: message.metadata.truncation,
        answers: section(&message.answers),
        authorities: section(&message.authorities),
        additionals: section(&message.additionals),
    }
}

fn record(record: &Record, message: &Message) -> String {
    comparable(record, |data| match data {
        RData::SRV(srv) => {
            let mut resolved: Vec<String> = message
                .additionals
                .iter()
                .filter(|r| r.name == srv.target && matches!(r.data, RData::A(_) | RData::AAAA(_)))
                .map(|r| r.data.to_string())
                .collect();
            resolved.sort();
            Some(format!(
                "{} {} {} -> {resolved:?}",
                srv.priority, srv.weight, srv.port
            ))
        }
        _ => None,
    })
}

/// Consul's DNS options set alike on both sides (the same values Consul is started with):
/// `service_ttl` by name, prefix and `*`; `node_ttl`; `soa`; `a_record_limit`;
/// `udp_answer_limit` with `enable_truncate`; `alt_domain`; SRV weights for passing and warning
/// instances; repeated instances left out. Limited answers hold a random subset on Consul's side
/// (it shuffles) and a rotating one on ours, so records are compared without their addresses,
/// as a list: the same number of each, the same TTLs, weights, ports and flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_answers_equal_consuls_own_dns_with_consul_dns_options() {
    let consul = ConsulAgent::start_with(
        "dns_config {\n  only_passing = true\n  a_record_limit = 2\n  udp_answer_limit = 2\n  \
         enable_truncate = true\n  node_ttl = \"7s\"\n  \
         service_ttl = { \"*\" = \"5s\", \"web\" = \"30s\", \"we*\" = \"20s\" }\n  \
         soa { refresh = 100, retry = 50, expire = 1000, min_ttl = 9 }\n  \
         disable_compression = true\n}\nalt_domain = \"alt.\"\n",
    )
    .await;
    for i in 1..=6u16 {
        consul
            .register(
                service("web", &format!("web{i}"), &format!("10.1.0.{i}"))
                    .port(8000 + i)
                    .weights(5, 2),
            )
            .await;
    }
    consul
        .register(service("web", "web7", "10.1.0.7").weights(5, 2).warning())
        .await;
    consul.register(service("wex", "wex1", "10.3.0.1")).await;
    consul.register(service("db", "db1", "10.4.0.1")).await;
    // Two instances on one address and port: Consul answers it once.
    consul.register(service("dup", "dup1", "10.5.0.1")).await;
    consul.register(service("dup", "dup2", "10.5.0.1")).await;
    consul
        .create_query(json!({"Name": "webq", "Service": {"Service": "web"}}))
        .await;
    consul
        .create_query(json!({"Name": "dbq", "Service": {"Service": "db"}, "DNS": {"TTL": "3s"}}))
        .await;
    let options = [
        "--service-ttl",
        "*=5s",
        "--service-ttl",
        "web=30s",
        "--service-ttl",
        "we*=20s",
        "--node-ttl",
        "7s",
        "--a-record-limit",
        "2",
        "--udp-answer-limit",
        "2",
        "--enable-truncate",
        "true",
        "--soa-refresh",
        "100",
        "--soa-retry",
        "50",
        "--soa-expire",
        "1000",
        "--soa-min-ttl",
        "9",
        "--alt-domain",
        "alt.",
        "--disable-compression",
        "true",
    ];
    let (bridge, ours) = start_bridge(&consul, &options).await;
    let theirs = DnsClient::new(consul.dns);
    let names = [
        "web.service.consul.",
        "_web._tcp.service.consul.",
        "web.service.alt.",
        "WEB.service.dc1.alt.",
        "wex.service.consul.",
        "db.service.consul.",
        "dup.service.consul.",
        "nope.service.consul.",
        "nope.service.alt.",
        "webq.query.consul.",
        "webq.query.alt.",
        "dbq.query.consul.",
        "node1.node.consul.",
        "node1.node.alt.",
        "0a010001.addr.dc1.consul.",
        "0a010001.addr.dc1.alt.",
        "1.0.1.10.in-addr.arpa.",
        "1.0.0.127.in-addr.arpa.",
        "consul.",
        "alt.",
    ];
    let types = [
        RecordType::A,
        RecordType::SRV,
        RecordType::TXT,
        RecordType::ANY,
        RecordType::SOA,
        RecordType::NS,
        RecordType::MX,
    ];
    settle(&ours, names).await;
    let mut compared = 0;
    let mut differences = Vec::new();
    for transport in [Transport::Udp, Transport::UdpPlain, Transport::Tcp] {
        for name in names {
            for qtype in types {
                let expected = theirs.query_over(name, qtype, transport).await;
                let got = ours.query_over(name, qtype, transport).await;
                compared += 1;
                let (mut expected, got) = (without_addresses(&expected), without_addresses(&got));
                if without_records(name) {
                    nodata_for_nxdomain(&mut expected.0);
                }
                if expected != got {
                    differences.push(format!(
                        "{name} {qtype} over {transport:?}:\n  consul: {expected:?}\n  bridge: {got:?}"
                    ));
                }
            }
        }
    }
    // disable_compression: every name written in full, so the question's name appears once
    // per record it owns plus once in the question, as in Consul's bytes.
    for (name, qtype) in [
        ("web.service.consul.", RecordType::A),
        ("web.service.consul.", RecordType::SRV),
        ("node1.node.consul.", RecordType::A),
    ] {
        let wire_name = crate::support::dns::query_bytes(0, name, qtype, None)[12..]
            .split(|b| *b == 0)
            .next()
            .map(<[u8]>::to_vec)
            .expect("question name");
        let count = |bytes: &[u8]| {
            bytes
                .windows(wire_name.len())
                .filter(|w| **w == wire_name[..])
                .count()
        };
        let request = crate::support::dns::query_bytes(7, name, qtype, Some(1232));
        let (theirs_tcp, ours_tcp) = (
            theirs.exchange_tcp(&request).await,
            ours.exchange_tcp(&request).await,
        );
        let (theirs_udp, ours_udp) = (
            theirs.exchange_udp(&request).await,
            ours.exchange_udp(&request).await,
        );
        compared += 2;
        for (transport, theirs, ours) in
            [("TCP", theirs_tcp, ours_tcp), ("UDP", theirs_udp, ours_udp)]
        {
            if count(&theirs) != count(&ours) || count(&ours) < 2 {
                differences.push(format!(
                    "{name} {qtype} over {transport}: the name appears {} times in Consul's bytes, {} in ours",
                    count(&theirs),
                    count(&ours)
                ));
            }
        }
    }
    println!(
        "differential with Consul's DNS options: {compared} queries compared, {} different",
        differences.len()
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    bridge.shutdown().await;
}

/// Asks each name until the bridge watches it. The first question for a name waits at most
/// 2 s for Consul's first answer and gets SERVFAIL after that; on a loaded 2-core machine that
/// wait can run out. The comparisons are of answers from the cache (the first question's wait
/// has tests of its own), so a SERVFAIL here is asked again, a few times.
async fn settle(ours: &DnsClient, names: impl IntoIterator<Item = &str>) {
    for name in names {
        for _ in 0..5 {
            if ours.rcode(name, RecordType::A).await != ResponseCode::ServFail {
                break;
            }
        }
    }
}

/// RCODE, TC, and each section as a sorted list of records with addresses (and the names made
/// from them) left out; of the SRV records of a cut (TC) answer only the priority, as the
/// instances kept differ.
fn without_addresses(message: &Message) -> (String, bool, [Vec<String>; 3]) {
    let cut = message.metadata.truncation;
    let section = |records: &[Record]| {
        let mut list: Vec<String> = records
            .iter()
            .map(|r| {
                let text = comparable(r, |data| match data {
                    RData::A(_) | RData::AAAA(_) => Some(String::new()),
                    RData::SRV(srv) if cut => Some(format!("{}", srv.priority)),
                    RData::SRV(srv) => {
                        Some(format!("{} {} {}", srv.priority, srv.weight, srv.port))
                    }
                    _ => None,
                });
                match r.name.to_string().to_ascii_lowercase().contains(".addr.") {
                    true => format!("<addr>{}", &text[text.find(' ').unwrap_or(0)..]),
                    false => text,
                }
            })
            .collect();
        list.sort();
        list
    };
    (
        message.metadata.response_code.to_string(),
        message.metadata.truncation,
        [
            section(&message.answers),
            section(&message.authorities),
            section(&message.additionals),
        ],
    )
}
