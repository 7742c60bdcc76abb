//! How the bridge asks Consul: the read options it shares with Consul's DNS (`allow_stale`,
//! `max_stale`, `use_cache`), how one watch asks (parked, or a read at once), and what the
//! reads came to.

use std::time::Duration;

use super::blocking::WatchIndex;

/// How a watch asks for its value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ask {
    /// A blocking query parked at the agent until the data passes `index` or `wait` elapses.
    Park { index: WatchIndex, wait: Duration },
    /// A read that returns at once; a `background` one (a sweep after a catalog change) waits
    /// behind the others. With `after` set, it waits (briefly) for data past that index: a
    /// health change seen elsewhere must be in the answer, even from a lagging server or the
    /// agent's cache not yet refreshed.
    Read { background: bool, after: WatchIndex },
}

/// How the reads went, for the metrics (see `ConsulClient::read_stats`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadStats {
    pub(crate) consistent_retries: u64,
    pub(crate) cache_hits: u64,
    pub(crate) cache_misses: u64,
    pub(crate) refused: u64,
    pub(crate) parked: usize,
    /// Queries allowed to park now (fewer than the budget's after refusals).
    pub(crate) parking_limit: usize,
    pub(crate) connections: usize,
}
