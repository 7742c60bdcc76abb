//! BIND's `named` (unpacked by `scripts/install-named.sh`) as a forwarder in front of the
//! bridge on a free loopback port: a resolver that sends DNS cookies upstream by default, as
//! resolvers do. It forwards everything to the bridge and knows no other server (its root
//! hints name 127.0.0.1), so it sends nothing off the host.

use std::{
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::consul::free_port;

pub struct Named {
    child: Child,
    dir: PathBuf,
    /// Where it answers.
    pub addr: SocketAddr,
}

/// The `named` the install script unpacked (or `NAMED_BIN`).
fn named_binary() -> PathBuf {
    if let Ok(path) = std::env::var("NAMED_BIN") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".named-bin/named")
}

impl Named {
    /// Starts named on 127.0.0.1, forwarding every question to `bridge`; its questions to the
    /// bridge come from `source` (a loopback address: a client network of its own).
    pub async fn forwarding_to(bridge: SocketAddr, source: &str) -> Self {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let dir = std::env::temp_dir().join(format!("named-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("named directory");
        std::fs::write(
            dir.join("root.hints"),
            ".  3600000 NS a.root.invalid.\na.root.invalid. 3600000 A 127.0.0.1\n",
        )
        .expect("root hints");
        let config = format!(
            r#"options {{
  directory "{dir}";
  pid-file none;
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  query-source address {source};
  recursion yes;
  allow-query {{ any; }};
  allow-recursion {{ any; }};
  dnssec-validation no;
  forward only;
  forwarders {{ {bridge_ip} port {bridge_port}; }};
  empty-zones-enable no;
  max-cache-size 32m;
}};
controls {{ }};
zone "." {{ type hint; file "root.hints"; }};
"#,
            dir = dir.display(),
            bridge_ip = bridge.ip(),
            bridge_port = bridge.port(),
        );
        let config_path = dir.join("named.conf");
        std::fs::write(&config_path, config).expect("named.conf");
        let log = std::fs::File::create(dir.join("named.log")).expect("named log");
        let child = Command::new(named_binary())
            .args(["-4", "-g", "-n", "1", "-c"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start named (scripts/install-named.sh unpacks it)");
        let mut named = Self { child, dir, addr };
        named.wait_listening().await;
        named
    }

    async fn wait_listening(&mut self) {
        let started = Instant::now();
        // named answers a query for its own version once it listens.
        let probe = UdpSocket::bind("127.0.0.1:0").expect("probe socket");
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let question =
            super::dns::query_bytes(1, "version.bind.", hickory_proto::rr::RecordType::TXT, None);
        let mut question = question;
        // Class CHAOS for version.bind.
        let len = question.len();
        question[len - 2..].copy_from_slice(&3u16.to_be_bytes());
        let mut buf = [0u8; 512];
        loop {
            let _ = probe.send_to(&question, self.addr);
            if probe.recv(&mut buf).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("named exited ({status}): {}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "named not answering: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What it has logged.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.join("named.log")).unwrap_or_default())
            .into_owned()
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
