//! The operator's HTTP endpoint (`--http-listen`): `/metrics` in Prometheus text format,
//! `/health` (the process is up) and `/ready` (the catalog has been read from Consul once).

use std::{io, net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{catalog::Catalog, metrics::Metrics};

struct AppState {
    metrics: Metrics,
    catalog: Catalog,
}

/// Binds `addr` and serves until `stop` fires. Returns the address bound and the server task.
pub(crate) async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    catalog: Catalog,
    stop: CancellationToken,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on HTTP {addr}: {e}")))?;
    let bound = listener.local_addr()?;
    let state = Arc::new(AppState { metrics, catalog });
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .with_state(state);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            warn!(%error, "HTTP endpoint stopped");
        }
    });
    Ok((bound, task))
}

async fn metrics_page(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn ready(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.catalog.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the service list has not been read from Consul yet\n",
        )
    }
}
