//! The plain values the parts are built from, as the options give them: no behaviour, so
//! that the parts depend on the configuration and never the other way round.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::cidr::Cidr;

/// How reads are asked of Consul, by the names of Consul's own DNS options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadOptions {
    /// `allow_stale`: any server answers (`?stale`), not only the leader.
    pub(crate) allow_stale: bool,
    /// `max_stale`: a stale answer from a server further behind the leader than this is asked
    /// again of the leader.
    pub(crate) max_stale: Duration,
    /// `use_cache`: health reads through the agent's cache (`?cached`), whose one background
    /// watch per service serves every client of the agent.
    pub(crate) use_cache: bool,
}

/// How many connections and parked queries one agent may be given.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Connections to one agent, all kinds together.
    pub(crate) max_connections: usize,
    /// Of those, how many requests that do not park may be in flight at once.
    pub(crate) plain: usize,
    /// Blocking queries parked at once (over HTTP/2, where connections do not bound them).
    pub(crate) max_parked: usize,
}

/// How rate limiting is set.
#[derive(Debug, Clone)]
pub(crate) struct RateLimitOptions {
    /// Answers per second per key; 0 turns limiting off.
    pub(crate) responses_per_second: u32,
    /// Every `slip`-th limited answer is sent truncated (TC) instead of dropped; 0: all dropped.
    pub(crate) slip: u32,
    pub(crate) ipv4_prefix_length: u8,
    pub(crate) ipv6_prefix_length: u8,
    /// Clients never limited.
    pub(crate) exempt: Vec<Cidr>,
}

/// Where dnstap frames go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DnstapTarget {
    Unix(std::path::PathBuf),
    Tcp(SocketAddr),
}

impl std::fmt::Display for DnstapTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

impl std::str::FromStr for DnstapTarget {
    type Err = String;

    /// `unix:PATH`, `tcp:ADDR:PORT`, or a path alone (a Unix socket, as BIND's `dnstap-output`).
    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(addr) = text.strip_prefix("tcp:") {
            return addr
                .parse()
                .map(Self::Tcp)
                .map_err(|_| format!("not an address and port: '{addr}'"));
        }
        let path = text.strip_prefix("unix:").unwrap_or(text);
        match path.is_empty() {
            true => Err("a Unix socket path or tcp:ADDR:PORT".into()),
            false => Ok(Self::Unix(path.into())),
        }
    }
}

/// dnstap: where its frames go, what it names this server, how many messages may wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DnstapOptions {
    pub(crate) target: DnstapTarget,
    pub(crate) identity: Vec<u8>,
    pub(crate) capacity: usize,
}

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogTarget {
    Stderr,
    File(PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_unix_paths_or_tcp_addresses() {
        let parse = |text: &str| text.parse::<DnstapTarget>();
        assert_eq!(
            parse("unix:/run/dnstap.sock"),
            Ok(DnstapTarget::Unix("/run/dnstap.sock".into()))
        );
        assert_eq!(
            parse("/run/dnstap.sock"),
            Ok(DnstapTarget::Unix("/run/dnstap.sock".into()))
        );
        assert_eq!(
            parse("tcp:127.0.0.1:6000"),
            Ok(DnstapTarget::Tcp(([127, 0, 0, 1], 6000).into()))
        );
        assert!(parse("tcp:localhost").is_err());
        assert!(parse("unix:").is_err());
    }
}
