//! The cluster peers of the local cluster and the services it imports from each, read from
//! `/v1/peerings` (`StreamStatus.ImportedServices`): what tells whether a peer's service exists
//! before a watch is started for it.

use std::{collections::HashMap, sync::Arc};

use super::{
    slot::WatchedSlot,
    watches::{ServiceList, WatchContext},
};
use crate::consul::{Answered, Blocking, ConsulError, Parking, Peering, WatchIndex, run_watch};

/// The cluster peers the local cluster has, with the services imported from each.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    imported: HashMap<String, ServiceList>,
}

impl Peers {
    fn build(peerings: Vec<Peering>) -> Self {
        let imported = peerings
            .into_iter()
            // A peering being deleted imports nothing any more.
            .filter(|peering| !matches!(peering.state.as_str(), "DELETING" | "TERMINATED"))
            .map(|peering| {
                let names = peering.stream_status.imported_services;
                (
                    peering.name.to_ascii_lowercase(),
                    ServiceList::from_names(names),
                )
            })
            .collect();
        Self { imported }
    }

    /// Whether `peer` exists and the local cluster imports `service` (lower-case) from it.
    pub(crate) fn imports(&self, peer: &str, service: &str) -> bool {
        self.imported
            .get(peer)
            .is_some_and(|names| names.contains(service))
    }
}

/// Watches `/v1/peerings`: the peers and the services imported from each.
pub(super) fn watch_peerings(context: &WatchContext) -> WatchedSlot<Peers> {
    let (client, policy) = (context.client.clone(), context.policy);
    WatchedSlot::start(
        &context.stop,
        context.freshness("cluster peers".to_owned()),
        move |publish, stop, freshness| async move {
            let fetch = |ask| {
                let client = client.clone();
                async move {
                    let answer = client.peerings(ask, Parking::List).await?;
                    Ok::<_, ConsulError>(Blocking {
                        value: answer.value,
                        index: answer.index,
                        agent_epoch: answer.agent_epoch,
                    })
                }
            };
            let deliver = |peerings, answered: Answered| {
                if answered.changed || answered.index == WatchIndex::ZERO {
                    publish.send_replace(Some(Arc::new(Peers::build(peerings))));
                }
            };
            run_watch(&freshness, policy, stop, None, fetch, deliver).await;
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_imports_what_its_stream_lists_until_it_is_deleted() {
        let peerings: Vec<Peering> = serde_json::from_value(serde_json::json!([
            {"Name": "P1", "State": "ACTIVE",
             "StreamStatus": {"ImportedServices": ["Web", "db"]}},
            {"Name": "p2", "State": "DELETING",
             "StreamStatus": {"ImportedServices": ["web"]}},
            {"Name": "p3", "State": "PENDING", "StreamStatus": null}
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        let peers = Peers::build(peerings);
        assert!(peers.imports("p1", "web") && peers.imports("p1", "db"));
        assert!(!peers.imports("p1", "api"));
        assert!(!peers.imports("p2", "web"));
        assert!(!peers.imports("p3", "web"));
        assert!(!peers.imports("p9", "web"));
    }
}
