//! DNS over TLS and HTTPS with the clients operators use: `kdig +tls` (Knot), `dig +tls` and
//! `dig +https` (BIND 9.18), `curl` over HTTP/1.1 and HTTP/2 and `curl --doh-url` fetching from
//! a local web server by a service name. The answers are those of UDP; `--allow-query` and
//! visibility rules hold on both; the certificate is read again on SIGHUP.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};
use serde_json::json;
use tokio::{io::AsyncWriteExt, net::TcpListener};

use crate::support::{
    ConsulAgent,
    binary::BridgeBinary,
    consul::free_port,
    dns::{Transport, query_bytes},
    pki::Pki,
    run_tool, wait_until,
};

/// What a command-line client printed: the status and the A records of the answer section.
#[derive(Debug, PartialEq, Eq)]
struct Printed {
    status: String,
    addresses: BTreeSet<String>,
}

/// Reads dig's or kdig's output: `status: NOERROR` and the answer's `A` lines.
fn printed(output: &str) -> Printed {
    let status = output
        .split("status: ")
        .nth(1)
        .map(|rest| rest.chars().take_while(char::is_ascii_uppercase).collect())
        .unwrap_or_default();
    let addresses = output
        .lines()
        .filter(|line| !line.starts_with(';'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() == 5 && fields[3] == "A").then(|| fields[4].to_owned())
        })
        .collect();
    Printed { status, addresses }
}

/// One of the command-line clients, asking `name` (A) of `server` from `source`.
#[derive(Debug, Clone, Copy)]
enum Client {
    KdigTls,
    DigTls,
    DigHttps,
    DigHttpsGet,
}

impl Client {
    async fn ask(self, server: SocketAddr, source: &str, ca: &Path, name: &str) -> Printed {
        let at = format!("@{}", server.ip());
        let port = server.port().to_string();
        let ca = ca.display().to_string();
        // dig asks three times by default; once, waiting up to 5 s, shows a failure plainly.
        let dig_once: &[&str] = &["+tries=1", "+time=5"];
        let (program, wire, retries) = match self {
            Self::KdigTls => ("kdig", "+tls", &[][..]),
            Self::DigTls => ("dig", "+tls", dig_once),
            Self::DigHttps => ("dig", "+https", dig_once),
            Self::DigHttpsGet => ("dig", "+https-get", dig_once),
        };
        let mut args = vec![
            at,
            "-p".into(),
            port,
            "-b".into(),
            source.into(),
            wire.into(),
            format!("+tls-ca={ca}"),
            "+tls-hostname=localhost".into(),
        ];
        args.extend(retries.iter().map(|flag| flag.to_string()));
        args.extend([name.into(), "A".into()]);
        match run_tool(program, args).await {
            Ok(output) => printed(&output),
            Err(error) => panic!("{self:?}: {error}"),
        }
    }
}

struct Fixture {
    consul: ConsulAgent,
    bridge: BridgeBinary,
    pki: Pki,
    dir: PathBuf,
    dot: SocketAddr,
    doh: SocketAddr,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A bridge with DoT and DoH on free ports, answering only 127.0.0.0/24, over services `web`
/// (two instances, one on 127.0.0.1 for curl to fetch from) and `secret` (seen by 127.0.0.9
/// only).
async fn start(web_port: u16, extra: &[&str]) -> Fixture {
    let consul = ConsulAgent::start().await;
    for (id, name, address, meta) in [
        ("web1", "web", "127.0.0.1", json!({})),
        ("web2", "web", "10.1.0.2", json!({})),
        (
            "secret1",
            "secret",
            "10.2.0.1",
            json!({"dns-allow": "127.0.0.9/32"}),
        ),
    ] {
        let body = json!({
            "Name": name, "ID": id, "Address": address, "Port": web_port, "Meta": meta,
            "Check": {"TTL": "1h", "Status": "passing"}
        });
        consul.put("/v1/agent/service/register", body).await;
    }
    let dir = std::env::temp_dir().join(format!("cdb-encrypted-{}-{web_port}", std::process::id()));
    let pki = Pki::create(&dir);
    let dot: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let doh: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let (dot_text, doh_text) = (dot.to_string(), doh.to_string());
    let (cert, key) = (pki.server_cert.display(), pki.server_key.display());
    let (cert, key) = (cert.to_string(), key.to_string());
    let mut args = vec![
        "--tls-listen",
        &dot_text,
        "--https-listen",
        &doh_text,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--allow-query",
        "127.0.0.0/24",
    ];
    args.extend_from_slice(extra);
    let bridge = BridgeBinary::start(&consul.http_url(), &args, &[], "web.service.consul.").await;
    Fixture {
        consul,
        bridge,
        pki,
        dir,
        dot,
        doh,
    }
}

fn udp_addresses(answer: &Message) -> BTreeSet<String> {
    answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_and_doh_answer_as_udp_does_to_real_clients() {
    let fixture = start(free_port(), &[]).await;
    let ca = fixture.pki.ca.clone();
    let udp = fixture
        .bridge
        .dns
        .query_over("web.service.consul.", RecordType::A, Transport::Udp)
        .await;
    let expected = udp_addresses(&udp);
    assert_eq!(expected.len(), 2, "{udp:?}");
    for client in [
        Client::KdigTls,
        Client::DigTls,
        Client::DigHttps,
        Client::DigHttpsGet,
    ] {
        let server = match client {
            Client::KdigTls | Client::DigTls => fixture.dot,
            _ => fixture.doh,
        };
        let web = client
            .ask(server, "127.0.0.1", &ca, "web.service.consul.")
            .await;
        let want = Printed {
            status: "NOERROR".into(),
            addresses: expected.clone(),
        };
        assert_eq!(web, want, "{client:?}");
        // Visibility: secret exists for 127.0.0.9 only.
        let hidden = client
            .ask(server, "127.0.0.1", &ca, "secret.service.consul.")
            .await;
        assert_eq!(hidden.status, "NXDOMAIN", "{client:?}");
        let seen = client
            .ask(server, "127.0.0.9", &ca, "secret.service.consul.")
            .await;
        let want = Printed {
            status: "NOERROR".into(),
            addresses: ["10.2.0.1".to_owned()].into(),
        };
        assert_eq!(seen, want, "{client:?}");
        // Outside --allow-query: REFUSED, on the encrypted transports too.
        let refused = client
            .ask(server, "127.0.1.1", &ca, "web.service.consul.")
            .await;
        assert_eq!(
            (refused.status.as_str(), refused.addresses.len()),
            ("REFUSED", 0),
            "{client:?}"
        );
    }
    // The same counters as UDP: the encrypted questions are in /metrics.
    let metrics = fixture.bridge.metrics().await;
    let refused = metrics
        .lines()
        .find(|line| line.contains("queries_total") && line.contains("REFUSED"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|count| count.parse::<u64>().ok());
    assert_eq!(refused, Some(4), "{metrics}");
}

/// A wire query as curl would POST it, and the message it gets back.
async fn curl_post(fixture: &Fixture, http: &str) -> Message {
    let query = query_bytes(0, "web.service.consul.", RecordType::A, None);
    let file = fixture.dir.join(format!("query-{http}.bin"));
    std::fs::write(&file, &query).expect("write query");
    let reply = fixture.dir.join(format!("reply-{http}.bin"));
    let args = vec![
        "--silent".into(),
        "--fail".into(),
        format!("--{http}"),
        "--cacert".into(),
        fixture.pki.ca.display().to_string(),
        "-H".into(),
        "content-type: application/dns-message".into(),
        "--data-binary".into(),
        format!("@{}", file.display()),
        "-o".into(),
        reply.display().to_string(),
        format!("https://localhost:{}/dns-query", fixture.doh.port()),
    ];
    if let Err(error) = run_tool("curl", args).await {
        panic!("{error}");
    }
    let bytes = std::fs::read(&reply).expect("curl wrote the reply");
    Message::from_vec(&bytes).expect("a DNS message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_serves_http1_and_http2_and_curl_resolves_by_it() {
    // A local web server for curl to find by the service name.
    let web = TcpListener::bind("127.0.0.1:0").await.expect("bind web");
    let web_port = web.local_addr().expect("web addr").port();
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = web.accept().await {
            let body = "served to web.service.consul";
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    let fixture = start(web_port, &[]).await;
    for http in ["http1.1", "http2"] {
        let answer = curl_post(&fixture, http).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert_eq!(udp_addresses(&answer).len(), 2, "{http}: {answer:?}");
    }
    // web2 (10.1.0.2) is unreachable: curl would try it in turn, so keep only the local one.
    fixture
        .consul
        .put("/v1/agent/service/deregister/web2", json!(null))
        .await;
    let local_only = async || {
        let answer = fixture
            .bridge
            .dns
            .query("web.service.consul.", RecordType::A)
            .await;
        udp_addresses(&answer).len() == 1
    };
    wait_until("web2 gone", Duration::from_secs(5), local_only).await;
    let args = vec![
        "--silent".into(),
        "--show-error".into(),
        "--max-time".into(),
        "10".into(),
        "--cacert".into(),
        fixture.pki.ca.display().to_string(),
        "--doh-url".into(),
        format!("https://localhost:{}/dns-query", fixture.doh.port()),
        format!("http://web.service.consul:{web_port}/"),
    ];
    match run_tool("curl", args).await {
        Ok(body) => assert_eq!(body, "served to web.service.consul"),
        Err(error) => panic!("{error}\n{}", fixture.bridge.log()),
    }
    server.abort();
}

/// Makes a certificate of another CA the files' content.
fn replace_certificate(fixture: &Fixture, with: &Pki) {
    std::fs::copy(&with.server_cert, &fixture.pki.server_cert).expect("copy cert");
    std::fs::copy(&with.server_key, &fixture.pki.server_key).expect("copy key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_certificate_and_keeps_it_when_the_new_one_is_broken() {
    let fixture = start(free_port(), &[]).await;
    let (old_ca, dot) = (fixture.pki.ca.clone(), fixture.dot);
    let ask = async |ca: &Path| {
        let args = vec![
            format!("@{}", dot.ip()),
            "-p".into(),
            dot.port().to_string(),
            "+tls".into(),
            format!("+tls-ca={}", ca.display()),
            "+tls-hostname=localhost".into(),
            "web.service.consul.".into(),
            "A".into(),
        ];
        run_tool("kdig", args)
            .await
            .map(|output| printed(&output).status)
    };
    assert_eq!(ask(&old_ca).await.as_deref(), Ok("NOERROR"));
    let renewed = Pki::create(&fixture.dir.join("renewed"));
    replace_certificate(&fixture, &renewed);
    fixture.bridge.signal("HUP");
    let new_ca = renewed.ca.clone();
    wait_until(
        "the renewed certificate served",
        Duration::from_secs(5),
        async || ask(&new_ca).await.is_ok(),
    )
    .await;
    assert!(
        ask(&old_ca).await.is_err(),
        "the old CA must not verify now"
    );
    // A key that does not fit the certificate: refused, the renewed one stays.
    let other = Pki::create(&fixture.dir.join("other"));
    std::fs::copy(&other.server_key, &fixture.pki.server_key).expect("copy key");
    fixture.bridge.signal("HUP");
    wait_until(
        "the refused reload in the log",
        Duration::from_secs(5),
        async || {
            fixture
                .bridge
                .log()
                .contains("TLS certificate not reloaded")
        },
    )
    .await;
    assert_eq!(ask(&new_ca).await.as_deref(), Ok("NOERROR"));
}
