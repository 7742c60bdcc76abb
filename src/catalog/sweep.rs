//! The two sweeps over the watches that read on demand, which bound how long any answer can be
//! wrong whatever the signals do:
//! - catch-up: after the service list of a datacenter moved (a registration, a deregistration,
//!   an instance moving address), each of its watches reads once more, at most
//!   `--catch-up-rate` reads a second, behind the reads signals ask for;
//! - anti-entropy: each watch is read at least every `--reverify-interval`, the reads spread
//!   evenly, so that a signal missed for any reason heals within that time. A read of it that
//!   finds a change nothing announced is counted and logged ([`super::instances`]).

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::caches::Caches;
use crate::consul::{ReadCause, WatchIndex};

/// How often the sweeps look for work.
const TICK: Duration = Duration::from_millis(100);

/// How fast the sweeps go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SweepPolicy {
    /// Every watch that reads on demand is confirmed by a read at least this often.
    pub(crate) reverify_interval: Duration,
    /// Catch-up reads per second at most.
    pub(crate) catch_up_rate: u32,
}

/// Counts of the reads the sweeps asked for.
#[derive(Debug, Default)]
pub(crate) struct SweepStats {
    pub(crate) catch_up: std::sync::atomic::AtomicU64,
    pub(crate) anti_entropy: std::sync::atomic::AtomicU64,
}

/// Runs both sweeps until `stop` fires.
pub(crate) async fn sweep(
    caches: Arc<Caches>,
    policy: SweepPolicy,
    stats: Arc<SweepStats>,
    stop: CancellationToken,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ticks_per_interval = (policy.reverify_interval.as_secs_f64() / TICK.as_secs_f64()).max(1.0);
    // Fractions of a read carried from tick to tick, so low rates still add up.
    let (mut catch_up_credit, mut reverify_credit) = (0.0_f64, 0.0_f64);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut behind = Vec::new();
        let mut due = Vec::new();
        let mut on_demand = 0usize;
        for (_, slot) in caches.instances.iter() {
            let Some(holder) = slot.holder.clone() else {
                continue;
            };
            let control = &holder.control;
            if control.is_parked() {
                continue;
            }
            on_demand += 1;
            if control.read_pending() {
                continue;
            }
            if holder.verified_generation() < holder.progress.generation() {
                behind.push(holder);
            } else if let Some(age) = control.unconfirmed_for()
                && age >= policy.reverify_interval
            {
                due.push((age, holder));
            }
        }
        catch_up_credit = (catch_up_credit + f64::from(policy.catch_up_rate) * TICK.as_secs_f64())
            .min(f64::from(policy.catch_up_rate).max(1.0));
        let mut asked = 0;
        for holder in behind.iter().take(catch_up_credit as usize) {
            holder.control.request(ReadCause::CatchUp, WatchIndex::ZERO);
            asked += 1;
        }
        catch_up_credit -= asked as f64;
        stats.catch_up.fetch_add(asked, Relaxed);
        // Enough reads each tick that every watch comes round within the interval; the
        // oldest first.
        reverify_credit =
            (reverify_credit + on_demand as f64 / ticks_per_interval).min(on_demand as f64 + 1.0);
        due.sort_by_key(|(age, _)| std::cmp::Reverse(*age));
        let mut asked = 0;
        for (_, holder) in due.iter().take(reverify_credit as usize) {
            holder
                .control
                .request(ReadCause::AntiEntropy, WatchIndex::ZERO);
            asked += 1;
        }
        reverify_credit = if due.is_empty() {
            0.0
        } else {
            reverify_credit - asked as f64
        };
        stats.anti_entropy.fetch_add(asked, Relaxed);
    }
}
