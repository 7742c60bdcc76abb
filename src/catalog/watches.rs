//! Where Consul's data enters the cache: each function starts one blocking-query watch whose
//! every new answer is turned into the cached value (records built once, here) and published
//! into its slot. A health change reaches DNS answers through [`watch_instances`].

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::Arc,
    time::Duration,
};

use hickory_proto::rr::Name;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{
    addresses::{ServiceAddresses, ServiceTarget},
    entry::{EntryContext, ServiceAnswers},
    nodes::Nodes,
    queries::QueryNames,
    slot::WatchedSlot,
};
use crate::consul::{
    Ask, Blocking, ConsulClient, ConsulError, Freshness, HealthCheck, InstanceKind, ServiceNames,
    WatchControl, WatchIndex, WatchPolicy, WatchStats, run_watch,
};

/// Names of the services of one datacenter, lower-case.
pub(crate) type ServiceNameSet = std::collections::HashSet<String>;

/// What every watch is started with; cheap to clone.
#[derive(Clone)]
pub(crate) struct WatchContext {
    pub(crate) client: ConsulClient,
    pub(crate) policy: WatchPolicy,
    pub(crate) domain: Name,
    /// The service metadata key of an instance's visibility rule.
    pub(crate) visibility_key: Arc<str>,
    pub(crate) stats: Arc<WatchStats>,
    /// Fires at shutdown; every watch's own token is a child of it.
    pub(crate) stop: CancellationToken,
}

impl WatchContext {
    pub(crate) fn freshness(&self, what: String) -> Freshness {
        Freshness::new(what, self.stats.clone())
    }
}

/// Watches the passing instances of `kind` of `service` in `dc`; `ttl` is their records' TTL.
/// With `addresses`, the instances' addresses are kept in that index while the watch runs.
/// The watch parks a blocking query or reads on demand, as its control says (see
/// [`super::keeper`]).
pub(crate) fn watch_instances(
    context: &WatchContext,
    dc: &str,
    service: &str,
    kind: InstanceKind,
    ttl: u32,
    addresses: Option<Arc<ServiceAddresses>>,
) -> WatchedSlot<ServiceAnswers> {
    // Read on demand until the keeper gives it a parked place.
    let control = Arc::new(WatchControl::new(false));
    let task_control = control.clone();
    let entry_context = EntryContext {
        datacenter: dc.to_owned(),
        domain: context.domain.clone(),
        ttl,
        visibility_key: context.visibility_key.clone(),
    };
    let what = match kind {
        InstanceKind::Service => format!("service {service} in {dc}"),
        InstanceKind::Connect => format!("Connect instances of {service} in {dc}"),
        InstanceKind::Ingress => format!("ingress gateways of {service} in {dc}"),
    };
    let (client, policy) = (context.client.clone(), context.policy);
    let (service, dc, domain) = (service.to_owned(), dc.to_owned(), context.domain.clone());
    WatchedSlot::start(
        &context.stop,
        context.freshness(what),
        move |publish, stop, freshness| async move {
            let fetch = |ask| {
                let (client, dc, service) = (
                    client.clone(),
                    entry_context.datacenter.clone(),
                    service.clone(),
                );
                async move { client.passing_instances(kind, &dc, &service, ask).await }
            };
            let mut indexed = HashMap::new();
            let mut unreadable_logged = HashSet::new();
            // The name reverse lookups of this service's addresses give.
            let target = Name::from_labels([service.as_bytes(), b"service", dc.as_bytes()])
                .and_then(|name| name.append_domain(&domain))
                .map(|target| {
                    Arc::new(ServiceTarget {
                        service: service.clone(),
                        target,
                    })
                });
            let deliver = |entries: Vec<_>| {
                let answers = ServiceAnswers::build(&entries, &entry_context);
                for id in answers.unreadable_visibility() {
                    if unreadable_logged.insert(id.clone()) {
                        warn!(
                            %service, instance = %id, key = %entry_context.visibility_key,
                            "the instance's visibility rule is not a list of networks: it is \
                             answered to no one"
                        );
                    }
                }
                if let (Some(index), Ok(target)) = (&addresses, &target) {
                    let now = answers.ip_addresses();
                    index.update(target, &indexed, &now);
                    indexed = now;
                }
                publish.send_replace(Some(Arc::new(answers)));
            };
            run_watch(
                &freshness,
                policy,
                stop,
                Some(&task_control),
                fetch,
                deliver,
            )
            .await;
            // The watch ends with its slot: its addresses leave the index with it.
            if let (Some(index), Ok(target)) = (&addresses, &target) {
                index.update(target, &indexed, &HashMap::new());
            }
        },
    )
    .with_control(control)
}

/// Watches the node list of `dc`.
pub(crate) fn watch_nodes(context: &WatchContext, dc: &str) -> WatchedSlot<Nodes> {
    let fetch = |client: ConsulClient, dc: String, index, wait| async move {
        client.nodes(&dc, index, wait).await
    };
    let (owned_dc, domain) = (dc.to_owned(), context.domain.clone());
    let build = move |nodes| Nodes::build(nodes, &owned_dc, &domain);
    watch_list(context, dc, "nodes", fetch, build)
}

/// Watches the prepared-query definitions of `dc`.
pub(crate) fn watch_query_definitions(context: &WatchContext, dc: &str) -> WatchedSlot<QueryNames> {
    let fetch = |client: ConsulClient, dc: String, index, wait| async move {
        client.prepared_queries(&dc, index, wait).await
    };
    watch_list(context, dc, "prepared queries", fetch, QueryNames::build)
}

/// Watches the service list of `dc`.
pub(crate) fn watch_service_names(context: &WatchContext, dc: &str) -> WatchedSlot<ServiceNameSet> {
    let fetch = |client: ConsulClient, dc: String, index, wait| async move {
        client.service_names(&dc, index, wait).await
    };
    watch_list(context, dc, "service list", fetch, service_name_set)
}

/// Watches the checks of `dc` that are not passing: the list a health change anywhere
/// changes, and which names the services it touched; with the index of the answer.
pub(crate) fn watch_failing_checks(
    context: &WatchContext,
    dc: &str,
) -> WatchedSlot<(WatchIndex, Vec<HealthCheck>)> {
    let fetch = |client: ConsulClient, dc: String, index, wait| async move {
        let answer = client.failing_checks(&dc, index, wait).await?;
        Ok(Blocking {
            value: (answer.index, answer.value),
            index: answer.index,
            agent_epoch: answer.agent_epoch,
        })
    };
    watch_list(context, dc, "failing checks", fetch, |checks| checks)
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
    F: Fn(ConsulClient, String, WatchIndex, Duration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Blocking<R>, ConsulError>> + Send,
{
    let (client, policy, dc) = (context.client.clone(), context.policy, dc.to_owned());
    WatchedSlot::start(
        &context.stop,
        context.freshness(format!("{what} of {dc}")),
        move |publish, stop, freshness| async move {
            // Lists always park (they have no control), so every ask is a blocking one.
            let fetch = |ask| {
                let (index, wait) = match ask {
                    Ask::Park { index, wait } => (index, wait),
                    Ask::Read { .. } => (WatchIndex::ZERO, policy.wait),
                };
                fetch(client.clone(), dc.clone(), index, wait)
            };
            let deliver = |answer: R| {
                publish.send_replace(Some(Arc::new(build(answer))));
            };
            run_watch(&freshness, policy, stop, None, fetch, deliver).await;
        },
    )
}

fn service_name_set(names: ServiceNames) -> ServiceNameSet {
    names.into_keys().map(|n| n.to_ascii_lowercase()).collect()
}
