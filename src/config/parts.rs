//! The plain values the parts are built from, as the options give them: no behaviour, so
//! that the parts depend on the configuration and never the other way round.

use std::{path::PathBuf, time::Duration};

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

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogTarget {
    Stderr,
    File(PathBuf),
}
