//! The Consul endpoints the bridge reads, named once: their paths, and a count per endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// Which instances of a service a name asks for, from the DNS name (`.service`, `.connect`,
/// `.ingress`) down to the health endpoint that lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceKind {
    /// `.service`, `/v1/health/service/<name>`: the service's own instances.
    Service,
    /// `.connect`, `/v1/health/connect/<name>`: its Connect proxies and Connect-native instances.
    Connect,
    /// `.ingress`, `/v1/health/ingress/<name>`: the ingress gateways that expose it.
    Ingress,
}

/// An endpoint the bridge reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    AgentSelf,
    Datacenters,
    CatalogServices,
    CatalogNodes,
    Health(InstanceKind),
    /// `/v1/health/state/any` filtered to the checks that are not passing.
    FailingChecks,
    PreparedQueries,
    QueryExecute,
    /// `/v1/peerings`: the cluster peers and what is imported from each.
    Peerings,
    /// `/v1/config/sameness-group/<name>` (Enterprise): a sameness group's members.
    SamenessGroup,
}

impl Endpoint {
    /// Every endpoint, in the order of [`Endpoint::index`].
    pub const ALL: [Endpoint; 12] = [
        Endpoint::AgentSelf,
        Endpoint::Datacenters,
        Endpoint::CatalogServices,
        Endpoint::CatalogNodes,
        Endpoint::Health(InstanceKind::Service),
        Endpoint::Health(InstanceKind::Connect),
        Endpoint::Health(InstanceKind::Ingress),
        Endpoint::FailingChecks,
        Endpoint::PreparedQueries,
        Endpoint::QueryExecute,
        Endpoint::Peerings,
        Endpoint::SamenessGroup,
    ];

    /// Its place in [`Endpoint::ALL`]. A match, not a cast: a new endpoint does not compile
    /// until it has a place, and a unit test checks the place is its own.
    fn index(self) -> usize {
        match self {
            Endpoint::AgentSelf => 0,
            Endpoint::Datacenters => 1,
            Endpoint::CatalogServices => 2,
            Endpoint::CatalogNodes => 3,
            Endpoint::Health(InstanceKind::Service) => 4,
            Endpoint::Health(InstanceKind::Connect) => 5,
            Endpoint::Health(InstanceKind::Ingress) => 6,
            Endpoint::FailingChecks => 7,
            Endpoint::PreparedQueries => 8,
            Endpoint::QueryExecute => 9,
            Endpoint::Peerings => 10,
            Endpoint::SamenessGroup => 11,
        }
    }

    /// The endpoint as logs and metrics name it.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::QueryExecute => "/v1/query/<name>/execute",
            Endpoint::SamenessGroup => "/v1/config/sameness-group/<name>",
            other => other.base(),
        }
    }

    /// The URL path before the per-request segments (a service or query name).
    pub(super) fn base(self) -> &'static str {
        match self {
            Endpoint::AgentSelf => "/v1/agent/self",
            Endpoint::Datacenters => "/v1/catalog/datacenters",
            Endpoint::CatalogServices => "/v1/catalog/services",
            Endpoint::CatalogNodes => "/v1/catalog/nodes",
            Endpoint::Health(InstanceKind::Service) => "/v1/health/service",
            Endpoint::Health(InstanceKind::Connect) => "/v1/health/connect",
            Endpoint::Health(InstanceKind::Ingress) => "/v1/health/ingress",
            Endpoint::FailingChecks => "/v1/health/state/any",
            Endpoint::PreparedQueries | Endpoint::QueryExecute => "/v1/query",
            Endpoint::Peerings => "/v1/peerings",
            Endpoint::SamenessGroup => "/v1/config/sameness-group",
        }
    }

    /// The URL path after the per-request segments.
    pub(super) fn suffix(self) -> &'static [&'static str] {
        match self {
            Endpoint::QueryExecute => &["execute"],
            _ => &[],
        }
    }
}

/// One counter per endpoint.
#[derive(Debug, Default)]
pub(super) struct EndpointCounts([AtomicU64; Endpoint::ALL.len()]);

impl EndpointCounts {
    pub(crate) fn add(&self, endpoint: Endpoint) {
        self.0[endpoint.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self, endpoint: Endpoint) -> u64 {
        self.0[endpoint.index()].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_listed_once_at_its_own_index() {
        for (at, endpoint) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(endpoint.index(), at, "{endpoint:?}");
        }
        let counts = EndpointCounts::default();
        counts.add(Endpoint::Health(InstanceKind::Ingress));
        let seen: Vec<u64> = Endpoint::ALL.iter().map(|e| counts.get(*e)).collect();
        assert_eq!(seen, [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
    }
}
