//! Whether a watched value still reflects Consul, and the counts all watches share.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Counts shared by every watch, read by the metrics.
#[derive(Debug, Default)]
pub(crate) struct WatchStats {
    /// Watches whose last request failed.
    pub(crate) stale: AtomicUsize,
    /// Blocking queries that returned with new data.
    pub(crate) wakeups_changed: AtomicU64,
    /// Blocking queries that returned without a change (the wait ran out).
    pub(crate) wakeups_unchanged: AtomicU64,
}

/// Whether a watch's value still reflects Consul: fresh while its requests succeed, stale from
/// the first failure until the next success. Watches share one count of stale watches, so the
/// operator gets one log line when Consul goes away and one when it is back, not one per watch.
pub(crate) struct Freshness {
    what: String,
    epoch: Instant,
    /// 0 while fresh; else milliseconds since `epoch` at the first failure, plus one.
    stale_since: AtomicU64,
    /// Milliseconds since `epoch` of the last successful answer, plus one; 0: none yet.
    last_ok: AtomicU64,
    stats: Arc<WatchStats>,
}

impl Freshness {
    pub(crate) fn new(what: String, stats: Arc<WatchStats>) -> Self {
        Self {
            what,
            epoch: Instant::now(),
            stale_since: AtomicU64::new(0),
            last_ok: AtomicU64::new(0),
            stats,
        }
    }

    pub(super) fn stats(&self) -> &WatchStats {
        &self.stats
    }

    /// What is watched, e.g. `service web in dc1`.
    pub(crate) fn what(&self) -> &str {
        &self.what
    }

    /// Time since the last successful answer; since the start while there has been none.
    pub(crate) fn since_last_answer(&self) -> Duration {
        let last = self.last_ok.load(Ordering::Relaxed).saturating_sub(1);
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }

    fn now_millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// How long the value has been stale, or `None` while fresh.
    pub(crate) fn stale_for(&self) -> Option<Duration> {
        match self.stale_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since - 1)),
            ),
        }
    }

    pub(crate) fn contact_ok(&self) {
        self.last_ok.store(self.now_millis(), Ordering::Relaxed);
        if self.stale_since.swap(0, Ordering::Relaxed) != 0 {
            debug!(what = %self.what, "fresh again");
            if self.stats.stale.fetch_sub(1, Ordering::Relaxed) == 1 {
                info!("Consul answers again: every answer is fresh");
            }
        }
    }

    pub(crate) fn contact_failed(&self) {
        let now = self.now_millis();
        let became_stale = self
            .stale_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if became_stale {
            debug!(what = %self.what, "stale");
            if self.stats.stale.fetch_add(1, Ordering::Relaxed) == 0 {
                warn!("Consul does not answer: serving the last known answers (stale)");
            }
        }
    }
}

impl Drop for Freshness {
    fn drop(&mut self) {
        if self.stale_since.load(Ordering::Relaxed) != 0 {
            self.contact_ok();
        }
    }
}
