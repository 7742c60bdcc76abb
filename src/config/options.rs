//! Every option, declared once: its name, value, environment variable, default and help text.
//!
//! This declaration drives the command line, the `--config` file (same names, read by
//! [`super::file`]), the defaults and `--help`. [`super::Config::parse`] turns the parsed values
//! into the typed [`super::Config`]; nothing else names a default.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Parser};
use hickory_proto::rr::Name;
use reqwest::Url;

use super::parts::{DnstapTarget, LogTarget};
use crate::cidr::Cidr;

use super::values::{
    CookieSecret, DEFAULT_RRL_EXEMPT, HttpListen, LogFormat, RecursorStrategy,
    parse_agent_connections, parse_bool, parse_catch_up_rate, parse_cidr, parse_connection_cap,
    parse_consul_addr, parse_cookie_secret, parse_count, parse_datacenter, parse_domain,
    parse_duration, parse_exempt, parse_http_listen, parse_ipv4_prefix, parse_ipv6_prefix,
    parse_listen, parse_log_format, parse_log_level, parse_log_target, parse_nsid, parse_rate,
    parse_recursor, parse_recursor_strategy, parse_seconds, parse_service_ttl, parse_timeout,
    parse_watch_wait,
};

/// The options as given, defaults filled in.
#[derive(Parser, Debug)]
#[command(
    name = "consul-dns-bridge",
    version,
    about = "Answers DNS for the Consul catalog"
)]
pub(super) struct Options {
    /// TOML file with any of the options below, by the same names
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Address to serve DNS on, UDP and TCP (repeatable)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8653", value_parser = parse_listen)]
    pub(crate) listen: Vec<SocketAddr>,
    /// Consul agent HTTP address; repeat to fail over between agents
    #[arg(long, value_name = "URL", env = "CONSUL_HTTP_ADDR",
          default_value = "http://127.0.0.1:8500", value_parser = parse_consul_addr)]
    pub(crate) consul_addr: Vec<Url>,
    /// ACL token, sent as X-Consul-Token
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CONSUL_HTTP_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// Use HTTPS for Consul addresses, also those given as host:port or http://
    #[arg(long, value_name = "BOOL", env = "CONSUL_HTTP_SSL", default_value = "false",
          action = ArgAction::Set, value_parser = parse_bool)]
    pub(crate) http_ssl: bool,
    /// Check the agent's certificate; false accepts any
    #[arg(long, value_name = "BOOL", env = "CONSUL_HTTP_SSL_VERIFY", default_value = "true",
          action = ArgAction::Set, value_parser = parse_bool)]
    pub(crate) http_ssl_verify: bool,
    /// CA certificate (PEM) that signs the agent's HTTPS certificate [default: system roots]
    #[arg(long, value_name = "FILE", env = "CONSUL_CACERT")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Directory of CA certificates (PEM) that sign the agent's HTTPS certificate
    #[arg(long, value_name = "DIR", env = "CONSUL_CAPATH")]
    pub(crate) ca_path: Option<PathBuf>,
    /// Client certificate (PEM) for agents that verify incoming HTTPS
    #[arg(long, value_name = "FILE", env = "CONSUL_CLIENT_CERT")]
    pub(crate) client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert
    #[arg(long, value_name = "FILE", env = "CONSUL_CLIENT_KEY")]
    pub(crate) client_key: Option<PathBuf>,
    /// DNS domain answered for
    #[arg(long, value_name = "NAME", default_value = "consul.", value_parser = parse_domain)]
    pub(crate) domain: Name,
    /// Datacenter of names without one [default: the agent's own]
    #[arg(long, value_name = "DC", value_parser = parse_datacenter)]
    pub(crate) datacenter: Option<String>,
    /// TTL of service answers: 10s for all, or NAME=10s / PREFIX*=10s / *=10s (repeatable)
    #[arg(long, value_name = "[NAME=]DURATION", default_value = "0s",
          value_parser = parse_service_ttl)]
    pub(crate) service_ttl: Vec<(Option<String>, Duration)>,
    /// TTL of node answers
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub(crate) node_ttl: Duration,
    /// Second domain answered like --domain (Consul's alt_domain) [default: none]
    #[arg(long, value_name = "NAME", value_parser = parse_domain)]
    pub(crate) alt_domain: Option<Name>,
    /// At most this many instances in A/AAAA answers; 0 is no limit
    #[arg(long, value_name = "N", default_value = "0", value_parser = parse_count)]
    pub(crate) a_record_limit: usize,
    /// UDP answers without EDNS hold at most N records, as Consul [default: none: all that fit, TC when not]
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub(crate) udp_answer_limit: Option<usize>,
    /// Write names in answers without compression
    #[arg(long, value_name = "BOOL", default_value = "false", action = ArgAction::Set, value_parser = parse_bool)]
    pub(crate) disable_compression: bool,
    /// Set TC on answers cut to --udp-answer-limit
    #[arg(long, value_name = "BOOL", default_value = "false", action = ArgAction::Set, value_parser = parse_bool)]
    pub(crate) enable_truncate: bool,
    /// SOA refresh, seconds (file: also `[soa] refresh`)
    #[arg(long, value_name = "SECONDS", default_value = "3600", value_parser = parse_seconds)]
    pub(crate) soa_refresh: u32,
    /// SOA retry, seconds
    #[arg(long, value_name = "SECONDS", default_value = "600", value_parser = parse_seconds)]
    pub(crate) soa_retry: u32,
    /// SOA expire, seconds
    #[arg(long, value_name = "SECONDS", default_value = "86400", value_parser = parse_seconds)]
    pub(crate) soa_expire: u32,
    /// SOA minimum TTL (negative caching), also the SOA's TTL, seconds
    #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = parse_seconds)]
    pub(crate) soa_min_ttl: u32,
    /// Stop watching a service not asked for during this long
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub(crate) watch_idle_timeout: Duration,
    /// wait= of each Consul blocking query, at most 10m
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_watch_wait)]
    pub(crate) watch_wait: Duration,
    /// Serve the last known answers this long while Consul does not answer (RFC 8767's serve-stale); 0 disables
    #[arg(long, value_name = "DURATION", default_value = "72h", value_parser = parse_duration)]
    pub(crate) serve_stale: Duration,
    /// Consul's allow_stale: any Consul server answers the bridge's reads, not only the leader
    #[arg(long, value_name = "BOOL", default_value = "true", action = ArgAction::Set,
          value_parser = parse_bool)]
    pub(crate) allow_stale: bool,
    /// Consul's max_stale: a stale read answered by a server further behind the leader than this is asked again of the leader
    #[arg(long, value_name = "DURATION", default_value = "87600h", value_parser = parse_duration)]
    pub(crate) max_stale: Duration,
    /// Consul's use_cache: health reads through the agent's cache, one watch per service to the servers for every client of the agent
    #[arg(long, value_name = "BOOL", default_value = "true", action = ArgAction::Set,
          value_parser = parse_bool)]
    pub(crate) use_cache: bool,
    /// Connections held to one Consul agent at most (its limits.http_max_conns_per_client is 200 by default, counted by client address); services not parked within it are read on demand
    #[arg(long, value_name = "N", default_value = "32", value_parser = parse_agent_connections)]
    pub(crate) consul_max_connections: usize,
    /// Blocking queries parked at once at most (over HTTPS, where connections do not bound them), which bounds memory
    #[arg(long, value_name = "N", default_value = "1000", value_parser = parse_connection_cap)]
    pub(crate) max_parked_queries: usize,
    /// Execute a prepared query being asked for again at least this often (also at once when its service or the definitions change)
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_timeout)]
    pub(crate) prepared_query_refresh: Duration,
    /// Read each service watched on demand at least this often, spread evenly, so that a missed change heals within it (anti-entropy)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub(crate) reverify_interval: Duration,
    /// Reads a second at most that catch up after a catalog change no signal could attribute (an instance moved)
    #[arg(long, value_name = "N", default_value = "1000", value_parser = parse_catch_up_rate)]
    pub(crate) catch_up_rate: u32,
    /// TCP connections open at once (BIND's tcp-clients); past it, the oldest idle connection of the client holding the most gives way to a new one
    #[arg(long, value_name = "N", default_value = "150", value_parser = parse_connection_cap)]
    pub(crate) tcp_max_connections: usize,
    /// TCP connections one client address may hold; past it, its own oldest idle one gives way
    #[arg(long, value_name = "N", default_value = "32", value_parser = parse_connection_cap)]
    pub(crate) tcp_max_connections_per_client: usize,
    /// Close a TCP connection that sends nothing for this long (1s at most while the connections are 3/4 full)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub(crate) tcp_idle_timeout: Duration,
    /// Only clients in these networks are answered, others get REFUSED, on every transport (repeatable) [default: everyone]
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub(crate) allow_query: Vec<Cidr>,
    /// Forwarders whose EDNS Client Subnet option is believed: for their questions, access, visibility and rate limiting use the client subnet they report, RFC 7871 (repeatable) [default: none]
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub(crate) trust_client_subnet: Vec<Cidr>,
    /// Service metadata key of an instance's visibility rule: a comma-separated list of networks whose clients alone see the instance
    #[arg(long, value_name = "KEY", default_value = "dns-allow")]
    pub(crate) visibility_meta_key: String,
    /// Address to serve DNS over TLS on, RFC 7858, usually port 853 (repeatable; needs --tls-cert and --tls-key)
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub(crate) tls_listen: Vec<SocketAddr>,
    /// Address to serve DNS over HTTPS on, RFC 8484 /dns-query over HTTP/2 and HTTP/1.1 (repeatable; needs --tls-cert and --tls-key)
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub(crate) https_listen: Vec<SocketAddr>,
    /// PEM certificate chain of the DoT and DoH listeners (read again on SIGHUP)
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (read again on SIGHUP)
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Log every answered query as a JSON line to this file, or - for stderr (reopened on SIGHUP) [default: off]
    #[arg(long, value_name = "PATH", value_parser = parse_log_target)]
    pub(crate) query_log: Option<LogTarget>,
    /// Query-log lines held while the writer falls behind; past it lines are dropped (and counted), never waited for
    #[arg(long, value_name = "N", default_value = "10000", value_parser = parse_connection_cap)]
    pub(crate) query_log_buffer: usize,
    /// Send dnstap messages (client questions and answers on every transport, questions forwarded to recursors) to a Frame Streams collector: unix:PATH or tcp:ADDR:PORT [default: off]
    #[arg(long, value_name = "TARGET")]
    pub(crate) dnstap: Option<DnstapTarget>,
    /// What dnstap messages name this server as: a text, or `hostname` for the host's name
    #[arg(long, value_name = "TEXT", default_value = "hostname", value_parser = parse_nsid)]
    pub(crate) dnstap_identity: String,
    /// dnstap messages held while the collector is slow; past it they are dropped (and counted), never waited for
    #[arg(long, value_name = "N", default_value = "10000", value_parser = parse_connection_cap)]
    pub(crate) dnstap_buffer: usize,
    /// Response rate limiting: UDP answers per second to one client network for one answer; 0 turns it off
    #[arg(long, value_name = "N", default_value = "20", value_parser = parse_rate)]
    pub(crate) rrl_ratelimit: u32,
    /// Every Nth rate-limited answer is sent empty with TC set (the client retries over TCP) instead of dropped; 0 drops all
    #[arg(long, value_name = "N", default_value = "2", value_parser = parse_seconds)]
    pub(crate) rrl_slip: u32,
    /// Client IPv4 addresses in one network for rate limiting
    #[arg(long, value_name = "BITS", default_value = "24", value_parser = parse_ipv4_prefix)]
    pub(crate) rrl_ipv4_prefix_length: u8,
    /// Client IPv6 addresses in one network for rate limiting
    #[arg(long, value_name = "BITS", default_value = "56", value_parser = parse_ipv6_prefix)]
    pub(crate) rrl_ipv6_prefix_length: u8,
    /// Clients never rate limited, as CIDR (repeatable; "none" for no exemption) [default: loopback]
    #[arg(long, value_name = "CIDR", value_parser = parse_exempt,
          default_values = DEFAULT_RRL_EXEMPT)]
    pub(crate) rrl_exempt: Vec<Option<Cidr>>,
    /// Upstream resolver (IP or IP:PORT) for names outside the domain (repeatable) [default: none, REFUSED]
    #[arg(long, visible_alias = "recursors", value_name = "ADDR", value_parser = parse_recursor)]
    pub(crate) recursor: Vec<SocketAddr>,
    /// sequential (in the order given) or random
    #[arg(long, value_name = "STRATEGY", default_value = "sequential",
          value_parser = parse_recursor_strategy)]
    pub(crate) recursor_strategy: RecursorStrategy,
    /// How long one recursor gets before the next is tried
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_timeout)]
    pub(crate) recursor_timeout: Duration,
    /// Questions to the recursors outstanding at once at most (each holds a socket); past it, SERVFAIL at once
    #[arg(long, value_name = "N", default_value = "256", value_parser = parse_connection_cap)]
    pub(crate) max_recursor_queries: usize,
    /// Questions on the general path (everything but the UDP fast path) in flight at once at most; past it, SERVFAIL at once
    #[arg(long, value_name = "N", default_value = "1000", value_parser = parse_connection_cap)]
    pub(crate) max_concurrent_queries: usize,
    /// Name this server in answers to clients that ask (NSID, RFC 5001): a text, or `hostname` for the host's name [default: off]
    #[arg(long, value_name = "TEXT", value_parser = parse_nsid)]
    pub(crate) nsid: Option<String>,
    /// Answer DNS cookies (RFC 7873, server cookies as RFC 9018); a client returning a valid one is never rate limited
    #[arg(long, value_name = "BOOL", default_value = "true", action = ArgAction::Set,
          value_parser = parse_bool)]
    pub(crate) answer_cookie: bool,
    /// Secret of the server cookies, 32 hex digits; the same on every bridge of a fleet lets each accept the others' cookies [default: random at start]
    #[arg(long, value_name = "HEX", env = "CONSUL_DNS_BRIDGE_COOKIE_SECRET",
          hide_env_values = true, value_parser = parse_cookie_secret)]
    pub(crate) cookie_secret: Option<CookieSecret>,
    /// Directory of <origin>.zone files served authoritatively [default: zones/ when present]
    #[arg(long, value_name = "DIR")]
    pub(crate) zones_dir: Option<PathBuf>,
    /// Address of /metrics, /health and /ready; "off" disables
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8654",
          value_parser = parse_http_listen)]
    pub(crate) http_listen: HttpListen,
    /// text or json
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = parse_log_format)]
    pub(crate) log_format: LogFormat,
    /// error, warn, info, debug or trace, or a filter like info,consul_dns_bridge=debug; RUST_LOG wins
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub(crate) log_level: String,
}
