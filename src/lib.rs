//! consul-dns-bridge: a DNS server that answers for the Consul service catalog.
//!
//! Two sides meet only at the cache ([`catalog`]): [`consul`] keeps it fresh through blocking
//! queries, [`dns`] answers from it. [`bridge`] wires them together for `main` and the tests;
//! [`http`] and [`metrics`] show the operator how it is doing.

pub mod bridge;
pub mod catalog;
pub mod config;
pub mod consul;
pub mod dns;
pub mod http;
pub mod metrics;
