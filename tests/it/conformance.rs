//! Protocol conformance where Consul's DNS falls short and NSD does not: an unknown EDNS version
//! gets BADVERS with our version (RFC 6891 §6.1.3), the DO bit comes back (RFC 3225), another
//! class than IN is refused, and names that exist without records of their own get NODATA with
//! the SOA, never NXDOMAIN (RFC 8020). Each on the fast path (UDP, cached service) and the
//! general path (TCP, and UDP questions the fast path leaves).

use hickory_proto::{
    op::{Edns, ResponseCode},
    rr::{DNSClass, RecordType},
};

use crate::support::{ConsulAgent, consul::service, dns::ip, start_bridge};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_version_do_bit_class_and_names_without_records() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let (bridge, dns) = start_bridge(&consul, &[]).await;
    assert_eq!(
        dns.addresses("web.service.consul.", RecordType::A).await,
        [ip("10.1.0.1")]
    );
    let before = bridge.fast_answers();
    for tcp in [false, true] {
        // `web.service` A is a fast-path question over UDP; `node1.node` is not.
        for (name, qtype) in [
            ("web.service.consul.", RecordType::A),
            ("node1.node.consul.", RecordType::A),
        ] {
            let what = format!("{name} {qtype} tcp={tcp}");
            let reply = dns
                .ask(name, qtype, Some((1, false)), DNSClass::IN, tcp)
                .await;
            // BADVERS and BADSIG share the code 16; hickory reads it as the latter.
            assert_eq!(
                u16::from(reply.metadata.response_code),
                16,
                "BADVERS: {what}"
            );
            assert_eq!(reply.edns.as_ref().map(Edns::version), Some(0), "{what}");
            assert!(reply.answers.is_empty(), "{what}");

            let reply = dns
                .ask(name, qtype, Some((0, true)), DNSClass::IN, tcp)
                .await;
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NoError,
                "{what}"
            );
            assert!(!reply.answers.is_empty(), "{what}");
            let dnssec_ok = reply.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
            assert!(dnssec_ok, "DO copied: {what}");
            let reply = dns
                .ask(name, qtype, Some((0, false)), DNSClass::IN, tcp)
                .await;
            let dnssec_ok = reply.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
            assert!(!dnssec_ok, "DO not invented: {what}");

            for class in [DNSClass::CH, DNSClass::HS, DNSClass::ANY] {
                let reply = dns.ask(name, qtype, None, class, tcp).await;
                assert_eq!(
                    reply.metadata.response_code,
                    ResponseCode::Refused,
                    "{what} {class:?}"
                );
                assert!(reply.answers.is_empty(), "{what} {class:?}");
            }
        }
        for name in [
            "consul.",
            "service.consul.",
            "node.consul.",
            "query.consul.",
            "connect.consul.",
            "addr.consul.",
            "dc1.consul.",
            "service.dc1.consul.",
        ] {
            for qtype in [RecordType::A, RecordType::TXT, RecordType::Unknown(1000)] {
                let reply = dns.ask(name, qtype, None, DNSClass::IN, tcp).await;
                let what = format!("{name} {qtype} tcp={tcp}");
                assert_eq!(
                    reply.metadata.response_code,
                    ResponseCode::NoError,
                    "{what}"
                );
                assert!(reply.answers.is_empty(), "{what}");
                assert!(
                    reply
                        .authorities
                        .iter()
                        .any(|r| r.record_type() == RecordType::SOA),
                    "SOA for negative caching: {what}"
                );
            }
        }
        for name in ["dc9.consul.", "service.dc9.consul.", "nope.service.consul."] {
            let reply = dns.ask(name, RecordType::A, None, DNSClass::IN, tcp).await;
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NXDomain,
                "{name}"
            );
        }
    }
    assert!(
        bridge.fast_answers() > before,
        "the fast path answered the DO question"
    );
    bridge.shutdown().await;
}
