//! Everything that talks to Consul: the HTTP client, the JSON it returns, and the blocking-query
//! loop that keeps a value fresh. Nothing here knows about DNS.
//!
//! - [`client`]: one request to an agent (URL, token header, failover between agents), with
//!   [`endpoint`] naming the endpoints and [`lanes`] choosing the connection a request takes;
//!   [`tls`] applies the `CONSUL_*` HTTPS options.
//! - [`watch`]: the blocking-query loop; [`control`]: how a service watch is told to park or
//!   read; [`freshness`]: whether its value is current.
//! - [`types`]: the JSON Consul answers with; [`agent`]: which name forms the agent answers.

mod agent;
mod ask;
mod blocking;
mod client;
mod control;
mod endpoint;
mod error;
mod freshness;
mod lanes;
mod reads;
mod scope;
mod tls;
mod types;
mod watch;

pub(crate) use agent::{AgentVersion, NameFeature};
pub(crate) use ask::Ask;
pub(crate) use blocking::{Blocking, WatchIndex};
pub(crate) use client::ConsulClient;
pub(crate) use control::{ReadCause, WatchControl};
pub use endpoint::{Endpoint, InstanceKind};
pub use error::ConsulError;
pub(crate) use freshness::{Freshness, WatchStats};
pub(crate) use lanes::Parking;
pub(crate) use scope::Scope;
pub use tls::install_crypto_provider;
pub use types::HealthEntry;
#[cfg(test)]
pub(crate) use types::QueryTemplate;
pub(crate) use types::{
    HealthCheck, Node, Peering, PreparedQuery, QueryExecution, SamenessGroup, ServiceNames,
};
pub(crate) use watch::{Answered, WatchPolicy, run as run_watch, warns};
