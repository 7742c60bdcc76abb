//! Shipping as operators install it, with Debian's podman (`support::podman`; root only):
//! - the image built from `docker/Dockerfile` (its build stage given this test's binary, as the
//!   Dockerfile says to do offline; the runtime stage as users build it): small, not root,
//!   answers A and SRV through Consul, `/health` and `/ready`, its health check, a reload on
//!   SIGHUP, a stop within 5 s on SIGTERM, all on a read-only root filesystem;
//! - the compose file started as users start it (`podman-compose up --build`, Consul's image
//!   built from Debian's package): three servers elect a leader, the client agent joins, the
//!   bridge answers on its published port, dnsmasq forwards `consul.` to it, and answers keep
//!   flowing while the leader's container is stopped;
//! - the Debian package installed with `dpkg -i`, and its unit's `ExecStart` line run.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hickory_proto::rr::RecordType;

use crate::support::{
    ConsulAgent, DnsClient,
    consul::{consul_binary, free_port, service},
    is_root,
    podman::{self, Container, Context, PODMAN, ensure_base_image, run, run_ok},
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const STAND_IN: &str = "localhost/cdb-build-stand-in:test";
const IMAGE: &str = "localhost/consul-dns-bridge:test";

/// The build stage's stand-in: the base image holding this test's binary, stripped, where
/// `cargo build --release` leaves it (what `docker/Dockerfile` says to do offline).
fn build_stand_in() {
    let context = Context::new("stand-in");
    let binary = context.path().join("consul-dns-bridge");
    std::fs::copy(env!("CARGO_BIN_EXE_consul-dns-bridge"), &binary).expect("copy the binary");
    run_ok("strip", &[binary.to_str().expect("utf-8 path")]);
    std::fs::write(
        context.path().join("Containerfile"),
        format!(
            "FROM {}\nCOPY consul-dns-bridge /src/target/release/consul-dns-bridge\n",
            podman::BASE_IMAGE
        ),
    )
    .expect("Containerfile");
    let file = context.path().join("Containerfile");
    run_ok(
        "podman",
        &[
            "build",
            "-q",
            "-t",
            STAND_IN,
            "-f",
            file.to_str().expect("path"),
            context.as_str(),
        ],
    );
}

fn skip() -> bool {
    match podman::unavailable() {
        Some(why) => {
            println!("SKIPPED: containers need root and podman; {why}");
            true
        }
        None => false,
    }
}

/// Asks `name` (A) until it has addresses, for up to `limit`; how long that took.
async fn answered_within(dns: &DnsClient, name: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some((answer, _)) = dns
            .query_as_stub(name, RecordType::A, 1, Duration::from_millis(300))
            .await
            && !answer.answers.is_empty()
        {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

async fn http_status(url: &str) -> u16 {
    consul_dns_bridge::install_crypto_provider();
    reqwest::get(url)
        .await
        .map_or(0, |response| response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_as_users_run_it() {
    if skip() {
        return;
    }
    let _one = PODMAN.lock().await;
    ensure_base_image();
    build_stand_in();
    let started = Instant::now();
    run_ok(
        "podman",
        &[
            "build",
            "-q",
            // HEALTHCHECK exists in Docker's image format only (OCI has none).
            "--format",
            "docker",
            "-f",
            &format!("{ROOT}/docker/Dockerfile"),
            "--build-arg",
            &format!("BUILD_IMAGE={STAND_IN}"),
            "--build-arg",
            "COMPILE=no",
            "-t",
            IMAGE,
            ROOT,
        ],
    );
    let build_took = started.elapsed();
    let size: u64 = run_ok(
        "podman",
        &["image", "inspect", "--format", "{{.Size}}", IMAGE],
    )
    .parse()
    .expect("a size");
    let user = run_ok(
        "podman",
        &["image", "inspect", "--format", "{{.Config.User}}", IMAGE],
    );
    println!(
        "image built in {build_took:?}: {:.1} MB (this test's debug binary, stripped), user {user}",
        size as f64 / 1e6
    );
    assert!(size < 40_000_000, "image of {size} bytes");
    assert_eq!(user, "10001:10001", "not root");

    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    consul.register(service("web", "web2", "10.1.0.2")).await;
    let (dns_port, http_port) = (free_port(), free_port());
    let name = format!("cdb-image-{}", std::process::id());
    let listen = format!("127.0.0.1:{dns_port}");
    let http = format!("127.0.0.1:{http_port}");
    let consul_env = format!("CONSUL_HTTP_ADDR={}", consul.http_url());
    run_ok(
        "podman",
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--read-only",
            "-e",
            &consul_env,
            IMAGE,
            "--listen",
            &listen,
            "--http-listen",
            &http,
            "--zones-dir",
            "/etc/consul-dns-bridge/zones",
        ],
    );
    let _container = Container(name.clone());
    let dns = DnsClient::new(listen.parse::<SocketAddr>().expect("addr"));
    let first = answered_within(&dns, "web.service.consul.", Duration::from_secs(20)).await;
    assert!(
        first.is_some(),
        "no answer; log:\n{}",
        run_ok("podman", &["logs", &name])
    );
    assert_eq!(
        dns.addresses("web.service.consul.", RecordType::A)
            .await
            .len(),
        2
    );
    let srv = dns.query("web.service.consul.", RecordType::SRV).await;
    assert_eq!(srv.answers.len(), 2, "SRV");
    assert_eq!(http_status(&format!("http://{http}/health")).await, 200);
    assert_eq!(http_status(&format!("http://{http}/ready")).await, 200);
    // The image's health check runs the binary's own probe (no shell in the image); the
    // image's own is on the default port, so this one names the test's.
    let probe = format!("127.0.0.1:{http_port}");
    run_ok(
        "podman",
        &["exec", &name, "/consul-dns-bridge", "probe", &probe],
    );
    let check = run_ok(
        "podman",
        &[
            "image",
            "inspect",
            "--format",
            "{{.HealthCheck.Test}}",
            IMAGE,
        ],
    );
    assert!(check.contains("probe"), "the image's health check: {check}");
    // The process runs as 10001, not root.
    let pid = run_ok("podman", &["inspect", "--format", "{{.State.Pid}}", &name]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default();
    assert!(uid.split_whitespace().nth(1) == Some("10001"), "{uid}");
    // SIGHUP reloads; SIGTERM stops it within 5 s, exit code 0.
    run_ok("podman", &["kill", "--signal", "HUP", &name]);
    let logs = || {
        let output = run("podman", &["logs", &name]);
        String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout)
    };
    let hup = Instant::now();
    while !logs().contains("SIGHUP: zone files reloaded") && hup.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        logs().contains("SIGHUP: zone files reloaded"),
        "no reload:\n{}",
        logs()
    );
    let stopping = Instant::now();
    run_ok("podman", &["stop", "--time", "10", &name]);
    let stop_took = stopping.elapsed();
    let code = run_ok(
        "podman",
        &["inspect", "--format", "{{.State.ExitCode}}", &name],
    );
    println!("first answer after {first:?}; stopped in {stop_took:?} with code {code}");
    assert!(
        stop_took < Duration::from_secs(5),
        "stop took {stop_took:?}"
    );
    assert_eq!(code, "0");
}

/// `podman-compose` on the compose file, project `cdbtest`, with the environment that picks
/// the offline images; brought down on drop.
struct Compose;

impl Compose {
    fn command(args: &[&str]) -> Command {
        let mut command = Command::new("podman-compose");
        command
            .args([
                "-p",
                "cdbtest",
                "-f",
                &format!("{ROOT}/docker/docker-compose.yml"),
            ])
            .args(args)
            .env("CONTAINERS_CONF", podman::containers_conf())
            .env("CONSUL_IMAGE", "localhost/consul:debian")
            .env("BUILD_IMAGE", STAND_IN)
            .env("COMPILE", "no")
            // HEALTHCHECK exists in Docker's image format only (OCI has none).
            .env("BUILDAH_FORMAT", "docker")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Brings the project up (whatever an earlier run left down first); down again on drop,
    /// also when `up` fails part way.
    fn up() -> Self {
        let _ = Self::command(&["down", "-t", "2"]).output();
        let compose = Self;
        let output = Self::command(&["up", "-d", "--build"])
            .output()
            .expect("run podman-compose");
        assert!(
            output.status.success(),
            "podman-compose up: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        compose
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = Self::command(&["down", "-t", "2"]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_file_runs_as_users_start_it() {
    if skip() {
        return;
    }
    let _one = PODMAN.lock().await;
    ensure_base_image();
    build_stand_in();
    // Consul's image from Debian's package, as docker/consul.Dockerfile says.
    let context = Context::new("consul");
    std::fs::copy(consul_binary(), context.path().join("consul")).expect("copy consul");
    let file = format!("{ROOT}/docker/consul.Dockerfile");
    run_ok(
        "podman",
        &[
            "build",
            "-q",
            "-t",
            "localhost/consul:debian",
            "-f",
            &file,
            context.as_str(),
        ],
    );
    let started = Instant::now();
    let _compose = Compose::up();
    let agent = "http://127.0.0.1:8500";
    consul_dns_bridge::install_crypto_provider();
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let request = http.get(format!("{agent}{path}")).send();
        async move {
            match request.await {
                Ok(response) => response.json::<serde_json::Value>().await.ok(),
                Err(_) => None,
            }
        }
    };
    let mut leader = String::new();
    while started.elapsed() < Duration::from_secs(90) && leader.is_empty() {
        leader = get("/v1/status/leader")
            .await
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!leader.is_empty(), "no leader elected within 90 s");
    let peers = get("/v1/status/peers").await.unwrap_or_default();
    assert_eq!(
        peers.as_array().map_or(0, Vec::len),
        3,
        "three servers: {peers}"
    );
    let dns = DnsClient::new("127.0.0.1:8653".parse().expect("addr"));
    let bridge_first = answered_within(&dns, "web.service.consul.", Duration::from_secs(60))
        .await
        .map(|_| started.elapsed());
    assert!(
        bridge_first.is_some(),
        "the bridge's published port never answered"
    );
    let members = get("/v1/agent/members").await.unwrap_or_default();
    let names: Vec<String> = members
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["Name"].as_str().map(str::to_owned))
        .collect();
    assert!(
        names.contains(&"client1".to_owned()),
        "the client joined: {names:?}"
    );
    let through_dnsmasq = DnsClient::new("127.0.0.1:5353".parse().expect("addr"));
    assert!(
        answered_within(
            &through_dnsmasq,
            "web.service.consul.",
            Duration::from_secs(20)
        )
        .await
        .is_some(),
        "dnsmasq did not forward consul. to the bridge"
    );
    // Stop the leader's container: answers keep coming (from the bridge's cache, then from
    // the new leader).
    let leader_ip = leader.split(':').next().unwrap_or_default().to_owned();
    let leader_name = members
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["Addr"].as_str() == Some(&leader_ip))
        .and_then(|m| m["Name"].as_str().map(str::to_owned))
        .expect("the leader among the members");
    let number = leader_name.trim_start_matches("server");
    let container = format!("cdbtest_consul-server-{number}_1");
    run_ok("podman", &["stop", "--time", "2", &container]);
    let stopped = Instant::now();
    let (mut asked, mut failed) = (0, 0);
    while stopped.elapsed() < Duration::from_secs(15) {
        asked += 1;
        let answer = dns
            .query_as_stub(
                "web.service.consul.",
                RecordType::A,
                1,
                Duration::from_millis(500),
            )
            .await;
        if answer.is_none_or(|(m, _)| m.answers.is_empty()) {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_leader = get("/v1/status/leader")
        .await
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    println!(
        "compose up to the bridge's first answer: {bridge_first:?}; leader {leader_name} \
         stopped: {failed} of {asked} questions unanswered over 15 s; new leader {new_leader}"
    );
    assert_eq!(failed, 0, "answers stopped with the leader");
    assert!(
        !new_leader.is_empty() && new_leader != leader,
        "a new leader"
    );
}

/// Removes the package on drop.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "consul-dns-bridge"])
            .output();
    }
}

/// The `ExecStart=` line of a unit file.
fn exec_start(unit: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(unit).expect("the unit");
    text.lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debian_package_installs_and_its_unit_runs() {
    if !is_root() {
        println!("SKIPPED: installing a package needs root");
        return;
    }
    let out = Context::new("deb");
    let built = Command::new(format!("{ROOT}/scripts/build-deb.sh"))
        .arg(out.as_str())
        .env("BINARY", env!("CARGO_BIN_EXE_consul-dns-bridge"))
        .output()
        .expect("run build-deb.sh");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    let installed = Command::new("dpkg")
        .args(["-i", deb.to_str().expect("path")])
        .output()
        .expect("dpkg -i");
    let _installed = Installed;
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let status = Command::new("dpkg")
        .args(["-s", "consul-dns-bridge"])
        .output()
        .expect("dpkg -s");
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(
        status.contains("/etc/consul-dns-bridge/config.toml"),
        "a conffile: {status}"
    );
    let unit = Path::new("/lib/systemd/system/consul-dns-bridge.service");
    let text = std::fs::read_to_string(unit).expect("the unit is installed");
    for hardening in [
        "DynamicUser=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(text.contains(hardening), "{hardening} in the unit");
    }
    // The unit's command as systemd would run it. The packaged config listens on port 53 of
    // 127.0.0.153, which another test may hold meanwhile: the command line wins over the file.
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let line = exec_start(unit);
    let listen = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let mut child: Child = Command::new(&line[0])
        .args(&line[1..])
        .args(["--listen", &listen, "--http-listen", &http])
        .env("CONSUL_HTTP_ADDR", consul.http_url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the unit's ExecStart");
    let dns = DnsClient::new(listen.parse().expect("addr"));
    let answered = answered_within(&dns, "web.service.consul.", Duration::from_secs(15)).await;
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "{}: installed; `{}` answered after {answered:?}",
        deb.display(),
        line.join(" ")
    );
    assert!(answered.is_some(), "the installed binary did not answer");
}
