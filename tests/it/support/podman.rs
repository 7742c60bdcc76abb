//! Containers as operators run them, with Debian's podman (no Docker engine or image registry
//! here): a podman configuration this machine accepts (runc, cgroupfs, rlimits it may set), a
//! Debian base image built from Debian's packages when none is there (cached in
//! `target/podman/`), images built from the project's Dockerfiles, and containers removed on
//! drop. Root only: the tests that use it say so and skip otherwise.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// One container test at a time: they share podman's state and fixed ports.
pub static PODMAN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The image every Dockerfile here starts from.
pub const BASE_IMAGE: &str = "docker.io/library/debian:bookworm-slim";

/// Where the base tarball and podman's configuration are kept between runs.
fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/podman")
}

/// Why container tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !super::is_root() {
        return Some("not root".into());
    }
    for tool in ["podman", "podman-compose", "mmdebstrap"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (scripts/test.sh installs it)"
            ));
        }
    }
    None
}

/// The `containers.conf` this machine needs: crun refuses here and cgroups are v1, and the
/// rlimits podman sets by default cannot be raised.
pub fn containers_conf() -> PathBuf {
    let path = cache_dir().join("containers.conf");
    let _ = std::fs::create_dir_all(cache_dir());
    let text = "[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                [containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n";
    std::fs::write(&path, text).expect("write containers.conf");
    path
}

/// Runs `program` with `args` under this machine's podman configuration.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("CONTAINERS_CONF", containers_conf())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// As [`run`], failing the test with podman's words when it fails.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Makes sure the Debian base image is there: imported from a tarball built with mmdebstrap
/// from Debian's packages (with the CA roots, and dnsmasq for its image), cached.
pub fn ensure_base_image() {
    if run("podman", &["image", "exists", BASE_IMAGE])
        .status
        .success()
    {
        return;
    }
    let tarball = cache_dir().join("bookworm-base.tar");
    if !tarball.exists() {
        let partial = cache_dir().join("bookworm-base.tar.partial");
        run_ok(
            "mmdebstrap",
            &[
                "--variant=minbase",
                "--format=tar",
                "--include=ca-certificates,dnsmasq-base",
                "bookworm",
                partial.to_str().expect("utf-8 path"),
            ],
        );
        std::fs::rename(&partial, &tarball).expect("keep the base tarball");
    }
    run_ok(
        "podman",
        &["import", tarball.to_str().expect("utf-8 path"), BASE_IMAGE],
    );
}

/// A directory made for one build context, removed on drop.
pub struct Context(pub PathBuf);

impl Context {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cdb-podman-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("context dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A container removed (forcibly) on drop.
pub struct Container(pub String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run("podman", &["rm", "--force", "--time", "2", &self.0]);
    }
}
