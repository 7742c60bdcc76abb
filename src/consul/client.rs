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
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use reqwest::{StatusCode, Url, header::HeaderValue};
use serde::de::DeserializeOwned;

use super::{
    blocking::{Blocking, WatchIndex},
    endpoint::{Endpoint, EndpointCounts, InstanceKind},
    error::{ConsulError, MAX_BODY_BYTES},
    lanes::{Lanes, MakeClient, Versions},
    types::{AgentSelf, HealthEntry, Node, PreparedQuery, QueryExecution, ServiceNames},
};
use crate::config::{ConsulTls, Token};

/// Consul adds up to `wait / 16` of its own jitter before answering a blocking query; the HTTP
/// timeout is that plus this margin for a slow network. A request still open after it is a hung
/// agent, and the watch retries.
const BLOCKING_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// Timeout of a request that does not block.
const PLAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error status's body goes into the error (Consul says why there, e.g.
/// `ACL not found`).
const STATUS_BODY_EXCERPT: usize = 120;

/// A cheap-to-clone handle on one agent's HTTP API.
#[derive(Clone)]
pub(crate) struct ConsulClient {
    inner: Arc<Inner>,
}

struct Inner {
    lanes: Lanes,
    agents: Vec<Url>,
    /// Index into `agents` of the one requests go to now.
    current: AtomicUsize,
    token: Option<HeaderValue>,
    requests: EndpointCounts,
    errors: EndpointCounts,
}

impl ConsulClient {
    pub(crate) fn new(
        agents: Vec<Url>,
        token: Option<&Token>,
        tls: &ConsulTls,
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
            let mut builder = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(90));
            if versions == Versions::Http1Only {
                builder = builder.http1_only();
            }
            super::tls::configure(builder, &tls)?
                .build()
                .map_err(|e| e.to_string())
        });
        let multiplexed = agents.iter().any(|agent| agent.scheme() == "https");
        // The first client is built here, so a bad TLS file is reported at start.
        let lanes = Lanes::new(multiplexed, make).map_err(ConsulError::Setup)?;
        Ok(Self {
            inner: Arc::new(Inner {
                lanes,
                agents,
                current: AtomicUsize::new(0),
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

    /// The datacenter of the agent we talk to.
    pub(crate) async fn agent_datacenter(&self) -> Result<String, ConsulError> {
        let answer: AgentSelf = self.get_plain(Endpoint::AgentSelf, &[], &[]).await?.0;
        Ok(answer.config.datacenter)
    }

    /// Every datacenter known over the WAN (this endpoint does not block).
    pub(crate) async fn datacenters(&self) -> Result<Vec<String>, ConsulError> {
        Ok(self.get_plain(Endpoint::Datacenters, &[], &[]).await?.0)
    }

    /// Blocking query on the names of all services of `dc`.
    pub(crate) async fn service_names(
        &self,
        dc: &str,
        index: WatchIndex,
        wait: Duration,
    ) -> Result<Blocking<ServiceNames>, ConsulError> {
        self.blocking(Endpoint::CatalogServices, &[], dc, index, wait)
            .await
    }

    /// Blocking query on every node of `dc`, with its address and metadata.
    pub(crate) async fn nodes(
        &self,
        dc: &str,
        index: WatchIndex,
        wait: Duration,
    ) -> Result<Blocking<Vec<Node>>, ConsulError> {
        self.blocking(Endpoint::CatalogNodes, &[], dc, index, wait)
            .await
    }

    /// Blocking query on the passing instances of one service of `kind` (`?passing`: every
    /// service and node check passing).
    pub(crate) async fn passing_instances(
        &self,
        kind: InstanceKind,
        dc: &str,
        service: &str,
        index: WatchIndex,
        wait: Duration,
    ) -> Result<Blocking<Vec<HealthEntry>>, ConsulError> {
        self.blocking(Endpoint::Health(kind), &[service], dc, index, wait)
            .await
    }

    /// Blocking query on the prepared query definitions of `dc`.
    pub(crate) async fn prepared_queries(
        &self,
        dc: &str,
        index: WatchIndex,
        wait: Duration,
    ) -> Result<Blocking<Vec<PreparedQuery>>, ConsulError> {
        self.blocking(Endpoint::PreparedQueries, &[], dc, index, wait)
            .await
    }

    /// Executes the prepared query `name` (a name, an ID, or a name a template matches) in
    /// `dc`, as Consul's DNS does; `None` when Consul has no such query.
    pub(crate) async fn execute_query(
        &self,
        dc: &str,
        name: &str,
    ) -> Result<Option<QueryExecution>, ConsulError> {
        let query = [("dc", dc.to_owned())];
        match self
            .get_plain(Endpoint::QueryExecute, &[name], &query)
            .await
        {
            Ok((execution, _)) => Ok(Some(execution)),
            Err(ConsulError::Status { status, .. }) if status == StatusCode::NOT_FOUND => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn blocking<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        segments: &[&str],
        dc: &str,
        index: WatchIndex,
        wait: Duration,
    ) -> Result<Blocking<T>, ConsulError> {
        let mut query = vec![("dc", dc.to_owned())];
        if matches!(endpoint, Endpoint::Health(_)) {
            query.push(("passing", "1".to_owned()));
        }
        if index.is_set() {
            query.push(("index", index.get().to_string()));
            query.push(("wait", format!("{}ms", wait.as_millis())));
        }
        let slot = self
            .inner
            .lanes
            .park()
            .map_err(|reason| ConsulError::Transport {
                path: endpoint.path().into(),
                reason,
            })?;
        let timeout = wait + wait / 16 + BLOCKING_TIMEOUT_MARGIN;
        let (value, index) = self
            .get(slot.client(), endpoint, segments, &query, timeout)
            .await?;
        let path = endpoint.path();
        let index = index.ok_or_else(|| ConsulError::MissingIndex { path: path.into() })?;
        Ok(Blocking { value, index })
    }

    /// A request that does not park, on the plain client.
    async fn get_plain<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<(T, Option<WatchIndex>), ConsulError> {
        let http = self.inner.lanes.plain();
        self.get(http, endpoint, segments, query, PLAIN_TIMEOUT)
            .await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        http: &reqwest::Client,
        endpoint: Endpoint,
        segments: &[&str],
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<(T, Option<WatchIndex>), ConsulError> {
        let result = self.request(http, endpoint, segments, query, timeout).await;
        if result.is_err() {
            self.inner.errors.add(endpoint);
        }
        result
    }

    async fn request<T: DeserializeOwned>(
        &self,
        http: &reqwest::Client,
        endpoint: Endpoint,
        segments: &[&str],
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<(T, Option<WatchIndex>), ConsulError> {
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
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(WatchIndex::new);
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
        Ok((value, index))
    }
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
