//! The DNS side: reads questions, answers them from the catalog. It never talks to Consul.

pub mod answer;
pub mod name;
pub mod server;
pub mod tcp;
