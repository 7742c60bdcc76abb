//! The Prometheus metrics. The DNS side counts queries and times answers as they happen; the rest
//! (cache, watches, Consul requests, staleness) is read from the catalog and the Consul client
//! when `/metrics` is scraped, so those parts carry no metrics code of their own.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use hickory_proto::{op::ResponseCode, rr::RecordType};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{catalog::Catalog, consul::Endpoint};

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

/// What the DNS side records per query.
pub struct DnsMetrics {
    queries: Family<QueryLabels, Counter>,
    latency: Histogram,
    fast_answers: Counter,
}

impl Default for DnsMetrics {
    fn default() -> Self {
        Self {
            queries: Family::default(),
            // 10 µs to about 2.6 s.
            latency: Histogram::new(exponential_buckets(0.000_01, 4.0, 10)),
            fast_answers: Counter::default(),
        }
    }
}

impl DnsMetrics {
    /// One answered query. `qtype` is `None` when the question could not be read.
    pub fn observe(&self, qtype: Option<RecordType>, rcode: ResponseCode, took: Duration) {
        let labels = QueryLabels {
            qtype: qtype.map_or("none", <&'static str>::from),
            rcode: rcode_name(rcode),
        };
        self.queries.get_or_create(&labels).inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// One query answered by the UDP fast path.
    pub fn observe_fast(&self, qtype: RecordType, rcode: ResponseCode, took: Duration) {
        self.fast_answers.inc();
        self.observe(Some(qtype), rcode, took);
    }

    /// Queries answered by the UDP fast path since start.
    pub fn fast_answers(&self) -> u64 {
        self.fast_answers.get()
    }
}

fn rcode_name(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        _ => "OTHER",
    }
}

/// Values copied from the catalog and the Consul client at each scrape.
#[derive(Default)]
struct Pulled {
    cache_hits: Counter,
    cache_misses: Counter,
    watched_services: Gauge,
    stale_watches: Gauge,
    ready: Gauge,
    consul_requests: Family<EndpointLabels, Counter>,
    consul_errors: Family<EndpointLabels, Counter>,
    wakeups: Family<WakeupLabels, Counter>,
    staleness: Family<WatchLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

/// Everything `/metrics` shows.
pub struct Metrics {
    registry: Registry,
    catalog: Catalog,
    pulled: Pulled,
}

impl Metrics {
    pub fn new(catalog: Catalog, dns: Arc<DnsMetrics>) -> Self {
        let mut registry = Registry::with_prefix("consul_dns_bridge");
        let pulled = Pulled::default();
        registry.register(
            "queries",
            "DNS queries answered, by question type and response code",
            dns.queries.clone(),
        );
        registry.register(
            "answer_duration_seconds",
            "Time from a query's arrival to its answer being sent",
            dns.latency.clone(),
        );
        registry.register(
            "fast_path_answers",
            "UDP queries answered from pre-encoded records (also counted in queries)",
            dns.fast_answers.clone(),
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
        Self {
            registry,
            catalog,
            pulled,
        }
    }

    /// The Prometheus text format, with the pulled values read now.
    pub fn render(&self) -> String {
        self.pull();
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    fn pull(&self) {
        let (catalog, pulled) = (&self.catalog, &self.pulled);
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
        // Watches come and go: rebuild the family so stopped ones disappear.
        pulled.staleness.clear();
        for (watch, age) in catalog.watch_ages() {
            pulled
                .staleness
                .get_or_create(&WatchLabels { watch })
                .set(age.as_secs_f64());
        }
    }
}
