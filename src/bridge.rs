//! Wires the parts together: a Consul client, the catalog it feeds, and the DNS server reading
//! it. The one way `main` and the tests start and stop a bridge.

use std::{io, net::SocketAddr, time::Duration};

use hickory_server::Server;

use crate::{
    catalog::Catalog,
    config::Config,
    consul::{ConsulClient, ConsulError},
    dns::server::{ConsulHandler, serve},
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Consul(#[from] ConsulError),
    #[error("{0}")]
    Listen(#[from] io::Error),
}

/// A running bridge.
pub struct Bridge {
    catalog: Catalog,
    server: Server<ConsulHandler>,
    dns_addrs: Vec<SocketAddr>,
}

impl Bridge {
    /// Starts serving at once; Consul data arrives in the background.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let client = ConsulClient::new(config.consul_addrs.clone(), config.token.as_ref())?;
        let catalog = Catalog::start(config, client);
        let node_ttl = u32::try_from(config.node_ttl.as_secs()).unwrap_or(u32::MAX);
        let handler = ConsulHandler::new(catalog.clone(), node_ttl);
        let (server, dns_addrs) = match serve(handler, &config.listen).await {
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
        })
    }

    /// The DNS addresses served on (UDP and TCP), with ports resolved.
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.dns_addrs
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Stops taking queries, lets those in flight finish (bounded), stops every watch.
    pub async fn shutdown(mut self) {
        let drained =
            tokio::time::timeout(Duration::from_secs(5), self.server.shutdown_gracefully()).await;
        if let Ok(Err(error)) = drained {
            tracing::warn!(%error, "DNS server stopped with an error");
        }
        self.catalog.shutdown();
    }
}
