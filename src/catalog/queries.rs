//! Prepared queries (`<name>.query[.<dc>].<domain>`): which names may be executed, and the
//! cached result of each one asked for, kept fresh in the background.
//!
//! Consul executes a prepared query per request (`/v1/query/<name>/execute`), and a query can
//! fail over to other datacenters, so its result cannot be watched with one blocking query. The
//! bridge instead:
//! - watches the definitions of each datacenter asked for (`/v1/query`, blocking), so a name that
//!   no query ID, query name or template prefix can match is NXDOMAIN without asking Consul;
//! - executes a name the first time it is asked for and keeps the result in a slot whose task
//!   executes it again when the definitions change, when the query's service changes in the
//!   local datacenter or in the one that answered (the catalog's own service watches, so a
//!   health flip shows within one round trip), and at least every `refresh` otherwise (for
//!   what it cannot see: round-trip times, other failover datacenters);
//! - executes again only for a name asked for since its last execution: a reason to execute
//!   (timer, trigger) for a name nobody asked for meanwhile is kept until the next question,
//!   which then waits (bounded) for that execution. So a name asked once costs one execution,
//!   as with Consul's own DNS, however many changes happen after it, and a flood of names that
//!   a catch-all template matches cannot be multiplied into more executions than questions;
//! - drops the slot, and its task, when the name is not asked for during the idle timeout.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use hickory_proto::rr::Name;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{
    entry::{EntryContext, ServiceAnswers},
    slot::{Publisher, WatchedSlot},
};
use crate::consul::{ConsulClient, Freshness, PreparedQuery, QueryExecution, WatchPolicy, warns};

/// What executing a prepared query needs from the rest of the catalog: the Consul client, and
/// the service watches whose changes call for a new execution.
pub(crate) trait QueryContext: Send + Sync + 'static {
    fn client(&self) -> &ConsulClient;
    /// For the back-off after a failed execution.
    fn policy(&self) -> WatchPolicy;
    /// A query being asked for is executed again at least this often.
    fn refresh_every(&self) -> Duration;
    fn domain(&self) -> &Name;
    /// The service metadata key of an instance's visibility rule.
    fn visibility_key(&self) -> Arc<str>;
    fn service_ttl(&self, service: &str) -> u32;
    /// The local datacenter, when its service list holds `service` (lower-case).
    fn local_datacenter_listing(&self, service: &str) -> Option<String>;
    /// A receiver that sees every change of the watched `service` in `dc`, starting the watch;
    /// `None` before the local datacenter is known.
    fn subscribe_service(
        &self,
        dc: &str,
        service: &str,
    ) -> Option<watch::Receiver<Option<Arc<ServiceAnswers>>>>;
}

/// A prepared query's kept result and the demand that decides when it is executed again.
pub(crate) struct ExecutedQuery {
    pub(crate) result: WatchedSlot<QueryResult>,
    pub(crate) demand: Arc<Demand>,
}

impl ExecutedQuery {
    /// Executes the query `name` in `dc` now, and again as [`Refresh`] decides, until dropped
    /// or `stop` fires. `definitions` are the datacenter's watched query definitions.
    pub(crate) fn start<C: QueryContext>(
        context: C,
        dc: &str,
        name: &str,
        definitions: watch::Receiver<Option<Arc<QueryNames>>>,
        freshness: Freshness,
        stop: &CancellationToken,
    ) -> Self {
        let demand: Arc<Demand> = Arc::default();
        let refresh = Refresh {
            context,
            dc: dc.to_owned(),
            name: name.to_owned(),
            definitions,
            demand: demand.clone(),
        };
        let result = WatchedSlot::start(stop, freshness, move |publish, stop, freshness| {
            refresh.run(publish, stop, freshness)
        });
        Self { result, demand }
    }
}

/// What the definitions of one datacenter allow a DNS name to match, all lower-case (Consul
/// matches query names and DNS names without regard to case).
#[derive(Debug, Default)]
pub(crate) struct QueryNames {
    ids: HashSet<String>,
    names: HashSet<String>,
    /// Names of `name_prefix_match` templates; the empty name matches every name.
    template_prefixes: Vec<String>,
}

impl QueryNames {
    pub(crate) fn build(queries: Vec<PreparedQuery>) -> Self {
        let mut found = Self::default();
        for query in queries {
            found.ids.insert(query.id.to_ascii_lowercase());
            let name = query.name.to_ascii_lowercase();
            if query.template.kind == "name_prefix_match" {
                found.template_prefixes.push(name);
            } else if !name.is_empty() {
                found.names.insert(name);
            }
        }
        found
    }

    /// Whether Consul could find a query for `asked` (lower-case): an ID, a name, or a name a
    /// template's prefix matches. A superset of Consul's own resolution, which decides the rest.
    pub(crate) fn may_match(&self, asked: &str) -> bool {
        self.ids.contains(asked)
            || self.names.contains(asked)
            || self.template_prefixes.iter().any(|p| asked.starts_with(p))
    }
}

/// Whether a prepared query's name is being asked for, shared by the questions and the task that
/// executes it.
#[derive(Debug, Default)]
pub(crate) struct Demand {
    /// Asked for since the last execution began.
    asked: AtomicBool,
    /// The task has a reason to execute and waits for a question.
    pending: AtomicBool,
    wake: Notify,
}

impl Demand {
    /// Records a question; `true` when the result may be outdated and the question should wait
    /// for the execution this starts.
    pub(crate) fn ask(&self) -> bool {
        self.asked.store(true, Ordering::SeqCst);
        if self.pending.load(Ordering::SeqCst) {
            self.wake.notify_one();
            return true;
        }
        false
    }

    /// Waits until executing is worth it: at once if asked for since the last execution, else
    /// until the next question.
    async fn wanted(&self) {
        self.pending.store(true, Ordering::SeqCst);
        while !self.asked.swap(false, Ordering::SeqCst) {
            self.wake.notified().await;
        }
        self.pending.store(false, Ordering::SeqCst);
    }
}

/// The last execution of one prepared query.
#[derive(Debug)]
pub(crate) struct QueryResult {
    /// `None`: Consul has no such query (NXDOMAIN).
    pub(crate) answers: Option<Arc<ServiceAnswers>>,
}

/// A wait for the next change of one watched value.
type ChangeFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), watch::error::RecvError>> + Send + 'a>,
>;

/// The key of a watched service whose changes make a query execute again.
type ServiceKey = (String, String);

/// What the task that keeps one prepared query's result fresh works with.
struct Refresh<C> {
    context: C,
    dc: String,
    name: String,
    definitions: watch::Receiver<Option<Arc<QueryNames>>>,
    demand: Arc<Demand>,
}

impl<C: QueryContext> Refresh<C> {
    /// Executes the query now and again whenever its result may have changed and it is asked
    /// for, publishing each result, until `stop` fires.
    async fn run(
        self,
        publish: Publisher<QueryResult>,
        stop: CancellationToken,
        freshness: Arc<Freshness>,
    ) {
        let Refresh {
            context,
            dc,
            name,
            mut definitions,
            demand,
        } = self;
        // Only definitions published from now on are news; the current ones are about to be used.
        definitions.mark_unchanged();
        let mut failures: u32 = 0;
        // The service watches whose changes trigger a new execution, with the receivers that see them.
        let mut triggers: Vec<(ServiceKey, watch::Receiver<Option<Arc<ServiceAnswers>>>)> =
            Vec::new();
        loop {
            demand.asked.store(false, Ordering::SeqCst);
            let pause = match context.client().execute_query(&dc, &name).await {
                Ok(execution) => {
                    freshness.contact_ok();
                    failures = 0;
                    let keys = execution
                        .as_ref()
                        .map(|e| trigger_keys(&context, e))
                        .unwrap_or_default();
                    if triggers.iter().map(|(k, _)| k).ne(keys.iter()) {
                        triggers = keys
                            .into_iter()
                            .filter_map(|key| {
                                let mut receiver = context.subscribe_service(&key.0, &key.1)?;
                                receiver.mark_unchanged();
                                Some((key, receiver))
                            })
                            .collect();
                    }
                    let answers = execution.map(|e| Arc::new(answers(&context, e)));
                    publish.send_replace(Some(Arc::new(QueryResult { answers })));
                    context.refresh_every()
                }
                Err(error) => {
                    freshness.contact_failed();
                    // Questions waiting for this execution get the last result now.
                    publish.send_modify(|_| {});
                    failures = failures.saturating_add(1);
                    if warns(failures) {
                        warn!(query = %name, %dc, failures, %error, "cannot execute a prepared query; retrying");
                    } else {
                        debug!(query = %name, %dc, failures, %error, "cannot execute a prepared query; retrying");
                    }
                    context.policy().backoff(failures)
                }
            };
            let deadline = tokio::time::Instant::now() + pause;
            loop {
                let mut changes: Vec<ChangeFuture<'_>> = triggers
                    .iter_mut()
                    .map(|(_, receiver)| Box::pin(receiver.changed()) as ChangeFuture<'_>)
                    .collect();
                changes.push(Box::pin(definitions.changed()));
                let trigger_changed = futures_util::future::select_all(changes);
                let closed = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(deadline) => break,
                    (changed, at, _) = trigger_changed => match changed {
                        Ok(()) => break,
                        Err(_) => at,
                    },
                };
                match triggers.get_mut(closed) {
                    // The service's watch ended (its slot idled out of the cache while only
                    // this query was asked): watch it again, so its changes keep coming.
                    Some((key, receiver)) => match context.subscribe_service(&key.0, &key.1) {
                        Some(mut renewed) => {
                            renewed.mark_unchanged();
                            *receiver = renewed;
                        }
                        None => {
                            triggers.remove(closed);
                        }
                    },
                    // The definitions watch gone must not spin: wait out the pause.
                    None => {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep_until(deadline) => break,
                        }
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = demand.wanted() => {}
            }
        }
    }
}

/// The service in the local datacenter (when it exists there) and in the one that answered.
fn trigger_keys(context: &impl QueryContext, execution: &QueryExecution) -> Vec<ServiceKey> {
    let service = execution.service.to_ascii_lowercase();
    let answered = execution.datacenter.to_ascii_lowercase();
    let mut keys = Vec::new();
    if let Some(local) = context.local_datacenter_listing(&service) {
        keys.push((local, service.clone()));
    }
    if !execution.nodes.is_empty() && !keys.iter().any(|(dc, _)| *dc == answered) {
        keys.push((answered, service));
    }
    keys
}

/// The records of an execution: every instance Consul chose (it has applied the query's own
/// health filter), named in the datacenter that answered, with the query's TTL if it sets one.
fn answers(context: &impl QueryContext, execution: QueryExecution) -> ServiceAnswers {
    let ttl = go_duration_seconds(&execution.dns.ttl)
        .unwrap_or_else(|| context.service_ttl(&execution.service));
    let entry_context = EntryContext {
        datacenter: execution.datacenter.to_ascii_lowercase(),
        target_datacenter: execution.datacenter.to_ascii_lowercase(),
        domain: context.domain().clone(),
        ttl,
        visibility_key: context.visibility_key(),
    };
    ServiceAnswers::build_unfiltered(&execution.nodes, &entry_context)
}

/// Whole seconds of a Go duration (`30s`, `1m30s`, `1.5h`, `500ms`); `None` when empty or bad.
pub(crate) fn go_duration_seconds(text: &str) -> Option<u32> {
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total = total.checked_add(Duration::try_from_secs_f64(number * seconds_per_unit).ok()?)?;
    }
    Some(u32::try_from(total.as_secs()).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consul::QueryTemplate;

    fn query(id: &str, name: &str, template: bool) -> PreparedQuery {
        PreparedQuery {
            id: id.into(),
            name: name.into(),
            template: QueryTemplate {
                kind: if template { "name_prefix_match" } else { "" }.into(),
            },
        }
    }

    #[test]
    fn names_ids_and_template_prefixes_may_match() {
        let names = QueryNames::build(vec![
            query("B29C-1", "WebQ", false),
            query("c2", "tmpl-", true),
        ]);
        assert!(names.may_match("webq"));
        assert!(names.may_match("b29c-1"));
        assert!(names.may_match("tmpl-web"));
        assert!(!names.may_match("x.webq"));
        assert!(!names.may_match("nope"));
    }

    #[test]
    fn a_catch_all_template_matches_everything() {
        let names = QueryNames::build(vec![query("c3", "", true)]);
        assert!(names.may_match("anything"));
        let names = QueryNames::build(vec![query("c4", "", false)]);
        assert!(!names.may_match("anything"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_seconds("7s"), Some(7));
        assert_eq!(go_duration_seconds("1m30s"), Some(90));
        assert_eq!(go_duration_seconds("1.5h"), Some(5400));
        assert_eq!(go_duration_seconds("500ms"), Some(0));
        assert_eq!(go_duration_seconds(""), None);
        assert_eq!(go_duration_seconds("10"), None);
        assert_eq!(go_duration_seconds("5x"), None);
    }
}
