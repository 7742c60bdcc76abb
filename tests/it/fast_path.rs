//! The UDP fast path gives the same answers as the general (hickory-server) path, for service
//! names (alone, or in the local datacenter, legacy or labelled) and for reverse names (PTR of a node, of a service, and a miss): every question
//! is asked over UDP, with and without EDNS, and over TCP, which never takes the fast path, and
//! the answers must match record for record. The fast-path counter shows the UDP answers really
//! came from it.

use crate::support::{
    ConsulAgent,
    consul::service,
    dns::{Transport, sorted_section},
    start_bridge,
};
use hickory_proto::{op::Message, rr::RecordType};

fn summary(message: &Message) -> String {
    let m = &message.metadata;
    format!(
        "{:?} aa={} ra={} rd={} tc={}\nanswers {:?}\nauthority {:?}\nadditional {:?}",
        m.response_code,
        m.authoritative,
        m.recursion_available,
        m.recursion_desired,
        m.truncation,
        sorted_section(&message.answers, |_| None),
        sorted_section(&message.authorities, |_| None),
        sorted_section(&message.additionals, |_| None)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_answers_equal_the_general_path() {
    let consul = ConsulAgent::start().await;
    consul
        .register(service("web", "web1", "10.1.0.1").tags(&["v1"]))
        .await;
    consul
        .register(service("web", "web2", "10.1.0.2").tags(&["v2"]).port(81))
        .await;
    consul
        .register(service("web", "web3", "10.1.0.3").critical())
        .await;
    consul.register(service("db", "db1", "")).await;
    consul.register(service("six", "six1", "fd00::6")).await;
    consul
        .register_external("ext1", "10.9.0.1", None, service("ext", "ext1", ""))
        .await;
    let (bridge, dns) = start_bridge(&consul, &["--service-ttl", "7s"]).await;

    let names = [
        "web.service.consul.",
        "WeB.Service.CONSUL.",
        "v1.web.service.consul.",
        "_web._tcp.service.consul.",
        "_web._v2.service.consul.",
        "v9.web.service.consul.",
        "db.service.consul.",
        "six.service.consul.",
        "ext.service.consul.",
        "nope.service.consul.",
        // The local datacenter, legacy and labelled: the same answers, from the fast path too.
        "web.service.dc1.consul.",
        "web.service.DC1.dc.consul.",
        "v1.web.service.dc1.dc.consul.",
        "_web._tcp.service.dc1.dc.consul.",
        "nope.service.dc1.dc.consul.",
    ];
    let types = [RecordType::A, RecordType::AAAA, RecordType::SRV];
    // Reverse names: the agent's node (127.0.0.1), a service address, an external node, and
    // an address nobody has (SERVFAIL); PTR whatever the type asked.
    let reverse_names = [
        "1.0.0.127.in-addr.arpa.",
        "1.0.1.10.IN-ADDR.arpa.",
        "1.0.9.10.in-addr.arpa.",
        "9.9.9.10.in-addr.arpa.",
    ];
    let reverse_types = [RecordType::PTR, RecordType::A, RecordType::TXT];
    let questions: Vec<(&str, RecordType)> = names
        .iter()
        .flat_map(|name| types.iter().map(move |qtype| (*name, *qtype)))
        .chain(
            reverse_names
                .iter()
                .flat_map(|name| reverse_types.iter().map(move |qtype| (*name, *qtype))),
        )
        .collect();
    // Over TCP first: the general path, which also starts the watches.
    for (name, qtype) in &questions {
        dns.query_over(name, *qtype, Transport::Tcp).await;
    }
    let before = bridge.fast_answers();
    let mut compared = 0;
    for (name, qtype) in questions {
        let general = dns.query_over(name, qtype, Transport::Tcp).await;
        for transport in [Transport::Udp, Transport::UdpPlain] {
            let fast = dns.query_over(name, qtype, transport).await;
            assert_eq!(
                summary(&fast),
                summary(&general),
                "{name} {qtype} over {transport:?}"
            );
            compared += 1;
        }
    }
    let fast = bridge.fast_answers() - before;
    println!("{compared} UDP answers compared with TCP; {fast} came from the fast path");
    assert_eq!(
        fast, compared,
        "every one of these questions takes the fast path"
    );
    bridge.shutdown().await;
}
