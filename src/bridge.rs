//! Wires the parts together: a Consul client, the catalog it feeds, and the DNS server reading
//! it. The one way `main` and the tests start and stop a bridge.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use crate::{
    catalog::Catalog,
    config::Config,
    consul::{ConsulClient, ConsulError},
    dns::{
        fallback::Fallback,
        server::{ConsulHandler, DnsServer, serve},
        tcp::TcpLimits,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Consul(#[from] ConsulError),
    #[error("{0}")]
    Listen(#[from] io::Error),
    /// A zone file or the recursors cannot be used.
    #[error("{0}")]
    Fallback(String),
}

/// A running bridge.
pub struct Bridge {
    catalog: Catalog,
    server: DnsServer,
    dns_addrs: Vec<SocketAddr>,
    fallback: Option<Arc<Fallback>>,
}

impl Bridge {
    /// Starts serving at once; Consul data arrives in the background.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        // Zone files first: a broken one stops the start before anything else runs.
        let fallback = Fallback::load(config.zones_dir.as_deref(), &config.recursors)
            .await
            .map_err(StartError::Fallback)?
            .map(Arc::new);
        let client = ConsulClient::new(
            config.consul_addrs.clone(),
            config.token.as_ref(),
            &config.tls,
        )?;
        let catalog = Catalog::start(config, client);
        let node_ttl = u32::try_from(config.node_ttl.as_secs()).unwrap_or(u32::MAX);
        let handler = ConsulHandler::new(catalog.clone(), node_ttl, fallback.clone());
        let tcp_limits = TcpLimits {
            max_connections: config.tcp_max_connections,
            idle_timeout: config.tcp_idle_timeout,
        };
        let (server, dns_addrs) = match serve(handler, &config.listen, tcp_limits).await {
            Ok(served) => served,
            Err(error) => {
                catalog.shutdown();
                return Err(error.into());
            }
        };
        Ok(Self {
            catalog,
            server,
            dns_addrs,
            fallback,
        })
    }

    /// The DNS addresses served on (UDP and TCP), with ports resolved.
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.dns_addrs
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Reads the zone files again (SIGHUP). On an error the zones in use stay. Returns how many
    /// zones are served.
    pub async fn reload_zones(&self) -> Result<usize, String> {
        match &self.fallback {
            Some(fallback) => fallback.reload().await,
            None => Ok(0),
        }
    }

    /// Stops taking queries, lets those in flight finish (bounded), stops every watch.
    pub async fn shutdown(self) {
        self.server.shutdown(Duration::from_secs(5)).await;
        self.catalog.shutdown();
    }
}
