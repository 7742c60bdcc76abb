//! HTTP requests to a Consul agent: URLs, the ACL token header, `index`/`wait` parameters,
//! decoding, a count of requests per endpoint, and failover between agents.
//!
//! With several agents configured, requests go to one at a time; a request that cannot reach
//! its agent (connection refused, timeout, broken body) moves every later request to the next
//! agent in the list, round the list, so the bridge comes back to an agent once the others fail.
//! An HTTP error status does not: the agent is up and answering.
//!
//! The token travels only in the `X-Consul-Token` header, marked sensitive, and no error built
//! here carries a header, so it cannot leak into a log line. Errors name the endpoint path but
//! never a query string.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use reqwest::{Url, header::HeaderValue};
use serde::de::DeserializeOwned;

use super::{
    ask::{Ask, ReadStats},
    blocking::{Blocking, WatchIndex},
    endpoint::{Endpoint, EndpointCounts, InstanceKind},
    error::{ConsulError, MAX_BODY_BYTES, Refusal},
    lanes::{Lanes, MakeClient, Parking, Versions},
    scope::Scope,
};
use crate::config::{Budget, ConsulTls, ReadOptions, Token};

/// Consul adds up to `wait / 16` of its own jitter before answering a blocking query; the HTTP
/// timeout is that plus this margin for a slow network. A request still open after it is a hung
/// agent, and the watch retries.
const BLOCKING_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// How long a read for data past a known index may wait for it.
const READ_AFTER_WAIT: Duration = Duration::from_secs(2);
/// Timeout of a request that does not block.
const PLAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A request failing this soon after it was sent met a refused connection (see `note_refusal`).
const REFUSED_WITHIN: Duration = Duration::from_secs(1);
/// How much of an error status's body goes into the error (Consul says why, `ACL not found`).
const STATUS_BODY_EXCERPT: usize = 120;

#[derive(Debug, Default)]
struct ClientStats {
    consistent_retries: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    refused: AtomicU64,
    refusal_logged: AtomicBool,
}

/// A cheap-to-clone handle on one agent's HTTP API.
#[derive(Clone)]
pub(crate) struct ConsulClient {
    inner: Arc<Inner>,
}

struct Inner {
    lanes: Lanes,
    reads: ReadOptions,
    max_connections: usize,
    stats: ClientStats,
    agents: Vec<Url>,
    /// Index into `agents` of the one requests go to now.
    current: AtomicUsize,
    /// How many times requests moved to another agent.
    failovers: AtomicU64,
    token: Option<HeaderValue>,
    requests: EndpointCounts,
    errors: EndpointCounts,
}

impl ConsulClient {
    pub(crate) fn new(
        agents: Vec<Url>,
        token: Option<&Token>,
        tls: &ConsulTls,
        budget: Budget,
        reads: ReadOptions,
    ) -> Result<Self, ConsulError> {
        let transport = |reason: String| ConsulError::Transport {
            path: "consul client".into(),
            reason,
        };
        if agents.is_empty() {
            return Err(transport("no Consul address given".into()));
        }
        let token = token
            .map(|t| {
                let mut value = HeaderValue::from_str(t.expose())
                    .map_err(|_| transport("the ACL token is not a valid header value".into()))?;
                value.set_sensitive(true);
                Ok::<_, ConsulError>(value)
            })
            .transpose()?;
        let tls = tls.clone();
        let make: MakeClient = Box::new(move |versions| {
            let mut builder = reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(budget.max_connections);
            if versions == Versions::Http1Only {
                builder = builder.http1_only();
            }
            super::tls::configure(builder, &tls)?
                .build()
                .map_err(|e| e.to_string())
        });
        let multiplexed = agents.iter().any(|agent| agent.scheme() == "https");
        // The first client is built here, so a bad TLS file is reported at start.
        let lanes = Lanes::new(multiplexed, budget, make).map_err(ConsulError::Setup)?;
        Ok(Self {
            inner: Arc::new(Inner {
                lanes,
                reads,
                max_connections: budget.max_connections,
                stats: ClientStats::default(),
                agents,
                current: AtomicUsize::new(0),
                failovers: AtomicU64::new(0),
                token,
                requests: Default::default(),
                errors: Default::default(),
            }),
        })
    }

    /// Moves later requests to the next agent, unless another request already moved them away
    /// from `failed`.
    fn fail_over(&self, failed: usize) {
        let count = self.inner.agents.len();
        if count > 1 {
            let next = (failed + 1) % count;
            if self
                .inner
                .current
                .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                self.inner.failovers.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    from = %self.inner.agents[failed],
                    to = %self.inner.agents[next],
                    "Consul agent unreachable; failing over"
                );
            }
        }
    }

    /// How many requests went to `endpoint` since start.
    pub(crate) fn request_count(&self, endpoint: Endpoint) -> u64 {
        self.inner.requests.get(endpoint)
    }

    /// How many requests to `endpoint` failed since start (any error: transport, status, body).
    pub(crate) fn error_count(&self, endpoint: Endpoint) -> u64 {
        self.inner.errors.get(endpoint)
    }

    /// How the reads went: consistent retries, agent cache hits and misses, connections the
    /// agent refused, parked queries and connections now.
    pub(crate) fn read_stats(&self) -> ReadStats {
        let stats = &self.inner.stats;
        ReadStats {
            consistent_retries: stats.consistent_retries.load(Ordering::Relaxed),
            cache_hits: stats.cache_hits.load(Ordering::Relaxed),
            cache_misses: stats.cache_misses.load(Ordering::Relaxed),
            refused: stats.refused.load(Ordering::Relaxed),
            parked: self.inner.lanes.parked(),
            parking_limit: self.inner.lanes.parking_limit(),
            connections: self.inner.lanes.connections(),
        }
    }

    /// How many service watches may park at once within the connection budget.
    pub(crate) fn service_parking(&self) -> usize {
        self.inner.lanes.service_parking()
    }

    /// Consul's read options for `endpoint`: `stale` (any server answers) unless the reads are
    /// consistent, `cached` (the agent's background-refresh cache) for health endpoints.
    pub(super) fn read_options(&self, endpoint: Endpoint, query: &mut Vec<(&str, String)>) {
        let reads = &self.inner.reads;
        // Not for ingress: Consul 1.8's cache keys an ingress read like the service's own, and
        // answers `/v1/health/ingress/web?cached` with web's instances (the differential test
        // caught it).
        let cacheable = matches!(
            endpoint,
            Endpoint::Health(InstanceKind::Service | InstanceKind::Connect)
        );
        if reads.use_cache && cacheable {
            query.push(("cached", String::new()));
        } else if reads.allow_stale {
            query.push(("stale", String::new()));
        }
        if let Endpoint::FailingChecks = endpoint {
            query.push(("filter", "Status != \"passing\"".to_owned()));
        }
    }

    pub(super) async fn blocking<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        segments: &[&str],
        dc: &str,
        ask: Ask,
        parking: Parking,
    ) -> Result<Blocking<T>, ConsulError> {
        let mut query = Scope::parse(dc).params();
        self.read_options(endpoint, &mut query);
        let path = endpoint.path();
        let epoch = self.agent_epoch();
        let (value, meta) = match ask {
            Ask::Read { background, after } => {
                if after.is_set() {
                    query.push(("index", after.get().to_string()));
                    query.push(("wait", format!("{}ms", READ_AFTER_WAIT.as_millis())));
                }
                self.get_plain_as(endpoint, segments, &query, background)
                    .await?
            }
            Ask::Park { index, wait } => {
                if index.is_set() {
                    query.push(("index", index.get().to_string()));
                    query.push(("wait", format!("{}ms", wait.as_millis())));
                }
                let slot = self
                    .inner
                    .lanes
                    .park(parking)
                    .map_err(|reason| ConsulError::Transport {
                        path: path.into(),
                        reason,
                    })?
                    .ok_or_else(|| ConsulError::NoParkingRoom { path: path.into() })?;
                let timeout = wait + wait / 16 + BLOCKING_TIMEOUT_MARGIN;
                self.get(slot.client(), endpoint, segments, &query, timeout)
                    .await?
            }
        };
        let index = match meta.index {
            Some(index) => index,
            // Whether the peering list blocks is undocumented: then read again after a pause.
            None if endpoint == Endpoint::Peerings => WatchIndex::ZERO,
            None => return Err(ConsulError::MissingIndex { path: path.into() }),
        };
        Ok(Blocking {
            value,
            index,
            agent_epoch: epoch,
        })
    }

    /// The failovers to another agent so far: what an answer's `agent_epoch` counts.
    pub(super) fn agent_epoch(&self) -> u64 {
        self.inner.failovers.load(Ordering::Relaxed)
    }

    /// A request that does not park, on the plain client, once one of its places is free.
    pub(super) async fn get_plain<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<(T, Meta), ConsulError> {
        self.get_plain_as(endpoint, segments, query, false).await
    }

    async fn get_plain_as<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        segments: &[&str],
        query: &[(&str, String)],
        background: bool,
    ) -> Result<(T, Meta), ConsulError> {
        let slot =
            self.inner
                .lanes
                .plain(background)
                .await
                .map_err(|reason| ConsulError::Transport {
                    path: endpoint.path().into(),
                    reason,
                })?;
        self.get(slot.client, endpoint, segments, query, PLAIN_TIMEOUT)
            .await
    }

    /// One request, asked again of the leader when a server answered a stale read from further
    /// behind than `max_stale` (Consul's DNS does the same).
    async fn get<T: DeserializeOwned>(
        &self,
        http: &reqwest::Client,
        endpoint: Endpoint,
        segments: &[&str],
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<(T, Meta), ConsulError> {
        let sent = std::time::Instant::now();
        let mut result = self.request(http, endpoint, segments, query, timeout).await;
        let too_stale = |meta: &Meta| {
            meta.last_contact
                .is_some_and(|behind| behind > self.inner.reads.max_stale)
        };
        let stale_read = query.iter().any(|(key, _)| *key == "stale");
        if stale_read && result.as_ref().is_ok_and(|(_, meta)| too_stale(meta)) {
            self.inner
                .stats
                .consistent_retries
                .fetch_add(1, Ordering::Relaxed);
            let consistent: Vec<(&str, String)> = query
                .iter()
                .filter(|(key, _)| *key != "stale")
                .cloned()
                .collect();
            result = self
                .request(http, endpoint, segments, &consistent, timeout)
                .await;
        }
        match &result {
            Ok((_, meta)) => match meta.cache_hit {
                Some(true) => self.inner.stats.cache_hits.fetch_add(1, Ordering::Relaxed),
                Some(false) => self
                    .inner
                    .stats
                    .cache_misses
                    .fetch_add(1, Ordering::Relaxed),
                None => 0,
            },
            Err(error) => {
                self.inner.errors.add(endpoint);
                self.note_refusal(error, sent.elapsed());
                0
            }
        };
        result
    }

    /// Says once, in words an operator can act on, that the agent seems to refuse connections
    /// (its per-client limit reached), counts every such failure, and has the lanes park fewer
    /// when the failure came at once (`took`): a refused connection is closed as soon as it is
    /// accepted, while an agent going away cuts queries that were parked, which is no reason to
    /// park fewer. An agent not listening at all is restarting: what was learned is forgotten.
    fn note_refusal(&self, error: &ConsulError, took: Duration) {
        match error.refusal() {
            None => return,
            Some(Refusal::NotListening) => {
                // Restarting, and it may come back with another limit.
                self.inner.lanes.forget_refusals();
                return;
            }
            Some(Refusal::ClosedAtOnce) => {}
        }
        self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
        let connections = self.inner.lanes.connections();
        let parking = match took < REFUSED_WITHIN {
            true => self.inner.lanes.learn_refusal(),
            false => None,
        };
        if !self
            .inner
            .stats
            .refusal_logged
            .swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                connections,
                budget = self.inner.max_connections,
                parked_queries_now_at_most = parking,
                "the Consul agent closed a connection it had accepted: it may be at its limit of \
                 connections from this address (`limits {{ http_max_conns_per_client }}`, 200 by \
                 default). The bridge parks fewer queries until the agent restarts; keep \
                 --consul-max-connections below that limit, or raise the limit"
            );
        }
    }

    async fn request<T: DeserializeOwned>(
        &self,
        http: &reqwest::Client,
        endpoint: Endpoint,
        segments: &[&str],
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<(T, Meta), ConsulError> {
        let path = endpoint.path();
        let base = endpoint.base();
        let agent = self.inner.current.load(Ordering::Relaxed) % self.inner.agents.len();
        let mut url = self.inner.agents[agent].clone();
        {
            let mut parts = url
                .path_segments_mut()
                .map_err(|()| ConsulError::Transport {
                    path: path.into(),
                    reason: "the Consul address cannot take a path".into(),
                })?;
            parts.pop_if_empty();
            parts.extend(base.trim_start_matches('/').split('/'));
            parts.extend(segments);
            parts.extend(endpoint.suffix());
        }
        let mut request = http.get(url).query(query).timeout(timeout);
        if let Some(token) = &self.inner.token {
            request = request.header("X-Consul-Token", token.clone());
        }
        self.inner.requests.add(endpoint);
        let transport = |e: reqwest::Error| ConsulError::Transport {
            path: path.into(),
            reason: describe(e, timeout),
        };
        let mut response = request.send().await.map_err(|e| {
            self.fail_over(agent);
            transport(e)
        })?;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let meta = Meta {
            index: header("X-Consul-Index")
                .and_then(|v| v.parse::<u64>().ok())
                .map(WatchIndex::new),
            last_contact: header("X-Consul-LastContact")
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis),
            cache_hit: header("X-Cache").map(|v| v.eq_ignore_ascii_case("HIT")),
        };
        let too_large = || ConsulError::TooLarge { path: path.into() };
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            self.fail_over(agent);
            transport(e)
        })? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(ConsulError::Status {
                path: path.into(),
                status,
                reason: excerpt(&body),
            });
        }
        let value = serde_json::from_slice(&body).map_err(|e| ConsulError::Decode {
            path: path.into(),
            reason: e.to_string(),
        })?;
        Ok((value, meta))
    }
}

/// What a response's headers say besides its body.
#[derive(Debug, Default)]
pub(super) struct Meta {
    /// `X-Consul-Index`.
    index: Option<WatchIndex>,
    /// `X-Consul-LastContact`: how far behind the leader the answering server was.
    last_contact: Option<Duration>,
    /// `X-Cache`: whether the agent's cache had it (`None`: not a cached request).
    cache_hit: Option<bool>,
}

/// A transport error as one line that says what happened: reqwest's own text ("error sending
/// request") hides the cause in its source chain.
fn describe(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {:.1}s (timed out)", timeout.as_secs_f64());
    }
    // without_url: the query string carries nothing secret, but keep errors short
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The start of a body as one printable line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(STATUS_BODY_EXCERPT)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
