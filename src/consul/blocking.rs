//! What a blocking query sends and gets back: Consul's index, and an answer with its index.

/// Consul's `X-Consul-Index`. Zero means "not known yet": the request does not block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct WatchIndex(u64);

impl WatchIndex {
    pub(crate) const ZERO: WatchIndex = WatchIndex(0);

    pub(crate) fn new(index: u64) -> Self {
        Self(index)
    }

    pub(crate) fn get(self) -> u64 {
        self.0
    }

    /// Whether a request with this index would block.
    pub(crate) fn is_set(self) -> bool {
        self.0 > 0
    }
}

/// A decoded answer plus the `X-Consul-Index` it came with.
#[derive(Debug)]
pub(crate) struct Blocking<T> {
    pub(crate) value: T,
    pub(crate) index: WatchIndex,
    /// Which agent answered, as a count of failovers: indexes of two agents of different
    /// clusters cannot be compared, so an answer from another one is always news.
    pub(crate) agent_epoch: u64,
}
