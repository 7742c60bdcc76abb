//! The DNS side: reads questions, answers them from the catalog. It never talks to Consul.
//!
//! ```text
//!  transport/ (UDP, TCP, DoT, DoH: read and write bytes)
//!      │ every question                                   ▲ every answer
//!      ▼                                                  │
//!  gate/ (access, a place, size, rate limiting, log, metrics)
//!      │                                                  ▲
//!      ▼                                                  │
//!  answer/ (fast path from pre-encoded bytes; general path: handler, name, records)
//!      └──▶ fallback/ (zone files, recursors) for names outside the domain
//! ```
//! - [`transport`]: binds and runs UDP (one socket per core, `recvmmsg`), TCP, DoT and DoH,
//!   and decides which stream connections stay open.
//! - [`gate`]: the one place every question and answer passes, whatever the transport and the
//!   source: policy and bounds, the query log and the counts.
//! - [`answer`]: what is said: the UDP fast path, and the general path's request handler.
//! - [`fallback`]: names outside the domain, from zone files and recursors.
//!
//! Wire constants and encoding without I/O live in [`crate::wire`], shared with the catalog.

mod answer;
mod fallback;
mod gate;
mod transport;

pub(crate) use answer::{ConsulHandler, FastPath, GeneralPath, Zone};
pub(crate) use fallback::Fallback;
pub(crate) use gate::{
    ClientAccess, DnsMetrics, Dnstap, Gate, LatencyCollector, QueryLog, RateLimiter, Records,
};
pub(crate) use transport::{
    Bound, Certificate, DnsServer, EncryptedListen, TcpOptions, UdpAnswering, serve,
};
