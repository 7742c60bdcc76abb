//! Wires the parts together: a Consul client, the catalog it feeds, and the DNS server reading
//! it. The one way `main` and the tests start and stop a bridge.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    catalog::Catalog,
    config::Config,
    consul::{ConsulClient, ConsulError, Endpoint},
    dns::{
        Bound, Certificate, ClientAccess, ConsulHandler, DnsMetrics, DnsServer, Dnstap,
        EncryptedListen, Fallback, FastPath, Gate, GeneralPath, QueryLog, RateLimiter, Records,
        TcpOptions, UdpAnswering, Zone, serve,
    },
    http,
    metrics::{Metrics, Sources},
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
    /// The DoT/DoH certificate or key cannot be used.
    #[error("{0}")]
    Certificate(String),
    #[error("cannot open the query log (query_log): {0}")]
    QueryLog(io::Error),
}

/// What a running bridge reports about its watches (as `/metrics` does); cheap to clone.
#[derive(Clone)]
pub struct BridgeStatus {
    catalog: Catalog,
}

impl BridgeStatus {
    /// Watches whose last request to Consul failed (their answers are served stale).
    pub fn stale_watches(&self) -> usize {
        self.catalog.stale_watches()
    }

    /// `.service` names being watched now.
    pub fn watched_services(&self) -> u64 {
        self.catalog.watched_services()
    }

    /// Requests sent to `endpoint` of Consul since start.
    pub fn consul_requests(&self, endpoint: Endpoint) -> u64 {
        self.catalog.consul().request_count(endpoint)
    }
}

/// A running bridge.
pub struct Bridge {
    catalog: Catalog,
    server: DnsServer,
    bound: Bound,
    certificate: Option<Arc<Certificate>>,
    fallback: Option<Arc<Fallback>>,
    http_addr: Option<SocketAddr>,
    stop_http: CancellationToken,
    dns_metrics: Arc<DnsMetrics>,
    query_log: Option<QueryLog>,
}

impl Bridge {
    /// Starts serving at once; Consul data arrives in the background.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let dnstap = config.dnstap.as_ref().map(|options| {
            Dnstap::start(
                options.target.clone(),
                options.capacity,
                options.identity.clone(),
            )
        });
        // Zone files first: a broken one stops the start before anything else runs.
        let fallback = Fallback::load(
            config.zones_dir.as_deref(),
            &config.recursors,
            dnstap.clone(),
        )
        .await
        .map_err(StartError::Fallback)?
        .map(Arc::new);
        let certificate = match &config.encrypted.certificate {
            Some((cert, key)) => {
                Some(Certificate::load(cert, key).map_err(StartError::Certificate)?)
            }
            None => None,
        };
        let client = ConsulClient::new(
            config.consul_addrs.clone(),
            config.token.as_ref(),
            &config.tls,
            config.budget,
            config.reads,
        )?;
        let catalog = Catalog::start(config, client);
        let dns_metrics = Arc::new(DnsMetrics::default());
        let query_log = match &config.query_log {
            Some((target, capacity)) => match QueryLog::start(target.clone(), *capacity) {
                Ok(log) => Some(log),
                Err(error) => {
                    catalog.shutdown();
                    return Err(StartError::QueryLog(error));
                }
            },
            None => None,
        };
        let limiter = Arc::new(RateLimiter::new(config.rate_limit.clone()));
        let gate = Arc::new(Gate::new(
            ClientAccess::new(
                config.allow_query.clone(),
                config.trust_client_subnet.clone(),
            ),
            limiter.clone(),
            dns_metrics.clone(),
            Records {
                query_log: query_log.clone(),
                dnstap: dnstap.clone(),
            },
            config.max_concurrent_queries,
            config.nsid.clone(),
            config.cookie_secret.map(|secret| secret.0),
        ));
        let handler = ConsulHandler::new(catalog.clone(), config, fallback.clone(), gate.clone());
        let fast = FastPath::new(
            catalog.clone(),
            gate.clone(),
            &Zone::from_config(config),
            &config.dns,
            handler.recursion_available(),
            fallback.is_some(),
        );
        let compress = !config.dns.disable_compression;
        let answering = UdpAnswering {
            fast: Arc::new(fast),
            general: GeneralPath::new(Arc::new(handler), compress, gate.clone()),
            gate: gate.clone(),
        };
        let metrics_handle = dns_metrics.clone();
        // HTTP before DNS: a taken metrics port stops the start before DNS is served.
        let stop_http = CancellationToken::new();
        let http_addr = match config.http_listen {
            Some(addr) => {
                let metrics = Metrics::new(Sources {
                    catalog: catalog.clone(),
                    dns: dns_metrics,
                    limiter,
                    gate,
                    fallback: fallback.clone(),
                    query_log: query_log.clone(),
                });
                match http::serve(addr, metrics, catalog.clone(), stop_http.clone()).await {
                    Ok((bound, _task)) => Some(bound),
                    Err(error) => {
                        catalog.shutdown();
                        return Err(error.into());
                    }
                }
            }
            None => None,
        };
        let tcp_options = TcpOptions {
            max_connections: config.tcp_max_connections,
            max_per_client: config.tcp_max_connections_per_client,
            idle_timeout: config.tcp_idle_timeout,
        };
        let encrypted = certificate.clone().map(|certificate| EncryptedListen {
            tls: &config.encrypted.tls_listen,
            https: &config.encrypted.https_listen,
            certificate,
        });
        let served = serve(answering, &config.listen, encrypted, tcp_options).await;
        let (server, bound) = match served {
            Ok(served) => served,
            Err(error) => {
                catalog.shutdown();
                stop_http.cancel();
                return Err(error.into());
            }
        };
        Ok(Self {
            catalog,
            server,
            bound,
            fallback,
            certificate,
            http_addr,
            stop_http,
            dns_metrics: metrics_handle,
            query_log,
        })
    }

    /// The DNS addresses served on (UDP and TCP), with ports resolved.
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.bound.dns
    }

    /// The DNS-over-TLS addresses served on, with ports resolved.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.bound.tls
    }

    /// The DNS-over-HTTPS addresses served on, with ports resolved.
    pub fn https_addrs(&self) -> &[SocketAddr] {
        &self.bound.https
    }

    /// Reads the DoT/DoH certificate and key again (SIGHUP); on an error the one in use stays.
    /// `None` when there is none.
    pub fn reload_certificate(&self) -> Option<Result<(), String>> {
        self.certificate
            .as_ref()
            .map(|certificate| certificate.reload())
    }

    /// The address of `/metrics`, `/health` and `/ready`, with the port resolved.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Questions answered from the UDP fast path's pre-encoded bytes since start.
    pub fn fast_answers(&self) -> u64 {
        self.dns_metrics.fast_answers()
    }

    /// A handle on what the bridge reports about its watches.
    pub fn status(&self) -> BridgeStatus {
        BridgeStatus {
            catalog: self.catalog.clone(),
        }
    }

    /// Reads the zone files again (SIGHUP). On an error the zones in use stay. Returns how many
    /// zones are served.
    pub async fn reload_zones(&self) -> Result<usize, String> {
        match &self.fallback {
            Some(fallback) => fallback.reload().await,
            None => Ok(0),
        }
    }

    /// Opens the query log file anew before its next line (SIGHUP, after a rotation).
    pub fn reopen_query_log(&self) {
        if let Some(log) = &self.query_log {
            log.reopen();
        }
    }

    /// Stops taking queries, lets those in flight finish (bounded), stops every watch.
    pub async fn shutdown(self) {
        self.server.shutdown(Duration::from_secs(5)).await;
        self.stop_http.cancel();
        self.catalog.shutdown();
    }
}
