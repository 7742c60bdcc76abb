//! The cache between Consul and DNS: which services exist, and the ready answers of each
//! service that DNS clients ask for.
//!
//! The DNS side calls [`Catalog::service`]; it returns at once for a watched service and waits
//! (bounded) only for the first answer of a service asked for the first time. Behind it:
//! - one blocking watch on `/v1/catalog/services` of the local datacenter, started at once, so a
//!   name that is not in it is answered from memory and a flood of random names costs Consul
//!   nothing;
//! - one watch per asked-for (datacenter, service) on `/v1/health/service/<name>?passing`, held
//!   in a moka cache with time-to-idle, so watches stop when nobody asks any more;
//! - names of other datacenters' services, watched the same way once one of them is asked for.
//!
//! When Consul stops answering, each watch keeps its last value and is marked stale; stale values
//! are served for up to `max-stale` (RFC 8767's idea), then the answer is SERVFAIL.

mod entry;
mod queries;
mod slot;

use std::{
    collections::HashSet,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hickory_proto::rr::Name;
use moka::sync::Cache;
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use entry::{
    EntryContext, InstanceAddress, InstanceRecords, InstanceWire, ServiceAnswers, hex_address,
    ip_rdata, meta_txt, write_name,
};
pub use queries::go_duration_seconds;
use queries::{Demand, QueryNames, QueryResult};
use slot::WatchedSlot;

use crate::{
    config::{Config, ServiceTtls},
    consul::{
        Blocking, ConsulClient, ConsulError, WatchIndex, WatchPolicy,
        client::HealthEndpoint,
        types::HealthEntry,
        watch::{Freshness, WatchStats, run as run_watch, warns},
    },
};

/// How long a query waits for data that is not in the cache yet: the datacenter at start, the
/// service list, or the first answer of a newly watched service.
pub const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the list of datacenters is read again (that endpoint cannot block).
const DATACENTERS_REFRESH: Duration = Duration::from_secs(30);
/// Consul's own service; its instances are the servers named in NS answers.
pub const CONSUL_SERVICE: &str = "consul";

/// Names of the services of one datacenter, lower-case.
type ServiceNameSet = HashSet<String>;

/// Which instances of a service a name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceKind {
    /// `.service`: the service's own instances.
    Service,
    /// `.connect`: its Connect proxies and Connect-native instances.
    Connect,
    /// `.ingress`: the ingress gateways that expose it.
    Ingress,
}

/// What the cache knows of a (datacenter, service) asked for.
pub enum ServiceLookup {
    Found(Arc<ServiceAnswers>),
    /// No such datacenter or service: NXDOMAIN.
    Unknown,
    /// Consul has not answered in time, or the last answer is older than `max-stale`: SERVFAIL,
    /// never an NXDOMAIN a resolver would keep.
    NotReady,
}

/// A node as `.node.` answers need it.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    /// As registered (PTR answers keep its case, as Consul's do).
    pub name: String,
    pub address: InstanceAddress,
    /// The node's metadata as TXT strings (`key=value`, or the bare value for `rfc1035-` keys).
    pub meta_txt: Vec<String>,
}

/// The nodes of one datacenter by lower-case name (Consul matches node names in any case).
type NodeMap = std::collections::HashMap<String, NodeRecord>;

/// What the cache knows of a node asked for.
pub enum NodeLookup {
    Found(NodeRecord),
    /// No such datacenter or node: NXDOMAIN.
    Unknown,
    /// Consul has not answered in time, or too long ago: SERVFAIL.
    NotReady,
}

/// What the cache can say about a local service without waiting or starting a watch: the UDP
/// fast path answers from this and leaves everything else to the general path.
pub enum CachedLookup {
    Found(Arc<ServiceAnswers>),
    /// Not in the local service list: NXDOMAIN.
    Unknown,
    /// Not watched yet, not loaded, or too stale: ask [`Catalog::service`].
    NotCached,
}

thread_local! {
    /// The key of a cache lookup, reused so that a lookup on the query path does not allocate.
    static LOOKUP_KEY: std::cell::RefCell<(String, String)> =
        const { std::cell::RefCell::new((String::new(), String::new())) };
}

/// A cheap-to-clone handle on the cache.
#[derive(Clone)]
pub struct Catalog {
    shared: Arc<Shared>,
}

struct Shared {
    client: ConsulClient,
    policy: WatchPolicy,
    domain: Name,
    service_ttls: ServiceTtls,
    max_stale: Duration,
    watch_stats: Arc<WatchStats>,
    /// Lookups answered from a value already cached / that had to wait for Consul.
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    stop: CancellationToken,
    local: watch::Receiver<Option<Arc<LocalDatacenter>>>,
    remote_names: Cache<String, Arc<WatchedSlot<ServiceNameSet>>>,
    /// Per datacenter, watched from the first `.node.` question on.
    nodes: Cache<String, Arc<WatchedSlot<NodeMap>>>,
    services: Cache<(String, String), Arc<WatchedSlot<ServiceAnswers>>>,
    /// The same for `.connect` and `.ingress` names: proxies, Connect-native instances and
    /// ingress gateways of a service.
    gateway_services: Cache<(InstanceKind, String, String), Arc<WatchedSlot<ServiceAnswers>>>,
    /// Per datacenter, watched from the first `.query.` question on.
    query_definitions: Cache<String, Arc<WatchedSlot<QueryNames>>>,
    /// Per (datacenter, name asked), executed from the first question on.
    query_results: Cache<(String, String), Arc<ExecutedQuery>>,
    query_refresh: Duration,
}

/// A prepared query's kept result and the demand that decides when it is executed again.
struct ExecutedQuery {
    result: WatchedSlot<QueryResult>,
    demand: Arc<Demand>,
}

/// How long a question waits for the execution of a query whose result may be outdated before
/// it is answered with the result it has.
const QUERY_REFRESH_WAIT: Duration = Duration::from_millis(500);

/// The most prepared-query names kept executed at once: a catch-all template makes every name
/// a query, and a flood of such names must not become a flood of executions.
const MAX_EXECUTED_QUERIES: u64 = 10_000;

/// Known once the agent has told us where we are.
struct LocalDatacenter {
    name: String,
    names: WatchedSlot<ServiceNameSet>,
    datacenters: RwLock<Arc<HashSet<String>>>,
}

impl LocalDatacenter {
    /// Whether `dc` (lower-case) is this datacenter or one Consul knows over the WAN.
    fn knows(&self, dc: &str) -> bool {
        dc == self.name
            || self
                .datacenters
                .read()
                .map(|dcs| dcs.contains(dc))
                .unwrap_or(false)
    }
}

impl Catalog {
    /// Starts the background work (finding the datacenter, the service-list watch) and returns
    /// at once; queries that arrive before it is done wait for it, bounded.
    pub fn start(config: &Config, client: ConsulClient) -> Self {
        let (publish_local, local) = watch::channel(None);
        let idle = config.watch_idle_timeout;
        let shared = Arc::new(Shared {
            client,
            policy: WatchPolicy::with_wait(config.watch_wait),
            domain: config.domain.clone(),
            service_ttls: config.service_ttl.clone(),
            max_stale: config.max_stale,
            watch_stats: Arc::default(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            stop: CancellationToken::new(),
            local,
            remote_names: Cache::builder().time_to_idle(idle).build(),
            nodes: Cache::builder().time_to_idle(idle).build(),
            services: Cache::builder().time_to_idle(idle).build(),
            gateway_services: Cache::builder().time_to_idle(idle).build(),
            query_definitions: Cache::builder().time_to_idle(idle).build(),
            query_results: Cache::builder()
                .time_to_idle(idle)
                .max_capacity(MAX_EXECUTED_QUERIES)
                .build(),
            query_refresh: config.prepared_query_refresh,
        });
        tokio::spawn(bootstrap(
            shared.clone(),
            config.datacenter.clone(),
            publish_local,
        ));
        tokio::spawn(housekeeping(shared.clone()));
        Self { shared }
    }

    /// A catalog of fixed data with no watches and no requests to Consul: the local datacenter
    /// `datacenter` holding `services` (name, health entries). For benchmarks of the answer path.
    pub fn preloaded(
        config: &Config,
        client: ConsulClient,
        datacenter: &str,
        services: Vec<(String, Vec<HealthEntry>)>,
    ) -> Self {
        let stats: Arc<WatchStats> = Arc::default();
        let fixed_freshness = |what: &str| Freshness::new(what.to_owned(), stats.clone());
        let names: ServiceNameSet = services.iter().map(|(name, _)| name.clone()).collect();
        let local = Arc::new(LocalDatacenter {
            name: datacenter.to_owned(),
            names: WatchedSlot::fixed(names, fixed_freshness("service list")),
            datacenters: RwLock::new(Arc::new(HashSet::from([datacenter.to_owned()]))),
        });
        let (_, receiver) = watch::channel(Some(local));
        let shared = Arc::new(Shared {
            client,
            policy: WatchPolicy::with_wait(config.watch_wait),
            domain: config.domain.clone(),
            service_ttls: config.service_ttl.clone(),
            max_stale: config.max_stale,
            watch_stats: stats.clone(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            stop: CancellationToken::new(),
            local: receiver,
            remote_names: Cache::builder().build(),
            nodes: Cache::builder().build(),
            services: Cache::builder().build(),
            gateway_services: Cache::builder().build(),
            query_definitions: Cache::builder().build(),
            query_results: Cache::builder().build(),
            query_refresh: config.prepared_query_refresh,
        });
        let context = EntryContext {
            datacenter: datacenter.to_owned(),
            domain: config.domain.clone(),
            ttl: 0,
        };
        for (name, entries) in services {
            let context = EntryContext {
                ttl: ttl_seconds(shared.service_ttls.for_service(&name)),
                ..context.clone()
            };
            let answers = ServiceAnswers::build(&entries, &context);
            let slot = WatchedSlot::fixed(answers, fixed_freshness(&name));
            shared
                .services
                .insert((datacenter.to_owned(), name), Arc::new(slot));
        }
        Self { shared }
    }

    pub fn domain(&self) -> &Name {
        &self.shared.domain
    }

    pub fn consul(&self) -> &ConsulClient {
        &self.shared.client
    }

    /// The local datacenter, once known.
    pub fn local_datacenter(&self) -> Option<String> {
        self.shared.local.borrow().as_ref().map(|l| l.name.clone())
    }

    /// Whether the local service list has been read once.
    pub fn is_ready(&self) -> bool {
        self.shared
            .local
            .borrow()
            .as_ref()
            .is_some_and(|l| l.names.current().is_some())
    }

    /// Number of watches whose last request to Consul failed.
    pub fn stale_watches(&self) -> usize {
        self.shared.watch_stats.stale.load(Ordering::Relaxed)
    }

    /// Counts shared by all watches.
    pub fn watch_stats(&self) -> &WatchStats {
        &self.shared.watch_stats
    }

    /// Service lookups answered from the cache, and those that had to wait for Consul.
    pub fn cache_hits_and_misses(&self) -> (u64, u64) {
        (
            self.shared.cache_hits.load(Ordering::Relaxed),
            self.shared.cache_misses.load(Ordering::Relaxed),
        )
    }

    /// Every watch with the time since its last successful answer.
    pub fn watch_ages(&self) -> Vec<(String, Duration)> {
        let mut ages = Vec::new();
        let mut add = |freshness: &Freshness| {
            ages.push((freshness.what().to_owned(), freshness.since_last_answer()))
        };
        if let Some(local) = self.shared.local.borrow().as_ref() {
            add(local.names.freshness());
        }
        for (_, slot) in self.shared.remote_names.iter() {
            add(slot.freshness());
        }
        for (_, slot) in self.shared.nodes.iter() {
            add(slot.freshness());
        }
        for (_, slot) in self.shared.services.iter() {
            add(slot.freshness());
        }
        for (_, slot) in self.shared.gateway_services.iter() {
            add(slot.freshness());
        }
        for (_, slot) in self.shared.query_definitions.iter() {
            add(slot.freshness());
        }
        for (_, query) in self.shared.query_results.iter() {
            add(query.result.freshness());
        }
        ages
    }

    /// Number of services being watched now.
    pub fn watched_services(&self) -> u64 {
        self.shared.services.run_pending_tasks();
        self.shared.services.entry_count()
    }

    /// The passing instances of `service` in `datacenter` (the local one when `None`).
    /// `service` and `datacenter` must be lower-case.
    pub async fn service(&self, datacenter: Option<&str>, service: &str) -> ServiceLookup {
        self.instances(datacenter, service, InstanceKind::Service)
            .await
    }

    /// What a `.service` (`kind` Service), `.connect` or `.ingress` name of `service` in
    /// `datacenter` answers with; watched only for a service in the datacenter's service list,
    /// so a random name costs Consul nothing. `service` and `datacenter` must be lower-case.
    pub async fn instances(
        &self,
        datacenter: Option<&str>,
        service: &str,
        kind: InstanceKind,
    ) -> ServiceLookup {
        let deadline = Instant::now() + FIRST_ANSWER_TIMEOUT;
        let Some(local) = self.local(deadline).await else {
            return ServiceLookup::NotReady;
        };
        let dc = datacenter.unwrap_or(&local.name);
        let max_stale = self.shared.max_stale;
        let names = if dc == local.name {
            local
                .names
                .servable_value(max_stale, remaining(deadline))
                .await
        } else {
            if !local.knows(dc) {
                return ServiceLookup::Unknown;
            }
            let slot = self
                .shared
                .remote_names
                .get_with_by_ref(dc, || Arc::new(watch_service_names(&self.shared, dc)));
            slot.servable_value(max_stale, remaining(deadline)).await
        };
        let Some(names) = names else {
            return ServiceLookup::NotReady;
        };
        if !names.contains(service) {
            return ServiceLookup::Unknown;
        }
        let slot = match kind {
            InstanceKind::Service => self.service_slot(dc, service),
            _ => {
                let key = (kind, dc.to_owned(), service.to_owned());
                self.shared
                    .gateway_services
                    .get_with(key, || Arc::new(self.watch_service(dc, service, kind)))
            }
        };
        if !slot.servable(max_stale) {
            return ServiceLookup::NotReady;
        }
        let counter = match slot.current().is_some() {
            true => &self.shared.cache_hits,
            false => &self.shared.cache_misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match slot.first(remaining(deadline)).await {
            Some(answers) => ServiceLookup::Found(answers),
            None => ServiceLookup::NotReady,
        }
    }

    /// The result of the prepared query `name` (lower-case: a name, an ID, or a name a template
    /// matches) in `datacenter` (the local one when `None`). Only a name the datacenter's
    /// definitions can match is executed; the first question for it waits (bounded) for the
    /// execution, later ones are answered from the result kept fresh in the background.
    pub async fn prepared_query(&self, datacenter: Option<&str>, name: &str) -> ServiceLookup {
        let deadline = Instant::now() + FIRST_ANSWER_TIMEOUT;
        let Some(local) = self.local(deadline).await else {
            return ServiceLookup::NotReady;
        };
        let dc = datacenter.unwrap_or(&local.name);
        if !local.knows(dc) {
            return ServiceLookup::Unknown;
        }
        let max_stale = self.shared.max_stale;
        let definitions = self
            .shared
            .query_definitions
            .get_with_by_ref(dc, || Arc::new(watch_query_definitions(&self.shared, dc)));
        let Some(names) = definitions
            .servable_value(max_stale, remaining(deadline))
            .await
        else {
            return ServiceLookup::NotReady;
        };
        if !names.may_match(name) {
            return ServiceLookup::Unknown;
        }
        let key = (dc.to_owned(), name.to_owned());
        let query = self.shared.query_results.get_with_by_ref(&key, || {
            Arc::new(self.execute_query(dc, name, definitions.subscribe()))
        });
        let slot = &query.result;
        if !slot.servable(max_stale) {
            return ServiceLookup::NotReady;
        }
        if query.demand.ask() {
            // A change came while nobody asked: wait (bounded) for the execution it starts. A
            // failed execution wakes us too, and a slow one is not waited for long: the last
            // result is better than a late answer.
            let mut next = slot.subscribe();
            next.mark_unchanged();
            let wait = remaining(deadline).min(QUERY_REFRESH_WAIT);
            let _ = tokio::time::timeout(wait, next.changed()).await;
        }
        match slot.first(remaining(deadline)).await {
            Some(result) => match &result.answers {
                Some(answers) => ServiceLookup::Found(answers.clone()),
                None => ServiceLookup::Unknown,
            },
            None => ServiceLookup::NotReady,
        }
    }

    /// The node `name` (any case) of `datacenter` (the local one when `None`). The first
    /// question for a datacenter starts a watch on its node list; later ones are answered from it.
    pub async fn node(&self, datacenter: Option<&str>, name: &str) -> NodeLookup {
        let deadline = Instant::now() + FIRST_ANSWER_TIMEOUT;
        let Some(local) = self.local(deadline).await else {
            return NodeLookup::NotReady;
        };
        let dc = datacenter.unwrap_or(&local.name);
        if !local.knows(dc) {
            return NodeLookup::Unknown;
        }
        let slot = self
            .shared
            .nodes
            .get_with_by_ref(dc, || Arc::new(watch_nodes(&self.shared, dc)));
        match slot
            .servable_value(self.shared.max_stale, remaining(deadline))
            .await
        {
            Some(nodes) => match nodes.get(&name.to_ascii_lowercase()) {
                Some(node) => NodeLookup::Found(node.clone()),
                None => NodeLookup::Unknown,
            },
            None => NodeLookup::NotReady,
        }
    }

    /// The name a reverse lookup of `ip` gives, as Consul's: the local node with that address
    /// (`<node>.node.<dc>.<domain>`), else a service with that address
    /// (`<service>.service.<dc>.<domain>`). Services are looked for among those the bridge
    /// watches (Consul searches its whole catalog). `None`: no match, or no data yet.
    pub async fn reverse(&self, ip: std::net::IpAddr) -> Option<Name> {
        let deadline = Instant::now() + FIRST_ANSWER_TIMEOUT;
        let local = self.local(deadline).await?;
        let dc = local.name.clone();
        let slot = self
            .shared
            .nodes
            .get_with_by_ref(&dc, || Arc::new(watch_nodes(&self.shared, &dc)));
        let under = |labels: [&str; 3]| {
            Name::from_labels(labels.iter().map(|l| l.as_bytes()))
                .and_then(|name| name.append_domain(&self.shared.domain))
                .ok()
        };
        if let Some(nodes) = slot
            .servable_value(self.shared.max_stale, remaining(deadline))
            .await
        {
            let mut matching: Vec<&NodeRecord> = nodes
                .values()
                .filter(|node| matches!(node.address, InstanceAddress::Ip(a) if a == ip))
                .collect();
            // Several nodes on one address: answer the same one every time.
            matching.sort_by(|a, b| a.name.cmp(&b.name));
            if let Some(node) = matching.first() {
                return under([node.name.as_str(), "node", dc.as_str()]);
            }
        }
        let mut services: Vec<String> = self
            .shared
            .services
            .iter()
            .filter(|(key, slot)| {
                key.0 == dc
                    && slot.current().is_some_and(|answers| {
                        answers
                            .instances()
                            .iter()
                            .any(|i| matches!(i.address, InstanceAddress::Ip(a) if a == ip))
                    })
            })
            .map(|(key, _)| key.1.clone())
            .collect();
        services.sort();
        let service = services.first()?;
        under([service.as_str(), "service", dc.as_str()])
    }

    /// The passing instances of a local `service` (lower-case) if they are cached and may be
    /// served, without waiting. Counts a cache hit when found.
    pub fn cached_local(&self, service: &str) -> CachedLookup {
        let Some(local) = self.shared.local.borrow().clone() else {
            return CachedLookup::NotCached;
        };
        let max_stale = self.shared.max_stale;
        if !local.names.servable(max_stale) {
            return CachedLookup::NotCached;
        }
        let Some(names) = local.names.current() else {
            return CachedLookup::NotCached;
        };
        if !names.contains(service) {
            return CachedLookup::Unknown;
        }
        let slot = LOOKUP_KEY.with(|key| {
            let mut key = key.borrow_mut();
            key.0.clear();
            key.0.push_str(&local.name);
            key.1.clear();
            key.1.push_str(service);
            self.shared.services.get(&*key)
        });
        let Some(slot) = slot else {
            return CachedLookup::NotCached;
        };
        match slot.current() {
            Some(answers) if slot.servable(max_stale) => {
                self.shared.cache_hits.fetch_add(1, Ordering::Relaxed);
                CachedLookup::Found(answers)
            }
            _ => CachedLookup::NotCached,
        }
    }

    /// Stops every watch.
    pub fn shutdown(&self) {
        self.shared.stop.cancel();
    }

    async fn local(&self, deadline: Instant) -> Option<Arc<LocalDatacenter>> {
        let mut local = self.shared.local.clone();
        let found = tokio::time::timeout_at(deadline, local.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(value)) => value.clone(),
            _ => None,
        }
    }

    /// The TTL of `service`'s answers (`service_ttl`, by name).
    pub fn service_ttl(&self, service: &str) -> u32 {
        ttl_seconds(self.shared.service_ttls.for_service(service))
    }

    /// Whether the local service list (once read) holds `service` (lower-case).
    fn local_service_exists(&self, service: &str) -> bool {
        let local = self.shared.local.borrow().clone();
        local
            .and_then(|l| l.names.current())
            .is_some_and(|names| names.contains(service))
    }

    /// The watched slot of (`dc`, `service`), started if it is not watched yet.
    fn service_slot(&self, dc: &str, service: &str) -> Arc<WatchedSlot<ServiceAnswers>> {
        let key = (dc.to_owned(), service.to_owned());
        self.shared.services.get_with_by_ref(&key, || {
            Arc::new(self.watch_service(dc, service, InstanceKind::Service))
        })
    }

    fn execute_query(
        &self,
        dc: &str,
        name: &str,
        definitions: watch::Receiver<Option<Arc<QueryNames>>>,
    ) -> ExecutedQuery {
        let what = format!("prepared query {name} in {dc}");
        let freshness = Freshness::new(what, self.shared.watch_stats.clone());
        let demand: Arc<Demand> = Arc::default();
        let (catalog, dc, name) = (self.clone(), dc.to_owned(), name.to_owned());
        let task_demand = demand.clone();
        let result = WatchedSlot::start(
            &self.shared.stop,
            freshness,
            move |publish, stop, freshness| {
                let fresh = queries::Refresh {
                    catalog,
                    dc,
                    name,
                    definitions,
                    demand: task_demand,
                };
                fresh.run(publish, stop, freshness)
            },
        );
        ExecutedQuery { result, demand }
    }

    fn watch_service(
        &self,
        dc: &str,
        service: &str,
        kind: InstanceKind,
    ) -> WatchedSlot<ServiceAnswers> {
        let shared = &self.shared;
        let context = EntryContext {
            datacenter: dc.to_owned(),
            domain: shared.domain.clone(),
            ttl: self.service_ttl(service),
        };
        let (client, policy, service) = (shared.client.clone(), shared.policy, service.to_owned());
        let what = match kind {
            InstanceKind::Service => format!("service {service} in {dc}"),
            InstanceKind::Connect => format!("Connect instances of {service} in {dc}"),
            InstanceKind::Ingress => format!("ingress gateways of {service} in {dc}"),
        };
        let freshness = Freshness::new(what, shared.watch_stats.clone());
        WatchedSlot::start(
            &shared.stop,
            freshness,
            move |publish, stop, freshness| async move {
                let fetch = |index, wait| {
                    let (client, dc, service) =
                        (client.clone(), context.datacenter.clone(), service.clone());
                    async move {
                        let endpoint = match kind {
                            InstanceKind::Service => HealthEndpoint::Service,
                            InstanceKind::Connect => HealthEndpoint::Connect,
                            InstanceKind::Ingress => HealthEndpoint::Ingress,
                        };
                        let answer = client.passing_instances(endpoint, &dc, &service, index, wait);
                        answer.await
                    }
                };
                let deliver = |entries: Vec<_>| {
                    publish.send_replace(Some(Arc::new(ServiceAnswers::build(&entries, &context))));
                };
                run_watch(&freshness, policy, stop, fetch, deliver).await;
            },
        )
    }
}

/// Starts the watch of one datacenter-wide list (its services, its nodes): `fetch` asks Consul
/// with the index and wait it is given, `build` turns each new answer into the cached value.
fn watch_list<R, T, F, Fut>(
    shared: &Arc<Shared>,
    dc: &str,
    what: &str,
    fetch: F,
    build: fn(R) -> T,
) -> WatchedSlot<T>
where
    R: Send + 'static,
    T: Send + Sync + 'static,
    F: Fn(ConsulClient, String, WatchIndex, Duration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Blocking<R>, ConsulError>> + Send,
{
    let (client, policy, dc) = (shared.client.clone(), shared.policy, dc.to_owned());
    let freshness = Freshness::new(format!("{what} of {dc}"), shared.watch_stats.clone());
    WatchedSlot::start(
        &shared.stop,
        freshness,
        move |publish, stop, freshness| async move {
            let fetch = |index, wait| fetch(client.clone(), dc.clone(), index, wait);
            let deliver = |answer: R| {
                publish.send_replace(Some(Arc::new(build(answer))));
            };
            run_watch(&freshness, policy, stop, fetch, deliver).await;
        },
    )
}

fn watch_nodes(shared: &Arc<Shared>, dc: &str) -> WatchedSlot<NodeMap> {
    let fetch = |client: ConsulClient, dc: String, index, wait| async move {
        client.nodes(&dc, index, wait).await
    };
    watch_list(shared, dc, "nodes", fetch, node_map)
}

fn watch_query_definitions(shared: &Arc<Shared>, dc: &str) -> WatchedSlot<QueryNames> {
    let fetch = |client: ConsulClient, dc: String, index, wait| async move {
        client.prepared_queries(&dc, index, wait).await
    };
    watch_list(shared, dc, "prepared queries", fetch, QueryNames::build)
}

fn watch_service_names(shared: &Arc<Shared>, dc: &str) -> WatchedSlot<ServiceNameSet> {
    let fetch = |client: ConsulClient, dc: String, index, wait| async move {
        client.service_names(&dc, index, wait).await
    };
    watch_list(shared, dc, "service list", fetch, service_name_set)
}

fn node_map(nodes: Vec<crate::consul::types::Node>) -> NodeMap {
    nodes
        .into_iter()
        .map(|node| {
            let record = NodeRecord {
                name: node.node.clone(),
                // A host name that is not a valid DNS name: CNAME to the root, as before.
                address: InstanceAddress::parse(&node.address)
                    .unwrap_or_else(|| InstanceAddress::Host(Name::root())),
                meta_txt: meta_txt(&node.meta),
            };
            (node.node.to_ascii_lowercase(), record)
        })
        .collect()
}

fn service_name_set(names: crate::consul::types::ServiceNames) -> ServiceNameSet {
    names.into_keys().map(|n| n.to_ascii_lowercase()).collect()
}

/// Learns the local datacenter (from the agent unless configured) and the list of datacenters,
/// retrying until Consul answers, then publishes them and keeps the list fresh.
async fn bootstrap(
    shared: Arc<Shared>,
    configured: Option<String>,
    publish: watch::Sender<Option<Arc<LocalDatacenter>>>,
) {
    let mut failures: u32 = 0;
    let name = loop {
        let found = match &configured {
            Some(dc) => Ok(dc.clone()),
            None => shared.client.agent_datacenter().await,
        };
        match found {
            Ok(dc) => break dc.to_ascii_lowercase(),
            Err(error) => {
                failures = failures.saturating_add(1);
                if warns(failures) {
                    warn!(failures, %error, "cannot learn the agent's datacenter; retrying");
                } else {
                    debug!(failures, %error, "cannot learn the agent's datacenter; retrying");
                }
            }
        }
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep(shared.policy.backoff(failures)) => {}
        }
    };
    info!(datacenter = %name, "serving the Consul catalog");
    let local = Arc::new(LocalDatacenter {
        names: watch_service_names(&shared, &name),
        datacenters: RwLock::new(Arc::new(HashSet::from([name.clone()]))),
        name,
    });
    publish.send_replace(Some(local.clone()));
    loop {
        match shared.client.datacenters().await {
            Ok(list) => {
                let set = list.into_iter().map(|dc| dc.to_ascii_lowercase()).collect();
                if let Ok(mut current) = local.datacenters.write() {
                    *current = Arc::new(set);
                }
            }
            Err(error) => {
                warn!(%error, "cannot read the list of datacenters; keeping the last one")
            }
        }
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep(DATACENTERS_REFRESH) => {}
        }
    }
}

/// moka evicts idle entries only while it is being used; this makes eviction (and so the end of
/// idle watches) happen on time even when no query arrives.
async fn housekeeping(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tick.tick() => {
                shared.services.run_pending_tasks();
                shared.gateway_services.run_pending_tasks();
                shared.remote_names.run_pending_tasks();
                shared.nodes.run_pending_tasks();
                shared.query_definitions.run_pending_tasks();
                shared.query_results.run_pending_tasks();
            }
        }
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn ttl_seconds(ttl: Duration) -> u32 {
    u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX)
}
