//! The TLS of DoT and DoH: an acceptor presenting the certificate, and the server side of a
//! handshake, bounded like an idle connection.

use std::{io, sync::Arc};

use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tracing::debug;

use super::admission::Accepted;
use super::certificate::Certificate;

/// An acceptor presenting `certificate` (as reloaded), offering `alpn` protocols.
pub(super) fn acceptor(certificate: &Arc<Certificate>, alpn: &[&[u8]]) -> io::Result<TlsAcceptor> {
    let config = certificate.server_config(alpn).map_err(io::Error::other)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The server side of a TLS handshake, given up when it takes longer than the idle timeout,
/// when the connection must give way, or at shutdown.
pub(super) async fn handshake<H>(
    acceptor: &TlsAcceptor,
    accepted: Accepted<H>,
) -> Option<Accepted<H, TlsStream<TcpStream>>> {
    let Accepted {
        stream,
        peer,
        general,
        ticket,
        stop,
    } = accepted;
    let handshake = tokio::select! {
        done = tokio::time::timeout(ticket.idle_timeout(), acceptor.accept(stream)) => done,
        () = stop.cancelled() => return None,
        () = ticket.close.cancelled() => return None,
    };
    match handshake {
        Ok(Ok(tls)) => Some(Accepted {
            stream: tls,
            peer,
            general,
            ticket,
            stop,
        }),
        Ok(Err(error)) => {
            debug!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!(%peer, "TLS handshake not finished within the idle timeout");
            None
        }
    }
}
