//! DNS over TCP with a cap on open connections, which hickory-server's own TCP listener lacks.
//!
//! The framing (two length bytes), the idle timeout and the response encoding are hickory's;
//! this module only accepts, counts, and gives each message of a connection, one after the
//! other, to the same request handler that serves UDP, so pipelined queries are answered in the
//! order they came.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures_util::StreamExt;
use hickory_proto::op::{Header, Message, MessageType, ResponseCode};

use super::response::WireResponse;
use hickory_server::{
    net::{
        BufDnsStreamHandle, DnsStreamHandle,
        runtime::{TokioTime, iocompat::AsyncIoTokioAsStd},
        tcp::TcpStream as DnsTcpStream,
        xfer::Protocol,
    },
    proto::{
        op::SerialMessage,
        serialize::binary::{BinDecodable, BinDecoder},
    },
    server::{Request, RequestHandler, TimeoutStream},
};
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

/// Bounds on the TCP side, and how its answers are written.
#[derive(Debug, Clone, Copy)]
pub struct TcpOptions {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Whether names in answers may be compressed.
    pub compress: bool,
}

/// Accepts until `stop` fires, then waits for the open connections to finish what they hold.
pub async fn serve<H: RequestHandler>(
    listener: TcpListener,
    handler: Arc<H>,
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
                    handler.clone(),
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
    handler: Arc<H>,
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
                answer(
                    handler.as_ref(),
                    bytes,
                    peer,
                    replies.clone(),
                    Protocol::Tcp,
                    options.compress,
                )
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

/// One message, as hickory-server's own loop treats it: no header, no answer; a header but an
/// unreadable rest, FORMERR; a response, ignored (no reflection); else the handler. UDP's general
/// path uses it too.
/// `compress`: whether names in the response may be compressed.
pub async fn answer<H: RequestHandler>(
    handler: &H,
    bytes: Vec<u8>,
    peer: SocketAddr,
    mut replies: BufDnsStreamHandle,
    protocol: Protocol,
    compress: bool,
) {
    let Ok(header) = Header::read(&mut BinDecoder::new(&bytes)) else {
        return;
    };
    match Request::from_bytes(bytes, peer, protocol) {
        Ok(request) if request.metadata.message_type == MessageType::Response => {}
        Ok(request) => {
            let response = WireResponse::new(peer, replies, protocol, compress);
            handler
                .handle_request::<_, TokioTime>(&request, response)
                .await;
        }
        Err(error) => {
            debug!(%peer, %error, ?protocol, "undecodable query");
            let mut reply = Message::error_msg(
                header.metadata.id,
                header.metadata.op_code,
                ResponseCode::FormErr,
            );
            reply.metadata.recursion_desired = header.metadata.recursion_desired;
            if let Ok(encoded) = reply.to_vec() {
                let _ = replies.send(SerialMessage::new(encoded, peer));
            }
        }
    }
}
