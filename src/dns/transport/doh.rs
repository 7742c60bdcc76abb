//! DNS over HTTPS (RFC 8484): `GET /dns-query?dns=` (base64url) and `POST /dns-query`
//! (`application/dns-message`), over HTTP/2 or HTTP/1.1, whichever the client speaks.
//! hickory-server's own DoH listener speaks HTTP/2 only and has no connection cap, so the
//! connection comes from the stream listener ([`super::tcp`]) and hyper serves it.
//!
//! Each request's message goes to the general path as a TCP message would, so the answers,
//! the policy (allow-query, visibility), the metrics and the query log are those of every other
//! transport; DNS errors are `200 OK` with the rcode in the message, as RFC 8484 §4.2.1 asks.
//! An answer that depends on who asked (an access or visibility rule) is `Cache-Control:
//! private`, so a shared HTTP cache does not hand it to others.
//!
//! Every request is bounded in time: its headers (HTTP/1.1) and its body must arrive within
//! the idle timeout, or it fails (408) and its connection becomes idle again; a request
//! dropped midway (the client reset its stream) gives its place back, by a guard.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use data_encoding::BASE64URL_NOPAD;
use futures_util::StreamExt;
use hickory_proto::op::Message;
use hickory_server::{
    net::{BufDnsStreamHandle, xfer::Protocol},
    server::RequestHandler,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{self, HeaderValue},
    service::service_fn,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use super::admission::{Accepted, FLUSH_ON_CLOSE, Ticket};
use super::tls::handshake;
use crate::dns::answer::GeneralPath;
use crate::dns::gate::noting_client_dependence;

/// The one path served (RFC 8484 §3's example, and what clients default to).
const PATH: &str = "/dns-query";
const DNS_MESSAGE: &str = "application/dns-message";
/// A DNS message is at most 65,535 bytes (RFC 8484 §6).
const MAX_MESSAGE: usize = 65_535;
/// How often an open connection checks whether it has been idle too long.
const IDLE_CHECK: Duration = Duration::from_millis(250);
/// HTTP/2 streams one connection may have open at once (each holds a request in flight).
const MAX_STREAMS: u32 = 100;

/// What a connection is doing, for the admission table and the idle timeout.
struct Activity {
    ticket: Ticket,
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

/// One request in progress on a connection; when dropped (answered, failed, or dropped by
/// hyper midway) the connection is idle again if it was the last.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

impl Activity {
    fn begin(self: &Arc<Self>) -> InFlight {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.ticket.busy();
        }
        InFlight(self.clone())
    }

    fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.lock_idle_since() = Instant::now();
            self.ticket.idle();
        }
    }

    fn idle_too_long(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self.lock_idle_since().elapsed() >= self.ticket.idle_timeout()
    }

    fn lock_idle_since(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.idle_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Serves one admitted connection: TLS, then HTTP until the client leaves, it is idle longer
/// than the idle timeout, it must give way, or the server stops.
pub(super) async fn connection<H: RequestHandler>(acceptor: TlsAcceptor, accepted: Accepted<H>) {
    let Some(Accepted {
        stream: tls,
        peer,
        general,
        ticket,
        stop,
    }) = handshake(&acceptor, accepted).await
    else {
        return;
    };
    let close = ticket.close.clone();
    let activity = Arc::new(Activity {
        ticket,
        in_flight: AtomicUsize::new(0),
        idle_since: Mutex::new(Instant::now()),
    });
    let service = {
        let activity = activity.clone();
        service_fn(move |request| {
            let (general, activity) = (general.clone(), activity.clone());
            async move {
                let _in_flight = activity.begin();
                let deadline = activity.ticket.idle_timeout();
                let response = respond(request, peer, &general, deadline).await;
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Headers not in within the idle timeout: the connection closes (HTTP/1.1; an HTTP/2
    // stream's headers come in one frame, and its body is bounded in `respond`).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(activity.ticket.idle_timeout());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS);
    let served = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(served);
    let mut check = tokio::time::interval(IDLE_CHECK);
    loop {
        tokio::select! {
            done = served.as_mut() => {
                if let Err(error) = done {
                    debug!(%peer, %error, "DoH connection closed");
                }
                return;
            }
            () = stop.cancelled() => break,
            () = close.cancelled() => break,
            _ = check.tick() => if activity.idle_too_long() {
                break;
            },
        }
    }
    // Requests in flight finish; the connection then closes.
    served.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(FLUSH_ON_CLOSE, served).await;
}

async fn respond<H: RequestHandler>(
    request: Request<Incoming>,
    peer: SocketAddr,
    general: &GeneralPath<H>,
    deadline: Duration,
) -> Response<Full<Bytes>> {
    let arrived = std::time::Instant::now();
    if request.uri().path() != PATH {
        return status(StatusCode::NOT_FOUND);
    }
    let message = match *request.method() {
        Method::GET => match dns_parameter(request.uri().query().unwrap_or_default()) {
            Some(message) => message,
            None => return status(StatusCode::BAD_REQUEST),
        },
        Method::POST => {
            let content_type = request.headers().get(header::CONTENT_TYPE);
            if content_type.and_then(|value| value.to_str().ok()) != Some(DNS_MESSAGE) {
                return status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
            }
            let body = Limited::new(request.into_body(), MAX_MESSAGE).collect();
            match tokio::time::timeout(deadline, body).await {
                Ok(Ok(body)) => body.to_bytes().to_vec(),
                Ok(Err(_)) => return status(StatusCode::PAYLOAD_TOO_LARGE),
                Err(_late) => return status(StatusCode::REQUEST_TIMEOUT),
            }
        }
        _ => {
            let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
            let allow = HeaderValue::from_static("GET, POST");
            response.headers_mut().insert(header::ALLOW, allow);
            return response;
        }
    };
    let (replies, mut sent) = BufDnsStreamHandle::new(peer);
    let answering = general.answer(message, peer, replies, Protocol::Https, arrived, None);
    let ((), client_dependent) = noting_client_dependence(answering).await;
    // The general path has dropped its handle: the answer, if any, is waiting.
    match sent.next().await {
        Some(reply) => dns_response(reply.into_parts().0, client_dependent),
        None => status(StatusCode::BAD_REQUEST),
    }
}

/// The `dns` query parameter, base64url-decoded (RFC 8484 §4.1: without padding; padding,
/// plain or percent-encoded, is tolerated).
fn dns_parameter(query: &str) -> Option<Vec<u8>> {
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("dns="))?;
    let value = value.trim_end_matches("%3D").trim_end_matches("%3d");
    let value = value.trim_end_matches('=');
    BASE64URL_NOPAD.decode(value.as_bytes()).ok()
}

/// The HTTP response carrying `bytes`; `client_dependent`: only for the client that asked.
fn dns_response(bytes: Vec<u8>, client_dependent: bool) -> Response<Full<Bytes>> {
    let max_age = freshness(&bytes);
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    // `max-age=N`, as RFC 8484 §5.1 asks: no longer than the smallest TTL in the answer; and
    // `private` for an answer shared caches must not give to others (RFC 9111 §5.2.2.7).
    let cache_control = match (client_dependent, max_age) {
        (true, Some(seconds)) => Some(format!("private, max-age={seconds}")),
        (true, None) => Some("private".to_owned()),
        (false, Some(seconds)) => Some(format!("max-age={seconds}")),
        (false, None) => None,
    };
    if let Some(value) = cache_control.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    response
}

/// The smallest TTL of the answer and authority records, if there are any.
fn freshness(bytes: &[u8]) -> Option<u32> {
    let message = Message::from_vec(bytes).ok()?;
    message
        .answers
        .iter()
        .chain(message.authorities.iter())
        .map(|record| record.ttl)
        .min()
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dns_parameter_is_base64url_with_or_without_padding() {
        let message = vec![0xab, 0xcd, 0x01, 0x00, 0xff];
        let encoded = BASE64URL_NOPAD.encode(&message);
        assert_eq!(
            dns_parameter(&format!("dns={encoded}")),
            Some(message.clone())
        );
        let padded = format!("ct=x&dns={encoded}%3D%3D");
        assert_eq!(dns_parameter(&padded), Some(message));
        assert_eq!(dns_parameter("dns=!!!"), None);
        assert_eq!(dns_parameter("name=web"), None);
    }
}
