//! The moka caches that hold every watched value, listed once. Each entry is a slot whose watch
//! stops when moka evicts it after the idle timeout (time-to-idle), so what is watched follows
//! what DNS clients ask for.

use std::{sync::Arc, time::Duration};

use moka::sync::Cache;

use super::{
    groups::GroupMembers,
    instances::InstanceCache,
    nodes::Nodes,
    peers::Peers,
    queries::{ExecutedQuery, QueryNames},
    signals::DatacenterSignals,
    slot::WatchedSlot,
};
use crate::consul::{Freshness, InstanceKind};

/// The most prepared-query names kept executed at once: a catch-all template makes every name
/// a query, and a flood of such names must not become a flood of executions.
const MAX_EXECUTED_QUERIES: u64 = 10_000;

/// A datacenter (lower-case).
pub(crate) type Dc = String;

pub(crate) struct Caches {
    /// Other datacenters' service lists and change signals, from the first question for one
    /// of their services.
    pub(crate) datacenters: Cache<Dc, Arc<DatacenterSignals>>,
    /// Node lists, from the first `.node.` or reverse question in a datacenter.
    pub(crate) nodes: Cache<Dc, Arc<WatchedSlot<Nodes>>>,
    /// Passing instances per (datacenter, service, kind) asked for.
    pub(crate) instances: InstanceCache,
    /// Prepared-query definitions, from the first `.query.` question in a datacenter.
    pub(crate) query_definitions: Cache<Dc, Arc<WatchedSlot<QueryNames>>>,
    /// Executed prepared queries per (datacenter, name asked).
    pub(crate) query_results: Cache<(Dc, String), Arc<ExecutedQuery>>,
    /// The cluster peers, from the first question for a peer.
    pub(crate) peers: Cache<(), Arc<WatchedSlot<Peers>>>,
    /// Sameness groups per (scope read in, name), from the first question for one.
    pub(crate) groups: Cache<(Dc, String), Arc<WatchedSlot<GroupMembers>>>,
}

impl Caches {
    /// Caches whose entries are dropped after `idle` without a question; `None`: never (a
    /// preloaded catalog).
    pub(crate) fn new(idle: Option<Duration>) -> Self {
        fn build<K, V>(idle: Option<Duration>, capacity: Option<u64>) -> Cache<K, V>
        where
            K: std::hash::Hash + Eq + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
        {
            let mut builder = Cache::builder();
            if let Some(idle) = idle {
                builder = builder.time_to_idle(idle);
            }
            if let Some(capacity) = capacity {
                builder = builder.max_capacity(capacity);
            }
            builder.build()
        }
        Self {
            datacenters: build(idle, None),
            nodes: build(idle, None),
            instances: build(idle, None),
            query_definitions: build(idle, None),
            query_results: build(idle, Some(MAX_EXECUTED_QUERIES)),
            peers: build(idle, None),
            groups: build(idle, None),
        }
    }

    /// Applies pending evictions. moka evicts idle entries only while it is being used; calling
    /// this every second ends idle watches on time even when no query arrives.
    pub(crate) fn run_pending_tasks(&self) {
        self.datacenters.run_pending_tasks();
        self.nodes.run_pending_tasks();
        self.instances.run_pending_tasks();
        self.query_definitions.run_pending_tasks();
        self.query_results.run_pending_tasks();
        self.peers.run_pending_tasks();
        self.groups.run_pending_tasks();
    }

    /// Calls `visit` with the freshness of every cached watch.
    pub(crate) fn each_freshness(&self, mut visit: impl FnMut(&Freshness)) {
        for (_, signals) in self.datacenters.iter() {
            visit(signals.names.freshness());
        }
        for (_, slot) in self.nodes.iter() {
            visit(slot.freshness());
        }
        for (_, slot) in self.instances.iter() {
            visit(slot.freshness());
        }
        for (_, slot) in self.query_definitions.iter() {
            visit(slot.freshness());
        }
        for (_, query) in self.query_results.iter() {
            visit(query.result.freshness());
        }
        for (_, peers) in self.peers.iter() {
            visit(peers.freshness());
        }
        for (_, group) in self.groups.iter() {
            visit(group.freshness());
        }
    }

    /// How many `.service` watches are active.
    pub(crate) fn watched_services(&self) -> u64 {
        self.instances.run_pending_tasks();
        self.instances
            .iter()
            .filter(|(key, _)| key.2 == InstanceKind::Service)
            .count() as u64
    }
}
