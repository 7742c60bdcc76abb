//! DNS over UDP: one socket per core on the same address (`SO_REUSEPORT`, so the kernel spreads
//! clients over them), each served by a thread that answers from the fast path when it can and
//! hands every other message to the general path on the async runtime, exactly as TCP does.
//! The general path's answers are sent by a blocking thread of their own per socket, so a send
//! that waits for the kernel never holds up a runtime worker.

use std::{
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use hickory_server::{
    net::{BufDnsStreamHandle, xfer::Protocol},
    server::RequestHandler,
};
use socket2::{Domain, Socket, Type};
use tokio::{runtime::Handle, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::batch::{Inbox, Outbox};
use crate::dns::answer::FastPath;
use crate::dns::answer::GeneralPath;
use crate::dns::gate::FastTally;
use crate::dns::gate::Transport;
use crate::dns::gate::{Asked, Count, Gate, Outgoing};
use crate::wire::{HEADER_LEN, udp_payload};

/// Larger than any query we answer; longer datagrams are cut (and then malformed).
const RECEIVE_BUFFER: usize = 4096;
/// How often a socket loop looks whether the server is stopping.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// Kernel receive buffer asked for per socket, so bursts queue instead of being dropped. The
/// kernel caps it at `net.core.rmem_max`.
const SOCKET_RECEIVE_BUFFER: usize = 4 << 20;

/// Binds `count` sockets on `addr` with `SO_REUSEPORT`; with port 0 the first one picks the port
/// and the others join it.
pub(crate) fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let first = bind_one(addr)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count.max(1) {
        sockets.push(bind_one(bound)?);
    }
    Ok(sockets)
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: a smaller buffer only means earlier drops under a burst.
    let _ = socket.set_recv_buffer_size(SOCKET_RECEIVE_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// What a socket's loop answers with.
pub(crate) struct UdpAnswering<H> {
    pub(crate) fast: Arc<FastPath>,
    pub(crate) general: GeneralPath<H>,
    /// What every answer passes on its way out, the fast path's as the general path's.
    pub(crate) gate: Arc<Gate>,
}

impl<H> Clone for UdpAnswering<H> {
    fn clone(&self) -> Self {
        Self {
            fast: self.fast.clone(),
            general: self.general.clone(),
            gate: self.gate.clone(),
        }
    }
}

/// Serves every socket until `stop` fires; each loop ends once its general-path queries are done.
pub(crate) fn serve<H: RequestHandler>(
    sockets: Vec<std::net::UdpSocket>,
    answering: UdpAnswering<H>,
    stop: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> io::Result<()> {
    let runtime = Handle::current();
    for socket in sockets {
        socket.set_nonblocking(false)?;
        // Wakes the loop to notice shutdown.
        socket.set_read_timeout(Some(STOP_CHECK))?;
        let (answering, stop, runtime) = (answering.clone(), stop.clone(), runtime.clone());
        tasks.spawn_blocking(move || socket_loop(socket, answering, stop, runtime));
    }
    Ok(())
}

/// One socket's loop, on a thread of its own: a blocking receive wakes it straight from the
/// kernel with every query already queued (a batch), and the batch's fast answers go out
/// together before the next receive.
fn socket_loop<H: RequestHandler>(
    socket: std::net::UdpSocket,
    answering: UdpAnswering<H>,
    stop: CancellationToken,
    runtime: Handle,
) {
    let UdpAnswering {
        fast,
        general: general_path,
        gate,
    } = answering;
    let local = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    // Answers of the general path come back through hickory's stream handle; a blocking thread
    // sends them, as the socket is in blocking mode for the receive loop.
    let (replies, mut outgoing) = BufDnsStreamHandle::new(local);
    let sender = match socket.try_clone() {
        Ok(sending) => {
            let waiting = runtime.clone();
            runtime.spawn_blocking(move || {
                waiting.block_on(async move {
                    while let Some(message) = outgoing.next().await {
                        if let Err(error) = sending.send_to(message.bytes(), message.addr()) {
                            debug!(%error, peer = %message.addr(), "cannot send a UDP answer");
                        }
                    }
                })
            })
        }
        Err(error) => {
            warn!(%error, "cannot clone the UDP socket; not serving on it");
            return;
        }
    };
    let mut general = JoinSet::new();
    let (mut inbox, mut outbox) = (Inbox::new(RECEIVE_BUFFER), Outbox::default());
    let (mut out, mut scratch) = (Vec::with_capacity(1232), Vec::with_capacity(1232));
    let mut tally = FastTally::default();
    while !stop.is_cancelled() {
        let count = match inbox.receive(&socket) {
            Ok(count) => count,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                while general.try_join_next().is_some() {}
                continue;
            }
            Err(error) => {
                // ICMP errors from earlier sends surface here; the socket itself is fine.
                debug!(%error, "UDP receive error");
                continue;
            }
        };
        for i in 0..count {
            let Some((request, peer)) = inbox.datagram(i) else {
                continue;
            };
            // No answer to a source that cannot take one (as hickory-server's own UDP loop).
            if peer.port() == 0 || peer.ip().is_unspecified() {
                continue;
            }
            let started = Instant::now();
            // A client outside --allow-query goes the general way, which refuses it (the fast
            // path checks who a trusted forwarder asks for).
            let allowed = gate.admits(peer.ip());
            if let Some(answer) = allowed
                .then(|| fast.answer(request, peer.ip(), &mut out, &mut scratch))
                .flatten()
            {
                let asked = Asked {
                    peer,
                    client: answer.client,
                    transport: Transport::Udp,
                    arrived: started,
                    name_wire: &request[HEADER_LEN..answer.question_end - 4],
                    qtype: Some(answer.qtype),
                    udp_payload: udp_payload(answer.edns_payload),
                    cookie: answer.cookie.map(|(at, len)| &request[at..at + len]),
                    query: request,
                };
                let outgoing = Outgoing {
                    bytes: &mut out,
                    rcode: answer.rcode,
                    question_end: Some(answer.question_end),
                    fast: true,
                    opt_at: answer.opt_at,
                };
                if gate.release(&asked, outgoing, Count::Batch(&mut tally)) {
                    outbox.queue(&out, peer);
                }
                continue;
            }
            let replies = replies.with_remote_addr(peer);
            // No place left on the general path: SERVFAIL now, no task.
            let Some(place) = gate.enter() else {
                general_path.refuse_overloaded(request, peer, replies, Protocol::Udp, started);
                continue;
            };
            let path = general_path.clone();
            let bytes = request.to_vec();
            general.spawn_on(
                async move {
                    path.answer(bytes, peer, replies, Protocol::Udp, started, Some(place))
                        .await
                },
                &runtime,
            );
        }
        gate.add_batch(&mut tally);
        let unsent = outbox.flush(&socket);
        if unsent > 0 {
            debug!(unsent, "UDP answers the kernel did not take");
        }
        while general.try_join_next().is_some() {}
    }
    runtime.block_on(async move {
        while general.join_next().await.is_some() {}
        drop(replies);
        if sender.await.is_err() {
            warn!("the UDP answer sender stopped abnormally");
        }
    });
}
