//! The integration tests, one binary (linked once): each module starts real servers (a Consul
//! agent, the bridge in process or as its binary, dnsmasq) on loopback through [`support`].

mod support;

mod access;
mod bridge;
mod budget;
mod churn;
mod cli;
mod client_subnet;
mod cluster;
mod conformance;
mod consul_faults;
mod consul_names;
mod consul_reads;
mod consul_scopes;
mod containers;
mod cookies;
mod datacenters;
mod differential;
mod dnstap;
mod docker;
mod encrypted;
mod fast_path;
mod faults;
mod forwarding;
mod fuzz;
mod fuzz_transports;
mod gate;
mod hostile;
mod metrics;
mod on_demand;
mod process;
mod query_log;
mod rate_limit;
mod resolvers;
mod signals;
mod structure;
mod tcp;
mod tls;
mod zones;
