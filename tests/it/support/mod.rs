//! The harness every integration test uses: a real Consul agent on free loopback ports, fixtures
//! registered through Consul's own APIs, a DNS client, and a bridge started in-process.
//! Everything started here stops in `Drop`, also when a test fails.

pub mod binary;
pub mod churn;
pub mod cluster;
pub mod consul;
pub mod dns;
pub mod dnsmasq;
pub mod encrypted_client;
pub mod fake_consul;
pub mod named;
pub mod pki;
pub mod podman;
mod scoped_catalog;
pub mod scripted_consul;
pub mod zones;

use consul_dns_bridge::{Bridge, Config, Parsed};

pub use self::{consul::ConsulAgent, dns::DnsClient};

/// The gate's limits as the gate tests set them: 127.0.0.1 asks everything, 127.0.0.50 is
/// rate limited (3 answers a second, none slipped), 127.0.0.200 is outside `--allow-query`.
pub const GATE_LIMITS: [&str; 10] = [
    "--allow-query",
    "127.0.0.0/25",
    "--rrl-exempt",
    "127.0.0.1",
    "--rrl-exempt",
    "127.0.0.200",
    "--rrl-ratelimit",
    "3",
    "--rrl-slip",
    "0",
];

/// Starts a bridge in this process against `agent`, listening on a free loopback port;
/// `extra` are more command-line options.
pub async fn start_bridge(agent: &ConsulAgent, extra: &[&str]) -> (Bridge, DnsClient) {
    start_bridge_at(&agent.http_url(), extra).await
}

/// Starts a bridge in this process against the Consul HTTP address `url`.
pub async fn start_bridge_at(url: &str, extra: &[&str]) -> (Bridge, DnsClient) {
    let mut args = vec![
        "consul-dns-bridge",
        "--listen",
        "127.0.0.1:0",
        "--consul-addr",
        url,
    ];
    // The checkout's zones/ would be served by default (tests run in it); tests that want zones
    // say so.
    let no_zones = std::env::temp_dir().join(format!("cdb-no-zones-{}", std::process::id()));
    std::fs::create_dir_all(&no_zones).expect("empty zones dir");
    if !extra.contains(&"--zones-dir") {
        args.extend(["--zones-dir", no_zones.to_str().expect("utf-8 temp path")]);
    }
    // Tests run in parallel: each bridge gets its own metrics port.
    if !extra.contains(&"--http-listen") {
        args.extend(["--http-listen", "127.0.0.1:0"]);
    }
    args.extend_from_slice(extra);
    let config = match Config::parse(args) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Display(_)) => panic!("options asked for help text"),
        Err(error) => panic!("bad test options: {error}"),
    };
    init_test_log();
    let bridge = Bridge::start(&config).await.expect("bridge starts");
    let dns = DnsClient::new(bridge.dns_addrs()[0]);
    (bridge, dns)
}

/// The value of one series on the in-process `bridge`'s `/metrics` now, named without the
/// `consul_dns_bridge_` prefix and with its labels as written there; `None` when absent.
pub async fn metric(bridge: &Bridge, series: &str) -> Option<f64> {
    let url = format!("http://{}/metrics", bridge.http_addr()?);
    let page = reqwest::get(url).await.ok()?.text().await.ok()?;
    let wanted = format!("consul_dns_bridge_{series} ");
    page.lines()
        .find_map(|line| line.strip_prefix(&wanted)?.trim().parse().ok())
}

/// Runs `program` with `args` off the runtime's threads; its stdout, or a failure with stderr.
pub async fn run_tool(program: &str, args: Vec<String>) -> Result<String, String> {
    let program = program.to_owned();
    let shown = format!("{program} {}", args.join(" "));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&program).args(&args).output()
    })
    .await
    .map_err(|error| error.to_string())?
    .map_err(|error| format!("{shown}: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    match output.status.success() {
        true => Ok(stdout),
        false => Err(format!(
            "{shown}: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}

/// Whether the tests run as root (binding port 53, installing packages, running podman).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Polls `done` every 20 ms until it holds, failing the test with `what` after `limit`; returns
/// how long it took.
pub async fn wait_until(
    what: &str,
    limit: std::time::Duration,
    done: impl AsyncFnMut() -> bool,
) -> std::time::Duration {
    match poll_until(limit, done).await {
        Some(took) => took,
        None => panic!("{what}: not within {limit:?}"),
    }
}

/// Polls `done` every 20 ms until it holds (how long that took) or `limit` has passed (`None`).
pub async fn poll_until(
    limit: std::time::Duration,
    mut done: impl AsyncFnMut() -> bool,
) -> Option<std::time::Duration> {
    let started = std::time::Instant::now();
    while !done().await {
        if started.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Some(started.elapsed())
}

/// The bridge's log in the test output, at the filter `TEST_LOG` names (e.g.
/// `TEST_LOG=consul_dns_bridge=debug cargo test ...`); nothing when it is not set.
fn init_test_log() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("TEST_LOG").unwrap_or_default())
            .with_test_writer()
            .try_init();
    }
}
