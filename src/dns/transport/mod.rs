//! The transports: they read questions and write answers, and decide nothing else (the gate
//! and the answer path do). UDP (one socket per core, batched), TCP, DNS over TLS and DNS over
//! HTTPS, with one admission table for the stream connections.

mod admission;
mod batch;
mod certificate;
mod doh;
mod listeners;
mod tcp;
mod tls;
mod udp;

pub(crate) use admission::TcpOptions;
pub(crate) use certificate::Certificate;
pub(crate) use listeners::{Bound, DnsServer, EncryptedListen, serve};
pub(crate) use udp::UdpAnswering;
