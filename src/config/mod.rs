//! Options from the command line, the `CONSUL_*` environment and a TOML file, validated into one
//! [`Config`].
//!
//! Each option is declared once, in [`options`]: name, environment variable, default and help.
//! Precedence is the usual one: command line, then environment, then the `--config` file
//! ([`file`]), then the declared default. Every error is one line that names the option, so an
//! operator reading a failed unit's journal sees at once what to fix.

mod error;
mod file;
mod options;
mod service_ttl;
mod values;

use std::{collections::HashSet, ffi::OsString, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
use hickory_proto::rr::Name;
use reqwest::Url;

use crate::cidr::Cidr;

mod parts;

pub use error::ConfigError;
use error::first_line;
use options::Options;
pub(crate) use parts::{
    Budget, DnstapOptions, DnstapTarget, LogTarget, RateLimitOptions, ReadOptions,
};
pub(crate) use service_ttl::ServiceTtls;
pub use values::LogFormat;
pub(crate) use values::{CookieSecret, RecursorStrategy, Token};

/// The host's name, as the kernel has it (`uname -n`); empty if it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

/// Requests that do not park may use this many connections to an agent at once.
const PLAIN_CONNECTIONS: usize = 4;
/// Served when present and no `--zones-dir` is given.
const DEFAULT_ZONES_DIR: &str = "zones";

/// The upstream resolvers and how to ask them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Recursors {
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) strategy: RecursorStrategy,
    /// Consul's `recursor_timeout`: how long one upstream gets before the next is tried.
    pub(crate) timeout: Duration,
    /// Questions outstanding to them at once at most.
    pub(crate) max_outstanding: usize,
}

/// How to speak HTTPS to Consul, by the names of Consul's own `CONSUL_*` variables. The files are
/// read when the client is built (see `consul::tls`), so a bad file is reported with its option.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ConsulTls {
    /// `CONSUL_CACERT`: trust only this CA (PEM) for the agent's certificate.
    pub(crate) ca_file: Option<PathBuf>,
    /// `CONSUL_CAPATH`: trust only the CAs in the PEM files of this directory.
    pub(crate) ca_path: Option<PathBuf>,
    /// `CONSUL_CLIENT_CERT` / `CONSUL_CLIENT_KEY`: present this certificate (for agents with
    /// `verify_incoming`).
    pub(crate) client_cert: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
    /// `CONSUL_HTTP_SSL_VERIFY`: `false` accepts any certificate.
    pub(crate) verify: bool,
}

/// Consul's SOA timers (`dns_config.soa`), in seconds; `min_ttl` is also the SOA's own TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SoaTimers {
    pub(crate) refresh: u32,
    pub(crate) retry: u32,
    pub(crate) expire: u32,
    pub(crate) min_ttl: u32,
}

/// Consul's `dns_config` options that shape answers, same names and meaning.
#[derive(Debug, Clone)]
pub(crate) struct DnsOptions {
    /// At most this many instances in A/AAAA/ANY/TXT answers of a service or query (0: all).
    pub(crate) a_record_limit: usize,
    /// UDP questions without EDNS get at most this many answers, as Consul; `None` (our default,
    /// unlike Consul's 3): every answer that fits, TC when they do not.
    pub(crate) udp_answer_limit: Option<usize>,
    /// Whether an answer cut to `udp_answer_limit` carries TC (Consul's default: false).
    pub(crate) enable_truncate: bool,
    pub(crate) soa: SoaTimers,
    /// A second domain answered like the first (Consul's `alt_domain`).
    pub(crate) alt_domain: Option<Name>,
    /// Write every name in full, without compression pointers.
    pub(crate) disable_compression: bool,
}

/// Everything the bridge needs to run, already checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) listen: Vec<SocketAddr>,
    /// DNS over TLS and HTTPS.
    pub(crate) encrypted: EncryptedDns,
    /// Consul agents in order of preference; the bridge moves to the next when one fails.
    pub consul_addrs: Vec<Url>,
    pub(crate) token: Option<Token>,
    pub(crate) tls: ConsulTls,
    /// Lower-case, fully qualified (`consul.`).
    pub domain: Name,
    /// `None`: ask the agent (`/v1/agent/self`) which datacenter it is in.
    pub(crate) datacenter: Option<String>,
    /// Consul's `service_ttl`: per service name, `*`-suffixed prefixes, `*` for all.
    pub(crate) service_ttl: ServiceTtls,
    pub(crate) node_ttl: Duration,
    /// Consul's `dns_config` options that shape answers.
    pub(crate) dns: DnsOptions,
    /// A watched service nobody asked for during this long stops being watched.
    pub(crate) watch_idle_timeout: Duration,
    /// The `wait=` of each blocking query.
    pub(crate) watch_wait: Duration,
    /// How long the last known answers are served while Consul does not answer (0: not at all).
    pub(crate) serve_stale: Duration,
    /// How reads are asked of Consul: `allow_stale`, `max_stale`, `use_cache`.
    pub(crate) reads: ReadOptions,
    /// Connections and parked queries one agent may be given.
    pub(crate) budget: Budget,
    /// A prepared query asked for is executed again at least this often.
    pub(crate) prepared_query_refresh: Duration,
    /// Each service watched on demand is read at least this often (anti-entropy).
    pub(crate) reverify_interval: Duration,
    /// Catch-up reads a second at most.
    pub(crate) catch_up_rate: u32,
    /// Questions on the general path in flight at once at most.
    pub(crate) max_concurrent_queries: usize,
    /// What answers name this server as, to clients that ask (NSID).
    pub(crate) nsid: Option<Vec<u8>>,
    /// The secret server cookies are made with; `None`: cookies are not answered.
    pub(crate) cookie_secret: Option<CookieSecret>,
    /// TCP connections open at once; past it an idle one gives way to a new one.
    pub(crate) tcp_max_connections: usize,
    /// TCP connections one client address may hold; past it its own idle one gives way.
    pub(crate) tcp_max_connections_per_client: usize,
    /// A TCP connection silent for this long is closed.
    pub(crate) tcp_idle_timeout: Duration,
    /// Response rate limiting of UDP answers.
    pub(crate) rate_limit: RateLimitOptions,
    /// Which clients are answered at all.
    pub(crate) allow_query: Vec<Cidr>,
    /// Forwarders whose client subnet option is believed.
    pub(crate) trust_client_subnet: Vec<Cidr>,
    /// Where answered queries are logged (`None`: nowhere), and how many lines may wait.
    pub(crate) query_log: Option<(LogTarget, usize)>,
    /// Where dnstap messages go, if anywhere.
    pub(crate) dnstap: Option<DnstapOptions>,
    /// The service metadata key of an instance's visibility rule.
    pub(crate) visibility_key: String,
    /// Upstream resolvers for names outside the domain and the zone files.
    pub(crate) recursors: Recursors,
    /// Zone files served beside the Consul domain; `None`: none.
    pub(crate) zones_dir: Option<PathBuf>,
    /// Where `/metrics`, `/health` and `/ready` are served; `None`: not at all.
    pub(crate) http_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    /// `--log-level`, an `EnvFilter` directive; `RUST_LOG` wins when set.
    pub log_level: String,
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
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let command = Options::command();
        let given = match command.clone().try_get_matches_from(&args) {
            Ok(matches) => matches,
            Err(error) if !error.use_stderr() => return Ok(Parsed::Display(error)),
            Err(error) => return Err(ConfigError::CommandLine(first_line(&error.to_string()))),
        };
        let Some(path) = given.get_one::<PathBuf>("config") else {
            return Ok(Parsed::Run(Box::new(Self::from_matches(&given)?)));
        };
        // The file fills in what neither the command line nor the environment gave.
        let given_here: HashSet<String> = given
            .ids()
            .filter(|id| {
                matches!(
                    given.value_source(id.as_str()),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            })
            .map(|id| id.to_string())
            .collect();
        let from_file: Vec<OsString> = file::read(path, &command)?
            .iter()
            .filter(|entry| !given_here.contains(&entry.id))
            .flat_map(|entry| entry.arguments().collect::<Vec<_>>())
            .collect();
        let program = args.first().cloned().unwrap_or_default();
        let merged = std::iter::once(program)
            .chain(from_file)
            .chain(args.into_iter().skip(1));
        let matches = command
            .try_get_matches_from(merged)
            .map_err(|error| ConfigError::CommandLine(first_line(&error.to_string())))?;
        Ok(Parsed::Run(Box::new(Self::from_matches(&matches)?)))
    }

    fn from_matches(matches: &clap::ArgMatches) -> Result<Self, ConfigError> {
        let options = Options::from_arg_matches(matches)
            .map_err(|error| ConfigError::CommandLine(first_line(&error.to_string())))?;
        Self::from_options(options)
    }

    /// The typed view of the options, with the checks that span several of them.
    fn from_options(options: Options) -> Result<Self, ConfigError> {
        let mut consul_addrs = options.consul_addr;
        if options.http_ssl {
            // As Consul's own CLI does: CONSUL_HTTP_SSL=true wins over the address's scheme.
            for url in &mut consul_addrs {
                if url.scheme() == "http" && url.set_scheme("https").is_err() {
                    return Err(ConfigError::CommandLine(format!(
                        "invalid value '{url}' for '--consul-addr': cannot use HTTPS"
                    )));
                }
            }
        }
        if options.client_cert.is_some() != options.client_key.is_some() {
            return Err(ConfigError::CommandLine(
                "'--client-cert' (CONSUL_CLIENT_CERT) and '--client-key' (CONSUL_CLIENT_KEY) go together"
                    .into(),
            ));
        }
        let encrypted = EncryptedDns::from_options(
            options.tls_listen,
            options.https_listen,
            options.tls_cert,
            options.tls_key,
        )?;
        Ok(Config {
            listen: options.listen,
            encrypted,
            consul_addrs,
            token: options.token.filter(|t| !t.is_empty()).map(Token),
            tls: ConsulTls {
                ca_file: options.ca_file,
                ca_path: options.ca_path,
                client_cert: options.client_cert,
                client_key: options.client_key,
                verify: options.http_ssl_verify,
            },
            domain: options.domain,
            datacenter: options.datacenter,
            service_ttl: ServiceTtls::from_entries(options.service_ttl),
            node_ttl: options.node_ttl,
            dns: DnsOptions {
                a_record_limit: options.a_record_limit,
                udp_answer_limit: options.udp_answer_limit,
                enable_truncate: options.enable_truncate,
                soa: SoaTimers {
                    refresh: options.soa_refresh,
                    retry: options.soa_retry,
                    expire: options.soa_expire,
                    min_ttl: options.soa_min_ttl,
                },
                alt_domain: options.alt_domain,
                disable_compression: options.disable_compression,
            },
            watch_idle_timeout: options.watch_idle_timeout,
            watch_wait: options.watch_wait,
            serve_stale: options.serve_stale,
            reads: ReadOptions {
                allow_stale: options.allow_stale,
                max_stale: options.max_stale,
                use_cache: options.use_cache,
            },
            budget: Budget {
                max_connections: options.consul_max_connections,
                plain: PLAIN_CONNECTIONS,
                max_parked: options.max_parked_queries,
            },
            prepared_query_refresh: options.prepared_query_refresh,
            reverify_interval: options.reverify_interval,
            catch_up_rate: options.catch_up_rate,
            max_concurrent_queries: options.max_concurrent_queries,
            nsid: options.nsid.map(|nsid| match nsid.as_str() {
                "hostname" => host_name().into_bytes(),
                text => text.as_bytes().to_vec(),
            }),
            cookie_secret: options.answer_cookie.then(|| {
                options
                    .cookie_secret
                    .unwrap_or_else(|| CookieSecret(rand::random()))
            }),
            tcp_max_connections: options.tcp_max_connections,
            tcp_max_connections_per_client: options.tcp_max_connections_per_client,
            tcp_idle_timeout: options.tcp_idle_timeout,
            allow_query: options.allow_query,
            trust_client_subnet: options.trust_client_subnet,
            query_log: options
                .query_log
                .map(|target| (target, options.query_log_buffer)),
            dnstap: options.dnstap.map(|target| DnstapOptions {
                target,
                identity: match options.dnstap_identity.as_str() {
                    "hostname" => host_name().into_bytes(),
                    text => text.as_bytes().to_vec(),
                },
                capacity: options.dnstap_buffer,
            }),
            visibility_key: options.visibility_meta_key,
            rate_limit: RateLimitOptions {
                responses_per_second: options.rrl_ratelimit,
                slip: options.rrl_slip,
                ipv4_prefix_length: options.rrl_ipv4_prefix_length,
                ipv6_prefix_length: options.rrl_ipv6_prefix_length,
                exempt: options.rrl_exempt.into_iter().flatten().collect(),
            },
            recursors: Recursors {
                addrs: options.recursor,
                strategy: options.recursor_strategy,
                timeout: options.recursor_timeout,
                max_outstanding: options.max_recursor_queries,
            },
            zones_dir: options.zones_dir.or_else(|| {
                let default = PathBuf::from(DEFAULT_ZONES_DIR);
                default.is_dir().then_some(default)
            }),
            http_listen: options.http_listen.0,
            log_format: options.log_format,
            log_level: options.log_level,
        })
    }
}

/// The DoT and DoH listeners and their certificate.
#[derive(Debug, Clone, Default)]
pub(crate) struct EncryptedDns {
    pub(crate) tls_listen: Vec<SocketAddr>,
    pub(crate) https_listen: Vec<SocketAddr>,
    /// The PEM certificate chain and key; present whenever a listener is.
    pub(crate) certificate: Option<(PathBuf, PathBuf)>,
}

impl EncryptedDns {
    fn from_options(
        tls_listen: Vec<SocketAddr>,
        https_listen: Vec<SocketAddr>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let certificate = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::CommandLine(
                    "'--tls-cert' and '--tls-key' go together".into(),
                ));
            }
        };
        let listening = !tls_listen.is_empty() || !https_listen.is_empty();
        if listening && certificate.is_none() {
            return Err(ConfigError::CommandLine(
                "'--tls-listen' and '--https-listen' need '--tls-cert' and '--tls-key'".into(),
            ));
        }
        Ok(Self {
            tls_listen,
            https_listen,
            certificate,
        })
    }
}

#[cfg(test)]
mod tests;
