//! How one service watch is steered from outside: whether it parks a blocking query or reads
//! when asked, the requests to read it gets, and what it reports back (questions answered, when
//! Consul last confirmed its value).
//!
//! Requests are counted, not flagged: a request that comes while a read is queued or in flight
//! moves the count past what that read took, so one more read follows it. A request is never
//! dropped, only coalesced with later ones. A watch that stops parking (demoted, or refused a
//! place) reads at once, since the requests made while it parked were left to its parked query.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use super::blocking::WatchIndex;

/// Why a watch that is not parked was asked to read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadCause {
    /// A signal named this watch (a health change, a catalog change of its service, Consul
    /// back): urgent, it goes ahead of the catch-up work for a connection.
    Signal = 1,
    /// The datacenter's catalog changed in a way no signal could attribute (an instance moved):
    /// each watch of it that reads on demand reads again, behind the signals.
    CatchUp = 2,
    /// The periodic check that no signal was missed (anti-entropy), behind the signals.
    AntiEntropy = 4,
}

/// The causes of one read, as a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ReadCauses(u8);

impl ReadCauses {
    /// Whether a signal asked for it (or nothing did: a read the watch makes on its own, which
    /// is as urgent).
    pub(crate) fn urgent(self) -> bool {
        self.0 == 0 || self.0 & ReadCause::Signal as u8 != 0
    }

    /// Only anti-entropy asked for this read: nothing announced a change.
    pub(crate) fn only_anti_entropy(self) -> bool {
        self.0 == ReadCause::AntiEntropy as u8
    }
}

/// What a read took from the requests: up to which count, why, and past which index.
#[derive(Debug, Clone, Copy)]
pub(super) struct Taken {
    pub(super) count: u64,
    pub(super) causes: ReadCauses,
    pub(super) after: WatchIndex,
}

#[derive(Debug, Default)]
pub(crate) struct WatchControl {
    /// Park on a blocking query (when the budget has room) rather than wait to be told to read.
    wants_parked: AtomicBool,
    /// Parked now (a blocking query in flight or about to be).
    parked: AtomicBool,
    pub(super) mode_changed: Notify,
    pub(super) wake: Notify,
    /// Reads asked for since the watch began.
    requested: AtomicU64,
    /// The count the last read (or parked query) took.
    taken: AtomicU64,
    /// [`ReadCause`] bits of the requests not taken by a read yet.
    causes: AtomicU8,
    /// The next read must see data past this index (0: any).
    read_after: AtomicU64,
    /// Questions answered from this watch's value.
    asked: AtomicU64,
    /// When Consul last confirmed the value: milliseconds since `epoch`, plus one (0: never).
    confirmed: AtomicU64,
    epoch: OnceLock<Instant>,
}

impl WatchControl {
    pub(crate) fn new(wants_parked: bool) -> Self {
        let control = Self {
            wants_parked: AtomicBool::new(wants_parked),
            ..Self::default()
        };
        let _ = control.epoch.set(Instant::now());
        control
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

    pub(super) fn set_is_parked(&self, parked: bool) {
        self.parked.store(parked, Ordering::Relaxed);
    }

    /// Asks the watch to read its value again, for `cause`; with `after` set, the read waits
    /// (briefly) for data past that index. A parked watch leaves it to its parked query.
    pub(crate) fn request(&self, cause: ReadCause, after: WatchIndex) {
        // The causes and the index before the count: a read that sees the count also sees
        // what the request said, or the next read will.
        self.causes.fetch_or(cause as u8, Ordering::AcqRel);
        self.read_after.fetch_max(after.get(), Ordering::AcqRel);
        self.requested.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// The requests a read starting now answers.
    pub(super) fn take(&self) -> Taken {
        let count = self.requested.load(Ordering::Acquire);
        self.taken.store(count, Ordering::Release);
        Taken {
            count,
            causes: ReadCauses(self.causes.swap(0, Ordering::AcqRel)),
            after: WatchIndex::new(self.read_after.swap(0, Ordering::AcqRel)),
        }
    }

    /// Whether a signal asked for a read that has not started yet.
    pub(super) fn urgent_pending(&self) -> bool {
        self.causes.load(Ordering::Acquire) & ReadCause::Signal as u8 != 0
    }

    /// Waits until a signal asks for a read (a read queued behind catch-up work then gives
    /// way to it).
    pub(super) async fn urgent_request(&self) {
        loop {
            let wake = self.wake.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            if self.urgent_pending() {
                return;
            }
            wake.await;
        }
    }

    /// Whether a read was asked for that has not started yet.
    pub(crate) fn read_pending(&self) -> bool {
        self.requested.load(Ordering::Acquire) != self.taken.load(Ordering::Acquire)
    }

    /// The count of requests so far (what a read starting now would take).
    pub(super) fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// Counts a question answered from the watch's value.
    pub(crate) fn count_question(&self) {
        self.asked.fetch_add(1, Ordering::Relaxed);
    }

    /// Questions answered from the watch's value since it started.
    pub(crate) fn questions(&self) -> u64 {
        self.asked.load(Ordering::Relaxed)
    }

    pub(super) fn confirm(&self) {
        let since = self
            .epoch
            .get()
            .map_or(0, |epoch| epoch.elapsed().as_millis());
        let stamp = u64::try_from(since).unwrap_or(u64::MAX - 1) + 1;
        self.confirmed.store(stamp, Ordering::Relaxed);
    }

    /// How long ago Consul last confirmed the value (a parked query confirms it all along:
    /// zero); `None` before the first answer.
    pub(crate) fn unconfirmed_for(&self) -> Option<Duration> {
        if self.is_parked() {
            return Some(Duration::ZERO);
        }
        let stamp = self.confirmed.load(Ordering::Relaxed).checked_sub(1)?;
        let epoch = self.epoch.get()?;
        Some(epoch.elapsed().saturating_sub(Duration::from_millis(stamp)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_during_a_read_is_seen_after_it_and_never_lost() {
        let control = WatchControl::new(false);
        control.request(ReadCause::CatchUp, WatchIndex::ZERO);
        let first = control.take();
        assert!(!first.causes.urgent() && !first.causes.only_anti_entropy());
        // Asked while the first read is in flight: the count moved past what it took.
        control.request(ReadCause::Signal, WatchIndex::new(40));
        control.request(ReadCause::Signal, WatchIndex::new(30));
        assert_ne!(control.requested(), first.count);
        let second = control.take();
        assert!(second.causes.urgent());
        assert_eq!(second.after, WatchIndex::new(40), "the highest index asked");
        assert_eq!(
            control.requested(),
            second.count,
            "both coalesced into one read"
        );
        control.request(ReadCause::AntiEntropy, WatchIndex::ZERO);
        assert!(control.take().causes.only_anti_entropy());
    }
}
