//! The query log: one JSON line per answered query, from every path and transport, reopened on
//! SIGHUP; and a writer that cannot keep up (a pipe nobody reads) costs answers nothing: lines
//! are dropped and counted, every query is still answered.

use std::{
    collections::BTreeSet,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::support::{
    ConsulAgent,
    binary::BridgeBinary,
    consul::service,
    dns::{Transport, query_bytes},
    wait_until,
};

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cdb-{}-{name}", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_a_json_line_and_sighup_reopens_the_file() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let log = temp("query.log");
    let _ = std::fs::remove_file(&log);
    let log_text = log.display().to_string();
    let bridge = BridgeBinary::start(
        &consul.http_url(),
        &["--query-log", &log_text, "--allow-query", "127.0.0.0/24"],
        &[],
        "web.service.consul.",
    )
    .await;
    let dns = bridge.dns;
    dns.query_over("web.service.consul.", RecordType::A, Transport::Udp)
        .await;
    dns.query_over("web.service.consul.", RecordType::SRV, Transport::Tcp)
        .await;
    dns.query_over(
        "nothing.service.consul.",
        RecordType::A,
        Transport::UdpPlain,
    )
    .await;
    dns.asked_from("127.0.1.1")
        .query_over("web.service.consul.", RecordType::A, Transport::Udp)
        .await;
    let has = async |name: &str, rcode: &str| {
        lines(&log)
            .iter()
            .any(|line| line["name"] == name && line["rcode"] == rcode)
    };
    wait_until("the lines written", Duration::from_secs(5), async || {
        has("nothing.service.consul.", "NXDOMAIN").await
            && has("web.service.consul.", "REFUSED").await
    })
    .await;
    let written = lines(&log);
    for line in &written {
        for field in [
            "time",
            "client",
            "transport",
            "name",
            "type",
            "rcode",
            "path",
        ] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
        assert!(
            line["answers"].is_u64() && line["latency_us"].is_u64(),
            "{line}"
        );
        assert!(
            line["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
    }
    let seen: BTreeSet<(String, String, String, String, u64)> = written
        .iter()
        .map(|line| {
            let text = |field: &str| line[field].as_str().unwrap_or_default().to_owned();
            let client = text("client");
            let client_ip = client.rsplit_once(':').map(|(ip, _)| ip.to_owned());
            (
                text("type"),
                text("transport"),
                text("path"),
                format!("{} {}", text("rcode"), client_ip.unwrap_or_default()),
                line["answers"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    for expected in [
        // The fast path answers UDP A; TCP and refused clients go the general way.
        ("A", "udp", "fast", "NOERROR 127.0.0.1", 1),
        ("SRV", "tcp", "general", "NOERROR 127.0.0.1", 1),
        ("A", "udp", "general", "REFUSED 127.0.1.1", 0),
    ] {
        let expected = (
            expected.0.to_owned(),
            expected.1.to_owned(),
            expected.2.to_owned(),
            expected.3.to_owned(),
            expected.4,
        );
        assert!(seen.contains(&expected), "{expected:?} not in {seen:?}");
    }

    // Rotation: the file moves away, SIGHUP, the next lines go to a new file.
    let rotated = temp("query.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    bridge.signal("HUP");
    wait_until("a new log file", Duration::from_secs(5), async || {
        dns.query("web.service.consul.", RecordType::A).await;
        !lines(&log).is_empty()
    })
    .await;
    assert!(lines(&rotated).len() >= written.len());
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&rotated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_nobody_reads_drops_lines_and_never_holds_answers_up() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    // A pipe whose reader never reads: once its buffer is full the writer blocks for good.
    let fifo = temp("query.fifo");
    let _ = std::fs::remove_file(&fifo);
    let path = std::ffi::CString::new(fifo.display().to_string()).expect("path");
    // SAFETY: a NUL-terminated path and a mode; mkfifo reads nothing else.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the reading end");
    let fifo_text = fifo.display().to_string();
    let bridge = BridgeBinary::start(
        &consul.http_url(),
        &["--query-log", &fifo_text, "--query-log-buffer", "100"],
        &[],
        "web.service.consul.",
    )
    .await;
    // 20,000 questions, one after the other: ~2 MB of lines for a 64 KiB pipe.
    let query = query_bytes(7, "web.service.consul.", RecordType::A, Some(1232));
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..20_000 {
        let asked = Instant::now();
        let reply = bridge.dns.exchange_udp(&query).await;
        slowest = slowest.max(asked.elapsed());
        assert_eq!(&reply[..2], &query[..2], "an answer to every question");
    }
    let took = started.elapsed();
    let count = async |result: &str| {
        let series = format!("query_log_lines_total{{result=\"{result}\"}}");
        bridge.metric(&series).await.unwrap_or_default() as u64
    };
    let (written, dropped) = (count("written").await, count("dropped").await);
    eprintln!(
        "20,000 answers in {took:?} (slowest {slowest:?}); log lines written {written}, dropped {dropped}"
    );
    assert!(dropped > 10_000, "dropped {dropped}, written {written}");
    assert!(
        written < 10_000,
        "a blocked pipe cannot take {written} lines"
    );
    // Answering waited for nothing: a blocked writer would have stopped every answer for good.
    assert!(
        slowest < Duration::from_secs(1),
        "slowest answer {slowest:?}"
    );
    let _ = std::fs::remove_file(&fifo);
}
