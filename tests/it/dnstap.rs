//! dnstap (`--dnstap`) checked with the ecosystem's own tools: `fstrm_capture` (Debian
//! `fstrm-bin`) collects over a Unix socket or TCP and writes the file, `dnstap-read` (BIND)
//! decodes it, and `dnstap` (the reference Go tool, which names DoT and DoH where BIND 9.18's
//! reader prints UDP for every transport but TCP) shows the transports. Client questions and answers on UDP (fast and general path), TCP, DoT and DoH
//! are recorded with their transport, forwarded questions as FORWARDER_QUERY/RESPONSE; with no
//! collector messages are dropped and counted, and the bridge connects when one comes.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::support::{
    ConsulAgent, binary::BridgeBinary, consul::free_port, dns::Transport, pki::Pki, run_tool,
    start_bridge_at, wait_until, zones::ZoneDir,
};

/// `fstrm_capture` collecting dnstap into a file.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    /// Listens on `listen` (`-u PATH` or `-a ADDR -p PORT`), writing to `file`.
    fn start(listen: &[String], file: &Path) -> Self {
        let child = Command::new("fstrm_capture")
            .args(["-t", "protobuf:dnstap.Dnstap"])
            .args(listen)
            .arg("-w")
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fstrm_capture (scripts/test.sh installs fstrm-bin)");
        Self {
            child,
            file: file.to_owned(),
        }
    }

    /// Stops it as an operator would (SIGINT: it closes the file properly), and decodes the
    /// file with `dnstap-read`.
    async fn stop_and_read(mut self) -> String {
        let file = self.file.clone();
        self.stop().await;
        run_tool("dnstap-read", vec![file.display().to_string()])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let started = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "fstrm_capture did not stop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for_path(path: &Path) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `dnstap-read` lines of messages of `kind` (CQ, CR, FQ, FR) over `transport` for `name`.
fn lines<'a>(read: &'a str, kind: &str, transport: &str, name: &str) -> Vec<&'a str> {
    read.lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(2) == Some(&kind)
                && fields.contains(&transport)
                && line.contains(&format!("{name}/IN/"))
        })
        .collect()
}

async fn dig(args: &[String]) -> String {
    run_tool("dig", args.to_vec())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_and_forwarded_questions_reach_the_collector() {
    let dir = std::env::temp_dir().join(format!("cdb-dnstap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let socket = dir.join("dnstap.sock");
    let capture = Capture::start(
        &["-u".into(), socket.display().to_string()],
        &dir.join("out.fstrm"),
    );
    wait_for_path(&socket).await;

    let consul = ConsulAgent::start().await;
    let body = json!({
        "Name": "web", "ID": "web1", "Address": "10.1.0.1", "Port": 80,
        "Check": {"TTL": "1h", "Status": "passing"}
    });
    consul.put("/v1/agent/service/register", body).await;
    // A recursor: another bridge serving example.test from a zone file.
    let zones = ZoneDir::new("dnstap-upstream");
    zones.write("example.test", "www IN A 10.8.0.1\n");
    let no_consul = format!("http://127.0.0.1:{}", free_port());
    let (_upstream, upstream_dns) =
        start_bridge_at(&no_consul, &["--zones-dir", zones.as_str()]).await;
    let recursor = upstream_dns.addr.to_string();

    let pki = Pki::create(&dir.join("pki"));
    let dot: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let doh: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let (dot_text, doh_text) = (dot.to_string(), doh.to_string());
    let (cert, key) = (
        pki.server_cert.display().to_string(),
        pki.server_key.display().to_string(),
    );
    let target = format!("unix:{}", socket.display());
    let args = [
        "--dnstap",
        &target,
        "--dnstap-identity",
        "bridge-t1",
        "--recursor",
        &recursor,
        "--tls-listen",
        &dot_text,
        "--https-listen",
        &doh_text,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    let bridge = BridgeBinary::start(&consul.http_url(), &args, &[], "web.service.consul.").await;
    let dns = &bridge.dns;
    dns.query_over("web.service.consul.", RecordType::A, Transport::Udp)
        .await;
    dns.query_over("web.service.consul.", RecordType::SRV, Transport::Udp)
        .await;
    dns.query_over("web.service.consul.", RecordType::A, Transport::Tcp)
        .await;
    dns.query_over("www.example.test.", RecordType::A, Transport::Udp)
        .await;
    let ca = format!("+tls-ca={}", pki.ca.display());
    for (server, wire) in [(dot, "+tls"), (doh, "+https")] {
        let asked = dig(&[
            format!("@{}", server.ip()),
            "-p".into(),
            server.port().to_string(),
            wire.into(),
            ca.clone(),
            "+tls-hostname=localhost".into(),
            "+tries=1".into(),
            "+time=5".into(),
            "web.service.consul".into(),
        ])
        .await;
        assert!(asked.contains("10.1.0.1"), "{wire}: {asked}");
    }
    wait_until(
        "dnstap messages written",
        Duration::from_secs(5),
        || async {
            bridge
                .metric("dnstap_messages_total{result=\"written\"}")
                .await
                >= Some(16.0)
        },
    )
    .await;
    let dropped = bridge
        .metric("dnstap_messages_total{result=\"dropped\"}")
        .await;
    drop(bridge);
    let read = capture.stop_and_read().await;
    println!("dnstap-read:\n{read}");
    for (kind, transport) in [("CQ", "UDP"), ("CR", "UDP"), ("CQ", "TCP"), ("CR", "TCP")] {
        let found = lines(&read, kind, transport, "web.service.consul");
        assert!(!found.is_empty(), "no {kind} over {transport}:\n{read}");
    }
    // `12:00:00.000000 CQ 127.0.0.1 DOT 59b "web.service.consul." IN A`
    let quiet = run_tool(
        "dnstap",
        vec![
            "-r".into(),
            dir.join("out.fstrm").display().to_string(),
            "-q".into(),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!("dnstap -q:\n{quiet}");
    for transport in ["UDP", "TCP", "DOT", "DOH"] {
        for kind in ["CQ", "CR"] {
            let found = quiet.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(1) == Some(&kind)
                    && fields.get(3) == Some(&transport)
                    && line.contains("\"web.service.consul.\"")
            });
            assert!(found, "no {kind} over {transport}:\n{quiet}");
        }
    }
    // The fast path's SRV answer and the general path's alike.
    assert_eq!(
        read.lines()
            .filter(|l| l.contains(" CR ") && l.contains("web.service.consul/IN/SRV"))
            .count(),
        1,
        "{read}"
    );
    for kind in ["CQ", "CR"] {
        assert!(
            !lines(&read, kind, "UDP", "www.example.test").is_empty(),
            "{read}"
        );
    }
    for kind in ["FQ", "FR"] {
        let found = lines(&read, kind, "UDP", "www.example.test");
        assert_eq!(found.len(), 1, "{kind}:\n{read}");
        assert!(
            found[0].contains(&recursor),
            "{kind} names the recursor: {}",
            found[0]
        );
    }
    assert_eq!(dropped, Some(0.0));
    // Decoded in full: the identity and the answer's records.
    let full = run_tool(
        "dnstap-read",
        vec!["-y".into(), dir.join("out.fstrm").display().to_string()],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(full.contains("identity: bridge-t1"), "{full}");
    assert!(full.contains("10.1.0.1"), "{full}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_collector_messages_are_dropped_and_it_is_found_when_it_comes() {
    let dir = std::env::temp_dir().join(format!("cdb-dnstap-late-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let consul = ConsulAgent::start().await;
    let body = json!({
        "Name": "web", "ID": "web1", "Address": "10.1.0.1", "Port": 80,
        "Check": {"TTL": "1h", "Status": "passing"}
    });
    consul.put("/v1/agent/service/register", body).await;
    let port = free_port();
    let target = format!("tcp:127.0.0.1:{port}");
    let bridge = BridgeBinary::start(
        &consul.http_url(),
        &["--dnstap", &target],
        &[],
        "web.service.consul.",
    )
    .await;
    // No collector: answering goes on, the messages are counted as dropped.
    for _ in 0..20 {
        let answer = bridge.dns.query("web.service.consul.", RecordType::A).await;
        assert!(!answer.answers.is_empty());
    }
    wait_until("dropped counted", Duration::from_secs(5), || async {
        bridge
            .metric("dnstap_messages_total{result=\"dropped\"}")
            .await
            >= Some(40.0)
    })
    .await;
    // The collector comes: the bridge connects within its reconnect interval.
    let capture = Capture::start(
        &[
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
        &dir.join("late.fstrm"),
    );
    wait_until(
        "written after the collector came",
        Duration::from_secs(10),
        || async {
            bridge
                .dns
                .query("nope.service.consul.", RecordType::A)
                .await;
            bridge
                .metric("dnstap_messages_total{result=\"written\"}")
                .await
                >= Some(2.0)
        },
    )
    .await;
    drop(bridge);
    let read = capture.stop_and_read().await;
    assert!(
        !lines(&read, "CR", "UDP", "nope.service.consul").is_empty(),
        "{read}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
