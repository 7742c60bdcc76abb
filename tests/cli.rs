//! The binary's command line: bad values give one clear line and exit code 2.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_consul-dns-bridge"))
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
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
