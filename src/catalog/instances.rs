//! One watched service's instances as Consul last listed them (failing ones too, with every
//! check and its index), and what they answer under the datacenter's failing-checks view.
//!
//! Two sides publish here, one at a time: the watch task with each new read, and the
//! datacenter's signal task when the failing checks change ([`super::signals`]). Either way the
//! records are built once, here, and published into the slot the DNS side reads. A health
//! change thus reaches the answers of a service read on demand without a read of it
//! ([`super::health_view`] says when that is exact, and asks for a read when it is not).

use std::{
    collections::{HashMap, HashSet},
    hash::{DefaultHasher, Hash, Hasher},
    net::IpAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::watch;
use tracing::warn;

use super::{
    addresses::{ServiceAddresses, ServiceTarget},
    entry::{EntryContext, ServiceAnswers},
    health_view::{ChangedCheck, FailingView, InstanceHealth},
    slot::{Publisher, WatchedSlot},
    visibility::Visibility,
};
use crate::consul::{Answered, HealthEntry, InstanceKind, ReadCause, WatchControl, WatchIndex};

/// A watched (datacenter, service, kind) as the caches hold it: the slot the DNS side reads,
/// and (for a watch, not a preloaded value) what keeps it.
pub(crate) struct InstanceSlot {
    pub(crate) slot: WatchedSlot<ServiceAnswers>,
    pub(crate) holder: Option<Arc<InstanceHolder>>,
}

impl std::ops::Deref for InstanceSlot {
    type Target = WatchedSlot<ServiceAnswers>;

    fn deref(&self) -> &Self::Target {
        &self.slot
    }
}

impl InstanceSlot {
    pub(crate) fn control(&self) -> Option<&WatchControl> {
        self.holder.as_deref().map(|holder| &*holder.control)
    }
}

/// What the signals of one datacenter have shown so far, for its watches to compare with.
#[derive(Debug, Default)]
pub(crate) struct DatacenterProgress {
    /// Moves each time the service list's index moves.
    generation: AtomicU64,
    /// The highest index the failing checks or the service list came with.
    signalled: AtomicU64,
}

impl DatacenterProgress {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn signalled_index(&self) -> u64 {
        self.signalled.load(Ordering::Acquire)
    }

    /// A signal came with `index`.
    pub(crate) fn signalled(&self, index: WatchIndex) {
        self.signalled.fetch_max(index.get(), Ordering::AcqRel);
    }

    /// The service list moved.
    pub(crate) fn next_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// What every service watch of one datacenter follows: its failing checks, and how far its
/// signals have come.
#[derive(Clone)]
pub(crate) struct DatacenterFeed {
    pub(crate) view: watch::Receiver<Arc<FailingView>>,
    pub(crate) progress: Arc<DatacenterProgress>,
}

/// The service watches of every datacenter, by (datacenter, service, kind).
pub(crate) type InstanceCache =
    moka::sync::Cache<(String, String, InstanceKind), Arc<InstanceSlot>>;

/// What a change of the failing checks means for one watched service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Touch {
    /// Nothing it holds or lists.
    No,
    /// A check of an instance it holds (or of its node): answer again under the new view.
    Held,
    /// An instance it does not hold yet (a new one, or a proxy or gateway it may list): read.
    Unknown,
}

/// Counts the followers of Consul share.
#[derive(Debug, Default)]
pub(crate) struct FollowStats {
    /// Reads that found a change no signal had announced: each is a bug report.
    pub(crate) unannounced_changes: AtomicU64,
}

pub(crate) struct InstanceHolder {
    service: String,
    kind: InstanceKind,
    context: EntryContext,
    /// The reverse-lookup index and this service's entry in it (local services only).
    addresses: Option<(Arc<ServiceAddresses>, Arc<ServiceTarget>)>,
    publish: Publisher<ServiceAnswers>,
    view: watch::Receiver<Arc<FailingView>>,
    pub(crate) progress: Arc<DatacenterProgress>,
    pub(crate) control: Arc<WatchControl>,
    stats: Arc<FollowStats>,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Whether a read has come back yet: nothing is answered before.
    read: bool,
    entries: Vec<HealthEntry>,
    index: WatchIndex,
    agent_epoch: u64,
    /// Of what is answered now, to tell whether a read changed it.
    fingerprint: u64,
    /// The datacenter's catalog generation the last read started after.
    verified_generation: u64,
    indexed: HashMap<IpAddr, Visibility>,
    unreadable_logged: HashSet<String>,
    unannounced_logged: bool,
}

/// Everything a holder is made of.
pub(crate) struct HolderParts {
    pub(crate) service: String,
    pub(crate) kind: InstanceKind,
    pub(crate) context: EntryContext,
    pub(crate) addresses: Option<(Arc<ServiceAddresses>, Arc<ServiceTarget>)>,
    pub(crate) publish: Publisher<ServiceAnswers>,
    pub(crate) feed: DatacenterFeed,
    pub(crate) control: Arc<WatchControl>,
    pub(crate) stats: Arc<FollowStats>,
}

impl InstanceHolder {
    pub(crate) fn new(parts: HolderParts) -> Self {
        Self {
            service: parts.service,
            kind: parts.kind,
            context: parts.context,
            addresses: parts.addresses,
            publish: parts.publish,
            view: parts.feed.view,
            progress: parts.feed.progress,
            control: parts.control,
            stats: parts.stats,
            held: Mutex::default(),
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        // Every change to `Held` is made whole under the lock; a panic elsewhere leaves it usable.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A read came back: keep it (if new) and answer with it. `generation` is the datacenter's
    /// catalog generation when the read started.
    pub(crate) fn store(
        &self,
        entries: Vec<HealthEntry>,
        answered: Answered,
        agent_epoch: u64,
        generation: u64,
    ) {
        let mut held = self.held();
        held.verified_generation = held.verified_generation.max(generation);
        if held.read && !answered.changed && held.agent_epoch == agent_epoch {
            return;
        }
        held.read = true;
        held.entries = entries;
        held.index = answered.index;
        held.agent_epoch = agent_epoch;
        let before = held.fingerprint;
        self.publish_held(&mut held);
        // Only the periodic check asked, nothing is pending, and the catalog signals had
        // reached this index: a change was missed.
        let unannounced = answered.causes.only_anti_entropy()
            && !answered.more_asked
            && held.fingerprint != before
            && held.verified_generation >= self.progress.generation()
            && answered.index.get() <= self.progress.signalled_index();
        if unannounced {
            self.stats
                .unannounced_changes
                .fetch_add(1, Ordering::Relaxed);
            if !held.unannounced_logged {
                held.unannounced_logged = true;
                warn!(
                    service = %self.service, datacenter = %self.context.datacenter,
                    index = answered.index.get(),
                    "a periodic read found a change no signal had announced; please report this"
                );
            }
        }
    }

    /// The datacenter's failing checks changed: answer again under the new view.
    pub(crate) fn republish(&self) {
        let mut held = self.held();
        self.publish_held(&mut held);
    }

    /// The service it holds (lower-case).
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    pub(crate) fn datacenter(&self) -> &str {
        &self.context.datacenter
    }

    /// The index of the last read.
    pub(crate) fn held_index(&self) -> WatchIndex {
        self.held().index
    }

    pub(crate) fn verified_generation(&self) -> u64 {
        self.held().verified_generation
    }

    /// What `change` means for this service.
    pub(crate) fn touched_by(&self, change: &ChangedCheck) -> Touch {
        let held = self.held();
        let holds = held.entries.iter().any(|entry| {
            entry.node.node == change.node
                && (change.service_id.is_empty() || entry.service.id == change.service_id)
        });
        if holds {
            return Touch::Held;
        }
        let node_level = change.service_id.is_empty();
        match self.kind {
            InstanceKind::Service if !node_level && change.service_name == self.service => {
                Touch::Unknown
            }
            // Proxies and gateways carry their own names: any instance it does not hold may
            // be one of them.
            InstanceKind::Connect | InstanceKind::Ingress if !node_level => Touch::Unknown,
            _ => Touch::No,
        }
    }

    /// Builds the answers of what is held under the current view, publishes them when they
    /// differ, keeps the reverse-lookup index in step, and asks for a read when the view knows
    /// of a change the read does not show yet.
    fn publish_held(&self, held: &mut Held) {
        if !held.read {
            return;
        }
        let view = self.view.borrow().clone();
        let mut unsure = false;
        let passing: Vec<&HealthEntry> = held
            .entries
            .iter()
            .filter(
                |entry| match view.health_of(entry, held.index, held.agent_epoch) {
                    InstanceHealth::Passing => true,
                    InstanceHealth::Failing => false,
                    InstanceHealth::Unsure => {
                        unsure = true;
                        false
                    }
                },
            )
            .collect();
        let fingerprint = fingerprint(&passing);
        let first = self.publish.borrow().is_none();
        if fingerprint != held.fingerprint || first {
            held.fingerprint = fingerprint;
            let answers = ServiceAnswers::build_passing(passing, &self.context);
            for id in answers.unreadable_visibility() {
                if held.unreadable_logged.insert(id.clone()) {
                    warn!(
                        service = %self.service, instance = %id,
                        key = %self.context.visibility_key,
                        "the instance's visibility rule is not a list of networks: it is \
                         answered to no one"
                    );
                }
            }
            if let Some((index, target)) = &self.addresses {
                let now = answers.ip_addresses();
                index.update(target, &held.indexed, &now);
                held.indexed = now;
            }
            self.publish.send_replace(Some(Arc::new(answers)));
        }
        if unsure {
            self.control.request(ReadCause::Signal, held.index);
        }
    }

    /// The watch ended: its addresses leave the reverse-lookup index.
    pub(crate) fn forget_addresses(&self) {
        let mut held = self.held();
        if let Some((index, target)) = &self.addresses {
            index.update(target, &held.indexed, &HashMap::new());
            held.indexed.clear();
        }
    }
}

/// A digest of what the answers are built from, independent of the order Consul lists the
/// instances in.
fn fingerprint(passing: &[&HealthEntry]) -> u64 {
    let mut each: Vec<u64> = passing
        .iter()
        .map(|entry| {
            let mut hasher = DefaultHasher::new();
            let (node, service) = (&entry.node, &entry.service);
            (&node.node, &node.address, &node.meta).hash(&mut hasher);
            (&service.id, &service.address, service.port, &service.tags).hash(&mut hasher);
            (
                &service.meta,
                service.weights.map(|w| (w.passing, w.warning)),
            )
                .hash(&mut hasher);
            hasher.finish()
        })
        .collect();
    each.sort_unstable();
    let mut hasher = DefaultHasher::new();
    each.hash(&mut hasher);
    hasher.finish()
}
