//! The binary's command line: bad values give one clear line and exit code 2.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_consul-dns-bridge"))
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        // Away from the checkout, whose zones/ would be served (and logged) by default.
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run the binary");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_values_name_the_option_on_one_line() {
    for (args, option) in [
        (&["--service-ttl", "soon"][..], "--service-ttl"),
        (&["--listen", "nowhere"][..], "--listen"),
        (&["--consul-addr", "ftp://x"][..], "--consul-addr"),
        (&["--watch-wait", "1h"][..], "--watch-wait"),
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(option), "{args:?}: {stderr}");
    }
}

#[test]
fn bad_config_file_names_the_field() {
    let path = std::env::temp_dir().join(format!("cdb-cli-{}.toml", std::process::id()));
    std::fs::write(&path, "node_ttl = \"forever\"\n").expect("write config");
    let (code, stderr) = run(&["--config", path.to_str().expect("utf-8 path")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("'node-ttl'") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn help_exits_zero() {
    let (code, _) = run(&["--help"]);
    assert_eq!(code, 0);
}

#[test]
fn tls_files_that_cannot_be_used_name_the_option() {
    let junk = std::env::temp_dir().join(format!("cdb-cli-junk-{}.pem", std::process::id()));
    std::fs::write(&junk, "not a certificate\n").expect("write junk");
    let junk = junk.to_str().expect("utf-8 path");
    for (args, expect) in [
        (
            &["--ca-file", "/nonexistent/ca.pem"][..],
            "--ca-file (CONSUL_CACERT) /nonexistent/ca.pem: cannot read",
        ),
        (&["--ca-file", junk][..], "no PEM certificate in it"),
        (
            &["--ca-path", "/nonexistent"][..],
            "--ca-path (CONSUL_CAPATH)",
        ),
        (
            &["--client-cert", junk, "--client-key", junk][..],
            "not a PEM certificate and key",
        ),
        (&["--client-cert", junk][..], "'--client-key'"),
        (&["--http-ssl-verify", "maybe"][..], "--http-ssl-verify"),
    ] {
        let (code, stderr) = run(args);
        assert_ne!(code, 0, "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(
            stderr.trim().lines().count() <= 2,
            "{args:?}: one error (and its log line): {stderr}"
        );
    }
    let _ = std::fs::remove_file(junk);
}
