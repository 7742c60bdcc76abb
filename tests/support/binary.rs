//! The bridge binary run as operators run it, with its log written to a file the test can read
//! while it runs. Killed on drop.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hickory_proto::rr::RecordType;

use super::{DnsClient, consul::free_port};

pub struct BridgeBinary {
    child: Child,
    log_path: PathBuf,
    pub dns: DnsClient,
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
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log_path = std::env::temp_dir().join(format!(
            "consul-dns-bridge-test-{}-{}.log",
            std::process::id(),
            addr.port()
        ));
        let log = std::fs::File::create(&log_path).expect("create log file");
        let child = Command::new(env!("CARGO_BIN_EXE_consul-dns-bridge"))
            .args(["--listen", &addr.to_string(), "--consul-addr", consul_addr])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the binary");
        let bridge = Self {
            child,
            log_path,
            dns: DnsClient::new(addr),
        };
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if !bridge
                .dns
                .addresses(ready_name, RecordType::A)
                .await
                .is_empty()
            {
                return bridge;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the binary did not answer {ready_name} within 15 s; log:\n{}",
                bridge.log()
            );
        }
    }

    /// Everything the binary has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for BridgeBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}
