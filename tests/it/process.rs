//! The binary as operators run it: SIGTERM stops it cleanly with exit code 0, and the ACL token
//! never appears in anything it prints, even at trace level and with Consul failing.

use std::{
    net::SocketAddr,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::support::{ConsulAgent, DnsClient, binary::listening_within, consul::service, dns::ip};
use hickory_proto::rr::RecordType;

const TOKEN: &str = "5ec7e7-70ken-d0-n07-pr1n7";

/// Starts the binary, runs `work` against its DNS address, sends SIGTERM and returns its output.
async fn run_binary(
    consul_addr: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    work: impl AsyncFnOnce(DnsClient),
) -> (Output, Duration) {
    let addr: SocketAddr = ([127, 0, 0, 1], crate::support::consul::free_port()).into();
    let child = Command::new(env!("CARGO_BIN_EXE_consul-dns-bridge"))
        .args(["--listen", &addr.to_string(), "--consul-addr", consul_addr])
        .args(["--http-listen", "127.0.0.1:0"])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let pid = child.id().to_string();
    let guard = KillOnDrop(Some(child));
    assert!(
        listening_within(addr, Duration::from_secs(10)).await,
        "the binary did not listen within 10 s"
    );
    work(DnsClient::new(addr)).await;
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    let output = guard.wait_with_timeout(Duration::from_secs(10));
    (output, started.elapsed())
}

struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn wait_with_timeout(mut self, limit: Duration) -> Output {
        let started = Instant::now();
        let child = self.0.as_mut().expect("child");
        while child.try_wait().expect("status").is_none() {
            assert!(
                started.elapsed() < limit,
                "no exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.0
            .take()
            .expect("child")
            .wait_with_output()
            .expect("output")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_with_exit_zero() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let (output, took) = run_binary(&consul.http_url(), &[], &[], async |dns| {
        assert_eq!(
            dns.addresses("web.service.consul.", RecordType::A).await,
            [ip("10.1.0.1")]
        );
    })
    .await;
    println!("exit seen {took:?} after `kill -TERM` returned");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("shutting down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_output() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let trace = [("RUST_LOG", "trace")];
    // Against a live agent, with the token from the command line.
    let (live, _) = run_binary(
        &consul.http_url(),
        &["--token", TOKEN],
        &trace,
        async |dns| {
            assert_eq!(
                dns.addresses("web.service.consul.", RecordType::A).await,
                [ip("10.1.0.1")]
            );
            dns.query("nope.service.consul.", RecordType::A).await;
        },
    )
    .await;
    // Against nothing, with the token from the environment: every request fails and is logged.
    let dead = format!("http://127.0.0.1:{}", crate::support::consul::free_port());
    let env = [("RUST_LOG", "trace"), ("CONSUL_HTTP_TOKEN", TOKEN)];
    let (failing, _) = run_binary(&dead, &[], &env, async |dns| {
        dns.query("web.service.consul.", RecordType::A).await;
    })
    .await;
    for output in [live, failing] {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            text.lines().count() > 20,
            "trace logging produced output:\n{text}"
        );
        assert!(!text.contains(TOKEN), "token leaked:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let (output, _) = run_binary(
        &consul.http_url(),
        &["--log-format", "json", "--log-level", "debug"],
        &[],
        async |dns| {
            dns.query("web.service.consul.", RecordType::A).await;
        },
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 3, "some log lines: {stderr}");
    for line in &lines {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            object["level"].is_string() && object["fields"].is_object(),
            "{line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("\"DEBUG\"")),
        "--log-level debug took effect: {stderr}"
    );
}
