//! DNS over TCP and over TLS (RFC 7858) with a cap on open connections, which hickory-server's
//! own TCP and TLS listeners lack.
//!
//! The framing (two length bytes) is hickory's, TLS is rustls'; this module accepts, lets
//! [`TcpAdmission`] decide which connection gives way when the table is full (a TLS handshake
//! counts as idle, so slow handshakes give way too), closes idle connections, and gives each
//! message of a connection, one after the other, to the general path that also serves UDP, so
//! pipelined queries are answered in the order they came.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use hickory_server::{
    net::{runtime::iocompat::AsyncIoTokioAsStd, tcp::TcpStream as DnsTcpStream, xfer::Protocol},
    server::RequestHandler,
};

use super::admission::{Accepted, Admission, FLUSH_ON_CLOSE, TcpAdmission};
use super::doh;
use super::tls;
use crate::dns::answer::GeneralPath;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Responses queued per connection before the handler waits for the client to read.
const RESPONSE_BUFFER: usize = 32;

/// What a stream listener's connections speak.
#[derive(Clone)]
pub(crate) enum Framing {
    /// DNS over TCP.
    Plain,
    /// DNS over TLS.
    Tls(TlsAcceptor),
    /// DNS over HTTPS, served by [`super::doh`].
    Https(TlsAcceptor),
}

/// Accepts until `stop` fires, then waits for the open connections to finish what they hold.
pub(crate) async fn serve<H: RequestHandler>(
    listener: TcpListener,
    framing: Framing,
    general: GeneralPath<H>,
    admission: Arc<TcpAdmission>,
    stop: CancellationToken,
) {
    let mut connections = JoinSet::new();
    let mut full_logged = false;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    debug!(%error, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        // An answer is one write; waiting to coalesce it (Nagle) only delays it, the most
        // with TLS and HTTP/2, whose frames a client's delayed ACK would otherwise hold up.
        let _ = stream.set_nodelay(true);
        match admission.admit(peer.ip(), general.admits(peer.ip())) {
            Admission::Admitted { ticket, evicted } => {
                if evicted {
                    debug!(%peer, "TCP connections full: an idle one was closed for a new client");
                }
                full_logged = false;
                let accepted = Accepted {
                    stream,
                    peer,
                    general: general.clone(),
                    ticket,
                    stop: stop.clone(),
                };
                match &framing {
                    Framing::Plain => connections.spawn(plain_connection(accepted)),
                    Framing::Tls(acceptor) => {
                        connections.spawn(tls_connection(acceptor.clone(), accepted))
                    }
                    Framing::Https(acceptor) => {
                        connections.spawn(doh::connection(acceptor.clone(), accepted))
                    }
                };
            }
            Admission::Full => {
                if !full_logged {
                    full_logged = true;
                    warn!(
                        "every TCP and TLS connection is busy answering; closing new ones until one is idle"
                    );
                }
                drop(stream);
            }
        }
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

async fn plain_connection<H: RequestHandler>(accepted: Accepted<H>) {
    connection(accepted, Protocol::Tcp).await;
}

/// Completes the TLS handshake within the idle timeout, then serves as plain TCP does.
async fn tls_connection<H: RequestHandler>(acceptor: TlsAcceptor, accepted: Accepted<H>) {
    if let Some(tls) = tls::handshake(&acceptor, accepted).await {
        connection(tls, Protocol::Tls).await;
    }
}

async fn connection<H, S>(accepted: Accepted<H, S>, protocol: Protocol)
where
    H: RequestHandler,
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    let Accepted {
        stream,
        peer,
        general,
        ticket,
        stop,
    } = accepted;
    let (mut messages, replies) = DnsTcpStream::from_stream_with_buffer_size(
        AsyncIoTokioAsStd(stream),
        peer,
        RESPONSE_BUFFER,
    );
    loop {
        // The timeout is read anew for each query: it shrinks while the table is nearly full.
        let next = tokio::select! {
            next = tokio::time::timeout(ticket.idle_timeout(), messages.next()) => next,
            () = stop.cancelled() => Ok(None),
            () = ticket.close.cancelled() => Ok(None),
        };
        match next {
            Ok(Some(Ok(message))) => {
                ticket.busy();
                let (bytes, _) = message.into_parts();
                let arrived = std::time::Instant::now();
                general
                    .answer(bytes, peer, replies.clone(), protocol, arrived, None)
                    .await;
                ticket.idle();
            }
            Ok(Some(Err(error))) => {
                debug!(%peer, %error, ?protocol, "connection closed");
                return;
            }
            Ok(None) => {
                // Closing (shutdown, or giving way): polling the stream is what writes queued
                // answers out; give it a moment.
                let _ = tokio::time::timeout(FLUSH_ON_CLOSE, messages.next()).await;
                return;
            }
            Err(_idle) => return,
        }
    }
}
