//! How the bridge follows Consul for the services it does not park: the reads each cause asked
//! for, health changes applied without a read, changes found that nothing announced, and how
//! long ago Consul last confirmed each of those services.

use std::sync::atomic::Ordering;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::catalog::Catalog;

/// Upper bounds (seconds) of the confirmation-age buckets.
const AGE_BUCKETS: [f64; 8] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BucketLabels {
    le: String,
}

#[derive(Default)]
pub(super) struct FollowMetrics {
    reads: Family<ReasonLabels, Counter>,
    health_applied: Counter,
    unannounced: Counter,
    age_max: Gauge<f64, std::sync::atomic::AtomicU64>,
    age_buckets: Family<BucketLabels, Gauge>,
}

impl FollowMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "reads_on_demand",
            "Reads of service watches that are not parked, by what called for them: a health \
             change of an instance not held yet, a catalog change naming the service, the \
             catch-up after a catalog change, anti-entropy",
            self.reads.clone(),
        );
        registry.register(
            "health_changes_applied",
            "Service answers rebuilt from the failing checks without a read",
            self.health_applied.clone(),
        );
        registry.register(
            "unannounced_changes",
            "Reads that found a change no signal had announced (should stay 0: each is a bug \
             report, logged once per service)",
            self.unannounced.clone(),
        );
        registry.register(
            "confirmation_age_max_seconds",
            "Seconds since Consul last confirmed the least recently confirmed service read on \
             demand",
            self.age_max.clone(),
        );
        registry.register(
            "confirmation_age_watches",
            "Services read on demand whose last confirmation by Consul is at most `le` seconds \
             old (cumulative, as histogram buckets)",
            self.age_buckets.clone(),
        );
    }

    pub(super) fn pull(&self, catalog: &Catalog) {
        let (signals, sweeps, follow) = catalog.follow_stats();
        for (reason, count) in [
            ("health_change", &signals.reads_for_health),
            ("catalog_change", &signals.reads_for_catalog),
            ("catch_up", &sweeps.catch_up),
            ("anti_entropy", &sweeps.anti_entropy),
        ] {
            self.reads
                .get_or_create(&ReasonLabels { reason })
                .inner()
                .store(count.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.health_applied.inner().store(
            signals.health_applied.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.unannounced.inner().store(
            follow.unannounced_changes.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let ages = catalog.confirmation_ages();
        let max = ages.iter().max().copied().unwrap_or_default();
        self.age_max.set(max.as_secs_f64());
        for bound in AGE_BUCKETS.iter().map(|b| Some(*b)).chain([None]) {
            let within = ages
                .iter()
                .filter(|age| bound.is_none_or(|b| age.as_secs_f64() <= b))
                .count();
            let le = bound.map_or("+Inf".to_owned(), |b| b.to_string());
            self.age_buckets
                .get_or_create(&BucketLabels { le })
                .set(i64::try_from(within).unwrap_or(i64::MAX));
        }
    }
}
