//! The DNS listeners: binds UDP (one socket per core) and TCP on each address, serves them
//! until shutdown. It never names a concrete handler: UDP gets the fast path and the general
//! path, TCP the general path.

use std::{io, net::SocketAddr, time::Duration};

use hickory_server::server::RequestHandler;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{
    tcp,
    tcp_admission::{TcpAdmission, TcpOptions},
    udp::{self, UdpAnswering},
};

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

/// Binds UDP (one socket per core) and TCP on each address, the same port for both, also when
/// the port is 0, and starts serving. Returns the addresses actually bound.
pub(crate) async fn serve<H: RequestHandler>(
    answering: UdpAnswering<H>,
    listen: &[SocketAddr],
    tcp_limits: TcpOptions,
) -> io::Result<(DnsServer, Vec<SocketAddr>)> {
    let sockets_per_address = std::thread::available_parallelism().map_or(1, usize::from);
    let mut bound = Vec::new();
    let mut listeners = Vec::new();
    for addr in listen {
        let (udp, tcp) = bind_pair(*addr, sockets_per_address).await?;
        bound.push(tcp.local_addr()?);
        listeners.push((udp, tcp));
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
        server.tasks.spawn(tcp::serve(
            tcp,
            answering.general.clone(),
            admission.clone(),
            server.stop.clone(),
        ));
    }
    Ok((server, bound))
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
