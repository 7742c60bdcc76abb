//! The catalog handle: the state both sides share, starting and stopping the background work,
//! and what the operator's metrics read. The lookups the DNS side makes are in
//! [`super::lookup`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hickory_proto::rr::Name;
use tokio::sync::watch;

use super::{
    addresses::ServiceAddresses,
    caches::Caches,
    entry::{EntryContext, ServiceAnswers},
    instances::{FollowStats, InstanceSlot},
    keeper::{self, BudgetStats},
    local::{self, LocalDatacenter},
    signals::{DatacenterSignals, SignalStats},
    slot::WatchedSlot,
    sweep::{self, SweepPolicy, SweepStats},
    watches::{ServiceList, WatchContext},
};
use crate::{
    config::{Config, ServiceTtls},
    consul::{ConsulClient, Freshness, HealthEntry, InstanceKind, WatchPolicy, WatchStats},
};

/// Consul's own service; its instances are the servers named in NS answers.
pub(crate) const CONSUL_SERVICE: &str = "consul";

/// A cheap-to-clone handle on the cache.
#[derive(Clone)]
pub(crate) struct Catalog {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) watch: WatchContext,
    pub(super) service_ttls: ServiceTtls,
    pub(super) serve_stale: Duration,
    /// Lookups answered from a value already cached / that had to wait for Consul.
    pub(super) cache_hits: AtomicU64,
    pub(super) cache_misses: AtomicU64,
    pub(super) local: watch::Receiver<Option<Arc<LocalDatacenter>>>,
    pub(super) caches: Arc<Caches>,
    /// What the keeper of the connection budget did.
    pub(super) budget: Arc<BudgetStats>,
    /// Addresses of the watched local services, for reverse lookups.
    pub(super) addresses: Arc<ServiceAddresses>,
    pub(super) query_refresh: Duration,
    /// What the datacenters' change signals and the sweeps asked for.
    pub(super) signal_stats: Arc<SignalStats>,
    pub(super) sweep_stats: Arc<SweepStats>,
    sweep: SweepPolicy,
}

impl Shared {
    fn new(
        config: &Config,
        client: ConsulClient,
        local: watch::Receiver<Option<Arc<LocalDatacenter>>>,
        caches: Caches,
    ) -> Self {
        Self {
            watch: WatchContext {
                client,
                policy: WatchPolicy::with_wait(config.watch_wait),
                domain: config.domain.clone(),
                visibility_key: Arc::from(config.visibility_key.as_str()),
                stats: Arc::default(),
                follow: Arc::default(),
                local_dc: Arc::default(),
                stop: Default::default(),
            },
            service_ttls: config.service_ttl.clone(),
            serve_stale: config.serve_stale,
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            local,
            caches: Arc::new(caches),
            budget: Arc::default(),
            addresses: Arc::default(),
            query_refresh: config.prepared_query_refresh,
            signal_stats: Arc::default(),
            sweep_stats: Arc::default(),
            sweep: SweepPolicy {
                reverify_interval: config.reverify_interval,
                catch_up_rate: config.catch_up_rate,
            },
        }
    }
}

impl Catalog {
    /// Starts the background work (finding the datacenter, the service-list watch) and returns
    /// at once; queries that arrive before it is done wait for it, bounded.
    pub(crate) fn start(config: &Config, client: ConsulClient) -> Self {
        let (publish_local, local) = watch::channel(None);
        let caches = Caches::new(Some(config.watch_idle_timeout));
        let shared = Arc::new(Shared::new(config, client, local, caches));
        let bootstrap = local::bootstrap(
            shared.watch.clone(),
            config.datacenter.clone(),
            publish_local,
            shared.caches.clone(),
            shared.signal_stats.clone(),
        );
        tokio::spawn(bootstrap);
        tokio::spawn(housekeeping(shared.clone()));
        tokio::spawn(keeper::keep(
            shared.caches.clone(),
            shared.watch.clone(),
            shared.local.clone(),
            shared.budget.clone(),
        ));
        tokio::spawn(sweep::sweep(
            shared.caches.clone(),
            shared.sweep,
            shared.sweep_stats.clone(),
            shared.watch.stop.clone(),
        ));
        Self { shared }
    }

    /// A catalog of fixed data with no watches and no requests to Consul: the local datacenter
    /// `datacenter` holding `services` (name, health entries). For benchmarks of the answer path.
    pub(crate) fn preloaded(
        config: &Config,
        client: ConsulClient,
        datacenter: &str,
        services: Vec<(String, Vec<HealthEntry>)>,
    ) -> Self {
        let stats: Arc<WatchStats> = Arc::default();
        let fixed_freshness = |what: &str| Freshness::new(what.to_owned(), stats.clone());
        let names = ServiceList::from_names(services.iter().map(|(name, _)| name.clone()));
        let names = Arc::new(WatchedSlot::fixed(names, fixed_freshness("service list")));
        let signals = Arc::new(DatacenterSignals::fixed(names));
        let (_, local) = watch::channel(Some(Arc::new(LocalDatacenter::new(
            datacenter.to_owned(),
            signals,
        ))));
        let shared = Shared::new(config, client, local, Caches::new(None));
        for (name, entries) in services {
            let context = EntryContext {
                datacenter: datacenter.to_owned(),
                target_datacenter: datacenter.to_owned(),
                domain: config.domain.clone(),
                ttl: ttl_seconds(shared.service_ttls.for_service(&name)),
                visibility_key: shared.watch.visibility_key.clone(),
            };
            let answers = ServiceAnswers::build(&entries, &context);
            let slot = InstanceSlot {
                slot: WatchedSlot::fixed(answers, fixed_freshness(&name)),
                holder: None,
            };
            let key = (datacenter.to_owned(), name, InstanceKind::Service);
            shared.caches.instances.insert(key, Arc::new(slot));
        }
        Self {
            shared: Arc::new(shared),
        }
    }

    pub(crate) fn domain(&self) -> &Name {
        &self.shared.watch.domain
    }

    pub(crate) fn consul(&self) -> &ConsulClient {
        &self.shared.watch.client
    }

    /// Whether the local service list has been read once.
    pub(crate) fn is_ready(&self) -> bool {
        self.shared
            .local
            .borrow()
            .as_ref()
            .is_some_and(|l| l.names.current().is_some())
    }

    /// Number of watches whose last request to Consul failed.
    pub(crate) fn stale_watches(&self) -> usize {
        self.shared.watch.stats.stale.load(Ordering::Relaxed)
    }

    /// Counts shared by all watches.
    pub(crate) fn watch_stats(&self) -> &WatchStats {
        &self.shared.watch.stats
    }

    /// Service lookups answered from the cache, and those that had to wait for Consul.
    pub(crate) fn cache_hits_and_misses(&self) -> (u64, u64) {
        (
            self.shared.cache_hits.load(Ordering::Relaxed),
            self.shared.cache_misses.load(Ordering::Relaxed),
        )
    }

    /// Every watch with the time since its last successful answer.
    pub(crate) fn watch_ages(&self) -> Vec<(String, Duration)> {
        let mut ages = Vec::new();
        let mut add = |freshness: &Freshness| {
            ages.push((freshness.what().to_owned(), freshness.since_last_answer()))
        };
        if let Some(local) = self.shared.local.borrow().as_ref() {
            add(local.names.freshness());
        }
        self.shared.caches.each_freshness(add);
        ages
    }

    /// What the keeper of the connection budget did.
    pub(crate) fn budget(&self) -> &BudgetStats {
        &self.shared.budget
    }

    /// The reads the change signals and the sweeps asked for, and the changes found that
    /// nothing had announced.
    pub(crate) fn follow_stats(&self) -> (&SignalStats, &SweepStats, &FollowStats) {
        (
            &self.shared.signal_stats,
            &self.shared.sweep_stats,
            &self.shared.watch.follow,
        )
    }

    /// How long ago Consul last confirmed each watch that reads on demand.
    pub(crate) fn confirmation_ages(&self) -> Vec<Duration> {
        self.shared
            .caches
            .instances
            .iter()
            .filter_map(|(_, slot)| {
                let control = slot.control()?;
                match control.is_parked() {
                    true => None,
                    false => control.unconfirmed_for(),
                }
            })
            .collect()
    }

    /// Questions answered from each watched (datacenter, service, kind) since its watch began.
    pub(crate) fn service_questions(&self) -> Vec<(String, String, InstanceKind, u64)> {
        self.shared
            .caches
            .instances
            .iter()
            .filter_map(|(key, slot)| {
                let asked = slot.control()?.questions();
                Some((key.0.clone(), key.1.clone(), key.2, asked))
            })
            .collect()
    }

    /// Number of services being watched now.
    pub(crate) fn watched_services(&self) -> u64 {
        self.shared.caches.watched_services()
    }

    /// The TTL of `service`'s answers (`service_ttl`, by name).
    pub(crate) fn service_ttl(&self, service: &str) -> u32 {
        ttl_seconds(self.shared.service_ttls.for_service(service))
    }

    /// Stops every watch.
    pub(crate) fn shutdown(&self) {
        self.shared.watch.stop.cancel();
    }
}

/// Makes moka's idle evictions (and so the end of idle watches) happen on time.
async fn housekeeping(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shared.watch.stop.cancelled() => return,
            _ = tick.tick() => shared.caches.run_pending_tasks(),
        }
    }
}

fn ttl_seconds(ttl: Duration) -> u32 {
    u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX)
}
