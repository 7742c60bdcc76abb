//! Where Consul's data enters the cache: each function starts one blocking-query watch whose
//! every new answer is turned into the cached value (records built once, here) and published
//! into its slot. A health change reaches DNS answers through [`watch_instances`].

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::Arc,
};

use hickory_proto::rr::Name;
use tokio_util::sync::CancellationToken;

use super::{
    addresses::{ServiceAddresses, ServiceTarget},
    entry::EntryContext,
    health_view::FailingView,
    instances::{DatacenterFeed, FollowStats, HolderParts, InstanceHolder, InstanceSlot},
    nodes::Nodes,
    queries::QueryNames,
    slot::WatchedSlot,
};
use crate::consul::{
    Answered, Ask, Blocking, ConsulClient, ConsulError, Freshness, InstanceKind, Parking, Scope,
    ServiceNames, WatchControl, WatchIndex, WatchPolicy, WatchStats, run_watch,
};

/// The services of one datacenter (lower-case names, with their tags) and the list's index.
#[derive(Debug, Default)]
pub(crate) struct ServiceList {
    pub(crate) index: WatchIndex,
    services: HashMap<String, Vec<String>>,
}

impl ServiceList {
    /// A list of these names, without tags (a preloaded catalog).
    pub(crate) fn from_names(names: impl IntoIterator<Item = String>) -> Self {
        Self {
            index: WatchIndex::ZERO,
            services: names
                .into_iter()
                .map(|name| (name.to_ascii_lowercase(), Vec::new()))
                .collect(),
        }
    }

    fn build(index: WatchIndex, names: ServiceNames) -> Self {
        let services = names
            .into_iter()
            .map(|(name, tags)| {
                let mut tags = tags.unwrap_or_default();
                tags.sort_unstable();
                (name.to_ascii_lowercase(), tags)
            })
            .collect();
        Self { index, services }
    }

    /// Whether `service` (lower-case) is listed.
    pub(crate) fn contains(&self, service: &str) -> bool {
        self.services.contains_key(service)
    }

    /// The services that came, went, or whose tags changed from `self` to `newer`.
    pub(crate) fn changed_services(&self, newer: &ServiceList) -> HashSet<String> {
        let mut changed: HashSet<String> = newer
            .services
            .iter()
            .filter(|(name, tags)| self.services.get(*name) != Some(tags))
            .map(|(name, _)| name.clone())
            .collect();
        changed.extend(
            self.services
                .keys()
                .filter(|name| !newer.services.contains_key(*name))
                .cloned(),
        );
        changed
    }
}

/// What every watch is started with; cheap to clone.
#[derive(Clone)]
pub(crate) struct WatchContext {
    pub(crate) client: ConsulClient,
    pub(crate) policy: WatchPolicy,
    pub(crate) domain: Name,
    /// The service metadata key of an instance's visibility rule.
    pub(crate) visibility_key: Arc<str>,
    pub(crate) stats: Arc<WatchStats>,
    /// What the service watches found that nothing announced.
    pub(crate) follow: Arc<FollowStats>,
    /// The local datacenter, once known (its lists always park).
    pub(crate) local_dc: Arc<std::sync::OnceLock<String>>,
    /// Fires at shutdown; every watch's own token is a child of it.
    pub(crate) stop: CancellationToken,
}

impl WatchContext {
    fn is_local(&self, dc: &str) -> bool {
        self.local_dc.get().is_some_and(|local| local == dc)
    }

    pub(crate) fn freshness(&self, what: String) -> Freshness {
        Freshness::new(what, self.stats.clone())
    }
}

/// Watches the instances of `kind` of `service` in `dc` (all of them with their checks: what
/// passes is decided by the holder, against the datacenter's failing checks); `ttl` is their
/// records' TTL. With `addresses`, the instances' addresses are kept in that index while the
/// watch runs. The watch parks a blocking query or reads on demand, as its control says (see
/// [`super::keeper`]).
pub(crate) fn watch_instances(
    context: &WatchContext,
    dc: &str,
    service: &str,
    kind: InstanceKind,
    ttl: u32,
    addresses: Option<Arc<ServiceAddresses>>,
    feed: &DatacenterFeed,
) -> InstanceSlot {
    // Read on demand until the keeper gives it a parked place; a peer's or a group's service
    // parks at once if there is room, as no signal would tell it of a change meanwhile.
    let scope = Scope::parse(dc);
    let silent = scope.peer.is_some() || scope.group.is_some();
    let control = Arc::new(WatchControl::new(silent));
    let target_datacenter = (scope.datacenter.map(str::to_owned))
        .or_else(|| context.local_dc.get().cloned())
        .unwrap_or_default();
    let entry_context = EntryContext {
        datacenter: dc.to_owned(),
        target_datacenter,
        domain: context.domain.clone(),
        ttl,
        visibility_key: context.visibility_key.clone(),
    };
    let what = match kind {
        InstanceKind::Service => format!("service {service} in {dc}"),
        InstanceKind::Connect => format!("Connect instances of {service} in {dc}"),
        InstanceKind::Ingress => format!("ingress gateways of {service} in {dc}"),
    };
    // The name reverse lookups of this service's addresses give.
    let target = Name::from_labels([service.as_bytes(), b"service", dc.as_bytes()])
        .and_then(|name| name.append_domain(&context.domain))
        .map(|target| {
            Arc::new(ServiceTarget {
                service: service.to_owned(),
                target,
            })
        });
    let addresses = match (addresses, target) {
        (Some(index), Ok(target)) => Some((index, target)),
        _ => None,
    };
    let (client, policy) = (context.client.clone(), context.policy);
    let progress = feed.progress.clone();
    let mut holder = None;
    let slot = WatchedSlot::start(
        &context.stop,
        context.freshness(what),
        |publish, stop, freshness| {
            let made = Arc::new(InstanceHolder::new(HolderParts {
                service: service.to_owned(),
                kind,
                context: entry_context,
                addresses,
                publish,
                feed: feed.clone(),
                control: control.clone(),
                stats: context.follow.clone(),
            }));
            holder = Some(made.clone());
            let service = service.to_owned();
            async move {
                let fetch = |ask| {
                    let (client, dc, service) = (
                        client.clone(),
                        made.datacenter().to_owned(),
                        service.clone(),
                    );
                    // The generation the read starts after: what it can confirm.
                    let generation = progress.generation();
                    async move {
                        let answer = client.instances(kind, &dc, &service, ask).await?;
                        Ok(Blocking {
                            value: (answer.value, answer.agent_epoch, generation),
                            index: answer.index,
                            agent_epoch: answer.agent_epoch,
                        })
                    }
                };
                let deliver = |(entries, epoch, generation), answered| {
                    made.store(entries, answered, epoch, generation);
                };
                run_watch(
                    &freshness,
                    policy,
                    stop,
                    Some(&made.control),
                    fetch,
                    deliver,
                )
                .await;
                // The watch ends with its slot: its addresses leave the index with it.
                made.forget_addresses();
            }
        },
    );
    InstanceSlot { slot, holder }
}

/// Watches the node list of `dc`.
pub(crate) fn watch_nodes(context: &WatchContext, dc: &str) -> WatchedSlot<Nodes> {
    let fetch = |client: ConsulClient, dc: String, ask, parking| async move {
        client.nodes(&dc, ask, parking).await
    };
    let (owned_dc, domain) = (dc.to_owned(), context.domain.clone());
    let build = move |nodes| Nodes::build(nodes, &owned_dc, &domain);
    watch_list(context, dc, "nodes", fetch, build)
}

/// Watches the prepared-query definitions of `dc`.
pub(crate) fn watch_query_definitions(context: &WatchContext, dc: &str) -> WatchedSlot<QueryNames> {
    let fetch = |client: ConsulClient, dc: String, ask, parking| async move {
        client.prepared_queries(&dc, ask, parking).await
    };
    watch_list(context, dc, "prepared queries", fetch, QueryNames::build)
}

/// Watches the service list of `dc`.
pub(crate) fn watch_service_names(context: &WatchContext, dc: &str) -> WatchedSlot<ServiceList> {
    let fetch = |client: ConsulClient, dc: String, ask, parking| async move {
        let answer = client.service_names(&dc, ask, parking).await?;
        Ok(Blocking {
            value: (answer.index, answer.value),
            index: answer.index,
            agent_epoch: answer.agent_epoch,
        })
    };
    let build = |(index, names)| ServiceList::build(index, names);
    watch_list(context, dc, "service list", fetch, build)
}

/// Watches the checks of `dc` that are not passing: the list a health change anywhere
/// changes, with the index of each check's last change (see [`super::health_view`]).
pub(crate) fn watch_failing_checks(context: &WatchContext, dc: &str) -> WatchedSlot<FailingView> {
    let fetch = |client: ConsulClient, dc: String, ask, parking| async move {
        let answer = client.failing_checks(&dc, ask, parking).await?;
        Ok(Blocking {
            value: (answer.index, answer.agent_epoch, answer.value),
            index: answer.index,
            agent_epoch: answer.agent_epoch,
        })
    };
    let build = |(index, epoch, checks)| FailingView::build(index, epoch, checks);
    watch_list(context, dc, "failing checks", fetch, build)
}

/// Starts the watch of one datacenter-wide list (its services, its nodes): `fetch` asks Consul
/// with the index and wait it is given, `build` turns each new answer into the cached value.
fn watch_list<R, T, F, Fut>(
    context: &WatchContext,
    dc: &str,
    what: &str,
    fetch: F,
    build: impl Fn(R) -> T + Send + Sync + 'static,
) -> WatchedSlot<T>
where
    R: Send + 'static,
    T: Send + Sync + 'static,
    F: Fn(ConsulClient, String, Ask, Parking) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Blocking<R>, ConsulError>> + Send,
{
    let (client, policy, dc) = (context.client.clone(), context.policy, dc.to_owned());
    // The local datacenter's lists always park; other datacenters' within the budget.
    let parking = match context.is_local(&dc) {
        true => Parking::Essential,
        false => Parking::List,
    };
    WatchedSlot::start(
        &context.stop,
        context.freshness(format!("{what} of {dc}")),
        move |publish, stop, freshness| async move {
            let fetch = |ask| fetch(client.clone(), dc.clone(), ask, parking);
            let deliver = |answer: R, answered: Answered| {
                if answered.changed {
                    publish.send_replace(Some(Arc::new(build(answer))));
                }
            };
            run_watch(&freshness, policy, stop, None, fetch, deliver).await;
        },
    )
}
