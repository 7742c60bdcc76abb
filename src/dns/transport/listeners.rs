//! The DNS listeners: binds UDP (one socket per core) and TCP on each address, and the DoT and
//! DoH addresses, serves them until shutdown. It never names a concrete handler: UDP gets the
//! fast path and the general path, the stream listeners the general path.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use hickory_server::server::RequestHandler;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::admission::{TcpAdmission, TcpOptions};
use super::certificate::Certificate;
use super::tcp::{self, Framing};
use super::tls;
use super::udp::{self, UdpAnswering};

/// The DNS listeners: UDP through [`super::udp`] (fast path, then hickory-server's request path),
/// TCP through the capped loop.
pub(crate) struct DnsServer {
    tasks: JoinSet<()>,
    stop: CancellationToken,
}

impl Drop for DnsServer {
    /// The UDP sockets' threads end only when told to: a server dropped without `shutdown`
    /// (a panic, a failed start) must not leave them running, nor keep the runtime from ending.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl DnsServer {
    /// Stops accepting, lets the queries in flight finish (bounded by `within`).
    pub(crate) async fn shutdown(mut self, within: Duration) {
        self.stop.cancel();
        let drained = tokio::time::timeout(within, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!("DNS queries still in flight at shutdown were dropped");
        }
    }
}

/// Where DNS over TLS and HTTPS are served, and with which certificate.
pub(crate) struct EncryptedListen<'a> {
    pub(crate) tls: &'a [SocketAddr],
    pub(crate) https: &'a [SocketAddr],
    pub(crate) certificate: Arc<Certificate>,
}

/// The addresses actually bound, ports resolved.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bound {
    /// UDP and TCP.
    pub(crate) dns: Vec<SocketAddr>,
    pub(crate) tls: Vec<SocketAddr>,
    pub(crate) https: Vec<SocketAddr>,
}

/// Binds UDP (one socket per core) and TCP on each address, the same port for both, also when
/// the port is 0, and the DoT and DoH addresses, and starts serving.
pub(crate) async fn serve<H: RequestHandler>(
    answering: UdpAnswering<H>,
    listen: &[SocketAddr],
    encrypted: Option<EncryptedListen<'_>>,
    tcp_limits: TcpOptions,
) -> io::Result<(DnsServer, Bound)> {
    let sockets_per_address = std::thread::available_parallelism().map_or(1, usize::from);
    let mut bound = Bound::default();
    let mut listeners = Vec::new();
    for addr in listen {
        let (udp, tcp) = bind_pair(*addr, sockets_per_address).await?;
        bound.dns.push(tcp.local_addr()?);
        listeners.push((udp, tcp));
    }
    let mut streams = Vec::new();
    if let Some(encrypted) = encrypted {
        let dot = tls::acceptor(&encrypted.certificate, &[b"dot"])?;
        let doh = tls::acceptor(&encrypted.certificate, &[b"h2", b"http/1.1"])?;
        for (addrs, framing, bound) in [
            (encrypted.tls, Framing::Tls(dot), &mut bound.tls),
            (encrypted.https, Framing::Https(doh), &mut bound.https),
        ] {
            for addr in addrs {
                let listener = bind_stream(*addr, &framing).await?;
                bound.push(listener.local_addr()?);
                streams.push((listener, framing.clone()));
            }
        }
    }
    // One table for every address: the limits are the server's, not each listener's.
    let admission = TcpAdmission::new(tcp_limits);
    let mut server = DnsServer {
        tasks: JoinSet::new(),
        stop: CancellationToken::new(),
    };
    for (udp, tcp) in listeners {
        udp::serve(
            udp,
            answering.clone(),
            server.stop.clone(),
            &mut server.tasks,
        )?;
        streams.push((tcp, Framing::Plain));
    }
    for (listener, framing) in streams {
        server.tasks.spawn(tcp::serve(
            listener,
            framing,
            answering.general.clone(),
            admission.clone(),
            server.stop.clone(),
        ));
    }
    Ok((server, bound))
}

async fn bind_stream(addr: SocketAddr, framing: &Framing) -> io::Result<TcpListener> {
    let what = match framing {
        Framing::Https(_) => "DoH",
        _ => "DoT",
    };
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {what} {addr}: {e}")))
}

async fn bind_pair(
    addr: SocketAddr,
    udp_sockets: usize,
) -> io::Result<(Vec<std::net::UdpSocket>, TcpListener)> {
    let with_context = |e: io::Error, proto: &str, at: SocketAddr| {
        io::Error::new(e.kind(), format!("cannot listen on {proto} {at}: {e}"))
    };
    // A free UDP port may be taken on TCP; with port 0 try a few times.
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = udp::bind(addr, udp_sockets).map_err(|e| with_context(e, "UDP", addr))?;
        let at = udp[0].local_addr()?;
        match TcpListener::bind(at).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(with_context(e, "TCP", at)),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no attempt to bind")))
}
