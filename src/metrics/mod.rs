//! The Prometheus metrics. The DNS side counts queries and times answers in plain atomics as they
//! happen ([`dns`]); everything (those counts, cache, watches, Consul requests, staleness, the
//! connection budget, rate limiting) is read when `/metrics` is scraped, so the query path pays
//! a few atomic adds (the UDP fast path one set per batch) and the other parts carry no metrics
//! code of their own.

mod following;

use std::sync::{Arc, atomic::Ordering};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use following::FollowMetrics;

use crate::{
    catalog::Catalog,
    consul::{Endpoint, InstanceKind, Scope},
    dns::{DnsMetrics, Fallback, Gate, LatencyCollector, QueryLog, RateLimiter},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    qtype: &'static str,
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WakeupLabels {
    changed: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabels {
    watch: String,
}

/// Values copied from the DNS side, the catalog and the Consul client at each scrape.
#[derive(Default)]
struct Pulled {
    queries: Family<QueryLabels, Counter>,
    fast_answers: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    watched_services: Gauge,
    stale_watches: Gauge,
    ready: Gauge,
    consul_requests: Family<EndpointLabels, Counter>,
    consul_errors: Family<EndpointLabels, Counter>,
    wakeups: Family<WakeupLabels, Counter>,
    staleness: Family<WatchLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    rate_limited: Family<RateLimitLabels, Counter>,
    service_queries: Family<ServiceLabels, Counter>,
    service_watches: Family<ModeLabels, Gauge>,
    following: FollowMetrics,
    consul_connections: Gauge,
    consul_parked: Gauge,
    consul_parking_limit: Gauge,
    consul_consistent_retries: Counter,
    consul_agent_cache: Family<ResultLabels, Counter>,
    consul_refused: Counter,
    /// Questions answered SERVFAIL at once: the general path full, or the recursors.
    overloaded: Family<ReasonLabels, Counter>,
    query_log_lines: Family<ResultLabels, Counter>,
    dnstap_messages: Family<ResultLabels, Counter>,
    cookies: Family<ResultLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
    datacenter: String,
    /// A cluster peer's imported service; empty otherwise (as `namespace`, `partition`).
    peer: String,
    namespace: String,
    partition: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    action: &'static str,
}

/// The parts whose counts `/metrics` reads.
pub(crate) struct Sources {
    pub(crate) catalog: Catalog,
    pub(crate) dns: Arc<DnsMetrics>,
    pub(crate) limiter: Arc<RateLimiter>,
    pub(crate) gate: Arc<Gate>,
    pub(crate) fallback: Option<Arc<Fallback>>,
    pub(crate) query_log: Option<QueryLog>,
}

/// Everything `/metrics` shows.
pub(crate) struct Metrics {
    registry: Registry,
    sources: Sources,
    pulled: Pulled,
}

impl Metrics {
    pub(crate) fn new(sources: Sources) -> Self {
        let mut registry = Registry::with_prefix("consul_dns_bridge");
        let pulled = Pulled::default();
        registry.register(
            "queries",
            "DNS queries answered, by question type and response code",
            pulled.queries.clone(),
        );
        registry.register_collector(Box::new(LatencyCollector(sources.dns.clone())));
        registry.register(
            "fast_path_answers",
            "UDP queries answered from pre-encoded records (also counted in queries)",
            pulled.fast_answers.clone(),
        );
        registry.register(
            "cache_hits",
            "Service lookups answered from the cache",
            pulled.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Service lookups that waited for Consul's first answer (a new watch)",
            pulled.cache_misses.clone(),
        );
        registry.register(
            "watched_services",
            "Services with an active blocking-query watch",
            pulled.watched_services.clone(),
        );
        registry.register(
            "stale_watches",
            "Watches whose last request to Consul failed: their answers are served stale",
            pulled.stale_watches.clone(),
        );
        registry.register(
            "ready",
            "1 once the local service list has been read from Consul",
            pulled.ready.clone(),
        );
        registry.register(
            "consul_requests",
            "HTTP requests to Consul, by endpoint",
            pulled.consul_requests.clone(),
        );
        registry.register(
            "consul_errors",
            "Failed HTTP requests to Consul (transport, status or body), by endpoint",
            pulled.consul_errors.clone(),
        );
        registry.register(
            "blocking_query_wakeups",
            "Blocking queries that returned, by whether the data had changed",
            pulled.wakeups.clone(),
        );
        registry.register(
            "watch_staleness_seconds",
            "Seconds since each watch's last successful answer from Consul",
            pulled.staleness.clone(),
        );
        registry.register(
            "service_queries",
            "Questions answered for each watched service (labels only for services watched now, so their number is bounded by what clients ask within --watch-idle-timeout)",
            pulled.service_queries.clone(),
        );
        registry.register(
            "service_watches",
            "Service watches by how they follow Consul: parked on a blocking query, or read on demand (when a signal asks)",
            pulled.service_watches.clone(),
        );
        pulled.following.register(&mut registry);
        registry.register(
            "consul_connections",
            "Connections held to the Consul agent (parked queries and requests in flight)",
            pulled.consul_connections.clone(),
        );
        registry.register(
            "consul_parked_queries",
            "Blocking queries parked at the Consul agent now",
            pulled.consul_parked.clone(),
        );
        registry.register(
            "consul_parking_limit",
            "Blocking queries the bridge may park at the agent now: the budget's number, or \
             fewer after the agent refused connections",
            pulled.consul_parking_limit.clone(),
        );
        registry.register(
            "consul_consistent_retries",
            "Stale reads asked again of the leader: the answering server was further behind than --max-stale",
            pulled.consul_consistent_retries.clone(),
        );
        registry.register(
            "consul_agent_cache",
            "Health reads through the agent cache (--use-cache), by whether the agent had them",
            pulled.consul_agent_cache.clone(),
        );
        registry.register(
            "consul_refused_connections",
            "Requests failed as the agent closed a connection it had accepted (its per-client limit)",
            pulled.consul_refused.clone(),
        );
        registry.register(
            "overloaded",
            "Questions answered SERVFAIL at once for lack of room: `general_path` (--max-concurrent-queries), `recursors` (--max-recursor-queries)",
            pulled.overloaded.clone(),
        );
        registry.register(
            "rate_limited",
            "UDP answers held back by response rate limiting: dropped, or sent empty with TC or as BADCOOKIE (slipped)",
            pulled.rate_limited.clone(),
        );
        registry.register(
            "dns_cookies",
            "Questions with a DNS cookie: a valid server cookie of ours (`valid`, never rate limited), or a client cookie only (`client_only`)",
            pulled.cookies.clone(),
        );
        registry.register(
            "query_log_lines",
            "Query log lines written, and dropped because the writer was behind (--query-log-buffer full)",
            pulled.query_log_lines.clone(),
        );
        registry.register(
            "dnstap_messages",
            "dnstap messages written to the collector, and dropped (--dnstap-buffer full, or no collector)",
            pulled.dnstap_messages.clone(),
        );
        Self {
            registry,
            sources,
            pulled,
        }
    }

    /// The Prometheus text format, with the pulled values read now.
    pub(crate) fn render(&self) -> String {
        self.pull();
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    fn pull(&self) {
        let (catalog, pulled) = (&self.sources.catalog, &self.pulled);
        let dns = &self.sources.dns;
        dns.each_query_count(|qtype, rcode, count| {
            let labels = QueryLabels { qtype, rcode };
            let counter = pulled.queries.get_or_create(&labels);
            counter.inner().store(count, Ordering::Relaxed);
        });
        pulled
            .fast_answers
            .inner()
            .store(dns.fast_answers(), Ordering::Relaxed);
        let (hits, misses) = catalog.cache_hits_and_misses();
        pulled.cache_hits.inner().store(hits, Ordering::Relaxed);
        pulled.cache_misses.inner().store(misses, Ordering::Relaxed);
        pulled
            .watched_services
            .set(i64::try_from(catalog.watched_services()).unwrap_or(i64::MAX));
        pulled
            .stale_watches
            .set(i64::try_from(catalog.stale_watches()).unwrap_or(i64::MAX));
        pulled.ready.set(i64::from(catalog.is_ready()));
        let client = catalog.consul();
        for endpoint in Endpoint::ALL {
            let labels = EndpointLabels {
                endpoint: endpoint.path(),
            };
            let requests = client.request_count(endpoint);
            let errors = client.error_count(endpoint);
            let stored = &pulled.consul_requests;
            stored
                .get_or_create(&labels)
                .inner()
                .store(requests, Ordering::Relaxed);
            pulled
                .consul_errors
                .get_or_create(&labels)
                .inner()
                .store(errors, Ordering::Relaxed);
        }
        let stats = catalog.watch_stats();
        for (changed, count) in [
            ("true", &stats.wakeups_changed),
            ("false", &stats.wakeups_unchanged),
        ] {
            pulled
                .wakeups
                .get_or_create(&WakeupLabels { changed })
                .inner()
                .store(count.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let budget = catalog.budget();
        for (mode, count) in [("parked", &budget.parked), ("on_demand", &budget.on_demand)] {
            pulled
                .service_watches
                .get_or_create(&ModeLabels { mode })
                .set(i64::try_from(count.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        }
        pulled.following.pull(catalog);
        let reads = client.read_stats();
        let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        pulled.consul_connections.set(gauge(reads.connections));
        pulled.consul_parked.set(gauge(reads.parked));
        pulled.consul_parking_limit.set(gauge(reads.parking_limit));
        pulled
            .consul_consistent_retries
            .inner()
            .store(reads.consistent_retries, Ordering::Relaxed);
        store_results(
            &pulled.consul_agent_cache,
            [("hit", reads.cache_hits), ("miss", reads.cache_misses)],
        );
        pulled
            .consul_refused
            .inner()
            .store(reads.refused, Ordering::Relaxed);
        if let Some(log) = &self.sources.query_log {
            let (written, dropped) = log.counts();
            store_results(
                &pulled.query_log_lines,
                [("written", written), ("dropped", dropped)],
            );
        }
        if let Some((written, dropped)) = self.sources.gate.dnstap_counts() {
            store_results(
                &pulled.dnstap_messages,
                [("written", written), ("dropped", dropped)],
            );
        }
        let recursors = self
            .sources
            .fallback
            .as_ref()
            .map_or(0, |f| f.recursor_refusals());
        for (reason, count) in [
            ("general_path", self.sources.gate.over_capacity()),
            ("recursors", recursors),
        ] {
            pulled
                .overloaded
                .get_or_create(&ReasonLabels { reason })
                .inner()
                .store(count, Ordering::Relaxed);
        }
        let (valid, client_only) = self.sources.gate.cookie_counts();
        store_results(
            &pulled.cookies,
            [("valid", valid), ("client_only", client_only)],
        );
        let (dropped, slipped) = self.sources.limiter.limited();
        for (action, count) in [("dropped", dropped), ("slipped", slipped)] {
            pulled
                .rate_limited
                .get_or_create(&RateLimitLabels { action })
                .inner()
                .store(count, Ordering::Relaxed);
        }
        // Watches come and go: rebuild the families so stopped ones disappear.
        pulled.service_queries.clear();
        for (scope, service, kind, asked) in catalog.service_questions() {
            let kind = match kind {
                InstanceKind::Service => "service",
                InstanceKind::Connect => "connect",
                InstanceKind::Ingress => "ingress",
            };
            let scope = Scope::parse(&scope);
            let label = |part: Option<&str>| part.unwrap_or_default().to_owned();
            let labels = ServiceLabels {
                service,
                datacenter: label(scope.datacenter),
                peer: label(scope.peer),
                namespace: label(scope.namespace),
                partition: label(scope.partition),
                kind,
            };
            pulled
                .service_queries
                .get_or_create(&labels)
                .inner()
                .store(asked, Ordering::Relaxed);
        }
        pulled.staleness.clear();
        for (watch, age) in catalog.watch_ages() {
            pulled
                .staleness
                .get_or_create(&WatchLabels { watch })
                .set(age.as_secs_f64());
        }
    }
}

/// Sets each `result` series of `family` to its count (counts read from their owners).
fn store_results(family: &Family<ResultLabels, Counter>, counts: [(&'static str, u64); 2]) {
    for (result, count) in counts {
        family
            .get_or_create(&ResultLabels { result })
            .inner()
            .store(count, Ordering::Relaxed);
    }
}
