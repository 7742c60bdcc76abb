//! What one datacenter's failing checks say now, and how that overlays a service's last read.
//!
//! One parked query per datacenter (`/v1/health/state/any`, checks that are not passing) sees
//! every health change there within a round trip. Each check carries the Raft index of its last
//! change (`ModifyIndex`), and so does each check in a service's read. Comparing the two tells,
//! check by check, which is newer, so a service read on demand shows a health change without
//! being read again:
//! - a check the list holds at an index at least the read's: the list's state (failing);
//! - a check the read holds as failing at index `m`, absent from a list at index `L >= m`: it
//!   passed or went away after `m`, and so after the read (which would show it otherwise):
//!   left out until a read past the read's index says which (the change moved the service's
//!   index past it, so that read returns as soon as the agent has it);
//! - a check of the instance or its node the read does not hold, listed at an index past the
//!   read's (a new failing check, e.g. maintenance mode): failing;
//! - everything else: the read's state.
//!
//! Comparing indexes rather than states is what makes this exact: a check that failed, passed
//! and failed again between two answers of the list looks unchanged by state, not by index.

use std::collections::HashMap;

use crate::consul::{HealthCheck, HealthEntry, WatchIndex};

const PASSING: &str = "passing";

/// A failing check as the list gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FailingCheck {
    status: String,
    modify_index: u64,
    /// Empty for a node-level check.
    service_id: String,
    /// Lower-case; empty for a node-level check.
    service_name: String,
}

/// The failing checks of one datacenter at one index of the list.
#[derive(Debug, Default)]
pub(crate) struct FailingView {
    pub(crate) index: WatchIndex,
    /// Which agent answered (its indexes compare only with its own).
    pub(crate) agent_epoch: u64,
    /// By node, then check ID.
    nodes: HashMap<String, HashMap<String, FailingCheck>>,
}

/// A check whose presence or state differs between two views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangedCheck {
    pub(crate) node: String,
    /// Empty for a node-level check.
    pub(crate) service_id: String,
    /// Lower-case; empty for a node-level check.
    pub(crate) service_name: String,
}

/// How one instance's health reads against a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InstanceHealth {
    Passing,
    Failing,
    /// The view knows of a change the read does not show yet: left out, and read again.
    Unsure,
}

impl FailingView {
    pub(crate) fn build(index: WatchIndex, agent_epoch: u64, checks: Vec<HealthCheck>) -> Self {
        let mut nodes: HashMap<String, HashMap<String, FailingCheck>> = HashMap::new();
        for check in checks {
            if check.status == PASSING {
                continue;
            }
            nodes.entry(check.node).or_default().insert(
                check.check_id,
                FailingCheck {
                    status: check.status,
                    modify_index: check.modify_index,
                    service_id: check.service_id,
                    service_name: check.service_name.to_ascii_lowercase(),
                },
            );
        }
        Self {
            index,
            agent_epoch,
            nodes,
        }
    }

    /// The checks that appeared, went away or changed (by index or state) from `self` to
    /// `newer`.
    pub(crate) fn changes(&self, newer: &FailingView) -> Vec<ChangedCheck> {
        let mut changed = Vec::new();
        let mut note = |node: &str, check: &FailingCheck| {
            changed.push(ChangedCheck {
                node: node.to_owned(),
                service_id: check.service_id.clone(),
                service_name: check.service_name.clone(),
            })
        };
        for (node, checks) in &newer.nodes {
            let before = self.nodes.get(node);
            for (id, check) in checks {
                if before.and_then(|b| b.get(id)) != Some(check) {
                    note(node, check);
                }
            }
        }
        for (node, checks) in &self.nodes {
            let after = newer.nodes.get(node);
            for (id, check) in checks {
                if after.is_none_or(|a| !a.contains_key(id)) {
                    note(node, check);
                }
            }
        }
        changed
    }

    /// The health of `entry`, read at `read_index` from the agent `read_epoch`, against this
    /// view (see the module's text).
    pub(crate) fn health_of(
        &self,
        entry: &HealthEntry,
        read_index: WatchIndex,
        read_epoch: u64,
    ) -> InstanceHealth {
        if self.agent_epoch != read_epoch || !self.index.is_set() {
            return match entry.is_passing() {
                true => InstanceHealth::Passing,
                false => InstanceHealth::Failing,
            };
        }
        let listed = self.nodes.get(&entry.node.node);
        let mut unsure = false;
        for check in &entry.checks {
            match listed.and_then(|checks| checks.get(&check.check_id)) {
                Some(failing) if failing.modify_index >= check.modify_index => {
                    return InstanceHealth::Failing;
                }
                _ if check.status == PASSING => {}
                // Failing in the read, and the list does not know of anything later.
                Some(_) => return InstanceHealth::Failing,
                None if self.index.get() < check.modify_index => return InstanceHealth::Failing,
                None => unsure = true,
            }
        }
        // Failing checks of the instance or its node that the read does not hold yet.
        let own = |failing: &FailingCheck| {
            failing.service_id.is_empty() || failing.service_id == entry.service.id
        };
        let newer_failure = listed.into_iter().flatten().any(|(id, failing)| {
            own(failing)
                && failing.modify_index > read_index.get()
                && !entry.checks.iter().any(|c| &c.check_id == id)
        });
        match (newer_failure, unsure) {
            (true, _) => InstanceHealth::Failing,
            (false, true) => InstanceHealth::Unsure,
            (false, false) => InstanceHealth::Passing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(node: &str, id: &str, service_id: &str, modify: u64) -> HealthCheck {
        HealthCheck {
            node: node.into(),
            check_id: id.into(),
            service_id: service_id.into(),
            service_name: "web".into(),
            status: "critical".into(),
            modify_index: modify,
        }
    }

    /// web1 on n1 with its check `c1` in `status` as of `modify`, and the node's `serf`.
    fn web1(status: &str, modify: u64) -> HealthEntry {
        serde_json::from_value(serde_json::json!({
            "Node": {"Node": "n1", "Address": "10.0.0.1"},
            "Service": {"ID": "web1", "Service": "web", "Port": 80},
            "Checks": [
                {"CheckID": "serf", "Status": "passing", "ModifyIndex": 5},
                {"CheckID": "c1", "Status": status, "ServiceName": "web", "ModifyIndex": modify}
            ]
        }))
        .unwrap()
    }

    fn view(index: u64, checks: Vec<HealthCheck>) -> FailingView {
        FailingView::build(WatchIndex::new(index), 0, checks)
    }

    const AT: fn(u64) -> WatchIndex = WatchIndex::new;

    #[test]
    fn the_newer_of_list_and_read_decides() {
        // Failed at 20 after a read at 15: failing, no read needed.
        let v = view(20, vec![failing("n1", "c1", "web1", 20)]);
        assert_eq!(
            v.health_of(&web1("passing", 10), AT(15), 0),
            InstanceHealth::Failing
        );
        // The read (at 30) saw it pass after the list's 20: passing.
        assert_eq!(
            v.health_of(&web1("passing", 25), AT(30), 0),
            InstanceHealth::Passing
        );
        // Failing in the read at 25, gone from a list at 40: it passed or went away: unsure.
        let v = view(40, vec![]);
        assert_eq!(
            v.health_of(&web1("critical", 25), AT(30), 0),
            InstanceHealth::Unsure
        );
        // ... but a list older than the failure knows nothing of it: failing.
        let v = view(20, vec![]);
        assert_eq!(
            v.health_of(&web1("critical", 25), AT(30), 0),
            InstanceHealth::Failing
        );
        // Another agent's list says nothing about this read.
        let other = FailingView::build(AT(40), 1, vec![]);
        assert_eq!(
            other.health_of(&web1("critical", 25), AT(30), 0),
            InstanceHealth::Failing
        );
    }

    #[test]
    fn a_new_check_of_the_instance_or_its_node_fails_it_only_when_newer_than_the_read() {
        let maintenance = failing("n1", "_service_maintenance:web1", "web1", 50);
        let node_down = failing("n1", "serfHealth2", "", 50);
        let other = failing("n1", "c9", "db1", 50);
        for (check, fails) in [(maintenance, true), (node_down, true), (other, false)] {
            let v = view(50, vec![check.clone()]);
            let expected = match fails {
                true => InstanceHealth::Failing,
                false => InstanceHealth::Passing,
            };
            assert_eq!(
                v.health_of(&web1("passing", 10), AT(40), 0),
                expected,
                "{check:?}"
            );
            // A read past the check's index that does not hold it: the check is gone.
            assert_eq!(
                v.health_of(&web1("passing", 10), AT(60), 0),
                InstanceHealth::Passing
            );
        }
    }

    #[test]
    fn failed_passed_and_failed_again_is_a_change() {
        let before = view(20, vec![failing("n1", "c1", "web1", 20)]);
        let after = view(28, vec![failing("n1", "c1", "web1", 28)]);
        assert_eq!(before.changes(&after).len(), 1, "same state, later index");
        assert!(after.changes(&after).is_empty());
        let gone = view(30, vec![]);
        assert_eq!(
            after.changes(&gone),
            [ChangedCheck {
                node: "n1".into(),
                service_id: "web1".into(),
                service_name: "web".into()
            }]
        );
        // A read in between (at 25, passing) against the later list: failing again.
        assert_eq!(
            after.health_of(&web1("passing", 25), AT(25), 0),
            InstanceHealth::Failing
        );
    }
}
