//! Which TCP connections stay open when more want in: the rule that keeps idle or slow clients
//! from locking new ones out (RFC 7766 §6.2.3).
//!
//! A new connection is always let in. Past the overall cap, or past its own client's share,
//! an idle connection gives way: the client's own oldest idle one when that client is over its
//! share, else the connection idle the longest of all (a hoarder holds at most its share, so
//! the oldest idle ones are the clients that stopped talking). A connection busy with one
//! request for longer than the idle timeout counts as idle (a request that never arrives in
//! full must not hold its place). Only when every connection is busy answering is the new one
//! closed. Idle connections also get a shorter timeout once the table is three quarters full,
//! as NSD and Knot shorten theirs under load.
//!
//! A client outside `--allow-query` is let in only where there is room, and its connections
//! give way first: being refused, it must not take anyone's place.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{net::TcpStream, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::dns::answer::GeneralPath;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpOptions {
    /// Connections open at once.
    pub(crate) max_connections: usize,
    /// Connections one client address may hold at once.
    pub(crate) max_per_client: usize,
    /// A connection that sends nothing for this long is closed.
    pub(crate) idle_timeout: Duration,
}

/// How long a connection told to close may still flush its last answers.
pub(crate) const FLUSH_ON_CLOSE: Duration = Duration::from_millis(200);

/// The idle timeout once the table is three quarters full.
const BUSY_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) struct TcpAdmission {
    options: TcpOptions,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Open>,
    per_client: HashMap<IpAddr, usize>,
}

struct Open {
    client: IpAddr,
    /// Since when it waits for a query (`Idle`), or works on one (`Busy`).
    state: Activity,
    /// Outside `--allow-query`: gives way first.
    refused: bool,
    close: CancellationToken,
}

#[derive(Debug, Clone, Copy)]
enum Activity {
    Idle(Instant),
    Busy(Instant),
}

/// What a new connection was told.
pub(crate) enum Admission {
    /// Let in; another connection was closed to make room when `evicted` says so.
    Admitted { ticket: Ticket, evicted: bool },
    /// Every connection is busy answering: this one is closed.
    Full,
}

/// An admitted connection's place in the table, given back when dropped.
pub(crate) struct Ticket {
    id: u64,
    admission: Arc<TcpAdmission>,
    /// Fires when the connection must give way to a newer one.
    pub(crate) close: CancellationToken,
}

/// An admitted connection, and what it needs to be served.
pub(crate) struct Accepted<H, S = TcpStream> {
    pub(crate) stream: S,
    pub(crate) peer: SocketAddr,
    pub(crate) general: GeneralPath<H>,
    pub(crate) ticket: Ticket,
    pub(crate) stop: CancellationToken,
}

impl TcpAdmission {
    pub(crate) fn new(options: TcpOptions) -> Arc<Self> {
        Arc::new(Self {
            options,
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table is consistent after every call; a panic elsewhere cannot leave it half-done.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lets a connection from `client` in (`allowed`: inside `--allow-query`), closing one that
    /// gives way when there is no room.
    pub(crate) fn admit(self: &Arc<Self>, client: IpAddr, allowed: bool) -> Admission {
        let mut table = self.table();
        let now = Instant::now();
        let stalled = self.options.idle_timeout;
        let mut evicted = false;
        let own = table.per_client.get(&client).copied().unwrap_or(0);
        let full = table.open.len() >= self.options.max_connections;
        if !allowed && (full || own >= self.options.max_per_client) {
            return Admission::Full;
        }
        if own >= self.options.max_per_client {
            match table.giving_way(now, stalled, |open| open.client == client) {
                Some(id) => evicted |= table.evict(id),
                None => return Admission::Full,
            }
        } else if full {
            match table.giving_way(now, stalled, |_| true) {
                Some(id) => evicted |= table.evict(id),
                None => return Admission::Full,
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let close = CancellationToken::new();
        table.open.insert(
            id,
            Open {
                client,
                state: Activity::Idle(now),
                refused: !allowed,
                close: close.clone(),
            },
        );
        *table.per_client.entry(client).or_default() += 1;
        Admission::Admitted {
            ticket: Ticket {
                id,
                admission: self.clone(),
                close,
            },
            evicted,
        }
    }

    /// How long a connection may wait for its next query now.
    pub(crate) fn idle_timeout(&self) -> Duration {
        let open = self.table().open.len();
        if open * 4 >= self.options.max_connections * 3 {
            self.options.idle_timeout.min(BUSY_IDLE_TIMEOUT)
        } else {
            self.options.idle_timeout
        }
    }

    fn set_idle(&self, id: u64, idle: bool) {
        if let Some(open) = self.table().open.get_mut(&id) {
            let now = Instant::now();
            open.state = match idle {
                true => Activity::Idle(now),
                false => Activity::Busy(now),
            };
        }
    }
}

impl Table {
    /// The connection that gives way among those `matching`: a refused client's first (the
    /// oldest), else the one idle the longest, counting one busy with a request for longer than
    /// `stalled` as idle since then.
    fn giving_way(
        &self,
        now: Instant,
        stalled: Duration,
        matching: impl Fn(&Open) -> bool,
    ) -> Option<u64> {
        let candidates = self.open.iter().filter(|(_, open)| matching(open));
        let refused = candidates
            .clone()
            .filter(|(_, open)| open.refused)
            .map(|(id, open)| (open.since(), *id))
            .min();
        refused
            .or_else(|| {
                candidates
                    .filter_map(|(id, open)| match open.state {
                        Activity::Idle(since) => Some((since, *id)),
                        Activity::Busy(since) if now.duration_since(since) >= stalled => {
                            Some((since + stalled, *id))
                        }
                        Activity::Busy(_) => None,
                    })
                    .min()
            })
            .map(|(_, id)| id)
    }

    /// Tells the connection to close and frees its place now.
    fn evict(&mut self, id: u64) -> bool {
        match self.remove(id) {
            Some(open) => {
                open.close.cancel();
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        if let Some(count) = self.per_client.get_mut(&open.client) {
            *count -= 1;
            if *count == 0 {
                self.per_client.remove(&open.client);
            }
        }
        Some(open)
    }
}

impl Open {
    fn since(&self) -> Instant {
        match self.state {
            Activity::Idle(since) | Activity::Busy(since) => since,
        }
    }
}

impl Ticket {
    /// The connection is answering a query: it is not idle and does not give way.
    pub(crate) fn busy(&self) {
        self.admission.set_idle(self.id, false);
    }

    /// The connection waits for its next query.
    pub(crate) fn idle(&self) {
        self.admission.set_idle(self.id, true);
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        self.admission.idle_timeout()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.table().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max: usize, per_client: usize) -> Arc<TcpAdmission> {
        TcpAdmission::new(TcpOptions {
            max_connections: max,
            max_per_client: per_client,
            idle_timeout: Duration::from_secs(10),
        })
    }

    fn ticket(admission: &Arc<TcpAdmission>, client: [u8; 4]) -> (Ticket, bool) {
        match admission.admit(IpAddr::from(client), true) {
            Admission::Admitted { ticket, evicted } => (ticket, evicted),
            Admission::Full => panic!("not admitted"),
        }
    }

    #[test]
    fn a_new_client_is_let_in_and_the_oldest_idle_connection_gives_way() {
        let admission = admission(4, 3);
        let mut hoarder = Vec::new();
        for _ in 0..3 {
            hoarder.push(ticket(&admission, [10, 0, 0, 1]));
            std::thread::sleep(Duration::from_millis(2));
        }
        let (other, evicted) = ticket(&admission, [10, 0, 0, 2]);
        assert!(!evicted);
        hoarder[0].0.busy();
        // Full: the next client takes the place of the connection idle the longest.
        let (_new, evicted) = ticket(&admission, [10, 0, 0, 3]);
        assert!(evicted);
        assert!(!hoarder[0].0.close.is_cancelled(), "busy answering: stays");
        assert!(hoarder[1].0.close.is_cancelled());
        assert!(!hoarder[2].0.close.is_cancelled() && !other.close.is_cancelled());
    }

    #[test]
    fn a_client_over_its_share_closes_its_own_connections_and_busy_ones_stay() {
        let admission = admission(100, 2);
        let (first, _) = ticket(&admission, [10, 0, 0, 1]);
        std::thread::sleep(Duration::from_millis(2));
        let (second, _) = ticket(&admission, [10, 0, 0, 1]);
        first.busy();
        let (_third, evicted) = ticket(&admission, [10, 0, 0, 1]);
        assert!(evicted);
        assert!(!first.close.is_cancelled(), "busy answering: stays");
        assert!(second.close.is_cancelled());
        second.busy();
        assert!(matches!(
            admission.admit(IpAddr::from([10, 0, 0, 1]), true),
            Admission::Admitted { evicted: true, .. }
        ));
    }

    #[test]
    fn only_busy_connections_refuse_a_newcomer_and_the_timeout_shrinks_when_full() {
        let admission = admission(2, 2);
        let (a, _) = ticket(&admission, [10, 0, 0, 1]);
        let (b, _) = ticket(&admission, [10, 0, 0, 2]);
        assert_eq!(a.idle_timeout(), BUSY_IDLE_TIMEOUT);
        a.busy();
        b.busy();
        assert!(matches!(
            admission.admit(IpAddr::from([10, 0, 0, 3]), true),
            Admission::Full
        ));
        drop(a);
        assert_eq!(b.idle_timeout(), Duration::from_secs(10));
        let (_c, evicted) = ticket(&admission, [10, 0, 0, 3]);
        assert!(!evicted);
    }

    #[test]
    fn a_refused_client_takes_no_place_and_a_stalled_request_gives_way() {
        let admission = TcpAdmission::new(TcpOptions {
            max_connections: 2,
            max_per_client: 2,
            idle_timeout: Duration::from_millis(30),
        });
        let refused = match admission.admit(IpAddr::from([192, 0, 2, 1]), false) {
            Admission::Admitted { ticket, .. } => ticket,
            Admission::Full => panic!("room for it"),
        };
        refused.busy();
        let (stalled, _) = ticket(&admission, [10, 0, 0, 1]);
        stalled.busy();
        // Full: another refused client gets nothing; an allowed one takes the refused place.
        assert!(matches!(
            admission.admit(IpAddr::from([192, 0, 2, 2]), false),
            Admission::Full
        ));
        let (allowed, evicted) = ticket(&admission, [10, 0, 0, 2]);
        assert!(evicted && refused.close.is_cancelled());
        allowed.busy();
        // Busy for longer than the idle timeout: a request that never arrived gives way.
        assert!(matches!(
            admission.admit(IpAddr::from([10, 0, 0, 3]), true),
            Admission::Full
        ));
        std::thread::sleep(Duration::from_millis(40));
        let (_late, evicted) = ticket(&admission, [10, 0, 0, 3]);
        assert!(evicted && stalled.close.is_cancelled());
    }
}
