//! What the DNS side counts per query: question type and response code, latency, fast-path
//! answers, in plain atomics (and per UDP batch in plain integers), turned into Prometheus
//! families only when `/metrics` is scraped.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::wire::rcode_mnemonic;
use hickory_proto::{op::ResponseCode, rr::RecordType};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
};

/// The question types counted by name; others count as `OTHER`.
const QTYPES: [RecordType; 10] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::ANY,
    RecordType::NS,
    RecordType::SOA,
    RecordType::PTR,
    RecordType::CNAME,
    RecordType::MX,
];
/// Row of `QTYPES.len()`: other types; the next: no readable question.
const QTYPE_ROWS: usize = QTYPES.len() + 2;
const RCODES: [ResponseCode; 6] = [
    ResponseCode::NoError,
    ResponseCode::FormErr,
    ResponseCode::ServFail,
    ResponseCode::NXDomain,
    ResponseCode::NotImp,
    ResponseCode::Refused,
];
const RCODE_COLUMNS: usize = RCODES.len() + 1;
/// Upper bounds of the latency buckets, in seconds: 10 µs to about 2.6 s.
const LATENCY_BOUNDS: [f64; 10] = [
    0.000_01, 0.000_04, 0.000_16, 0.000_64, 0.002_56, 0.010_24, 0.040_96, 0.163_84, 0.655_36,
    2.621_44,
];

/// What the DNS side records per query: plain atomics, so that counting costs the query path a
/// few adds; `/metrics` turns them into Prometheus families when scraped.
#[derive(Debug)]
pub(crate) struct DnsMetrics {
    queries: [[AtomicU64; RCODE_COLUMNS]; QTYPE_ROWS],
    /// Per bucket (not cumulative); the last is `+Inf`.
    latency_buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    latency_sum_nanos: AtomicU64,
    fast_answers: AtomicU64,
}

impl Default for DnsMetrics {
    fn default() -> Self {
        Self {
            queries: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_nanos: AtomicU64::new(0),
            fast_answers: AtomicU64::new(0),
        }
    }
}

impl DnsMetrics {
    /// One answered query. `qtype` is `None` when the question could not be read.
    pub(crate) fn observe(&self, qtype: Option<RecordType>, rcode: ResponseCode, took: Duration) {
        self.queries[qtype_row(qtype)][rcode_column(rcode)].fetch_add(1, Ordering::Relaxed);
        self.latency_buckets[latency_bucket(took)].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_nanos
            .fetch_add(nanos(took), Ordering::Relaxed);
    }

    /// Adds a UDP socket's tally of fast answers, and empties it.
    pub(crate) fn add_fast(&self, tally: &mut FastTally) {
        if tally.answers == 0 {
            return;
        }
        let shared = self.queries.iter().flatten().chain(&self.latency_buckets);
        let local = tally
            .queries
            .iter_mut()
            .flatten()
            .chain(&mut tally.latency_buckets);
        for (shared, local) in shared.zip(local) {
            if *local > 0 {
                shared.fetch_add(std::mem::take(local), Ordering::Relaxed);
            }
        }
        self.latency_sum_nanos.fetch_add(
            std::mem::take(&mut tally.latency_sum_nanos),
            Ordering::Relaxed,
        );
        self.fast_answers
            .fetch_add(std::mem::take(&mut tally.answers), Ordering::Relaxed);
    }

    /// Calls `visit` with each (question type, response code) seen and its count.
    pub(crate) fn each_query_count(&self, mut visit: impl FnMut(&'static str, &'static str, u64)) {
        for (row, counts) in self.queries.iter().enumerate() {
            for (column, count) in counts.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    visit(qtype_name(row), rcode_name(column), count);
                }
            }
        }
    }

    /// Queries answered by the UDP fast path since start.
    pub(crate) fn fast_answers(&self) -> u64 {
        self.fast_answers.load(Ordering::Relaxed)
    }
}

/// The fast answers of one UDP socket's batch, counted in plain integers and added to
/// [`DnsMetrics`] once per batch: the sockets' threads run on different cores, and an atomic add
/// per query on cache lines both write would cost more than the rest of a cached answer.
#[derive(Debug, Default)]
pub(crate) struct FastTally {
    queries: [[u64; RCODE_COLUMNS]; QTYPE_ROWS],
    latency_buckets: [u64; LATENCY_BOUNDS.len() + 1],
    latency_sum_nanos: u64,
    answers: u64,
}

impl FastTally {
    /// One query answered by the UDP fast path.
    pub(crate) fn record(&mut self, qtype: RecordType, rcode: ResponseCode, took: Duration) {
        self.queries[qtype_row(Some(qtype))][rcode_column(rcode)] += 1;
        self.latency_buckets[latency_bucket(took)] += 1;
        self.latency_sum_nanos = self.latency_sum_nanos.saturating_add(nanos(took));
        self.answers += 1;
    }
}

fn qtype_row(qtype: Option<RecordType>) -> usize {
    match qtype {
        Some(qtype) => QTYPES
            .iter()
            .position(|t| *t == qtype)
            .unwrap_or(QTYPES.len()),
        None => QTYPES.len() + 1,
    }
}

fn rcode_column(rcode: ResponseCode) -> usize {
    RCODES
        .iter()
        .position(|r| *r == rcode)
        .unwrap_or(RCODES.len())
}

fn latency_bucket(took: Duration) -> usize {
    let seconds = took.as_secs_f64();
    LATENCY_BOUNDS
        .iter()
        .position(|bound| seconds <= *bound)
        .unwrap_or(LATENCY_BOUNDS.len())
}

fn nanos(took: Duration) -> u64 {
    u64::try_from(took.as_nanos()).unwrap_or(u64::MAX)
}

/// `answer_duration_seconds`, read from the atomics at each scrape.
#[derive(Debug)]
pub(crate) struct LatencyCollector(pub(crate) Arc<DnsMetrics>);

impl Collector for LatencyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metrics = &self.0;
        let counts: Vec<u64> = metrics
            .latency_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(counts.iter().copied())
            .collect();
        let sum = metrics.latency_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder
            .encode_descriptor(
                "answer_duration_seconds",
                "Time from a query's arrival to its answer being sent",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }
}

fn qtype_name(row: usize) -> &'static str {
    match QTYPES.get(row) {
        Some(qtype) => <&'static str>::from(*qtype),
        None if row == QTYPES.len() => "OTHER",
        None => "none",
    }
}

fn rcode_name(column: usize) -> &'static str {
    RCODES
        .get(column)
        .map_or("OTHER", |rcode| rcode_mnemonic(*rcode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_tally_lands_once_in_the_shared_counts_and_is_emptied() {
        let metrics = DnsMetrics::default();
        let mut tally = FastTally::default();
        tally.record(
            RecordType::A,
            ResponseCode::NoError,
            Duration::from_micros(5),
        );
        tally.record(
            RecordType::A,
            ResponseCode::NoError,
            Duration::from_micros(20),
        );
        tally.record(
            RecordType::SRV,
            ResponseCode::NXDomain,
            Duration::from_micros(5),
        );
        metrics.add_fast(&mut tally);
        metrics.add_fast(&mut tally);
        let count = |qtype, rcode| {
            metrics.queries[qtype_row(Some(qtype))][rcode_column(rcode)].load(Ordering::Relaxed)
        };
        assert_eq!(count(RecordType::A, ResponseCode::NoError), 2);
        assert_eq!(count(RecordType::SRV, ResponseCode::NXDomain), 1);
        assert_eq!(metrics.fast_answers(), 3);
        assert_eq!(
            metrics.latency_buckets[0].load(Ordering::Relaxed),
            2,
            "<= 10 us"
        );
        assert_eq!(
            metrics.latency_buckets[1].load(Ordering::Relaxed),
            1,
            "<= 40 us"
        );
        assert_eq!(metrics.latency_sum_nanos.load(Ordering::Relaxed), 30_000);
    }
}
