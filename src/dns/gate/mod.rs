//! The gate: the one place every question and every answer passes, whatever the transport (UDP
//! fast path, UDP general path, TCP, DoT, DoH) and whoever answered (the catalog, zone files,
//! recursors). In order:
//! 1. admission and access: `--allow-query` ([`Gate::allows`]; the handler renders REFUSED),
//!    and a place among the general path's questions in flight (`--max-concurrent-queries`;
//!    past it SERVFAIL, counted);
//! 2. the answer (elsewhere);
//! 3. its size for the transport: over UDP, the client's EDNS size, at most 1,232 bytes, TC
//!    beyond;
//! 4. response rate limiting (UDP), keyed on the parsed question: what cannot be keyed shares
//!    the strictest key of its network, it is never waved through;
//! 5. the query log and the metrics.
//!
//! A transport or an answer source added later gets every step by handing its answers here.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use hickory_proto::{op::ResponseCode, rr::RecordType};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

mod access;
mod counts;
mod notes;
mod query_log;
mod rate_limit;

pub(crate) use access::ClientAccess;
pub(crate) use counts::{DnsMetrics, FastTally, LatencyCollector};
pub(crate) use notes::{
    ExtendedError, mark_client_dependent, note_extended_error, noting_client_dependence,
    take_extended_error, with_extended_errors,
};
pub(crate) use query_log::{QueryLog, Transport};
pub(crate) use rate_limit::RateLimiter;

use query_log::Entry;
use rate_limit::{AnswerKey, Verdict};

use crate::wire::truncate_to_question;

/// What the gate holds; one for the whole server.
pub(crate) struct Gate {
    access: ClientAccess,
    limiter: Arc<RateLimiter>,
    metrics: Arc<DnsMetrics>,
    query_log: Option<QueryLog>,
    in_flight: Arc<Semaphore>,
    /// What answers name this server as (NSID), to clients that ask.
    nsid: Option<Vec<u8>>,
    /// Questions answered SERVFAIL because the general path was full.
    over_capacity: AtomicU64,
}

/// What the gate knows of one question: where it came from, how, when, and what it asked (the
/// name in wire form, any case; empty when the message could not be read).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked<'a> {
    pub(crate) peer: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) arrived: Instant,
    pub(crate) name_wire: &'a [u8],
    pub(crate) qtype: Option<RecordType>,
    /// The UDP size the client takes (its EDNS size within bounds, else 512).
    pub(crate) udp_payload: u16,
}

/// An encoded answer on its way out.
pub(crate) struct Outgoing<'a> {
    pub(crate) bytes: &'a mut Vec<u8>,
    pub(crate) rcode: ResponseCode,
    /// Where the question section ends in `bytes` (for a TC answer cut to it).
    pub(crate) question_end: Option<usize>,
    /// Answered from pre-encoded bytes (the UDP fast path).
    pub(crate) fast: bool,
}

/// Where the answer's metrics go: now, or into a batch the caller adds up once.
pub(crate) enum Count<'a> {
    Now,
    Batch(&'a mut FastTally),
}

impl Gate {
    pub(crate) fn new(
        access: ClientAccess,
        limiter: Arc<RateLimiter>,
        metrics: Arc<DnsMetrics>,
        query_log: Option<QueryLog>,
        max_in_flight: usize,
        nsid: Option<Vec<u8>>,
    ) -> Self {
        Self {
            access,
            limiter,
            metrics,
            query_log,
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            nsid,
            over_capacity: AtomicU64::new(0),
        }
    }

    /// What answers name this server as, to clients that ask (`--nsid`).
    pub(crate) fn nsid(&self) -> Option<&[u8]> {
        self.nsid.as_deref()
    }

    /// Whether `client` may be answered at all (`--allow-query`).
    pub(crate) fn allows(&self, client: IpAddr) -> bool {
        self.access.allows(client)
    }

    /// Whether answers depend on who asks whatever the catalog says (`--allow-query` set).
    pub(crate) fn access_restricted(&self) -> bool {
        !self.access.is_open()
    }

    /// A place for one question on the general path; `None` when they are all taken (the
    /// question is then answered SERVFAIL at once, and counted).
    pub(crate) fn enter(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.in_flight.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.over_capacity.fetch_add(1, Ordering::Relaxed);
        }
        permit
    }

    /// Questions answered SERVFAIL because the general path was full, since start.
    pub(crate) fn over_capacity(&self) -> u64 {
        self.over_capacity.load(Ordering::Relaxed)
    }

    /// Adds a batch of the fast path's answers to the metrics.
    pub(crate) fn add_batch(&self, tally: &mut FastTally) {
        self.metrics.add_fast(tally);
    }

    /// Steps 3 to 5 for one answer: returns whether it goes out (it may have been cut to its
    /// question, with TC).
    pub(crate) fn release(&self, asked: &Asked<'_>, out: Outgoing<'_>, count: Count<'_>) -> bool {
        let Outgoing {
            bytes,
            rcode,
            question_end,
            fast,
        } = out;
        let udp = asked.transport == Transport::Udp;
        // A whole answer within the client's size, whoever wrote it; past it, TC (RFC 1035
        // 4.2.1, RFC 6891 6.2.5): the client asks again over TCP.
        if udp && bytes.len() > usize::from(asked.udp_payload) {
            truncate_to_question(bytes, question_end);
        }
        let sent = match udp {
            false => true,
            true => {
                let key = AnswerKey {
                    name_wire: asked.name_wire,
                    qtype: asked.qtype.map_or(0, u16::from),
                    rcode,
                };
                match self.limiter.check(asked.peer.ip(), &key) {
                    Verdict::Send => true,
                    Verdict::Slip => {
                        truncate_to_question(bytes, question_end);
                        true
                    }
                    Verdict::Drop => false,
                }
            }
        };
        let took = asked.arrived.elapsed();
        match count {
            Count::Now => self.metrics.observe(asked.qtype, rcode, took),
            Count::Batch(tally) => {
                tally.record(asked.qtype.unwrap_or(RecordType::NULL), rcode, took)
            }
        }
        if let Some(log) = &self.query_log {
            let answers = bytes
                .get(6..8)
                .map_or(0, |count| u16::from_be_bytes([count[0], count[1]]));
            log.record(Entry::new(
                asked.peer,
                asked.transport,
                asked.name_wire,
                asked.qtype.map_or(0, u16::from),
                rcode,
                answers,
                fast,
                took,
            ));
        }
        sent
    }
}
