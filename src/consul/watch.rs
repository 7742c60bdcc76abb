//! The blocking-query loop that keeps one Consul value fresh: index rules, jitter, back-off and
//! stop.
//!
//! Consul answers a request carrying `index=N` only when its data passes N or `wait` elapses, so a
//! change reaches us within one round trip while an unchanged value costs one parked request per
//! `wait`. The rules follow Consul's documentation on blocking queries:
//! - a lower index than last time (agent restart, snapshot restore) resets the index to 0;
//! - so does any failed request: the agent that answers next may have restarted with a lower
//!   index, and a blocking query on an index it has not reached would hide its data for a whole
//!   `wait` (seen with a real agent restarted under the bridge);
//! - an index of 0 or 1 is never trusted to block, and an answer that comes back early without
//!   a change is followed by a pause, so a misbehaving server cannot drive a tight loop;
//! - `wait` and every pause carry jitter, so thousands of watches do not wake in step;
//! - errors back off exponentially with jitter, up to a cap.

use std::{
    future::Future,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use rand::Rng;
use tokio::{
    sync::Notify,
    time::{Instant, sleep},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{
    ask::Ask,
    blocking::{Blocking, WatchIndex},
    error::ConsulError,
    freshness::Freshness,
};

/// Timing of one watch loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchPolicy {
    /// `wait=` sent to Consul, before jitter.
    pub(crate) wait: Duration,
    /// Pause after an answer that gives no reason to trust the index.
    pub(crate) suspicious_pause: Duration,
    /// First back-off after an error; doubles per failure up to `retry_cap`.
    pub(crate) retry_base: Duration,
    pub(crate) retry_cap: Duration,
}

/// Whether the `failures`-th failure in a row is logged as a warning: the first and every tenth
/// after it (the others at debug), so an agent down for hours cannot flood the log.
pub(crate) fn warns(failures: u32) -> bool {
    failures % 10 == 1
}

impl WatchPolicy {
    /// The pause after `failures` failures in a row (at least 1): `retry_base`, doubling per
    /// failure up to `retry_cap`.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        self.retry_base
            .saturating_mul(1 << failures.min(16).saturating_sub(1))
            .min(self.retry_cap)
    }

    pub(crate) fn with_wait(wait: Duration) -> Self {
        Self {
            wait,
            suspicious_pause: Duration::from_secs(1),
            retry_base: Duration::from_millis(200),
            retry_cap: Duration::from_secs(30),
        }
    }
}

/// What to do after one answer: where to block next, whether the data is new, how long to pause.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) next: WatchIndex,
    pub(crate) changed: bool,
    pub(crate) pause: bool,
}

/// Applies the index rules to one answer. `sent` is the index the request carried, `received`
/// the one the answer carried, `early` whether it came back well before `wait` elapsed.
pub(crate) fn step(sent: WatchIndex, received: WatchIndex, early: bool) -> Step {
    if received < sent {
        return Step {
            next: WatchIndex::ZERO,
            changed: true,
            pause: true,
        };
    }
    let changed = received != sent || !sent.is_set();
    let untrusted = received.get() <= 1;
    let early_without_change = sent.is_set() && !changed && early;
    Step {
        next: WatchIndex::new(received.get().max(1)),
        changed,
        pause: untrusted || early_without_change,
    }
}

/// How one service watch should ask, set by whoever holds the connection budget (the catalog's
/// keeper), and what the watch reports back. Watches of lists (services, nodes, failing
/// checks, query definitions) have none: they always park.
#[derive(Debug, Default)]
pub(crate) struct WatchControl {
    /// Park on a blocking query (when the budget has room) rather than wait to be told to read.
    wants_parked: AtomicBool,
    /// Parked now (a blocking query in flight or about to be).
    parked: AtomicBool,
    mode_changed: Notify,
    read_now: Notify,
    /// The next read may wait behind others (a sweep after a catalog change).
    background: AtomicBool,
    /// The next read must see data past this index (0: any).
    read_after: AtomicU64,
    /// Questions answered from this watch's value.
    asked: AtomicU64,
}

impl WatchControl {
    pub(crate) fn new(wants_parked: bool) -> Self {
        Self {
            wants_parked: AtomicBool::new(wants_parked),
            ..Self::default()
        }
    }

    /// Parks the watch on a blocking query, or has it wait to be told to read.
    pub(crate) fn set_parked(&self, parked: bool) {
        if self.wants_parked.swap(parked, Ordering::Relaxed) != parked {
            self.mode_changed.notify_one();
        }
    }

    pub(crate) fn wants_parked(&self) -> bool {
        self.wants_parked.load(Ordering::Relaxed)
    }

    /// Whether a blocking query is parked for it now.
    pub(crate) fn is_parked(&self) -> bool {
        self.parked.load(Ordering::Relaxed)
    }

    /// Tells a watch that is not parked to read its value again (its data may have changed),
    /// and, with `after`, that the new data is past that index.
    pub(crate) fn read_now(&self, after: WatchIndex) {
        self.background.store(false, Ordering::Relaxed);
        self.read_after.fetch_max(after.get(), Ordering::Relaxed);
        self.read_now.notify_one();
    }

    /// As [`Self::read_now`], behind the reads that are more likely to matter.
    pub(crate) fn read_soon(&self) {
        self.background.store(true, Ordering::Relaxed);
        self.read_now.notify_one();
    }

    /// Counts a question answered from the watch's value.
    pub(crate) fn count_question(&self) {
        self.asked.fetch_add(1, Ordering::Relaxed);
    }

    /// Questions answered from the watch's value since it started.
    pub(crate) fn questions(&self) -> u64 {
        self.asked.load(Ordering::Relaxed)
    }
}

/// The index a read on demand waits past, told that data changed at `changed` (0: not known)
/// and holding data at `held`. Consul answers `index=N` once its data passes N. A service's
/// index is its own (the last change to it), not the index the change was seen at elsewhere:
/// in a burst of flips, the failing-checks list reports a later index than the service's
/// own change, and waiting past that index would wait for the whole read's wait. So: past what
/// is held, when that is older than the change (the answer comes as soon as the change
/// reaches the agent); when it is not, the change is in what is held, and past `changed - 1`
/// answers at once.
fn read_after(held: WatchIndex, changed: u64) -> WatchIndex {
    match changed {
        0 => WatchIndex::ZERO,
        changed => WatchIndex::new(held.get().min(changed - 1)),
    }
}

/// Runs until `stop` fires: asks `fetch` for the value (parked on a blocking query after the
/// last index, or, for a watch `control` keeps out of the budget, read once told to), hands
/// every changed value to `deliver`, and keeps `freshness` up to date.
pub(crate) async fn run<T, F, Fut, D>(
    freshness: &Freshness,
    policy: WatchPolicy,
    stop: CancellationToken,
    control: Option<&WatchControl>,
    mut fetch: F,
    mut deliver: D,
) where
    F: FnMut(Ask) -> Fut,
    Fut: Future<Output = Result<Blocking<T>, ConsulError>>,
    D: FnMut(T),
{
    let what = freshness.what();
    let mut index = WatchIndex::ZERO;
    let mut failures: u32 = 0;
    let mut zero_index_streak = false;
    let mut have_value = false;
    let mut last_epoch = None;
    // Set when the budget had no room to park: read on demand until the mode changes.
    let mut refused_parking = false;
    loop {
        let parked = !refused_parking && control.is_none_or(WatchControl::wants_parked);
        if let Some(control) = control {
            control.parked.store(parked, Ordering::Relaxed);
            // Not parked and current: wait to be told to read, or for the mode to change; read
            // anyway after a whole wait, as a parked query would come back. After a failure the
            // reads go on (with back-off) until one succeeds: nothing would tell it when.
            if !parked && have_value && failures == 0 {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = control.read_now.notified() => {}
                    _ = control.mode_changed.notified() => {
                        refused_parking = false;
                        continue;
                    }
                    _ = sleep(jitter(policy.wait, 0.9)) => refused_parking = false,
                }
            }
        }
        let wait = jitter(policy.wait, 0.9);
        let ask = match parked {
            true => Ask::Park { index, wait },
            false => Ask::Read {
                background: control.is_some_and(|c| c.background.swap(false, Ordering::Relaxed)),
                after: read_after(
                    index,
                    control.map_or(0, |c| c.read_after.swap(0, Ordering::Relaxed)),
                ),
            },
        };
        let demoted = async {
            match control {
                Some(control) if parked => control.mode_changed.notified().await,
                _ => std::future::pending().await,
            }
        };
        let started = Instant::now();
        // Boxed: a request's future is several kilobytes, and unboxed it would sit in every
        // watch task's state, also while the task only waits to be told to read (thousands).
        let request = Box::pin(fetch(ask));
        let answer = tokio::select! {
            _ = stop.cancelled() => return,
            answer = request => answer,
            // Demoted while parked: the parked request is dropped, its place freed.
            () = demoted => continue,
        };
        let pause = match answer {
            Err(ConsulError::NoParkingRoom { .. }) => {
                refused_parking = true;
                continue;
            }
            Ok(Blocking {
                value,
                index: received,
                agent_epoch,
            }) => {
                freshness.contact_ok();
                failures = 0;
                let step = match parked {
                    true => step(index, received, started.elapsed() < wait / 2),
                    // A read returns at once: only the index says whether the data is new.
                    false => Step {
                        changed: !have_value || received != index,
                        next: WatchIndex::new(received.get().max(1)),
                        pause: false,
                    },
                };
                have_value = true;
                // Another agent answered: its index says nothing against the last one's.
                let step = Step {
                    changed: step.changed || last_epoch != Some(agent_epoch),
                    ..step
                };
                last_epoch = Some(agent_epoch);
                let wakeups = match step.changed {
                    true => &freshness.stats().wakeups_changed,
                    false => &freshness.stats().wakeups_unchanged,
                };
                wakeups.fetch_add(1, Ordering::Relaxed);
                if received < index && received.is_set() {
                    warn!(
                        what,
                        sent = index.get(),
                        received = received.get(),
                        "Consul index went backwards; resetting"
                    );
                }
                let zero_index = !received.is_set();
                if zero_index && !zero_index_streak {
                    warn!(
                        what,
                        "Consul answered with index 0; not blocking on it (pausing between requests)"
                    );
                }
                zero_index_streak = zero_index;
                index = step.next;
                if step.changed {
                    deliver(value);
                }
                step.pause.then(|| jitter(policy.suspicious_pause, 0.5))
            }
            Err(error) => {
                freshness.contact_failed();
                index = WatchIndex::ZERO;
                failures = failures.saturating_add(1);
                let backoff = policy.backoff(failures);
                if warns(failures) {
                    warn!(what, failures, %error, "Consul request failed; retrying");
                } else {
                    debug!(what, failures, %error, "Consul request failed; retrying");
                }
                Some(jitter(backoff, 0.5))
            }
        };
        if let Some(pause) = pause {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = sleep(pause) => {}
            }
        }
    }
}

/// A random duration between `floor * base` and `base`.
fn jitter(base: Duration, floor: f64) -> Duration {
    base.mul_f64(rand::rng().random_range(floor..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: fn(u64) -> WatchIndex = WatchIndex::new;

    #[test]
    fn a_read_on_demand_waits_past_what_it_holds_when_that_is_older() {
        // Told of a change seen at 110 (a burst of flips), holding data at 50: past 50, so the
        // service's own change at, say, 104 answers at once.
        assert_eq!(read_after(I(50), 110), I(50));
        // Holding data from after the change: it is in there, and past 109 answers at once.
        assert_eq!(read_after(I(120), 110), I(109));
        // Nothing held, or no index told: no index at all.
        assert_eq!(read_after(WatchIndex::ZERO, 110), WatchIndex::ZERO);
        assert_eq!(read_after(I(50), 0), WatchIndex::ZERO);
    }

    #[test]
    fn first_answer_is_delivered_and_then_blocks() {
        let s = step(WatchIndex::ZERO, I(42), true);
        assert_eq!(
            s,
            Step {
                next: I(42),
                changed: true,
                pause: false
            }
        );
    }

    #[test]
    fn unchanged_index_after_full_wait_is_not_a_change() {
        let s = step(I(42), I(42), false);
        assert_eq!(
            s,
            Step {
                next: I(42),
                changed: false,
                pause: false
            }
        );
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let policy = WatchPolicy::with_wait(Duration::from_secs(300));
        let ms = |failures| policy.backoff(failures).as_millis();
        assert_eq!((ms(1), ms(2), ms(3)), (200, 400, 800));
        assert_eq!((ms(9), ms(10_000)), (30_000, 30_000));
        assert!(warns(1) && warns(11) && !warns(2) && !warns(10));
    }

    #[test]
    fn early_answer_without_change_pauses() {
        assert!(step(I(42), I(42), true).pause);
    }

    #[test]
    fn index_going_backwards_resets_and_pauses() {
        let s = step(I(42), I(7), true);
        assert_eq!(
            s,
            Step {
                next: WatchIndex::ZERO,
                changed: true,
                pause: true
            }
        );
    }

    #[test]
    fn index_zero_from_server_is_treated_as_one_and_paused() {
        let s = step(WatchIndex::ZERO, WatchIndex::ZERO, true);
        assert_eq!(
            s,
            Step {
                next: I(1),
                changed: true,
                pause: true
            }
        );
        let again = step(I(1), WatchIndex::ZERO, true);
        assert!(again.pause && again.next == WatchIndex::ZERO);
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(10), 0.5);
            assert!(d >= Duration::from_secs(5) && d <= Duration::from_secs(10));
        }
    }
}
