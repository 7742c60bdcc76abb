//! Enterprise sameness groups: each group's members in failover order, read from
//! `/v1/config/sameness-group/<name>` (one watch per group asked about), so that a service of
//! a group exists when a member lists it, and a group that does not exist is `NXDOMAIN`.

use std::sync::Arc;

use super::{slot::WatchedSlot, watches::WatchContext};
use crate::consul::{Answered, Blocking, ConsulError, Parking, SamenessGroup, run_watch};

/// A member of a sameness group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Member {
    /// A partition of the local cluster (lower-case).
    Partition(String),
    /// A cluster peer (lower-case).
    Peer(String),
}

/// The members of one sameness group, in failover order; none when it does not exist.
#[derive(Debug, Default)]
pub(crate) struct GroupMembers {
    pub(crate) members: Vec<Member>,
}

impl GroupMembers {
    fn build(group: Option<SamenessGroup>) -> Self {
        let Some(group) = group else {
            return Self::default();
        };
        let members = group
            .members
            .into_iter()
            .filter_map(
                |member| match (member.peer.as_str(), member.partition.as_str()) {
                    ("", "") => None,
                    ("", partition) => Some(Member::Partition(partition.to_ascii_lowercase())),
                    (peer, _) => Some(Member::Peer(peer.to_ascii_lowercase())),
                },
            )
            .collect();
        Self { members }
    }
}

/// Watches the sameness group `name`, read in `scope` (the local datacenter, with the
/// group's partition).
pub(super) fn watch_group(
    context: &WatchContext,
    scope: &str,
    name: &str,
) -> WatchedSlot<GroupMembers> {
    let (client, policy) = (context.client.clone(), context.policy);
    let (scope, name) = (scope.to_owned(), name.to_owned());
    WatchedSlot::start(
        &context.stop,
        context.freshness(format!("sameness group {name} in {scope}")),
        move |publish, stop, freshness| async move {
            let fetch = |ask| {
                let (client, scope, name) = (client.clone(), scope.clone(), name.clone());
                async move {
                    let answer = client
                        .sameness_group(&scope, &name, ask, Parking::List)
                        .await?;
                    Ok::<_, ConsulError>(Blocking {
                        value: answer.value,
                        index: answer.index,
                        agent_epoch: answer.agent_epoch,
                    })
                }
            };
            let deliver = |group, _: Answered| {
                publish.send_replace(Some(Arc::new(GroupMembers::build(group))));
            };
            run_watch(&freshness, policy, stop, None, fetch, deliver).await;
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_their_order_and_a_missing_group_does_not_exist() {
        let group: SamenessGroup = serde_json::from_value(serde_json::json!({
            "Kind": "sameness-group", "Name": "sg1", "DefaultForFailover": true,
            "Members": [{"Partition": "Default"}, {"Peer": "P1"}, {}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let built = GroupMembers::build(Some(group));
        assert_eq!(
            built.members,
            [
                Member::Partition("default".into()),
                Member::Peer("p1".into())
            ]
        );
        assert!(GroupMembers::build(None).members.is_empty());
    }
}
