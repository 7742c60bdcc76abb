//! Options from the command line, the `CONSUL_*` environment and a TOML file, validated into one
//! [`Config`].
//!
//! Precedence is the usual one: command line, then environment, then the `--config` file, then
//! defaults. The file uses the option names (`service-ttl`, or Consul's own spelling
//! `service_ttl`). Every error is one line that names the option, so an operator reading a
//! failed unit's journal sees at once what to fix.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use clap::Parser;
use hickory_proto::rr::Name;
use reqwest::Url;

/// Where DNS is served when no `--listen` is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8653";
/// BIND's `tcp-clients` default.
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 150;
/// Where `/metrics`, `/health` and `/ready` are served by default.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8654";
/// Served when present and no `--zones-dir` is given.
pub const DEFAULT_ZONES_DIR: &str = "zones";
/// Consul's own default HTTP address.
pub const DEFAULT_CONSUL_ADDR: &str = "http://127.0.0.1:8500";

/// A Consul ACL token. It prints as `<redacted>` everywhere, so no log line, error or `Debug`
/// dump can leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The secret itself, for the one place that puts it in a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Consul's `recursor_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecursorStrategy {
    /// Always in the order given; the next only when one fails.
    #[default]
    Sequential,
    /// Spread over all of them (hickory rotates them round-robin).
    Random,
}

/// The upstream resolvers and how to ask them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recursors {
    pub addrs: Vec<SocketAddr>,
    pub strategy: RecursorStrategy,
    /// Consul's `recursor_timeout`: how long one upstream gets before the next is tried.
    pub timeout: Duration,
}

/// How to speak HTTPS to Consul, by the names of Consul's own `CONSUL_*` variables. The files are
/// read when the client is built (see `consul::tls`), so a bad file is reported with its option.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsulTls {
    /// `CONSUL_CACERT`: trust only this CA (PEM) for the agent's certificate.
    pub ca_file: Option<PathBuf>,
    /// `CONSUL_CAPATH`: trust only the CAs in the PEM files of this directory.
    pub ca_path: Option<PathBuf>,
    /// `CONSUL_CLIENT_CERT` / `CONSUL_CLIENT_KEY`: present this certificate (for agents with
    /// `verify_incoming`).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `CONSUL_HTTP_SSL_VERIFY`: `false` accepts any certificate.
    pub verify: bool,
}

/// Everything the bridge needs to run, already checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    /// Consul agents in order of preference; the bridge moves to the next when one fails.
    pub consul_addrs: Vec<Url>,
    pub token: Option<Token>,
    pub tls: ConsulTls,
    /// Lower-case, fully qualified (`consul.`).
    pub domain: Name,
    /// `None`: ask the agent (`/v1/agent/self`) which datacenter it is in.
    pub datacenter: Option<String>,
    /// Consul's `service_ttl`: per service name, `*`-suffixed prefixes, `*` for all.
    pub service_ttl: ServiceTtls,
    pub node_ttl: Duration,
    /// Consul's `dns_config` options that shape answers.
    pub dns: DnsOptions,
    /// A watched service nobody asked for during this long stops being watched.
    pub watch_idle_timeout: Duration,
    /// The `wait=` of each blocking query.
    pub watch_wait: Duration,
    /// How long the last known answers are served while Consul does not answer (0: not at all).
    pub max_stale: Duration,
    /// A prepared query asked for is executed again at least this often.
    pub prepared_query_refresh: Duration,
    /// TCP connections open at once; more are closed on accept.
    pub tcp_max_connections: usize,
    /// A TCP connection silent for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Upstream resolvers for names outside the domain and the zone files.
    pub recursors: Recursors,
    /// Zone files served beside the Consul domain; `None`: none.
    pub zones_dir: Option<PathBuf>,
    /// Where `/metrics`, `/health` and `/ready` are served; `None`: not at all.
    pub http_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    /// `--log-level`, an `EnvFilter` directive; `RUST_LOG` wins when set.
    pub log_level: Option<String>,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// TTLs of service answers by service name, as Consul's `service_ttl` map: an exact name wins,
/// then the longest `prefix*` entry (`*` alone matches every name); 0 s otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceTtls {
    exact: std::collections::HashMap<String, Duration>,
    /// Longest prefix first.
    prefixes: Vec<(String, Duration)>,
}

impl ServiceTtls {
    /// One TTL for every service.
    pub fn all(ttl: Duration) -> Self {
        Self {
            exact: Default::default(),
            prefixes: vec![(String::new(), ttl)],
        }
    }

    fn add(&mut self, name: &str, ttl: Duration) {
        let name = name.to_ascii_lowercase();
        match name.strip_suffix('*') {
            Some(prefix) => {
                self.prefixes.retain(|(p, _)| p != prefix);
                self.prefixes.push((prefix.to_owned(), ttl));
                self.prefixes
                    .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
            }
            None => {
                self.exact.insert(name, ttl);
            }
        }
    }

    /// The TTL for `service` (any case).
    pub fn for_service(&self, service: &str) -> Duration {
        let service = service.to_ascii_lowercase();
        if let Some(ttl) = self.exact.get(&service) {
            return *ttl;
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| service.starts_with(prefix.as_str()))
            .map_or(Duration::ZERO, |(_, ttl)| *ttl)
    }
}

/// Consul's SOA timers (`dns_config.soa`), in seconds; `min_ttl` is also the SOA's own TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoaTimers {
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub min_ttl: u32,
}

impl Default for SoaTimers {
    /// Consul's defaults.
    fn default() -> Self {
        Self {
            refresh: 3600,
            retry: 600,
            expire: 86400,
            min_ttl: 0,
        }
    }
}

/// Consul's `dns_config` options that shape answers, same names and meaning.
#[derive(Debug, Clone, Default)]
pub struct DnsOptions {
    /// At most this many instances in A/AAAA/ANY/TXT answers of a service or query (0: all).
    pub a_record_limit: usize,
    /// UDP questions without EDNS get at most this many answers, as Consul; `None` (our default,
    /// unlike Consul's 3): every answer that fits, TC when they do not.
    pub udp_answer_limit: Option<usize>,
    /// Whether an answer cut to `udp_answer_limit` carries TC (Consul's default: false).
    pub enable_truncate: bool,
    pub soa: SoaTimers,
    /// A second domain answered like the first (Consul's `alt_domain`).
    pub alt_domain: Option<Name>,
    /// Write every name in full, without compression pointers.
    pub disable_compression: bool,
}

/// The command line. Every field is optional so that the file and the defaults can fill in
/// what was not given; `env` makes clap read Consul's variables.
#[derive(Parser, Debug, Default)]
#[command(
    name = "consul-dns-bridge",
    version,
    about = "Answers DNS for the Consul catalog"
)]
struct Cli {
    /// TOML file with any of the options below, by the same names.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to serve DNS on, UDP and TCP (repeatable) [default: 127.0.0.1:8653]
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    listen: Vec<SocketAddr>,
    /// Consul agent HTTP address; repeat to fail over between agents [default: http://127.0.0.1:8500]
    #[arg(long, value_name = "URL", env = "CONSUL_HTTP_ADDR", value_parser = parse_consul_addr)]
    consul_addr: Vec<Url>,
    /// ACL token, sent as X-Consul-Token
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CONSUL_HTTP_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Use HTTPS for Consul addresses, also those given as host:port or http://
    #[arg(long, value_name = "BOOL", env = "CONSUL_HTTP_SSL", value_parser = parse_bool)]
    http_ssl: Option<bool>,
    /// Check the agent's certificate; false accepts any [default: true]
    #[arg(long, value_name = "BOOL", env = "CONSUL_HTTP_SSL_VERIFY", value_parser = parse_bool)]
    http_ssl_verify: Option<bool>,
    /// CA certificate (PEM) that signs the agent's HTTPS certificate
    #[arg(long, value_name = "FILE", env = "CONSUL_CACERT")]
    ca_file: Option<PathBuf>,
    /// Directory of CA certificates (PEM) that sign the agent's HTTPS certificate
    #[arg(long, value_name = "DIR", env = "CONSUL_CAPATH")]
    ca_path: Option<PathBuf>,
    /// Client certificate (PEM) for agents that verify incoming HTTPS
    #[arg(long, value_name = "FILE", env = "CONSUL_CLIENT_CERT")]
    client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert
    #[arg(long, value_name = "FILE", env = "CONSUL_CLIENT_KEY")]
    client_key: Option<PathBuf>,
    /// DNS domain answered for [default: consul.]
    #[arg(long, value_name = "NAME", value_parser = parse_domain)]
    domain: Option<Name>,
    /// Datacenter of names without one [default: the agent's own]
    #[arg(long, value_name = "DC", value_parser = parse_datacenter)]
    datacenter: Option<String>,
    /// TTL of service answers: 10s for all, or NAME=10s / PREFIX*=10s / *=10s (repeatable) [default: 0s]
    #[arg(long, value_name = "[NAME=]DURATION", value_parser = parse_service_ttl)]
    service_ttl: Vec<(Option<String>, Duration)>,
    /// TTL of node answers, e.g. 10s [default: 0s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    node_ttl: Option<Duration>,
    /// Second domain answered like --domain (Consul's alt_domain) [default: none]
    #[arg(long, value_name = "NAME", value_parser = parse_domain)]
    alt_domain: Option<Name>,
    /// At most this many instances in A/AAAA answers; 0 is no limit [default: 0]
    #[arg(long, value_name = "N", value_parser = parse_count)]
    a_record_limit: Option<usize>,
    /// UDP answers without EDNS hold at most N records, as Consul [default: none: all that fit, TC when not]
    #[arg(long, value_name = "N", value_parser = parse_count)]
    udp_answer_limit: Option<usize>,
    /// Write names in answers without compression [default: false]
    #[arg(long, value_name = "BOOL", value_parser = parse_bool)]
    disable_compression: Option<bool>,
    /// Set TC on answers cut to --udp-answer-limit [default: false]
    #[arg(long, value_name = "BOOL", value_parser = parse_bool)]
    enable_truncate: Option<bool>,
    /// SOA refresh, seconds [default: 3600]
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    soa_refresh: Option<u32>,
    /// SOA retry, seconds [default: 600]
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    soa_retry: Option<u32>,
    /// SOA expire, seconds [default: 86400]
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    soa_expire: Option<u32>,
    /// SOA minimum TTL (negative caching), also the SOA's TTL, seconds [default: 0]
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    soa_min_ttl: Option<u32>,
    /// Stop watching a service not asked for during this long [default: 10m]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    watch_idle_timeout: Option<Duration>,
    /// wait= of each Consul blocking query, at most 10m [default: 5m]
    #[arg(long, value_name = "DURATION", value_parser = parse_watch_wait)]
    watch_wait: Option<Duration>,
    /// Serve the last known answers this long while Consul does not answer; 0 disables [default: 72h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    max_stale: Option<Duration>,
    /// Execute a prepared query being asked for again at least this often (also at once when its service or the definitions change) [default: 3s]
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    prepared_query_refresh: Option<Duration>,
    /// TCP connections open at once; more are closed as soon as accepted [default: 150]
    #[arg(long, value_name = "N", value_parser = parse_connection_cap)]
    tcp_max_connections: Option<usize>,
    /// Close a TCP connection that sends nothing for this long [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    tcp_idle_timeout: Option<Duration>,
    /// Upstream resolver (IP or IP:PORT) for names outside the domain (repeatable) [default: none, REFUSED]
    #[arg(long, value_name = "ADDR", value_parser = parse_recursor)]
    recursor: Vec<SocketAddr>,
    /// sequential (in the order given) or random [default: sequential]
    #[arg(long, value_name = "STRATEGY", value_parser = parse_recursor_strategy)]
    recursor_strategy: Option<RecursorStrategy>,
    /// How long one recursor gets before the next is tried [default: 2s]
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    recursor_timeout: Option<Duration>,
    /// Directory of <origin>.zone files served authoritatively [default: zones/ when present]
    #[arg(long, value_name = "DIR")]
    zones_dir: Option<PathBuf>,
    /// Address of /metrics, /health and /ready; "off" disables [default: 127.0.0.1:8654]
    #[arg(long, value_name = "ADDR", value_parser = parse_http_listen)]
    http_listen: Option<HttpListen>,
    /// text or json [default: text]
    #[arg(long, value_name = "FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    /// error, warn, info, debug or trace, or a filter like info,consul_dns_bridge=debug; RUST_LOG wins [default: info]
    #[arg(long, value_name = "LEVEL", value_parser = parse_log_level)]
    log_level: Option<String>,
}

/// `--http-listen`: an address, or off.
#[derive(Debug, Clone, Copy)]
struct HttpListen(Option<SocketAddr>);

/// Why the options could not be turned into a [`Config`]; `Display` is the one line to print.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    CommandLine(String),
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("invalid value {value} for '{option}' in {path}: {reason}")]
    FileValue {
        path: String,
        option: String,
        value: String,
        reason: String,
    },
    #[error("unknown option '{option}' in {path}")]
    UnknownFileOption { path: String, option: String },
}

/// What `parse` found: a config to run with, or help/version text that clap has to print.
pub enum Parsed {
    Run(Box<Config>),
    Display(clap::Error),
}

impl Config {
    /// Reads the command line (and the environment through it) plus the `--config` file.
    pub fn parse<I, T>(args: I) -> Result<Parsed, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = match Cli::try_parse_from(args) {
            Ok(cli) => cli,
            Err(error) if !error.use_stderr() => return Ok(Parsed::Display(error)),
            Err(error) => return Err(ConfigError::CommandLine(first_line(&error.to_string()))),
        };
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => Cli::default(),
        };
        Ok(Parsed::Run(Box::new(merge(cli, file)?)))
    }
}

fn merge(cli: Cli, file: Cli) -> Result<Config, ConfigError> {
    let listen = match (cli.listen.is_empty(), file.listen.is_empty()) {
        (false, _) => cli.listen,
        (true, false) => file.listen,
        (true, true) => vec![parse_listen(DEFAULT_LISTEN).map_err(ConfigError::CommandLine)?],
    };
    let mut consul_addrs = match (cli.consul_addr.is_empty(), file.consul_addr.is_empty()) {
        (false, _) => cli.consul_addr,
        (true, false) => file.consul_addr,
        (true, true) => {
            vec![parse_consul_addr(DEFAULT_CONSUL_ADDR).map_err(ConfigError::CommandLine)?]
        }
    };
    if cli.http_ssl.or(file.http_ssl).unwrap_or(false) {
        // As Consul's own CLI does: CONSUL_HTTP_SSL=true wins over the address's scheme.
        for url in &mut consul_addrs {
            if url.scheme() == "http" && url.set_scheme("https").is_err() {
                return Err(ConfigError::CommandLine(format!(
                    "invalid value '{url}' for '--consul-addr': cannot use HTTPS"
                )));
            }
        }
    }
    let client_cert = cli.client_cert.or(file.client_cert);
    let client_key = cli.client_key.or(file.client_key);
    if client_cert.is_some() != client_key.is_some() {
        return Err(ConfigError::CommandLine(
            "'--client-cert' (CONSUL_CLIENT_CERT) and '--client-key' (CONSUL_CLIENT_KEY) go together"
                .into(),
        ));
    }
    let tls = ConsulTls {
        ca_file: cli.ca_file.or(file.ca_file),
        ca_path: cli.ca_path.or(file.ca_path),
        client_cert,
        client_key,
        verify: cli.http_ssl_verify.or(file.http_ssl_verify).unwrap_or(true),
    };
    let domain = match cli.domain.or(file.domain) {
        Some(domain) => domain,
        None => parse_domain("consul.").map_err(ConfigError::CommandLine)?,
    };
    Ok(Config {
        listen,
        consul_addrs,
        token: cli
            .token
            .or(file.token)
            .filter(|t| !t.is_empty())
            .map(Token),
        tls,
        domain,
        datacenter: cli.datacenter.or(file.datacenter),
        service_ttl: service_ttls(if cli.service_ttl.is_empty() {
            file.service_ttl
        } else {
            cli.service_ttl
        }),
        node_ttl: cli.node_ttl.or(file.node_ttl).unwrap_or_default(),
        dns: DnsOptions {
            a_record_limit: cli.a_record_limit.or(file.a_record_limit).unwrap_or(0),
            udp_answer_limit: cli.udp_answer_limit.or(file.udp_answer_limit),
            enable_truncate: cli
                .enable_truncate
                .or(file.enable_truncate)
                .unwrap_or(false),
            soa: {
                let default = SoaTimers::default();
                SoaTimers {
                    refresh: cli
                        .soa_refresh
                        .or(file.soa_refresh)
                        .unwrap_or(default.refresh),
                    retry: cli.soa_retry.or(file.soa_retry).unwrap_or(default.retry),
                    expire: cli.soa_expire.or(file.soa_expire).unwrap_or(default.expire),
                    min_ttl: cli
                        .soa_min_ttl
                        .or(file.soa_min_ttl)
                        .unwrap_or(default.min_ttl),
                }
            },
            alt_domain: cli.alt_domain.or(file.alt_domain),
            disable_compression: cli
                .disable_compression
                .or(file.disable_compression)
                .unwrap_or(false),
        },
        watch_idle_timeout: cli
            .watch_idle_timeout
            .or(file.watch_idle_timeout)
            .unwrap_or(Duration::from_secs(600)),
        watch_wait: cli
            .watch_wait
            .or(file.watch_wait)
            .unwrap_or(Duration::from_secs(300)),
        max_stale: cli
            .max_stale
            .or(file.max_stale)
            .unwrap_or(Duration::from_secs(72 * 3600)),
        prepared_query_refresh: cli
            .prepared_query_refresh
            .or(file.prepared_query_refresh)
            .unwrap_or(Duration::from_secs(3)),
        tcp_max_connections: cli
            .tcp_max_connections
            .or(file.tcp_max_connections)
            .unwrap_or(DEFAULT_TCP_MAX_CONNECTIONS),
        tcp_idle_timeout: cli
            .tcp_idle_timeout
            .or(file.tcp_idle_timeout)
            .unwrap_or(Duration::from_secs(10)),
        recursors: Recursors {
            addrs: if cli.recursor.is_empty() {
                file.recursor
            } else {
                cli.recursor
            },
            strategy: cli
                .recursor_strategy
                .or(file.recursor_strategy)
                .unwrap_or_default(),
            timeout: cli
                .recursor_timeout
                .or(file.recursor_timeout)
                .unwrap_or(Duration::from_secs(2)),
        },
        http_listen: match cli.http_listen.or(file.http_listen) {
            Some(HttpListen(addr)) => addr,
            None => Some(parse_listen(DEFAULT_HTTP_LISTEN).map_err(ConfigError::CommandLine)?),
        },
        log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
        log_level: cli.log_level.or(file.log_level),
        zones_dir: cli.zones_dir.or(file.zones_dir).or_else(|| {
            let default = PathBuf::from(DEFAULT_ZONES_DIR);
            default.is_dir().then_some(default)
        }),
    })
}

/// Reads the TOML file into the same shape as the command line, checking each value with the
/// very parser the command line uses.
fn read_file(path: &PathBuf) -> Result<Cli, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::File {
            path: shown.clone(),
            reason: first_line(e.message()),
        })?;
    let mut cli = Cli::default();
    for (key, value) in flatten_consul_tables(table) {
        let option = key.replace('_', "-");
        let bad = |reason: String| ConfigError::FileValue {
            path: shown.clone(),
            option: option.clone(),
            value: value.to_string(),
            reason,
        };
        let strings: Vec<String> = match &value {
            toml::Value::String(s) => vec![s.clone()],
            toml::Value::Integer(n) => vec![n.to_string()],
            toml::Value::Boolean(b) => vec![b.to_string()],
            // Consul's map form: `service_ttl = { "*" = "5s", web = "30s" }`.
            toml::Value::Table(entries) if option == "service-ttl" => entries
                .iter()
                .map(|(name, ttl)| ttl.as_str().map(|ttl| format!("{name}={ttl}")))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("expected durations as strings".into()))?,
            toml::Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("expected a list of strings".into()))?,
            _ => return Err(bad("expected a string".into())),
        };
        let single = || match strings.as_slice() {
            [one] => Ok(one.as_str()),
            _ => Err(bad("expected a single string".into())),
        };
        match option.as_str() {
            "listen" => {
                cli.listen = parse_each(&strings, parse_listen).map_err(bad)?;
            }
            "consul-addr" => {
                cli.consul_addr = parse_each(&strings, parse_consul_addr).map_err(bad)?;
            }
            "token" => cli.token = Some(single()?.to_owned()),
            "http-ssl" => cli.http_ssl = Some(parse_bool(single()?).map_err(bad)?),
            "http-ssl-verify" => cli.http_ssl_verify = Some(parse_bool(single()?).map_err(bad)?),
            "ca-file" => cli.ca_file = Some(single()?.into()),
            "ca-path" => cli.ca_path = Some(single()?.into()),
            "client-cert" => cli.client_cert = Some(single()?.into()),
            "client-key" => cli.client_key = Some(single()?.into()),
            "domain" => cli.domain = Some(parse_domain(single()?).map_err(bad)?),
            "datacenter" => cli.datacenter = Some(parse_datacenter(single()?).map_err(bad)?),
            "service-ttl" => {
                cli.service_ttl = parse_each(&strings, parse_service_ttl).map_err(bad)?;
            }
            "alt-domain" => cli.alt_domain = Some(parse_domain(single()?).map_err(bad)?),
            "a-record-limit" => cli.a_record_limit = Some(parse_count(single()?).map_err(bad)?),
            "udp-answer-limit" => cli.udp_answer_limit = Some(parse_count(single()?).map_err(bad)?),
            "enable-truncate" => cli.enable_truncate = Some(parse_bool(single()?).map_err(bad)?),
            "disable-compression" => {
                cli.disable_compression = Some(parse_bool(single()?).map_err(bad)?)
            }
            "soa-refresh" => cli.soa_refresh = Some(parse_seconds(single()?).map_err(bad)?),
            "soa-retry" => cli.soa_retry = Some(parse_seconds(single()?).map_err(bad)?),
            "soa-expire" => cli.soa_expire = Some(parse_seconds(single()?).map_err(bad)?),
            "soa-min-ttl" => cli.soa_min_ttl = Some(parse_seconds(single()?).map_err(bad)?),
            "node-ttl" => cli.node_ttl = Some(parse_duration(single()?).map_err(bad)?),
            "watch-idle-timeout" => {
                cli.watch_idle_timeout = Some(parse_duration(single()?).map_err(bad)?)
            }
            "watch-wait" => cli.watch_wait = Some(parse_watch_wait(single()?).map_err(bad)?),
            "max-stale" => cli.max_stale = Some(parse_duration(single()?).map_err(bad)?),
            "prepared-query-refresh" => {
                cli.prepared_query_refresh = Some(parse_timeout(single()?).map_err(bad)?)
            }
            "tcp-max-connections" => {
                cli.tcp_max_connections = Some(parse_connection_cap(single()?).map_err(bad)?)
            }
            // Consul's own spelling is `recursors`.
            "recursor" | "recursors" => {
                cli.recursor = parse_each(&strings, parse_recursor).map_err(bad)?;
            }
            "recursor-strategy" => {
                cli.recursor_strategy = Some(parse_recursor_strategy(single()?).map_err(bad)?)
            }
            "recursor-timeout" => {
                cli.recursor_timeout = Some(parse_timeout(single()?).map_err(bad)?)
            }
            "zones-dir" => cli.zones_dir = Some(single()?.into()),
            "http-listen" => cli.http_listen = Some(parse_http_listen(single()?).map_err(bad)?),
            "log-format" => cli.log_format = Some(parse_log_format(single()?).map_err(bad)?),
            "log-level" => cli.log_level = Some(parse_log_level(single()?).map_err(bad)?),
            "tcp-idle-timeout" => {
                cli.tcp_idle_timeout = Some(parse_timeout(single()?).map_err(bad)?)
            }
            _ => {
                return Err(ConfigError::UnknownFileOption {
                    path: shown,
                    option: key,
                });
            }
        }
    }
    Ok(cli)
}

/// Consul's `soa { refresh = .. }` block, written `[soa]` in TOML, read as `soa_refresh` and so
/// on; every other key as it is.
fn flatten_consul_tables(table: toml::Table) -> Vec<(String, toml::Value)> {
    let mut flat = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) if key == "soa" => {
                flat.extend(inner.into_iter().map(|(k, v)| (format!("soa_{k}"), v)));
            }
            other => flat.push((key, other)),
        }
    }
    flat
}

fn parse_each<T>(texts: &[String], parse: fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    texts.iter().map(|text| parse(text)).collect()
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    SocketAddr::from_str(text)
        .map_err(|_| format!("expected IP:PORT such as {DEFAULT_LISTEN}, got '{text}'"))
}

/// Accepts what Consul's own `CONSUL_HTTP_ADDR` accepts: a URL, or `host:port` meaning HTTP.
fn parse_consul_addr(text: &str) -> Result<Url, String> {
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| format!("not a URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(format!("expected http://HOST:PORT, got '{text}'")),
    }
}

fn parse_http_listen(text: &str) -> Result<HttpListen, String> {
    match text {
        "off" | "" => Ok(HttpListen(None)),
        _ => SocketAddr::from_str(text)
            .map(|addr| HttpListen(Some(addr)))
            .map_err(|_| {
                format!("expected IP:PORT such as {DEFAULT_HTTP_LISTEN}, or off, got '{text}'")
            }),
    }
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("expected text or json, got '{text}'")),
    }
}

fn parse_log_level(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| format!("not a log level or filter ({e})"))
}

/// An upstream resolver as Consul's `recursors` takes it: an IP, with an optional port.
fn parse_recursor(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    SocketAddr::from_str(text)
        .map_err(|_| format!("expected an IP or IP:PORT such as 127.0.0.1:53, got '{text}'"))
}

fn parse_recursor_strategy(text: &str) -> Result<RecursorStrategy, String> {
    match text {
        "sequential" => Ok(RecursorStrategy::Sequential),
        "random" => Ok(RecursorStrategy::Random),
        _ => Err(format!("expected sequential or random, got '{text}'")),
    }
}

/// Go's `strconv.ParseBool`, which Consul uses for its boolean variables.
fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("expected true or false, got '{text}'")),
    }
}

fn parse_domain(text: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(text).map_err(|e| format!("not a DNS name ({e})"))?;
    if name.is_root() {
        return Err("the root cannot be the Consul domain".into());
    }
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

fn parse_datacenter(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!("not a datacenter name: '{text}'"))
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("expected a duration like 10s ({e})"))
}

/// `10s` (every service) or `NAME=10s`, `PREFIX*=10s`, `*=10s`.
fn parse_service_ttl(text: &str) -> Result<(Option<String>, Duration), String> {
    match text.split_once('=') {
        Some((name, ttl)) if !name.is_empty() => Ok((Some(name.to_owned()), parse_duration(ttl)?)),
        Some(_) => Err(format!("expected NAME=DURATION, got '{text}'")),
        None => Ok((None, parse_duration(text)?)),
    }
}

fn service_ttls(entries: Vec<(Option<String>, Duration)>) -> ServiceTtls {
    let mut ttls = ServiceTtls::default();
    for (name, ttl) in entries {
        ttls.add(name.as_deref().unwrap_or("*"), ttl);
    }
    ttls
}

fn parse_count(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .map_err(|_| format!("expected a whole number, got '{text}'"))
}

fn parse_seconds(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .map_err(|_| format!("expected a number of seconds, got '{text}'"))
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("must be more than 0s".into()),
        timeout => Ok(timeout),
    }
}

fn parse_connection_cap(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(cap) if cap >= 1 => Ok(cap),
        _ => Err(format!(
            "expected a whole number of at least 1, got '{text}'"
        )),
    }
}

fn parse_watch_wait(text: &str) -> Result<Duration, String> {
    let wait = parse_duration(text)?;
    if wait < Duration::from_secs(1) || wait > Duration::from_secs(600) {
        return Err("Consul accepts a wait from 1s to 10m".into());
    }
    Ok(wait)
}

#[cfg(test)]
mod tests {
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
        assert_eq!(config.listen, vec![DEFAULT_LISTEN.parse().unwrap()]);
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
            error.contains("'watch-wait'") && error.contains("bad.toml"),
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
        assert_eq!(
            parse(&[]).unwrap().tcp_max_connections,
            DEFAULT_TCP_MAX_CONNECTIONS
        );
    }

    #[test]
    fn token_never_prints() {
        let token = Token("s3cr3t-token".into());
        assert!(!format!("{token:?}").contains("s3cr3t"));
    }
}
