//! The DNS side: reads questions, answers them from the catalog. It never talks to Consul.
//!
//! ```text
//!  listeners ──▶ udp ──▶ fast (cached A/AAAA/SRV, NXDOMAIN: bytes in, bytes out)
//!      │          └────┐
//!      └──────▶ tcp ──▶ general ──▶ handler ──▶ name, answer ──▶ response
//!                                      └──▶ fallback (zones, recursors)
//! ```
//! - [`listeners`] binds and runs the transports; [`udp`] (with [`batch`] for `recvmmsg`) and
//!   [`tcp`] read messages.
//! - [`fast`] answers the common UDP questions from pre-encoded bytes; everything else goes
//!   through [`general`] to the [`handler`], which parses the name ([`name`]), fills the
//!   sections ([`answer`]) and writes them ([`response`]).
//! - [`fallback`] serves names outside the domain: [`zones`] and [`recursors`].
//! - [`wire`] holds the constants both answer paths share.

mod access;
mod answer;
mod batch;
mod certificate;
mod doh;
mod fallback;
mod fast;
mod fast_query;
mod fast_reverse;
mod gate;
mod general;
mod handler;
mod listeners;
mod name;
mod query_log;
mod rate_limit;
mod recursors;
mod response;
mod tcp;
mod tcp_admission;
mod tls;
mod udp;
mod wire;
mod zones;

pub(crate) use access::ClientAccess;
pub(crate) use answer::Zone;
pub(crate) use certificate::Certificate;
pub(crate) use fallback::Fallback;
pub(crate) use fast::FastPath;
pub(crate) use gate::Gate;
pub(crate) use general::GeneralPath;
pub(crate) use handler::ConsulHandler;
pub(crate) use listeners::{Bound, DnsServer, EncryptedListen, serve};
pub(crate) use query_log::{LogTarget, QueryLog};
pub(crate) use rate_limit::{RateLimitOptions, RateLimiter};
pub(crate) use tcp_admission::TcpOptions;
pub(crate) use udp::UdpAnswering;
pub(crate) use wire::rcode_mnemonic;
