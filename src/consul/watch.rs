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

use std::{future::Future, sync::atomic::Ordering, time::Duration};

use rand::Rng;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{
    ask::Ask,
    blocking::{Blocking, WatchIndex},
    control::{ReadCauses, WatchControl},
    error::ConsulError,
    freshness::Freshness,
};

/// How often a list that found no room to park is read instead.
const LIST_POLL: Duration = Duration::from_secs(2);

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

/// What one successful answer of a watch was, besides its value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answered {
    /// Whether the index (or the agent) differs from the last answer's.
    pub(crate) changed: bool,
    pub(crate) index: WatchIndex,
    /// Why the read was made (none for a parked query).
    pub(crate) causes: ReadCauses,
    /// Whether another read was asked for while this one was in flight.
    pub(crate) more_asked: bool,
}

/// Runs until `stop` fires: asks `fetch` for the value (parked on a blocking query after the
/// last index, or, for a watch `control` keeps out of the budget, read when asked to), hands
/// every answer to `deliver` (with whether it changed), and keeps `freshness` up to date.
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
    D: FnMut(T, Answered),
{
    let what = freshness.what();
    let mut index = WatchIndex::ZERO;
    let mut failures: u32 = 0;
    let mut zero_index_streak = false;
    let mut have_value = false;
    let mut last_epoch = None;
    // Set when the budget had no room to park: read on demand until the mode changes.
    let mut refused_parking = false;
    // Read at once, without being asked: the watch just stopped parking.
    let mut catch_up = false;
    // The request count the last read took.
    let mut taken = 0;
    'watch: loop {
        let parked = !refused_parking && control.is_none_or(WatchControl::wants_parked);
        if let Some(control) = control {
            control.set_is_parked(parked);
            // Not parked and current: wait to be asked to read, or for the mode to change; read
            // anyway after a whole wait, as a parked query would come back. After a failure the
            // reads go on (with back-off) until one succeeds: nothing would tell it when.
            if !parked && have_value && failures == 0 && !catch_up {
                let periodic = sleep(jitter(policy.wait, 0.9));
                tokio::pin!(periodic);
                loop {
                    let wake = control.wake.notified();
                    tokio::pin!(wake);
                    // Registered before the count is read, so a request between the two wakes it.
                    wake.as_mut().enable();
                    if control.requested() != taken {
                        break;
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        // Look at the count again: a wake-up may be left from a request that
                        // an earlier read already took.
                        _ = &mut wake => {}
                        _ = control.mode_changed.notified() => {
                            refused_parking = false;
                            continue 'watch;
                        }
                        _ = &mut periodic => {
                            refused_parking = false;
                            break;
                        }
                    }
                }
            }
        }
        catch_up = false;
        let wait = jitter(policy.wait, 0.9);
        let (ask, causes) = match (parked, control) {
            (true, control) => {
                // A parked query answers every request made until it returns.
                if let Some(control) = control {
                    taken = control.take().count;
                }
                (Ask::Park { index, wait }, ReadCauses::default())
            }
            (false, Some(control)) => {
                let request = control.take();
                taken = request.count;
                let ask = Ask::Read {
                    background: !request.causes.urgent(),
                    after: request.after.min(index),
                };
                (ask, request.causes)
            }
            (false, None) => (
                Ask::Read {
                    background: false,
                    after: WatchIndex::ZERO,
                },
                ReadCauses::default(),
            ),
        };
        let demoted = async {
            match control {
                Some(control) if parked => control.mode_changed.notified().await,
                _ => std::future::pending().await,
            }
        };
        // A read behind catch-up work (queued for a connection) gives way to a signal's.
        let overtaken = async {
            match (control, ask) {
                (
                    Some(control),
                    Ask::Read {
                        background: true, ..
                    },
                ) => control.urgent_request().await,
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
            // Demoted while parked: the parked request is dropped, its place freed, and what it
            // would have seen is read at once.
            () = demoted => {
                catch_up = true;
                continue;
            }
            // Asked for urgently meanwhile: read again at once, ahead of the catch-up work.
            () = overtaken => continue,
        };
        let pause = match answer {
            Err(ConsulError::NoParkingRoom { .. }) => {
                refused_parking = true;
                catch_up = true;
                continue;
            }
            Ok(Blocking {
                value,
                index: received,
                agent_epoch,
            }) => {
                freshness.contact_ok();
                if let Some(control) = control {
                    control.confirm();
                }
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
                let answered = Answered {
                    changed: step.changed,
                    index: received,
                    causes,
                    more_asked: control.is_some_and(|c| c.requested() != taken),
                };
                deliver(value, answered);
                match (control, parked) {
                    // A list with no room to park was read instead: read it again in a while,
                    // trying to park first.
                    (None, false) => {
                        refused_parking = false;
                        Some(jitter(LIST_POLL, 0.5))
                    }
                    _ => step.pause.then(|| jitter(policy.suspicious_pause, 0.5)),
                }
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
