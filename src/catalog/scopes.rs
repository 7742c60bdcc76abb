//! Where a lookup reads: the watched slots of a scope (a datacenter, a namespace and partition
//! in one, a cluster peer's imported catalog, a sameness group), started on first use, and
//! what tells whether a service exists there before a watch is started for it: the
//! datacenter's service list; for a peer the services the local cluster imports from it
//! (`/v1/peerings`); for a sameness group, any of its members listing it.
//!
//! Consul keeps no failing-checks list of a peer or a group (`/v1/health/state/any` takes no
//! `peer` nor `sg`), so their signals never fire: their services follow changes by their own
//! blocking queries while the budget parks them, else by the anti-entropy sweep.

use std::{borrow::Cow, sync::Arc, time::Duration};

use super::{
    entry::InstanceAddress,
    groups::{Member, watch_group},
    handle::Catalog,
    instances::InstanceSlot,
    local::LocalDatacenter,
    nodes::{NodeRecord, Nodes},
    peers::{Peers, watch_peerings},
    signals::DatacenterSignals,
    slot::WatchedSlot,
    watches::{watch_instances, watch_nodes, watch_service_names},
};
use crate::consul::{InstanceKind, Scope};

/// The key of `scope` as the caches hold it: the local datacenter for none, and a namespace
/// or partition asked without a datacenter placed in the local one.
pub(crate) fn scope_key<'a>(scope: Option<&'a str>, local: &'a str) -> Cow<'a, str> {
    match scope {
        None => Cow::Borrowed(local),
        Some(key) if key.starts_with(';') => Cow::Owned(format!("{local}{key}")),
        Some(key) => Cow::Borrowed(key),
    }
}

impl Catalog {
    /// Whether `service` (lower-case) exists in the scope `key` (made by [`scope_key`]): in
    /// its service list, among a peer's imported services, or for a sameness group in any
    /// member. `None`: not known in time, or too stale to say.
    pub(super) async fn is_listed(
        &self,
        local: &LocalDatacenter,
        key: &str,
        service: &str,
        wait: Duration,
    ) -> Option<bool> {
        let scope = Scope::parse(key);
        let Some(group) = scope.group else {
            return self.is_listed_in(local, key, service, wait).await;
        };
        let serve_stale = self.shared.serve_stale;
        let place = Scope {
            datacenter: Some(&local.name),
            partition: scope.partition,
            ..Scope::default()
        };
        let place = place.key()?;
        let group = self
            .shared
            .caches
            .groups
            .get_with_by_ref(&(place.clone(), group.to_owned()), || {
                Arc::new(watch_group(&self.shared.watch, &place, group))
            });
        let members = group.servable_value(serve_stale, wait).await?;
        for member in &members.members {
            let member_key = match member {
                Member::Peer(peer) => Scope {
                    peer: Some(peer),
                    namespace: scope.namespace,
                    ..Scope::default()
                },
                Member::Partition(partition) => Scope {
                    datacenter: Some(&local.name),
                    namespace: scope.namespace,
                    partition: Some(partition),
                    ..Scope::default()
                },
            };
            let member_key = member_key.key()?;
            if self.is_listed_in(local, &member_key, service, wait).await? {
                return Some(true);
            }
        }
        Some(false)
    }

    /// [`Self::is_listed`] for a scope that is not a sameness group.
    async fn is_listed_in(
        &self,
        local: &LocalDatacenter,
        key: &str,
        service: &str,
        wait: Duration,
    ) -> Option<bool> {
        let serve_stale = self.shared.serve_stale;
        if key == local.name {
            let names = local.names.servable_value(serve_stale, wait).await?;
            return Some(names.contains(service));
        }
        if let Some(peer) = Scope::parse(key).peer {
            let peers = self.peers().servable_value(serve_stale, wait).await?;
            return Some(peers.imports(peer, service));
        }
        if !local.knows(key) {
            return Some(false);
        }
        let signals = self.signals(local, key);
        let names = signals.names.servable_value(serve_stale, wait).await?;
        Some(names.contains(service))
    }

    /// The node `name` (any case) of a peer: Consul's HTTP API lists no peer's nodes, so it
    /// is found among the held instances of the services imported from the peer (the SRV
    /// targets the bridge handed out name them).
    pub(super) fn peer_node(&self, key: &str, name: &str) -> Option<NodeRecord> {
        let name = name.to_ascii_lowercase();
        self.shared
            .caches
            .instances
            .iter()
            .find_map(|(slot_key, slot)| {
                if slot_key.0 != key {
                    return None;
                }
                let answers = slot.current()?;
                let instance = answers.instance_on_node(&name)?;
                Some(NodeRecord {
                    name: name.clone(),
                    address: instance.node_address.map_or(
                        InstanceAddress::Host(hickory_proto::rr::Name::root()),
                        InstanceAddress::Ip,
                    ),
                    meta_txt: instance.node_meta_txt.clone(),
                })
            })
    }

    /// The peers and what each exports to us, watched from the first question for a peer.
    fn peers(&self) -> Arc<WatchedSlot<Peers>> {
        let context = &self.shared.watch;
        self.shared
            .caches
            .peers
            .get_with((), || Arc::new(watch_peerings(context)))
    }

    /// The change signals of `dc` (lower-case, a scope key): the local datacenter's, a peer's
    /// (which never fire), or another one's, started with its service list on first use.
    pub(super) fn signals(&self, local: &LocalDatacenter, dc: &str) -> Arc<DatacenterSignals> {
        if dc == local.name {
            return local.signals.clone();
        }
        let shared = &self.shared;
        shared.caches.datacenters.get_with_by_ref(dc, || {
            let scope = Scope::parse(dc);
            if scope.peer.is_some() || scope.group.is_some() {
                return Arc::new(DatacenterSignals::silent());
            }
            let names = Arc::new(watch_service_names(&shared.watch, dc));
            Arc::new(DatacenterSignals::start(
                &shared.watch,
                dc,
                names,
                &shared.caches.instances,
                &shared.signal_stats,
            ))
        })
    }

    /// The watched slot of (`dc`, `service`, `kind`), started if it is not watched yet.
    pub(super) fn instances_slot(
        &self,
        local: &LocalDatacenter,
        dc: &str,
        service: &str,
        kind: InstanceKind,
    ) -> Arc<InstanceSlot> {
        let key = (dc.to_owned(), service.to_owned(), kind);
        self.shared.caches.instances.get_with_by_ref(&key, || {
            let ttl = self.service_ttl(service);
            // Reverse lookups name local services only, as Consul's.
            let addresses = (kind == InstanceKind::Service && local.name == dc)
                .then(|| self.shared.addresses.clone());
            let signals = self.signals(local, dc);
            let slot = watch_instances(
                &self.shared.watch,
                dc,
                service,
                kind,
                ttl,
                addresses,
                &signals.feed,
            );
            Arc::new(slot)
        })
    }

    /// The node list of `dc` (a scope key), watched from its first use on.
    pub(super) fn nodes_slot(&self, dc: &str) -> Arc<WatchedSlot<Nodes>> {
        self.shared
            .caches
            .nodes
            .get_with_by_ref(dc, || Arc::new(watch_nodes(&self.shared.watch, dc)))
    }
}
