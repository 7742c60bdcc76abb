//! What the DNS side asks the catalog: a service's instances, a node, a prepared query's
//! result, the name of an address. Each lookup answers from the cache; only a first question
//! starts a watch and waits (bounded) for its first answer.

use std::{
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use hickory_proto::rr::Name;
use tokio::{sync::watch, time::Instant};

use super::{
    entry::ServiceAnswers,
    handle::Catalog,
    local::LocalDatacenter,
    nodes::NodeRecord,
    queries::{ExecutedQuery, QueryContext},
    scopes::scope_key,
    watches::watch_query_definitions,
};
use crate::cidr::ClientNet;
use crate::consul::{AgentVersion, ConsulClient, InstanceKind, Scope, WatchPolicy};

/// How long a query waits for data that is not in the cache yet: the datacenter at start, the
/// service list, or the first answer of a newly watched service.
const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a question waits for the execution of a query whose result may be outdated before
/// it is answered with the result it has.
const QUERY_REFRESH_WAIT: Duration = Duration::from_millis(500);

/// What the cache knows of a (datacenter, service) asked for.
pub(crate) enum ServiceLookup {
    Found(Arc<ServiceAnswers>),
    /// Found, but Consul has not answered its watch lately: served stale (RFC 8767).
    Stale(Arc<ServiceAnswers>),
    /// No such datacenter or service: NXDOMAIN.
    Unknown,
    /// Consul has not answered in time, or the last answer has been stale for longer than `--serve-stale`: SERVFAIL,
    /// never an NXDOMAIN a resolver would keep.
    NotReady,
}

/// What the cache knows of a node asked for.
pub(crate) enum NodeLookup {
    Found(NodeRecord),
    /// No such datacenter or node: NXDOMAIN.
    Unknown,
    /// Consul has not answered in time, or too long ago: SERVFAIL.
    NotReady,
}

/// What the cache can say about a local service without waiting or starting a watch: the UDP
/// fast path answers from this and leaves everything else to the general path.
pub(crate) enum CachedLookup {
    Found(Arc<ServiceAnswers>),
    /// Not in the local service list: NXDOMAIN.
    Unknown,
    /// Not watched yet, not loaded, or too stale: ask [`Catalog::service`].
    NotCached,
}

type InstancesKey = (String, String, InstanceKind);

thread_local! {
    /// The key of a cache lookup, reused so that a lookup on the query path does not allocate.
    static LOOKUP_KEY: std::cell::RefCell<InstancesKey> =
        const { std::cell::RefCell::new((String::new(), String::new(), InstanceKind::Service)) };
}

impl Catalog {
    /// The passing instances of `service` in `datacenter` (the local one when `None`).
    /// `service` and `datacenter` must be lower-case.
    pub(crate) async fn service(&self, datacenter: Option<&str>, service: &str) -> ServiceLookup {
        self.instances(datacenter, service, InstanceKind::Service)
            .await
    }

    /// What a `.service`, `.connect` or `.ingress` name (`kind`) of `service` in `datacenter`
    /// answers with; watched only for a service in the datacenter's service list, so a random
    /// name costs Consul nothing. `service` and `datacenter` must be lower-case.
    pub(crate) async fn instances(
        &self,
        datacenter: Option<&str>,
        service: &str,
        kind: InstanceKind,
    ) -> ServiceLookup {
        let deadline = Instant::now() + FIRST_ANSWER_TIMEOUT;
        let Some(local) = self.local(deadline).await else {
            return ServiceLookup::NotReady;
        };
        let key = scope_key(datacenter, &local.name);
        let dc = key.as_ref();
        let serve_stale = self.shared.serve_stale;
        match self
            .is_listed(&local, dc, service, remaining(deadline))
            .await
        {
            Some(true) => {}
            Some(false) => return ServiceLookup::Unknown,
            None => return ServiceLookup::NotReady,
        }
        let slot = self.instances_slot(&local, dc, service, kind);
        if !slot.servable(serve_stale) {
            return ServiceLookup::NotReady;
        }
        if let Some(control) = slot.control() {
            control.count_question();
        }
        let counter = match slot.current().is_some() {
            true => &self.shared.cache_hits,
            false => &self.shared.cache_misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match slot.first(remaining(deadline)).await {
            Some(answers) if slot.freshness().stale_for().is_some() => {
                ServiceLookup::Stale(answers)
            }
            Some(answers) => ServiceLookup::Found(answers),
            None => ServiceLookup::NotReady,
        }
    }

    /// The result of the prepared query `name` (lower-case: a name, an ID, or a name a template
    /// matches) in `datacenter` (the local one when `None`). Only a name the datacenter's
    /// definitions can match is executed; the first question for it waits (bounded) for the
    /// execution, later ones are answered from the result kept fresh in the background.
    pub(crate) async fn prepared_query(
        &self,
        datacenter: Option<&str>,
        name: &str,
    ) -> ServiceLookup {
        let deadline = Instant::now() + FIRST_ANSWER_TIMEOUT;
        let Some(local) = self.local(deadline).await else {
            return ServiceLookup::NotReady;
        };
        let dc = datacenter.unwrap_or(&local.name);
        if !local.knows(dc) {
            return ServiceLookup::Unknown;
        }
        let (shared, serve_stale) = (&self.shared, self.shared.serve_stale);
        let definitions = shared
            .caches
            .query_definitions
            .get_with_by_ref(dc, || Arc::new(watch_query_definitions(&shared.watch, dc)));
        let Some(names) = definitions
            .servable_value(serve_stale, remaining(deadline))
            .await
        else {
            return ServiceLookup::NotReady;
        };
        if !names.may_match(name) {
            return ServiceLookup::Unknown;
        }
        let key = (dc.to_owned(), name.to_owned());
        let query = shared.caches.query_results.get_with_by_ref(&key, || {
            let what = format!("prepared query {name} in {dc}");
            Arc::new(ExecutedQuery::start(
                self.clone(),
                dc,
                name,
                definitions.subscribe(),
                shared.watch.freshness(what),
                &shared.watch.stop,
            ))
        });
        let slot = &query.result;
        if !slot.servable(serve_stale) {
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
                Some(answers) if slot.freshness().stale_for().is_some() => {
                    ServiceLookup::Stale(answers.clone())
                }
                Some(answers) => ServiceLookup::Found(answers.clone()),
                None => ServiceLookup::Unknown,
            },
            None => ServiceLookup::NotReady,
        }
    }

    /// The node `name` (any case) of `datacenter` (the local one when `None`; a scope key:
    /// a partition, a peer). The first question for a datacenter starts a watch on its node
    /// list; later ones are answered from it.
    pub(crate) async fn node(&self, datacenter: Option<&str>, name: &str) -> NodeLookup {
        let deadline = Instant::now() + FIRST_ANSWER_TIMEOUT;
        let Some(local) = self.local(deadline).await else {
            return NodeLookup::NotReady;
        };
        let key = scope_key(datacenter, &local.name);
        let dc = key.as_ref();
        if Scope::parse(dc).peer.is_some() {
            return match self.peer_node(dc, name) {
                Some(node) => NodeLookup::Found(node),
                None => NodeLookup::Unknown,
            };
        }
        if !local.knows(dc) {
            return NodeLookup::Unknown;
        }
        match self
            .nodes_slot(dc)
            .servable_value(self.shared.serve_stale, remaining(deadline))
            .await
        {
            Some(nodes) => match nodes.get(name) {
                Some(node) => NodeLookup::Found(node.clone()),
                None => NodeLookup::Unknown,
            },
            None => NodeLookup::NotReady,
        }
    }

    /// The name a reverse lookup of `ip` gives, as Consul's: the local node with that address
    /// (`<node>.node.<dc>.<domain>`), else a service with that address
    /// (`<service>.service.<dc>.<domain>`). Services are looked for among those the bridge
    /// watches (Consul searches its whole catalog). `None`: no match, or no data yet. The first
    /// question starts the node-list watch and waits (bounded) for it.
    pub(crate) async fn reverse(&self, ip: IpAddr, client: ClientNet) -> Option<Name> {
        let deadline = Instant::now() + FIRST_ANSWER_TIMEOUT;
        let local = self.local(deadline).await?;
        let nodes = self
            .nodes_slot(&local.name)
            .servable_value(self.shared.serve_stale, remaining(deadline))
            .await;
        if let Some(target) = nodes.as_ref().and_then(|nodes| nodes.ptr_target(ip)) {
            return Some(target.clone());
        }
        self.shared
            .addresses
            .with_service_at(ip, client, Name::clone)
    }

    /// What [`Self::reverse`] answers, from what is cached, without waiting or starting a
    /// watch, handed to `answer` (`None`: no node or watched service has the address); `None`
    /// when the node list is not cached or may not be served.
    pub(crate) fn cached_reverse<R>(
        &self,
        ip: IpAddr,
        client: ClientNet,
        answer: impl FnOnce(Option<&Name>) -> R,
    ) -> Option<R> {
        let local = self.shared.local.borrow().clone()?;
        let slot = self.shared.caches.nodes.get(local.name.as_str())?;
        let nodes = slot
            .current()
            .filter(|_| slot.servable(self.shared.serve_stale))?;
        if let Some(target) = nodes.ptr_target(ip) {
            return Some(answer(Some(target)));
        }
        let mut answer = Some(answer);
        let found = self.shared.addresses.with_service_at(ip, client, |target| {
            answer.take().map(|answer| answer(Some(target)))
        });
        match (found.flatten(), answer) {
            (Some(done), _) => Some(done),
            (None, Some(answer)) => Some(answer(None)),
            (None, None) => None,
        }
    }

    /// How much of `client`'s address decides the service name a reverse lookup of `ip`
    /// gives (visibility rules on instances there); `None` when it decides nothing.
    pub(crate) fn reverse_client_scope(&self, ip: IpAddr, client: ClientNet) -> Option<u8> {
        self.shared.addresses.client_scope_at(ip, client)
    }

    /// Whether `label` (any case) names the local datacenter (`false` until it is known).
    pub(crate) fn is_local_datacenter(&self, label: &[u8]) -> bool {
        self.shared
            .local
            .borrow()
            .as_ref()
            .is_some_and(|local| label.eq_ignore_ascii_case(local.name.as_bytes()))
    }

    /// The agent's version and edition; `None` until it has said (or cannot, without
    /// `agent:read`).
    pub(crate) fn agent_version(&self) -> Option<AgentVersion> {
        self.shared.local.borrow().as_ref()?.agent()
    }

    /// Whether `dc` (lower-case) is the local datacenter or one Consul knows over the WAN;
    /// `None` when the local datacenter is not known yet.
    pub(crate) async fn datacenter_exists(&self, dc: &str) -> Option<bool> {
        let local = self.local(Instant::now() + FIRST_ANSWER_TIMEOUT).await?;
        Some(local.knows(dc))
    }

    /// The passing instances of a local `service` (lower-case) if they are cached and may be
    /// served, without waiting. Counts a cache hit when found.
    pub(crate) fn cached_local(&self, service: &str) -> CachedLookup {
        let Some(local) = self.shared.local.borrow().clone() else {
            return CachedLookup::NotCached;
        };
        let serve_stale = self.shared.serve_stale;
        if !local.names.servable(serve_stale) {
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
            self.shared.caches.instances.get(&*key)
        });
        let Some(slot) = slot else {
            return CachedLookup::NotCached;
        };
        // A stale value goes the general way, whose answer says so (Extended DNS Error 3).
        let fresh = slot.freshness().stale_for().is_none();
        match slot.current() {
            Some(answers) if fresh && slot.servable(serve_stale) => {
                if let Some(control) = slot.control() {
                    control.count_question();
                }
                self.shared.cache_hits.fetch_add(1, Ordering::Relaxed);
                CachedLookup::Found(answers)
            }
            _ => CachedLookup::NotCached,
        }
    }

    async fn local(&self, deadline: Instant) -> Option<Arc<LocalDatacenter>> {
        let mut local = self.shared.local.clone();
        let found = tokio::time::timeout_at(deadline, local.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(value)) => value.clone(),
            _ => None,
        }
    }
}

impl QueryContext for Catalog {
    fn client(&self) -> &ConsulClient {
        self.consul()
    }

    fn policy(&self) -> WatchPolicy {
        self.shared.watch.policy
    }

    fn refresh_every(&self) -> Duration {
        self.shared.query_refresh
    }

    fn domain(&self) -> &Name {
        Catalog::domain(self)
    }

    fn visibility_key(&self) -> Arc<str> {
        self.shared.watch.visibility_key.clone()
    }

    fn service_ttl(&self, service: &str) -> u32 {
        Catalog::service_ttl(self, service)
    }

    fn local_datacenter_listing(&self, service: &str) -> Option<String> {
        let local = self.shared.local.borrow().clone()?;
        let listed = local.names.current()?.contains(service);
        listed.then(|| local.name.clone())
    }

    fn subscribe_service(
        &self,
        dc: &str,
        service: &str,
    ) -> Option<watch::Receiver<Option<Arc<ServiceAnswers>>>> {
        let local = self.shared.local.borrow().clone()?;
        Some(
            self.instances_slot(&local, dc, service, InstanceKind::Service)
                .subscribe(),
        )
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
