//! Unit tests of option parsing: defaults, precedence, Consul's shapes, one-line errors.

use super::*;

fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    let mut all = vec!["consul-dns-bridge"];
    all.extend_from_slice(args);
    match Config::parse(all)? {
        Parsed::Run(config) => Ok(*config),
        Parsed::Display(e) => panic!("unexpected display: {e}"),
    }
}

#[test]
fn defaults_follow_consul() {
    let config = parse(&["--consul-addr", "127.0.0.1:8500"]).unwrap();
    assert_eq!(config.listen, vec!["127.0.0.1:8653".parse().unwrap()]);
    assert_eq!(config.consul_addrs[0].as_str(), "http://127.0.0.1:8500/");
    assert_eq!(config.domain.to_string(), "consul.");
    assert_eq!(config.service_ttl.for_service("web"), Duration::ZERO);
}

#[test]
fn bad_duration_names_the_option_on_one_line() {
    let error = parse(&["--service-ttl", "soon"]).unwrap_err().to_string();
    assert!(error.contains("--service-ttl"), "{error}");
    assert!(!error.contains('\n'), "{error}");
}

#[test]
fn file_values_are_used_and_command_line_wins() {
    let dir = std::env::temp_dir().join(format!("cdb-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bridge.toml");
    std::fs::write(
        &path,
        "service_ttl = \"30s\"\nnode-ttl = \"5s\"\nlisten = [\"127.0.0.1:5353\"]\ndomain = \"Example.\"\n",
    )
    .unwrap();
    let config = parse(&["--config", path.to_str().unwrap(), "--node-ttl", "1s"]).unwrap();
    assert_eq!(
        config.service_ttl.for_service("web"),
        Duration::from_secs(30)
    );
    assert_eq!(config.node_ttl, Duration::from_secs(1));
    assert_eq!(config.listen, vec!["127.0.0.1:5353".parse().unwrap()]);
    assert_eq!(config.domain.to_string(), "example.");
}

#[test]
fn consul_dns_options_in_consul_shapes() {
    let dir = std::env::temp_dir().join(format!("cdb-config-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dns.toml");
    std::fs::write(
        &path,
        "service_ttl = { \"*\" = \"5s\", web = \"30s\", \"we*\" = \"20s\" }\n\
         a_record_limit = 2\nudp_answer_limit = 3\nenable_truncate = true\n\
         alt_domain = \"alt.\"\n[soa]\nrefresh = 100\nretry = 50\nexpire = 1000\nmin_ttl = 9\n",
    )
    .unwrap();
    let config = parse(&["--config", path.to_str().unwrap()]).unwrap();
    let ttl = |name: &str| config.service_ttl.for_service(name).as_secs();
    assert_eq!((ttl("web"), ttl("wex"), ttl("db")), (30, 20, 5));
    assert_eq!(config.dns.a_record_limit, 2);
    assert_eq!(config.dns.udp_answer_limit, Some(3));
    assert!(config.dns.enable_truncate);
    assert_eq!(
        config.dns.soa,
        SoaTimers {
            refresh: 100,
            retry: 50,
            expire: 1000,
            min_ttl: 9
        }
    );
    assert_eq!(config.dns.alt_domain.unwrap().to_string(), "alt.");

    let config = parse(&["--service-ttl", "web*=4s", "--service-ttl", "web-db=1s"]).unwrap();
    let ttl = |name: &str| config.service_ttl.for_service(name).as_secs();
    assert_eq!((ttl("web-x"), ttl("web-db"), ttl("db")), (4, 1, 0));
    let error = parse(&["--service-ttl", "=4s"]).unwrap_err().to_string();
    assert!(error.contains("--service-ttl"), "{error}");
}

#[test]
fn bad_file_value_names_file_and_option() {
    let dir = std::env::temp_dir().join(format!("cdb-config-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "watch_wait = \"1h\"\n").unwrap();
    let error = parse(&["--config", path.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("'watch-wait'") && error.contains("bad.toml") && error.contains("1s to 10m"),
        "{error}"
    );
    std::fs::write(&path, "colour = \"blue\"\n").unwrap();
    let error = parse(&["--config", path.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown option 'colour'"), "{error}");
}

#[test]
fn tcp_limits_take_numbers_from_both_sources() {
    let error = parse(&["--tcp-max-connections", "0"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("--tcp-max-connections"), "{error}");
    let error = parse(&["--tcp-idle-timeout", "0s"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("--tcp-idle-timeout"), "{error}");

    let dir = std::env::temp_dir().join(format!("cdb-config-tcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tcp.toml");
    std::fs::write(
        &path,
        "tcp_max_connections = 7\ntcp_idle_timeout = \"3s\"\n",
    )
    .unwrap();
    let config = parse(&["--config", path.to_str().unwrap()]).unwrap();
    assert_eq!(config.tcp_max_connections, 7);
    assert_eq!(config.tcp_idle_timeout, Duration::from_secs(3));
    assert_eq!(parse(&[]).unwrap().tcp_max_connections, 150);
}

#[test]
fn token_never_prints() {
    let token = Token("s3cr3t-token".into());
    assert!(!format!("{token:?}").contains("s3cr3t"));
}

#[test]
fn file_lists_and_consul_spellings_fill_what_the_command_line_left_out() {
    let dir = std::env::temp_dir().join(format!("cdb-config-lists-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lists.toml");
    std::fs::write(
        &path,
        "recursors = [\"127.0.0.1\", \"127.0.0.2:5353\"]\nlisten = \"127.0.0.1:5300\"\n\
         http_listen = \"off\"\nrecursor_strategy = \"random\"\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let config = parse(&["--config", file]).unwrap();
    assert_eq!(
        config.recursors.addrs,
        vec![
            "127.0.0.1:53".parse().unwrap(),
            "127.0.0.2:5353".parse().unwrap()
        ]
    );
    assert_eq!(config.recursors.strategy, RecursorStrategy::Random);
    assert_eq!(config.listen, vec!["127.0.0.1:5300".parse().unwrap()]);
    assert_eq!(config.http_listen, None);
    // A list given on the command line replaces the file's, never adds to it.
    let config = parse(&["--config", file, "--recursor", "127.0.0.9"]).unwrap();
    assert_eq!(
        config.recursors.addrs,
        vec!["127.0.0.9:53".parse().unwrap()]
    );
    std::fs::write(&path, "listen = [\"127.0.0.1:1\", 7]\n").unwrap();
    let error = parse(&["--config", file]).unwrap_err().to_string();
    assert!(error.contains("'listen'"), "{error}");
    std::fs::write(&path, "config = \"other.toml\"\n").unwrap();
    let error = parse(&["--config", file]).unwrap_err().to_string();
    assert!(error.contains("unknown option 'config'"), "{error}");
    std::fs::write(&path, "node_ttl = [\"1s\", \"2s\"]\n").unwrap();
    let error = parse(&["--config", file]).unwrap_err().to_string();
    assert!(
        error.contains("'node-ttl'") && error.contains("single"),
        "{error}"
    );
}

#[test]
fn help_shows_each_default_from_the_declaration() {
    use clap::CommandFactory;
    let help = options::Options::command().render_long_help().to_string();
    for default in [
        "[default: 127.0.0.1:8653]",
        "[default: 5m]",
        "[default: 150]",
    ] {
        assert!(help.contains(default), "{default} missing from:\n{help}");
    }
}

#[test]
fn the_readme_lists_every_option() {
    use clap::CommandFactory;
    let readme = include_str!("../../README.md");
    let table = readme
        .split("## Options")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("an Options section in the README");
    for arg in options::Options::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            let option = format!("`--{long}");
            assert!(table.contains(&option), "{option} missing from the README");
        }
    }
}

#[test]
fn encrypted_listeners_need_a_certificate_and_key() {
    let error = parse(&["--tls-listen", "127.0.0.1:853"])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("--tls-cert") && error.contains("--tls-listen"),
        "{error}"
    );
    let error = parse(&["--https-listen", "127.0.0.1:443", "--tls-cert", "c.pem"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("--tls-key"), "{error}");
    let config = parse(&[
        "--https-listen",
        "127.0.0.1:443",
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
        "--query-log",
        "-",
    ])
    .unwrap();
    assert_eq!(config.encrypted.https_listen.len(), 1);
    assert!(config.encrypted.certificate.is_some());
    assert_eq!(
        config.query_log.map(|(target, _)| target),
        Some(LogTarget::Stderr)
    );
    let error = parse(&["--query-log", ""]).unwrap_err().to_string();
    assert!(error.contains("--query-log"), "{error}");
}
