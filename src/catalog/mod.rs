//! The cache between Consul and DNS: which services exist, and the ready answers of each
//! service that DNS clients ask for.
//!
//! [`handle`] holds the shared state and starts the background work. The DNS side calls
//! [`Catalog::service`] (and its siblings in [`lookup`]); it returns at once
//! for a watched service and waits (bounded) only for the first answer of a service asked for
//! the first time. Behind it:
//! - [`local`]: the local datacenter, learned at start, with one blocking watch on its service
//!   list, so a name that is not in it is answered from memory and a flood of random names costs
//!   Consul nothing;
//! - [`watches`]: one watch per asked-for (datacenter, service, kind) on
//!   `/v1/health/<kind>/<name>`, and the lists (nodes, other datacenters' services,
//!   prepared-query definitions); each new answer is built into records ([`entry`], [`nodes`])
//!   and published into a [`slot`]; a service's answers are what [`instances`] holds under its
//!   datacenter's failing checks ([`health_view`]);
//! - [`signals`]: per datacenter asked about, the failing checks and the service list, which
//!   tell the watches that do not park when to read; [`keeper`] decides which park, and
//!   [`sweep`] bounds how long any answer can be wrong;
//! - [`caches`]: the moka caches holding the slots with time-to-idle, so watches stop when
//!   nobody asks any more;
//! - [`queries`]: prepared queries, which cannot be watched, executed again on change;
//! - [`scopes`]: where a lookup reads (a datacenter, a namespace and partition, a cluster
//!   peer's imported catalog, a sameness group) and whether a service exists there, with
//!   [`peers`] read from `/v1/peerings` and [`groups`] from the sameness-group config entries.
//!
//! When Consul stops answering, each watch keeps its last value and is marked stale; stale values
//! are served for up to `--serve-stale` (RFC 8767's idea), then the answer is SERVFAIL.

mod addresses;
mod caches;
mod entry;
mod groups;
mod handle;
mod health_view;
mod instance_address;
mod instances;
mod keeper;
mod local;
mod lookup;
mod nodes;
mod peers;
mod queries;
mod scopes;
mod signals;
mod slot;
mod sweep;
mod visibility;
mod watches;

pub(crate) use entry::ServiceAnswers;
pub(crate) use handle::{CONSUL_SERVICE, Catalog};
pub(crate) use lookup::{CachedLookup, NodeLookup, ServiceLookup};
pub(crate) use nodes::NodeRecord;

pub(crate) use crate::consul::{InstanceKind, NameFeature, Scope};
