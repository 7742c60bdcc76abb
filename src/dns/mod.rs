//! The DNS side: reads questions, answers them from the catalog. It never talks to Consul.

pub mod answer;
pub mod batch;
pub mod fallback;
pub mod fast;
pub mod name;
pub mod recursors;
pub mod response;
pub mod server;
pub mod tcp;
pub mod udp;
