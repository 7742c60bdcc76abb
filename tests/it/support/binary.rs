//! The bridge binary run as operators run it, with its log written to a file the test can read
//! while it runs. Killed on drop.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hickory_proto::rr::RecordType;

use super::{DnsClient, consul::free_port};

pub struct BridgeBinary {
    child: Child,
    log_path: PathBuf,
    pub dns: DnsClient,
    /// Where `/metrics` is served.
    metrics: SocketAddr,
}

impl BridgeBinary {
    /// Starts the binary on a free loopback port against `consul_addr`, with `extra` options
    /// and `env` variables, and waits until it answers `ready_name` (A) with data.
    pub async fn start(
        consul_addr: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        ready_name: &str,
    ) -> Self {
        let bridge = Self::spawn(consul_addr, extra, env);
        bridge.wait_for_data(ready_name).await;
        bridge
    }

    /// Starts the binary as `start` does, without waiting for anything.
    pub fn spawn(consul_addr: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log_path = std::env::temp_dir().join(format!(
            "consul-dns-bridge-test-{}-{}.log",
            std::process::id(),
            addr.port()
        ));
        let log = std::fs::File::create(&log_path).expect("create log file");
        let child = Command::new(env!("CARGO_BIN_EXE_consul-dns-bridge"))
            .args(["--listen", &addr.to_string(), "--consul-addr", consul_addr])
            .args(["--http-listen", &metrics.to_string()])
            .args(extra)
            .envs(env.iter().copied())
            // Away from the checkout, whose zones/ would be served by default.
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the binary");
        Self {
            child,
            log_path,
            dns: DnsClient::new(addr),
            metrics,
        }
    }

    /// Waits (up to 5 s) until the binary accepts TCP connections on its DNS address.
    pub async fn wait_listening(&self) {
        if !listening_within(self.dns.addr, Duration::from_secs(5)).await {
            panic!("the binary did not listen within 5 s; log:\n{}", self.log());
        }
    }

    /// Waits (up to 15 s) until `name` (A) gets addresses. A question sent before the process
    /// has bound its socket is lost (on a loaded machine the start can take longer than the
    /// first pause), so each is asked as a stub asks, again when no answer comes.
    pub async fn wait_for_data(&self, name: &str) {
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let answer = self
                .dns
                .query_as_stub(name, RecordType::A, 1, Duration::from_millis(500))
                .await;
            if answer.is_some_and(|(answer, _)| !answer.answers.is_empty()) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the binary did not answer {name} within 15 s; log:\n{}",
                self.log()
            );
        }
    }

    /// The `/metrics` page now.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics);
        consul_dns_bridge::install_crypto_provider();
        match reqwest::get(url).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(error) => panic!("/metrics: {error}"),
        }
    }

    /// The value of one series on `/metrics` now, named without the `consul_dns_bridge_`
    /// prefix and with its labels as written there (`consul_connections`,
    /// `query_log_lines_total{result="dropped"}`); `None` when it is not there.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let wanted = format!("consul_dns_bridge_{series} ");
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(&wanted)?.trim().parse().ok())
    }

    /// Asserts that at least `asked` questions have a line in the query log `log` and are
    /// counted in `queries_total` on `/metrics` (over every label), then removes the log.
    pub async fn assert_logged_and_counted(&self, log: &Path, asked: u64) {
        let logged = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .count() as u64;
        let counted = (self.metrics().await.lines())
            .filter(|l| l.starts_with("consul_dns_bridge_queries_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
        println!("{asked} questions asked; {logged} logged; {counted} counted in queries_total");
        assert!(logged >= asked, "{logged} log lines for {asked} questions");
        assert!(counted >= asked, "{counted} counted for {asked} questions");
        let _ = std::fs::remove_file(log);
    }

    /// Everything the binary has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name}");
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory now, in MB (`VmRSS`).
    pub fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Whether `addr` accepts TCP connections within `limit` (a process just started binds its
/// sockets a moment later; a UDP question sent before that is lost).
pub async fn listening_within(addr: SocketAddr, limit: Duration) -> bool {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if started.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

impl Drop for BridgeBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}
