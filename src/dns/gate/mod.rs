//! The gate: the one place every question and every answer passes, whatever the transport (UDP
//! fast path, UDP general path, TCP, DoT, DoH) and whoever answered (the catalog, zone files,
//! recursors). In order:
//! 1. who asked (the peer, or the client subnet a trusted forwarder reports:
//!    [`Gate::client_of`]), access: `--allow-query` ([`Gate::allows`]; the handler renders
//!    REFUSED), and a place among the general path's questions in flight
//!    (`--max-concurrent-queries`; past it SERVFAIL, counted);
//! 2. the answer (elsewhere);
//! 3. DNS cookies: a fresh server cookie joins the answer to a client that sent a cookie, and
//!    a valid server cookie from the client is noted;
//! 4. its size for the transport: over UDP, the client's EDNS size, at most 1,232 bytes, TC
//!    beyond;
//! 5. response rate limiting (UDP), keyed on who asked and the parsed question: what cannot
//!    be keyed shares the strictest key of its network, it is never waved through; a client
//!    with a valid server cookie has proved its address and is not limited, and a limited
//!    client that sent a cookie gets BADCOOKIE with a server cookie where others get TC;
//! 6. the query log, dnstap and the metrics.
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

use hickory_proto::{
    op::{Edns, ResponseCode},
    rr::{
        RecordType,
        rdata::opt::{ClientSubnet, EdnsCode, EdnsOption},
    },
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

mod access;
mod cookies;
mod counts;
mod dnstap;
mod frame_streams;
mod notes;
mod query_log;
mod rate_limit;

pub(crate) use access::{ClientAccess, MalformedSubnet, reported_on_wire};
pub(crate) use cookies::well_formed as cookie_well_formed;
pub(crate) use counts::{DnsMetrics, FastTally, LatencyCollector};
pub(crate) use dnstap::{Dnstap, Kind as DnstapKind, Seen, wall_time};
pub(crate) use notes::{
    ExtendedError, client_scope, mark_client_dependent, note_extended_error,
    noting_client_dependence, take_extended_error, with_answer_notes,
};
pub(crate) use query_log::{QueryLog, Transport};
pub(crate) use rate_limit::RateLimiter;

use cookies::{ANSWER_COOKIE_LEN, CookieCheck, Cookies};
use query_log::Entry;
use rate_limit::{AnswerKey, Verdict};

use crate::cidr::ClientNet;
use crate::wire::{
    OPTION_COOKIE, append_edns_option, append_edns_option_at, truncate_to_question,
    write_bad_cookie,
};

/// What the gate holds; one for the whole server.
pub(crate) struct Gate {
    access: ClientAccess,
    limiter: Arc<RateLimiter>,
    metrics: Arc<DnsMetrics>,
    query_log: Option<QueryLog>,
    dnstap: Option<Dnstap>,
    in_flight: Arc<Semaphore>,
    /// What answers name this server as (NSID), to clients that ask.
    nsid: Option<Vec<u8>>,
    /// Server cookies, unless cookies are not answered.
    cookies: Option<Cookies>,
    /// Questions answered SERVFAIL because the general path was full.
    over_capacity: AtomicU64,
    /// Questions with a valid server cookie, and with a client cookie only.
    cookies_valid: AtomicU64,
    cookies_client_only: AtomicU64,
}

/// What the gate knows of one question: where it came from, how, when, and what it asked (the
/// name in wire form, any case; empty when the message could not be read).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked<'a> {
    pub(crate) peer: SocketAddr,
    /// Who asked: `peer`'s address, or the client subnet a trusted forwarder reported.
    pub(crate) client: IpAddr,
    pub(crate) transport: Transport,
    pub(crate) arrived: Instant,
    pub(crate) name_wire: &'a [u8],
    pub(crate) qtype: Option<RecordType>,
    /// The UDP size the client takes (its EDNS size within bounds, else 512).
    pub(crate) udp_payload: u16,
    /// The data of the question's COOKIE option (well formed), if it sent one.
    pub(crate) cookie: Option<&'a [u8]>,
    /// The question as it came (for dnstap; empty when not kept).
    pub(crate) query: &'a [u8],
}

/// An encoded answer on its way out.
pub(crate) struct Outgoing<'a> {
    pub(crate) bytes: &'a mut Vec<u8>,
    pub(crate) rcode: ResponseCode,
    /// Where the question section ends in `bytes` (for a TC answer cut to it).
    pub(crate) question_end: Option<usize>,
    /// Answered from pre-encoded bytes (the UDP fast path).
    pub(crate) fast: bool,
    /// Where the answer's OPT record starts, when its writer knows it is the last record;
    /// `None`: found by reading the answer.
    pub(crate) opt_at: Option<usize>,
}

/// Where answered questions are recorded, besides the metrics.
#[derive(Default)]
pub(crate) struct Records {
    pub(crate) query_log: Option<QueryLog>,
    pub(crate) dnstap: Option<Dnstap>,
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
        records: Records,
        max_in_flight: usize,
        nsid: Option<Vec<u8>>,
        cookie_secret: Option<[u8; 16]>,
    ) -> Self {
        Self {
            access,
            limiter,
            metrics,
            query_log: records.query_log,
            dnstap: records.dnstap,
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            nsid,
            cookies: cookie_secret.map(Cookies::new),
            over_capacity: AtomicU64::new(0),
            cookies_valid: AtomicU64::new(0),
            cookies_client_only: AtomicU64::new(0),
        }
    }

    /// Room an answer to a question with `cookie` must leave for the server cookie.
    pub(crate) fn cookie_room(&self, cookie: Option<&[u8]>) -> usize {
        match (&self.cookies, cookie) {
            (Some(_), Some(_)) => 4 + ANSWER_COOKIE_LEN,
            _ => 0,
        }
    }

    /// Questions that came with a valid server cookie, and with a client cookie only, since
    /// start.
    pub(crate) fn cookie_counts(&self) -> (u64, u64) {
        (
            self.cookies_valid.load(Ordering::Relaxed),
            self.cookies_client_only.load(Ordering::Relaxed),
        )
    }

    /// What answers name this server as, to clients that ask (`--nsid`).
    pub(crate) fn nsid(&self) -> Option<&[u8]> {
        self.nsid.as_deref()
    }

    /// dnstap messages written and dropped since start; `None` when dnstap is off.
    pub(crate) fn dnstap_counts(&self) -> Option<(u64, u64)> {
        self.dnstap.as_ref().map(Dnstap::counts)
    }

    /// Whether questions are kept as they came, for dnstap.
    pub(crate) fn keeps_questions(&self) -> bool {
        self.dnstap.is_some()
    }

    /// Whether `client` may be answered at all (`--allow-query`).
    pub(crate) fn allows(&self, client: ClientNet) -> bool {
        self.access.allows(client)
    }

    /// Whether `peer`'s client subnet options are believed (`--trust-client-subnet`).
    pub(crate) fn trusts(&self, peer: IpAddr) -> bool {
        self.access.trusts(peer)
    }

    /// Whether `peer` may ask, for itself or, as a trusted forwarder, for its clients.
    pub(crate) fn admits(&self, peer: IpAddr) -> bool {
        self.access.admits(peer)
    }

    /// Who asked a question `peer` sent with `edns`, and the client subnet option to answer
    /// with (a trusted forwarder's); `Err`: that option is malformed (FORMERR).
    pub(crate) fn client_of(
        &self,
        peer: IpAddr,
        edns: Option<&Edns>,
    ) -> Result<(ClientNet, Option<ClientSubnet>), MalformedSubnet> {
        let subnet = edns.and_then(|edns| match edns.options().get(EdnsCode::Subnet) {
            Some(EdnsOption::Subnet(subnet)) => Some(subnet),
            _ => None,
        });
        self.access.client(peer, subnet)
    }

    /// `None` when answers do not depend on who asks whatever the catalog says (no
    /// `--allow-query`), else how much of `client`'s address decides whether it is answered.
    pub(crate) fn access_scope(&self, client: ClientNet) -> Option<u8> {
        (!self.access.is_open()).then(|| self.access.scope(client))
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

    /// Step 3: what the question's cookie proves, and the answer's cookie for the client,
    /// joined to the answer's OPT record when room is left.
    fn answer_cookie(
        &self,
        asked: &Asked<'_>,
        bytes: &mut Vec<u8>,
        opt_at: Option<usize>,
    ) -> (CookieCheck, Option<[u8; ANSWER_COOKIE_LEN]>) {
        let (Some(cookies), Some(option)) = (&self.cookies, asked.cookie) else {
            return (CookieCheck::Absent, None);
        };
        let client = asked.peer.ip();
        let check = cookies.check(client, option);
        let counter = match check {
            CookieCheck::Valid => &self.cookies_valid,
            _ => &self.cookies_client_only,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let ours = cookies.answer(client, option);
        if let Some(ours) = &ours {
            // TCP answers have no size to keep to; a UDP answer past its size is cut anyway.
            let limit = usize::from(u16::MAX);
            let _ = match opt_at {
                Some(at) => append_edns_option_at(bytes, at, OPTION_COOKIE, ours, limit),
                None => append_edns_option(bytes, OPTION_COOKIE, ours, limit),
            };
        }
        (check, ours)
    }

    /// Steps 3 to 6 for one answer: returns whether it goes out (it may have been cut to its
    /// question, with TC, or rewritten to BADCOOKIE).
    pub(crate) fn release(&self, asked: &Asked<'_>, out: Outgoing<'_>, count: Count<'_>) -> bool {
        let Outgoing {
            bytes,
            mut rcode,
            question_end,
            fast,
            opt_at,
        } = out;
        let (cookie_check, our_cookie) = self.answer_cookie(asked, bytes, opt_at);
        let udp = asked.transport == Transport::Udp;
        // A whole answer within the client's size, whoever wrote it; past it, TC (RFC 1035
        // 4.2.1, RFC 6891 6.2.5): the client asks again over TCP.
        if udp && bytes.len() > usize::from(asked.udp_payload) {
            truncate_to_question(bytes, question_end);
        }
        let sent = match udp {
            false => true,
            // The client has proved its address: no reflection to limit.
            true if cookie_check == CookieCheck::Valid => true,
            true => {
                let key = AnswerKey {
                    name_wire: asked.name_wire,
                    qtype: asked.qtype.map_or(0, u16::from),
                    rcode,
                };
                match self.limiter.check(asked.client, &key) {
                    Verdict::Send => true,
                    Verdict::Slip => {
                        match our_cookie {
                            // RFC 7873 5.2.3: it retries with the cookie, and is let through.
                            Some(cookie) => {
                                write_bad_cookie(bytes, question_end, &cookie);
                                rcode = ResponseCode::BADCOOKIE;
                            }
                            None => truncate_to_question(bytes, question_end),
                        }
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
        if let Some(dnstap) = &self.dnstap {
            record_client_messages(dnstap, asked, sent.then_some(bytes.as_slice()));
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

/// The client's question and, when one went out, the answer, as dnstap records them.
fn record_client_messages(dnstap: &Dnstap, asked: &Asked<'_>, answer: Option<&[u8]>) {
    let seen = |kind, message| Seen {
        kind,
        transport: asked.transport,
        query_address: Some(asked.peer),
        response_address: None,
        query_time: wall_time(asked.arrived),
        response_time: Some(std::time::SystemTime::now()),
        message,
    };
    if !asked.query.is_empty() {
        dnstap.record(&seen(DnstapKind::ClientQuery, asked.query));
    }
    if let Some(answer) = answer {
        dnstap.record(&seen(DnstapKind::ClientResponse, answer));
    }
}
