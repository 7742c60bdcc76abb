//! consul-dns-bridge: a DNS server that answers for the Consul service catalog.
//!
//! ```text
//!  Consul agent (HTTP)                                 DNS clients (UDP, TCP)
//!       │ blocking queries                                   │
//!       ▼                                                    ▼
//!   consul ──▶ catalog::watches ──writes──▶ catalog ◀──reads── dns
//! ```
//! Two sides meet only at the cache ([`catalog`]): [`consul`] keeps it fresh through blocking
//! queries (its watches deliver into [`catalog`]'s slots), [`dns`] answers from it. [`bridge`]
//! wires them together for `main` and the tests; [`config`] reads the options; [`http`] and
//! [`metrics`] show the operator how it is doing.
//!
//! Modules are private; what `main`, the integration tests and the benchmarks use is re-exported
//! here, so the compiler reports what nothing uses.

mod bridge;
mod catalog;
mod cidr;
mod config;
mod consul;
mod dns;
mod http;
mod metrics;
mod probe;
mod wire;

pub use bridge::{Bridge, BridgeStatus, StartError};
pub use config::{Config, ConfigError, LogFormat, Parsed};
pub use consul::{Endpoint, InstanceKind, install_crypto_provider};
pub use probe::probe_health;

/// The UDP fast path over a fixed catalog, for `benches/answer_path.rs`: the answer path in
/// process, request bytes to response bytes, without Consul or sockets.
#[doc(hidden)]
pub mod bench_support {
    pub use crate::consul::HealthEntry;
    use crate::{
        catalog::Catalog,
        config::Config,
        consul::ConsulClient,
        dns::{ClientAccess, DnsMetrics, FastPath, Gate, RateLimiter, Records, Zone},
    };

    pub struct AnswerPath(FastPath);

    impl AnswerPath {
        /// The local datacenter `datacenter` holding `services` (name, health entries).
        pub fn preloaded(
            config: &Config,
            datacenter: &str,
            services: Vec<(String, Vec<HealthEntry>)>,
        ) -> Result<Self, String> {
            let client = ConsulClient::new(
                config.consul_addrs.clone(),
                None,
                &config.tls,
                config.budget,
                config.reads,
            )
            .map_err(|e| e.to_string())?;
            let catalog = Catalog::preloaded(config, client, datacenter, services);
            let zone = Zone::from_config(config);
            // Everyone answered, nothing recorded: the answer path alone.
            let gate = Gate::new(
                ClientAccess::default(),
                std::sync::Arc::new(RateLimiter::new(config.rate_limit.clone())),
                std::sync::Arc::new(DnsMetrics::default()),
                Records::default(),
                1,
                None,
                None,
            );
            let fast = FastPath::new(
                catalog,
                std::sync::Arc::new(gate),
                &zone,
                &config.dns,
                false,
                false,
            );
            Ok(Self(fast))
        }

        /// Writes the answer to `request` into `out`; `false` when the general path would
        /// have to answer it.
        pub fn answer(&self, request: &[u8], out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> bool {
            let client = std::net::IpAddr::from([127, 0, 0, 1]);
            self.0.answer(request, client, out, scratch).is_some()
        }
    }
}
