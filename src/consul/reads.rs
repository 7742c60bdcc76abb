//! What the bridge reads from Consul, one method per endpoint: the agent's datacenter, the
//! datacenters, service lists, nodes, a service's passing instances, the failing checks,
//! prepared queries and their execution. How a request goes out is [`super::client`]'s job.

use reqwest::StatusCode;

use super::{
    agent::AgentVersion,
    ask::Ask,
    blocking::{Blocking, WatchIndex},
    client::ConsulClient,
    endpoint::{Endpoint, InstanceKind},
    error::ConsulError,
    lanes::Parking,
    types::{
        AgentSelf, HealthCheck, HealthEntry, Node, Peering, PreparedQuery, QueryExecution,
        SamenessGroup, ServiceNames,
    },
};

impl ConsulClient {
    /// The datacenter, version and edition of the agent we talk to.
    pub(crate) async fn agent_self(&self) -> Result<(String, AgentVersion), ConsulError> {
        let answer: AgentSelf = self.get_plain(Endpoint::AgentSelf, &[], &[]).await?.0;
        let version =
            AgentVersion::parse(&answer.config.version, &answer.stats.build.version_metadata);
        Ok((answer.config.datacenter, version))
    }

    /// Every datacenter known over the WAN (this endpoint does not block).
    pub(crate) async fn datacenters(&self) -> Result<Vec<String>, ConsulError> {
        Ok(self.get_plain(Endpoint::Datacenters, &[], &[]).await?.0)
    }

    /// Blocking query (or, without room to park, a read) on the names of all services of `dc`.
    pub(crate) async fn service_names(
        &self,
        dc: &str,
        ask: Ask,
        parking: Parking,
    ) -> Result<Blocking<ServiceNames>, ConsulError> {
        self.blocking(Endpoint::CatalogServices, &[], dc, ask, parking)
            .await
    }

    /// Blocking query on every node of `dc`, with its address and metadata.
    pub(crate) async fn nodes(
        &self,
        dc: &str,
        ask: Ask,
        parking: Parking,
    ) -> Result<Blocking<Vec<Node>>, ConsulError> {
        self.blocking(Endpoint::CatalogNodes, &[], dc, ask, parking)
            .await
    }

    /// The instances of one service of `kind`, passing or not, each with its checks and
    /// theirs indexes (what passes is decided against the datacenter's failing checks), parked
    /// on a blocking query when the budget has room ([`ConsulError::NoParkingRoom`] when not)
    /// or read at once.
    pub(crate) async fn instances(
        &self,
        kind: InstanceKind,
        dc: &str,
        service: &str,
        ask: Ask,
    ) -> Result<Blocking<Vec<HealthEntry>>, ConsulError> {
        let endpoint = Endpoint::Health(kind);
        self.blocking(endpoint, &[service], dc, ask, Parking::IfRoom)
            .await
    }

    /// Blocking query on the checks of `dc` that are not passing: a health change anywhere
    /// changes this list, and says which service it touched.
    pub(crate) async fn failing_checks(
        &self,
        dc: &str,
        ask: Ask,
        parking: Parking,
    ) -> Result<Blocking<Vec<HealthCheck>>, ConsulError> {
        self.blocking(Endpoint::FailingChecks, &[], dc, ask, parking)
            .await
    }

    /// Blocking query on the prepared query definitions of `dc`.
    pub(crate) async fn prepared_queries(
        &self,
        dc: &str,
        ask: Ask,
        parking: Parking,
    ) -> Result<Blocking<Vec<PreparedQuery>>, ConsulError> {
        self.blocking(Endpoint::PreparedQueries, &[], dc, ask, parking)
            .await
    }

    /// Blocking query on the cluster peers and the services imported from each (read again
    /// every few seconds where the agent gives no index to block on).
    pub(crate) async fn peerings(
        &self,
        ask: Ask,
        parking: Parking,
    ) -> Result<Blocking<Vec<Peering>>, ConsulError> {
        self.blocking(Endpoint::Peerings, &[], "", ask, parking)
            .await
    }

    /// Blocking query on the sameness group `name` of `scope` (its partition); `None` when
    /// there is no such group.
    pub(crate) async fn sameness_group(
        &self,
        scope: &str,
        name: &str,
        ask: Ask,
        parking: Parking,
    ) -> Result<Blocking<Option<SamenessGroup>>, ConsulError> {
        let endpoint = Endpoint::SamenessGroup;
        match self.blocking(endpoint, &[name], scope, ask, parking).await {
            Ok(found) => Ok(Blocking {
                value: Some(found.value),
                index: found.index,
                agent_epoch: found.agent_epoch,
            }),
            Err(ConsulError::Status { status, .. }) if status == StatusCode::NOT_FOUND => {
                // Index 1: read again after a pause, as an index not to block on (0 would
                // be logged as a fault of the agent).
                Ok(Blocking {
                    value: None,
                    index: WatchIndex::new(1),
                    agent_epoch: self.agent_epoch(),
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Executes the prepared query `name` (a name, an ID, or a name a template matches) in
    /// `dc`, as Consul's DNS does; `None` when Consul has no such query.
    pub(crate) async fn execute_query(
        &self,
        dc: &str,
        name: &str,
    ) -> Result<Option<QueryExecution>, ConsulError> {
        let mut query = vec![("dc", dc.to_owned())];
        self.read_options(Endpoint::QueryExecute, &mut query);
        match self
            .get_plain(Endpoint::QueryExecute, &[name], &query)
            .await
        {
            Ok((execution, _)) => Ok(Some(execution)),
            Err(ConsulError::Status { status, .. }) if status == StatusCode::NOT_FOUND => Ok(None),
            Err(error) => Err(error),
        }
    }
}
