//! The keeper of the connection budget: which service watches park a blocking query.
//!
//! At most [`crate::consul::ConsulClient::service_parking`] service watches may park (see
//! `consul::lanes`). Every second the keeper ranks the watched services by how often they were
//! asked lately and parks the most asked (services of other datacenters first), a few at a
//! time; a new watch reads on demand until then. The others read when their datacenter's
//! change signals ask them to ([`super::signals`]), and the sweeps bound how long that can take
//! ([`super::sweep`]).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;

use super::{
    caches::Caches, instances::InstanceSlot, local::LocalDatacenter, watches::WatchContext,
};
use crate::consul::InstanceKind;

/// How often the parked set is chosen again.
const REBALANCE_EVERY: Duration = Duration::from_secs(1);
/// Weight of the last second in the asked-rate average.
const RECENT_WEIGHT: f64 = 0.3;
/// Watches parked or unparked per second at most.
const MAX_CHANGES_PER_TICK: usize = 8;
/// Added to the score of another datacenter's service watch, so that it parks first: a parked
/// watch of a datacenter whose failing checks change a lot costs nothing per change.
const REMOTE_BONUS: f64 = 1e9;

/// What the keeper did, for the metrics.
#[derive(Debug, Default)]
pub(crate) struct BudgetStats {
    /// Service watches parked now / reading on demand now.
    pub(crate) parked: AtomicUsize,
    pub(crate) on_demand: AtomicUsize,
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
    let mut rates: HashMap<InstancesKey, (u64, f64)> = HashMap::new();
    let mut tick = tokio::time::interval(REBALANCE_EVERY);
    loop {
        tokio::select! {
            _ = context.stop.cancelled() => return,
            _ = tick.tick() => {
                let quota = context.client.service_parking();
                rebalance(&caches, &local.name, quota, &mut rates, &stats);
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
    let set = |slot: &Arc<InstanceSlot>, on: bool| {
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
