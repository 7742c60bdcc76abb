//! The keeper of the connection budget: which service watches park a blocking query, and when
//! the others read their value again.
//!
//! At most [`crate::consul::ConsulClient::service_parking`] service watches may park (see
//! `consul::lanes`). Every second the keeper ranks the watched services by how often they were
//! asked lately and parks the most asked (services of other datacenters first: nothing else
//! tells when they change), a few at a time; a new watch reads on demand until then. The
//! others wait to be told to read:
//! - a health change: one parked watch on the local datacenter's failing checks
//!   (`/v1/health/state/any`, filtered) wakes when any check changes; the services whose checks
//!   changed (all, for a node's own check) read at once, so they follow a flip within a
//!   round trip to the agent;
//! - a catalog change: when the local service list's index moves (a registration, a
//!   deregistration), every service read on demand reads again;
//! - Consul unreachable, and back: when the failing-checks watch fails, the others read at
//!   once (and go stale, or follow the failover to the next agent); when it answers again,
//!   they read to catch up;
//! - otherwise once per `--watch-wait`, as a parked query would come back.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;

use super::{
    caches::Caches,
    local::LocalDatacenter,
    watches::{WatchContext, watch_failing_checks},
};
use crate::consul::{HealthCheck, InstanceKind, WatchIndex};

/// How often the parked set is chosen again.
const REBALANCE_EVERY: Duration = Duration::from_secs(1);
/// Weight of the last second in the asked-rate average.
const RECENT_WEIGHT: f64 = 0.3;
/// Watches parked or unparked per second at most.
const MAX_CHANGES_PER_TICK: usize = 8;
/// Added to the score of another datacenter's service watch, so that it parks first.
const REMOTE_BONUS: f64 = 1e9;

/// What the keeper did, for the metrics.
#[derive(Debug, Default)]
pub(crate) struct BudgetStats {
    /// Service watches parked now / reading on demand now.
    pub(crate) parked: AtomicUsize,
    pub(crate) on_demand: AtomicUsize,
    /// Reads on demand started by a health change, and by a catalog change.
    pub(crate) reads_for_health: AtomicU64,
    pub(crate) reads_for_catalog: AtomicU64,
}

type InstancesKey = (String, String, InstanceKind);

/// Keeps the budget until the watch context's stop fires.
pub(super) async fn keep(
    caches: Arc<Caches>,
    context: WatchContext,
    mut local: watch::Receiver<Option<Arc<LocalDatacenter>>>,
    stats: Arc<BudgetStats>,
) {
    let local = tokio::select! {
        _ = context.stop.cancelled() => return,
        found = local.wait_for(Option::is_some) => match found {
            Ok(local) => local.clone(),
            Err(_) => return,
        },
    };
    let Some(local) = local else { return };
    let failing = watch_failing_checks(&context, &local.name);
    let mut failing_changes = failing.subscribe();
    let mut catalog_changes = local.names.subscribe();
    let mut known_failing: HashSet<HealthCheck> = HashSet::new();
    let mut rates: HashMap<InstancesKey, (u64, f64)> = HashMap::new();
    let mut tick = tokio::time::interval(REBALANCE_EVERY);
    let mut consul_answers = true;
    loop {
        tokio::select! {
            _ = context.stop.cancelled() => return,
            _ = tick.tick() => {
                let quota = context.client.service_parking();
                rebalance(&caches, &local.name, quota, &mut rates, &stats);
                // The failing-checks watch stands for every watch that reads on demand: when
                // it cannot reach Consul, they read now (and go stale with it, or fail over
                // to the next agent); when it can again, they read to catch up.
                let answers = failing.freshness().stale_for().is_none();
                if answers != consul_answers {
                    consul_answers = answers;
                    let priority = match answers {
                        true => Priority::Background,
                        false => Priority::Now(WatchIndex::ZERO),
                    };
                    read_on_demand(&caches, &local.name, |_| Some(priority));
                }
            }
            changed = failing_changes.changed() => {
                if changed.is_err() {
                    return;
                }
                let (index, now): (WatchIndex, HashSet<HealthCheck>) = failing_changes
                    .borrow_and_update()
                    .as_ref()
                    .map(|answer| (answer.0, answer.1.iter().cloned().collect()))
                    .unwrap_or_default();
                let touched = Touched::between(&known_failing, &now);
                known_failing = now;
                let reads = read_on_demand(&caches, &local.name, |key| touched.read_for(key, index));
                stats.reads_for_health.fetch_add(reads, Ordering::Relaxed);
            }
            changed = catalog_changes.changed() => {
                if changed.is_err() {
                    return;
                }
                catalog_changes.mark_unchanged();
                let reads = read_on_demand(&caches, &local.name, |_| Some(Priority::Background));
                stats.reads_for_catalog.fetch_add(reads, Ordering::Relaxed);
            }
        }
    }
}

/// Parks the `quota` most asked service watches (those of other datacenters first), and has
/// the others read on demand. Few change places per second, and only for a clear difference:
/// a demoted watch's connection closes a moment after its place is freed, and churn would
/// hold more connections than the budget for that moment.
fn rebalance(
    caches: &Caches,
    local_dc: &str,
    quota: usize,
    rates: &mut HashMap<InstancesKey, (u64, f64)>,
    stats: &BudgetStats,
) {
    let mut parked = Vec::new();
    let mut waiting = Vec::new();
    let mut seen = HashSet::new();
    for (key, slot) in caches.instances.iter() {
        let Some(control) = slot.control() else {
            continue;
        };
        let asked = control.questions();
        let (last, average) = rates.entry((*key).clone()).or_insert((asked, 0.0));
        let recent = asked.saturating_sub(*last) as f64;
        *average = (1.0 - RECENT_WEIGHT) * *average + RECENT_WEIGHT * recent;
        *last = asked;
        // Nothing else tells when another datacenter's services change: they park first.
        let score = *average + if key.0 != local_dc { REMOTE_BONUS } else { 0.0 };
        match control.is_parked() {
            true => parked.push((score, slot.clone())),
            false => waiting.push((score, slot.clone())),
        }
        seen.insert((*key).clone());
    }
    rates.retain(|key, _| seen.contains(key));
    for (_, slot) in &waiting {
        if let Some(control) = slot.control() {
            control.set_parked(false);
        }
    }
    // The weakest parked first, the strongest waiting first.
    parked.sort_by(|a, b| a.0.total_cmp(&b.0));
    waiting.sort_by(|a, b| b.0.total_cmp(&a.0));
    let set = |slot: &Arc<super::slot::WatchedSlot<super::entry::ServiceAnswers>>, on: bool| {
        if let Some(control) = slot.control() {
            control.set_parked(on);
        }
    };
    let mut changes = 0;
    let mut kept = parked.len();
    // Over the quota (it shrank, or more parked than it allows): the weakest leave.
    for (_, slot) in parked.iter().take(kept.saturating_sub(quota)) {
        set(slot, false);
        changes += 1;
    }
    kept = kept.min(quota);
    let mut strongest = waiting.iter();
    let mut weakest = parked.iter().skip(parked.len() - kept);
    for (score, candidate) in strongest.by_ref() {
        if kept < quota {
            // A free place: nothing closes, so no limit.
            set(candidate, true);
            kept += 1;
            continue;
        }
        if changes >= MAX_CHANGES_PER_TICK {
            break;
        }
        {
            match weakest.next() {
                Some((weak_score, weak)) if *score > weak_score * 1.5 + 0.5 => {
                    set(weak, false);
                    set(candidate, true);
                }
                _ => break,
            }
        }
        changes += 1;
    }
    stats.parked.store(kept, Ordering::Relaxed);
    let watched = parked.len() + waiting.len();
    stats
        .on_demand
        .store(watched.saturating_sub(kept), Ordering::Relaxed);
}

/// Tells the local datacenter's watches that read on demand and `wanted` to read now; returns
/// how many were told.
/// Whether reads on demand go before others or behind them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Priority {
    /// A health change: what clients most need to see at once; the data is past this index
    /// (0: not sure to move at all).
    Now(WatchIndex),
    /// A sweep after a catalog change: possibly thousands, behind the rest.
    Background,
}

fn read_on_demand(
    caches: &Caches,
    local_dc: &str,
    wanted: impl Fn(&InstancesKey) -> Option<Priority>,
) -> u64 {
    let mut told = 0;
    for (key, slot) in caches.instances.iter() {
        if key.0 != local_dc {
            continue;
        }
        let Some(priority) = wanted(&key) else {
            continue;
        };
        if let Some(control) = slot.control()
            && !control.is_parked()
        {
            match priority {
                Priority::Now(index) => control.read_now(index),
                Priority::Background => control.read_soon(),
            }
            told += 1;
        }
    }
    told
}

/// Which services a change of the failing checks touched.
struct Touched {
    /// Lower-case service names whose checks changed.
    services: HashSet<String>,
    /// A node's own check changed: every service may have.
    everything: bool,
}

impl Touched {
    fn between(before: &HashSet<HealthCheck>, now: &HashSet<HealthCheck>) -> Self {
        let mut touched = Self {
            services: HashSet::new(),
            everything: false,
        };
        for check in before.symmetric_difference(now) {
            match check.service_name.is_empty() {
                true => touched.everything = true,
                false => {
                    touched
                        .services
                        .insert(check.service_name.to_ascii_lowercase());
                }
            }
        }
        touched
    }

    /// How the watch of `key` reads after a change at `index`: past that index when its own
    /// service's checks changed; at once, without waiting for an index it may never reach,
    /// when a node's check changed (every service may have) or for Connect and ingress
    /// watches (they list other services' instances: proxies, gateways); `None` when the
    /// change cannot have touched it.
    fn read_for(&self, key: &InstancesKey, index: WatchIndex) -> Option<Priority> {
        if key.2 == InstanceKind::Service && self.services.contains(&key.1) {
            Some(Priority::Now(index))
        } else if self.everything || key.2 != InstanceKind::Service {
            Some(Priority::Now(WatchIndex::ZERO))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(node: &str, id: &str, service: &str, status: &str) -> HealthCheck {
        HealthCheck {
            node: node.into(),
            check_id: id.into(),
            service_name: service.into(),
            status: status.into(),
        }
    }

    fn key(service: &str, kind: InstanceKind) -> InstancesKey {
        ("dc1".into(), service.into(), kind)
    }

    #[test]
    fn a_flip_touches_its_service_and_a_node_check_touches_all() {
        let before = HashSet::from([check("n1", "c1", "Web", "critical")]);
        // web recovered (gone from the failing list), db started failing, api unchanged.
        let now = HashSet::from([check("n2", "c2", "db", "warning")]);
        let touched = Touched::between(&before, &now);
        let at = WatchIndex::new(42);
        let read = |service, kind| touched.read_for(&key(service, kind), at);
        assert_eq!(read("web", InstanceKind::Service), Some(Priority::Now(at)));
        assert_eq!(read("db", InstanceKind::Service), Some(Priority::Now(at)));
        assert_eq!(read("api", InstanceKind::Service), None);
        let any = Some(Priority::Now(WatchIndex::ZERO));
        assert_eq!(read("api", InstanceKind::Connect), any);
        let node_down = HashSet::from([check("n1", "serfHealth", "", "critical")]);
        let touched = Touched::between(&HashSet::new(), &node_down);
        assert_eq!(
            touched.read_for(&key("api", InstanceKind::Service), at),
            any
        );
        let touched = Touched::between(&node_down, &node_down);
        assert_eq!(
            touched.read_for(&key("api", InstanceKind::Service), at),
            None
        );
    }
}
