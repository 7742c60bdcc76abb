//! Names of the Consul versions operators run today, by the agent's version and edition (read
//! from `/v1/agent/self`; the scripted Consul plays 1.8.7, 1.21.3 Community Edition and 1.22.0
//! Enterprise, shaped as `../shared/CONSUL-NAMES.md` section 7 gives `AgentSelf`): a labelled
//! datacenter is answered on every agent; a form the agent's own DNS does not know is
//! NXDOMAIN, as there; a form it knows is answered (peers, namespaces, sameness groups and
//! named ports in detail in `consul_scopes.rs`), but a sameness group with another kind than
//! `.service`, whose meaning no source gives, is SERVFAIL with Extended DNS Error 21, never an
//! answer a resolver keeps. `.virtual` is answered from the
//! `consul-virtual` tagged address of the service's Connect proxies.

use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};

use crate::support::{binary::BridgeBinary, run_tool, scripted_consul::ScriptedConsul};

const NX: ResponseCode = ResponseCode::NXDomain;
const OK: ResponseCode = ResponseCode::NoError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_forms_follow_the_agents_version_and_edition() {
    // (version, build metadata, what the log says, expected rcodes for: peer, namespace,
    // sameness group, named port, virtual IP)
    let agents = [
        (
            "1.8.7",
            "",
            "1.8.7 (Community Edition)",
            [NX, NX, NX, NX, NX],
        ),
        (
            "1.21.3",
            "",
            "1.21.3 (Community Edition)",
            [OK, NX, NX, NX, OK],
        ),
        (
            "1.22.0+ent",
            "ent",
            "1.22.0 (Enterprise)",
            [OK, OK, OK, OK, OK],
        ),
    ];
    let names = [
        ("web.service.p1.peer.consul.", RecordType::A),
        ("web.service.team.ns.consul.", RecordType::A),
        ("web.service.sg1.sg.consul.", RecordType::A),
        ("web.service.grpc.port.consul.", RecordType::SRV),
        ("web.virtual.consul.", RecordType::A),
    ];
    for (version, metadata, logged, expected) in agents {
        let consul = ScriptedConsul::start(&[("web", &["10.1.0.1"])]).await;
        consul.set_agent(version, metadata);
        consul.add_scoped_service("peer=p1", "web", &[("peernode1", "10.9.0.1", "")]);
        consul.add_scoped_service("ns=team", "web", &[("n7", "10.7.0.1", "")]);
        consul.set_sameness_group("sg1", &["partition=default", "peer=p1"]);
        consul.set_named_ports(
            "web",
            serde_json::json!([{"Name": "grpc", "Port": 9090, "Default": true}]),
        );
        let bridge = BridgeBinary::start(&consul.url(), &[], &[], "web.service.consul.").await;
        let log = bridge.log();
        assert!(
            log.contains(logged),
            "{version}: the log names the agent:\n{log}"
        );
        for ((name, qtype), want) in names.iter().zip(expected) {
            let got = bridge.dns.rcode(name, *qtype).await;
            assert_eq!(got, want, "{version}: {name} {qtype}");
        }
        // A labelled datacenter is answered whatever the agent.
        let labelled = bridge
            .dns
            .addresses("web.service.dc1.dc.consul.", RecordType::A)
            .await;
        assert_eq!(labelled.len(), 1, "{version}: {labelled:?}");
        assert_eq!(
            bridge
                .dns
                .rcode("web.service.dc1.dc.consul.", RecordType::A)
                .await,
            OK
        );
        if version.ends_with("+ent") {
            let dig = run_tool(
                "dig",
                vec![
                    format!("@{}", bridge.dns.addr.ip()),
                    "-p".into(),
                    bridge.dns.addr.port().to_string(),
                    "+tries=1".into(),
                    "web.connect.sg1.sg.consul".into(),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(dig.contains("EDE: 21 (Not Supported)"), "{dig}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_names_answer_the_services_virtual_ip() {
    let consul =
        ScriptedConsul::start(&[("web", &["10.1.0.1", "10.1.0.2"]), ("db", &["10.2.0.1"])]).await;
    consul.set_agent("1.21.3", "");
    consul.set_virtual_ip("web", "240.0.0.7");
    let bridge = BridgeBinary::start(&consul.url(), &[], &[], "web.service.consul.").await;
    let dns = &bridge.dns;
    // One A record, owner as asked, TTL node_ttl (0), whatever the type but AAAA.
    for (name, qtype) in [
        ("web.virtual.consul.", RecordType::A),
        ("WEB.Virtual.consul.", RecordType::A),
        ("web.virtual.dc1.dc.consul.", RecordType::A),
        ("web.virtual.consul.", RecordType::SRV),
    ] {
        let answer = dns.query(name, qtype).await;
        assert_eq!(answer.metadata.response_code, OK, "{name} {qtype}");
        let records: Vec<String> = answer
            .answers
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.ttl, r.data))
            .collect();
        assert_eq!(records, [format!("{name} 0 240.0.0.7")], "{name} {qtype}");
        assert!(
            answer.answers.iter().all(|r| matches!(r.data, RData::A(_))),
            "{answer:?}"
        );
    }
    // AAAA never gets the IPv4 virtual address; a service without one, or no such service:
    // NOERROR without records and without SOA.
    for (name, qtype) in [
        ("web.virtual.consul.", RecordType::AAAA),
        ("db.virtual.consul.", RecordType::A),
        ("nope.virtual.consul.", RecordType::A),
    ] {
        let answer = dns.query(name, qtype).await;
        assert_eq!(answer.metadata.response_code, OK, "{name} {qtype}");
        assert!(answer.answers.is_empty(), "{name} {qtype}: {answer:?}");
        assert!(answer.authorities.is_empty(), "{name} {qtype}: {answer:?}");
    }
}

/// An agent of 1.11 or later answers a question in its `alt_domain` in that domain (SRV
/// targets, additional records, the SOA); 1.8.7 keeps the primary domain (which the
/// differential test with Consul's DNS options shows against the real agent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternative_domain_answers_follow_the_agents_version() {
    for (version, domain) in [("1.8.7", "consul."), ("1.21.3", "alt.")] {
        let consul = ScriptedConsul::start(&[("web", &["10.1.0.1"])]).await;
        consul.set_agent(version, "");
        let bridge = BridgeBinary::start(
            &consul.url(),
            &["--alt-domain", "alt"],
            &[],
            "web.service.consul.",
        )
        .await;
        let srv = bridge.dns.query("web.service.alt.", RecordType::SRV).await;
        let targets: Vec<String> = srv
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some(srv.target.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(
            targets,
            [format!("0a010001.addr.dc1.{domain}")],
            "{version}"
        );
        let owners: Vec<String> = srv.additionals.iter().map(|r| r.name.to_string()).collect();
        assert!(
            owners.iter().all(|o| o.ends_with(&format!(".{domain}"))) && !owners.is_empty(),
            "{version}: {owners:?}"
        );
        let missing = bridge.dns.query("nope.service.alt.", RecordType::A).await;
        let soa: Vec<String> = missing
            .authorities
            .iter()
            .filter_map(|r| match &r.data {
                RData::SOA(soa) => Some(format!("{} {}", r.name, soa.mname)),
                _ => None,
            })
            .collect();
        assert_eq!(soa, [format!("{domain} ns.{domain}")], "{version}");
        // The primary domain's answers stay in it.
        let primary = bridge
            .dns
            .query("web.service.consul.", RecordType::SRV)
            .await;
        assert!(
            primary.answers.iter().all(|r| match &r.data {
                RData::SRV(srv) => srv.target.to_string().ends_with(".consul."),
                _ => true,
            }),
            "{primary:?}"
        );
    }
}
