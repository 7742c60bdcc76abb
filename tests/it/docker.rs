//! The container files read: the compose file has the seed's layout with the same Consul flags
//! as the loopback cluster test, and the Dockerfile builds in stages and runs as a non-root user
//! with a health check on /health. `containers.rs` builds and runs them with podman.

use crate::support::cluster::{CLIENT_FLAGS, SERVER_FLAGS};
use yaml_rust2::{Yaml, YamlLoader};

const DOCKER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docker");

fn compose() -> Yaml {
    let text = std::fs::read_to_string(format!("{DOCKER_DIR}/docker-compose.yml"))
        .expect("docker/docker-compose.yml");
    let mut docs = YamlLoader::load_from_str(&text).expect("valid YAML");
    docs.remove(0)
}

/// A service's key, following a `<<: *anchor` merge when the service does not set it.
fn field<'a>(service: &'a Yaml, key: &str) -> &'a Yaml {
    match &service[key] {
        Yaml::BadValue => &service["<<"][key],
        value => value,
    }
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec()
        .unwrap_or_else(|| panic!("a list: {list:?}"))
        .iter()
        .map(|item| item.as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn compose_has_the_seeds_layout_with_the_tested_consul_flags() {
    let compose = compose();
    let services = compose["services"].as_hash().expect("services");
    let mut names: Vec<&str> = services.keys().filter_map(Yaml::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "bridge",
            "consul-client",
            "consul-server-1",
            "consul-server-2",
            "consul-server-3",
            "dnsmasq"
        ]
    );
    let service = |name: &str| &compose["services"][name];

    for i in 1..=3 {
        let server = service(&format!("consul-server-{i}"));
        assert_eq!(
            field(server, "image").as_str(),
            Some("${CONSUL_IMAGE:-hashicorp/consul:1.15}")
        );
        let command = strings(field(server, "command"));
        assert_eq!(
            command[..SERVER_FLAGS.len()],
            *SERVER_FLAGS,
            "server {i}: the loopback cluster's flags"
        );
        let joins = command
            .iter()
            .filter(|a| a.starts_with("-retry-join="))
            .count();
        assert_eq!(joins, 2, "server {i} joins the other two");
    }
    let client = service("consul-client");
    let command = strings(field(client, "command"));
    assert_eq!(command[..CLIENT_FLAGS.len()], *CLIENT_FLAGS);
    assert!(!command.iter().any(|a| a == "-server"));
    assert!(
        command
            .iter()
            .any(|a| a == "-config-file=/consul/config/web.json")
    );
    let sample: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DOCKER_DIR}/web.json")).expect("web.json"),
    )
    .expect("web.json is JSON");
    assert!(
        sample["service"]["check"]["tcp"].is_string(),
        "the sample has a health check"
    );

    let bridge = service("bridge");
    assert_eq!(
        bridge["environment"]["CONSUL_HTTP_ADDR"].as_str(),
        Some("http://consul-client:8500"),
        "the bridge talks to the client agent"
    );
    let ports = strings(&bridge["ports"]);
    for port in ["8653:8653/udp", "8653:8653/tcp", "8654:8654"] {
        assert!(
            ports.iter().any(|p| p.ends_with(port)),
            "bridge publishes {port}"
        );
    }
    let dnsmasq = &service("dnsmasq")["environment"];
    assert_eq!(
        dnsmasq["BRIDGE_HOST"].as_str(),
        Some("bridge"),
        "dnsmasq forwards to the bridge"
    );
    assert_eq!(dnsmasq["BRIDGE_PORT"].as_str(), Some("8653"));
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_a_health_check() {
    let text =
        std::fs::read_to_string(format!("{DOCKER_DIR}/Dockerfile")).expect("docker/Dockerfile");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let starting = |word: &str| lines.iter().filter(|l| l.starts_with(word)).count();
    assert_eq!(starting("FROM "), 2, "a build stage and a runtime stage");
    assert!(lines.iter().any(|l| l.starts_with("COPY --from=build")));
    let user = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(
        !user.contains("root") && !user.starts_with("USER 0"),
        "runs as non-root: {user}"
    );
    for port in ["8653/udp", "8653/tcp", "8654/tcp"] {
        assert!(text.contains(port), "EXPOSE {port}");
    }
    assert!(
        text.contains("HEALTHCHECK") && text.contains("\"probe\""),
        "health check on /health by the binary's own probe"
    );
}
