//! DNS over TCP with a cap on open connections, which hickory-server's own TCP listener lacks.
//!
//! The framing (two length bytes) and the idle timeout are hickory's; this module only
//! accepts, counts, and gives each message of a connection, one after the other, to the general
//! path that also serves UDP, so pipelined queries are answered in the order they came.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures_util::StreamExt;
use hickory_server::{
    net::{runtime::iocompat::AsyncIoTokioAsStd, tcp::TcpStream as DnsTcpStream, xfer::Protocol},
    server::{RequestHandler, TimeoutStream},
};

use super::general::GeneralPath;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Responses queued per connection before the handler waits for the client to read.
const RESPONSE_BUFFER: usize = 32;
/// How long a connection may still flush its last answers once shutdown began.
const FLUSH_ON_SHUTDOWN: Duration = Duration::from_millis(200);

/// Bounds on the TCP side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpOptions {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub(crate) max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub(crate) idle_timeout: Duration,
}

/// Accepts until `stop` fires, then waits for the open connections to finish what they hold.
pub(crate) async fn serve<H: RequestHandler>(
    listener: TcpListener,
    general: GeneralPath<H>,
    limits: TcpOptions,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    let mut refusing = false;
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
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                if refusing {
                    refusing = false;
                    warn!("TCP connections below the cap again");
                }
                connections.spawn(connection(
                    stream,
                    peer,
                    general.clone(),
                    limits,
                    stop.clone(),
                    slot,
                ));
            }
            Err(_) => {
                if !refusing {
                    refusing = true;
                    warn!(
                        max = limits.max_connections,
                        "TCP connection cap reached; closing new connections until one ends"
                    );
                }
                drop(stream);
            }
        }
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

async fn connection<H: RequestHandler>(
    stream: TcpStream,
    peer: SocketAddr,
    general: GeneralPath<H>,
    options: TcpOptions,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let idle_timeout = options.idle_timeout;
    let (dns_stream, replies) = DnsTcpStream::from_stream_with_buffer_size(
        AsyncIoTokioAsStd(stream),
        peer,
        RESPONSE_BUFFER,
    );
    let mut messages = TimeoutStream::new(dns_stream, idle_timeout);
    loop {
        let next = tokio::select! {
            next = messages.next() => next,
            () = stop.cancelled() => {
                // Polling the stream is what writes queued answers out; give it a moment.
                let _ = tokio::time::timeout(FLUSH_ON_SHUTDOWN, messages.next()).await;
                return;
            }
        };
        match next {
            Some(Ok(message)) => {
                let (bytes, _) = message.into_parts();
                general
                    .answer(bytes, peer, replies.clone(), Protocol::Tcp)
                    .await;
            }
            Some(Err(error)) => {
                debug!(%peer, %error, "TCP connection closed");
                return;
            }
            None => return,
        }
    }
}
