//! The change signals of one datacenter, for the watches of it that do not park: its failing
//! checks and its service list, each one parked query. Every datacenter a client asks about
//! gets them (the local one for as long as the bridge runs, another one while its services are
//! asked for), so a service of any datacenter follows a change within a round trip.
//!
//! - The failing checks change: the new view is published (every watch of the datacenter
//!   answers under it, [`super::health_view`]); the services holding a changed check answer
//!   again now, without a read; a change of an instance a watch does not hold yet has it read.
//! - The service list's index moves: services whose tags changed, or that came or went, read
//!   now (past what they hold); and the datacenter's catalog generation moves, which has every
//!   watch of it that reads on demand read again behind them ([`super::sweep`]): only a read
//!   shows an instance moving, and no list names the service it moved in.
//! - Consul stops answering the failing-checks query: the others read now (and go stale with
//!   it, or follow the failover to the next agent); when it answers again, they read to catch
//!   up.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{
    health_view::FailingView,
    instances::{DatacenterFeed, DatacenterProgress, InstanceCache, InstanceHolder, Touch},
    slot::WatchedSlot,
    watches::{ServiceList, WatchContext, watch_failing_checks},
};
use crate::consul::{ReadCause, WatchIndex};

/// How often the signal task looks whether the failing-checks query still reaches Consul.
const FRESHNESS_TICK: Duration = Duration::from_secs(1);

/// Counts of the reads the signals asked for, for the metrics.
#[derive(Debug, Default)]
pub(crate) struct SignalStats {
    pub(crate) reads_for_health: AtomicU64,
    pub(crate) reads_for_catalog: AtomicU64,
    /// Services answered again under a new failing-checks view without a read.
    pub(crate) health_applied: AtomicU64,
}

/// The signals of one datacenter; their task ends when this is dropped.
pub(crate) struct DatacenterSignals {
    /// What its service watches follow.
    pub(crate) feed: DatacenterFeed,
    /// The service list it follows (for another datacenter, the one lookups read too).
    pub(crate) names: Arc<WatchedSlot<ServiceList>>,
    _stop: DropGuard,
}

impl DatacenterSignals {
    /// Signals that never fire, for a catalog of fixed data.
    pub(crate) fn fixed(names: Arc<WatchedSlot<ServiceList>>) -> Self {
        let (_, view) = watch::channel(Arc::new(FailingView::default()));
        Self {
            feed: DatacenterFeed {
                view,
                progress: Arc::default(),
            },
            names,
            _stop: CancellationToken::new().drop_guard(),
        }
    }

    /// Signals that never fire, for a scope Consul keeps no lists of (a peer's imported
    /// catalog: its services follow by their own queries).
    pub(crate) fn silent() -> Self {
        let names = WatchedSlot::fixed(
            ServiceList::default(),
            crate::consul::Freshness::new("no list".to_owned(), Arc::default()),
        );
        Self::fixed(Arc::new(names))
    }

    /// Starts following `dc`, whose service list is watched by `names`.
    pub(crate) fn start(
        context: &WatchContext,
        dc: &str,
        names: Arc<WatchedSlot<ServiceList>>,
        instances: &InstanceCache,
        stats: &Arc<SignalStats>,
    ) -> Self {
        let (publish, view) = watch::channel(Arc::new(FailingView::default()));
        let progress = Arc::new(DatacenterProgress::default());
        let stop = context.stop.child_token();
        let follower = Follower {
            dc: dc.to_owned(),
            instances: instances.clone(),
            progress: progress.clone(),
            stats: stats.clone(),
        };
        tokio::spawn(follower.run(context.clone(), names.clone(), publish, stop.clone()));
        Self {
            feed: DatacenterFeed { view, progress },
            names,
            _stop: stop.drop_guard(),
        }
    }
}

struct Follower {
    dc: String,
    /// The service watches, of every datacenter.
    instances: InstanceCache,
    progress: Arc<DatacenterProgress>,
    stats: Arc<SignalStats>,
}

impl Follower {
    async fn run(
        self,
        context: WatchContext,
        names: Arc<WatchedSlot<ServiceList>>,
        publish: watch::Sender<Arc<FailingView>>,
        stop: CancellationToken,
    ) {
        let failing = watch_failing_checks(&context, &self.dc);
        let mut failing_changes = failing.subscribe();
        let mut list_changes = names.subscribe();
        let mut known_list = names.current();
        let mut tick = tokio::time::interval(FRESHNESS_TICK);
        let mut consul_answers = true;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = failing_changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let Some(view) = failing_changes.borrow_and_update().clone() else {
                        continue;
                    };
                    let before = publish.send_replace(view.clone());
                    self.progress.signalled(view.index);
                    self.health_changed(&before, &view);
                }
                changed = list_changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let list = list_changes.borrow_and_update().clone();
                    if let Some(list) = &list {
                        self.catalog_changed(known_list.as_deref(), list);
                    }
                    known_list = list;
                }
                _ = tick.tick() => {
                    let answers = failing.freshness().stale_for().is_none();
                    if answers != consul_answers {
                        consul_answers = answers;
                        let cause = match answers {
                            true => ReadCause::CatchUp,
                            false => ReadCause::Signal,
                        };
                        self.each_watch(|holder| {
                            holder.control.request(cause, WatchIndex::ZERO);
                            true
                        });
                    }
                }
            }
        }
    }

    /// Calls `visit` with the holder of every service watch of this datacenter (a parked one
    /// leaves a request to read to its parked query); returns how many it said it acted on.
    fn each_watch(&self, mut visit: impl FnMut(&InstanceHolder) -> bool) -> u64 {
        let mut acted = 0;
        for (key, slot) in self.instances.iter() {
            if key.0 != self.dc {
                continue;
            }
            if let Some(holder) = &slot.holder
                && visit(holder)
            {
                acted += 1;
            }
        }
        acted
    }

    /// The failing checks changed from `before` to `now`.
    fn health_changed(&self, before: &FailingView, now: &FailingView) {
        if before.index.is_set() && before.agent_epoch != now.agent_epoch {
            // Another agent answers (a failover): its catalog may differ in anything.
            let reads = self.each_watch(|holder| {
                holder.control.request(ReadCause::Signal, WatchIndex::ZERO);
                true
            });
            self.stats
                .reads_for_health
                .fetch_add(reads, Ordering::Relaxed);
            return;
        }
        let changes = before.changes(now);
        if changes.is_empty() {
            return;
        }
        let (mut applied, mut reads) = (0, 0);
        self.each_watch(|holder| {
            let touch = changes
                .iter()
                .map(|change| holder.touched_by(change))
                .max_by_key(|touch| match touch {
                    Touch::No => 0,
                    Touch::Held => 1,
                    Touch::Unknown => 2,
                })
                .unwrap_or(Touch::No);
            match touch {
                Touch::No => return false,
                Touch::Held => applied += 1,
                Touch::Unknown => {
                    holder
                        .control
                        .request(ReadCause::Signal, holder.held_index());
                    reads += 1;
                }
            }
            // Also when it reads: what it holds answers under the new view meanwhile.
            holder.republish();
            true
        });
        self.stats
            .health_applied
            .fetch_add(applied, Ordering::Relaxed);
        self.stats
            .reads_for_health
            .fetch_add(reads, Ordering::Relaxed);
    }

    /// The service list moved from `before` to `now`.
    fn catalog_changed(&self, before: Option<&ServiceList>, now: &ServiceList) {
        if before.is_some_and(|before| before.index == now.index) {
            return;
        }
        let named: HashSet<String> = before.map(|b| b.changed_services(now)).unwrap_or_default();
        // Before the generation moves, so that a read it asks for counts as the catch-up too.
        let reads = self.each_watch(|holder| {
            if !named.contains(holder.service()) || holder.held_index() >= now.index {
                return false;
            }
            holder
                .control
                .request(ReadCause::Signal, holder.held_index());
            true
        });
        self.stats
            .reads_for_catalog
            .fetch_add(reads, Ordering::Relaxed);
        self.progress.signalled(now.index);
        self.progress.next_generation();
    }
}
