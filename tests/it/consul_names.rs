//! Names of the Consul versions operators run today, by the agent's version and edition (read
//! from `/v1/agent/self`; the scripted Consul plays 1.8.7, 1.21.3 Community Edition and 1.22.0
//! Enterprise, shaped as `../shared/CONSUL-NAMES.md` section 7 gives `AgentSelf`): a labelled
//! datacenter is answered on every agent; a form the agent's own DNS does not know is
//! NXDOMAIN, as there; a form it knows whose data the bridge does not read yet is SERVFAIL with
//! Extended DNS Error 21, never an answer a resolver keeps.

use hickory_proto::{op::ResponseCode, rr::RecordType};

use crate::support::{binary::BridgeBinary, run_tool, scripted_consul::ScriptedConsul};

const NX: ResponseCode = ResponseCode::NXDomain;
const FAIL: ResponseCode = ResponseCode::ServFail;
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
            [FAIL, NX, NX, NX, FAIL],
        ),
        ("1.22.0+ent", "ent", "1.22.0 (Enterprise)", [FAIL; 5]),
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
                    "web.service.p1.peer.consul".into(),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(dig.contains("EDE: 21 (Not Supported)"), "{dig}");
        }
    }
}
