//! Everything that talks to Consul: the HTTP client, the JSON it returns, and the blocking-query
//! loop that keeps a value fresh. Nothing here knows about DNS.

pub mod client;
pub mod lanes;
pub mod tls;
pub mod types;
pub mod watch;

pub use client::{Blocking, ConsulClient, ConsulError, Endpoint};
pub use watch::{WatchIndex, WatchPolicy};
