//! Forwarding to the `--recursor`s the way Consul does: one upstream at a time, each given
//! `recursor_timeout`, the next one tried when it fails. Each upstream is hickory's own
//! forwarder; this only chains them, because hickory's pool gives all its servers together one
//! timeout, so a dead first upstream would hide a live second one. With dnstap on, each
//! question to an upstream and what came back are recorded (FORWARDER_QUERY/RESPONSE): hickory
//! keeps no wire bytes of its exchange, so the messages are written from the question and the
//! records it returned (ID 0, the upstream's own bytes and flags not kept).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::SystemTime,
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{LowerName, Name, RecordType, TSigResponseContext},
};
use hickory_server::{
    net::NetError,
    resolver::config::{NameServerConfig, ResolverOpts},
    server::{Request, RequestInfo},
    store::forwarder::{ForwardConfig, ForwardZoneHandler},
    zone_handler::{
        AuthLookup, AxfrPolicy, LookupControlFlow, LookupError, LookupOptions, ZoneHandler,
        ZoneType,
    },
};

use crate::{
    config::{RecursorStrategy, Recursors},
    dns::gate::{Dnstap, DnstapKind, ExtendedError, Seen, Transport, note_extended_error},
};

pub(crate) struct RecursorChain {
    origin: LowerName,
    upstreams: Vec<ForwardZoneHandler>,
    /// Each upstream's address, in the order of `upstreams`.
    addrs: Vec<SocketAddr>,
    strategy: RecursorStrategy,
    dnstap: Option<Dnstap>,
    /// Places for questions outstanding upstream: each holds a socket for up to the timeout,
    /// so a flood of names a recursor does not answer cannot take every descriptor.
    outstanding: Arc<tokio::sync::Semaphore>,
    /// Questions answered SERVFAIL at once because every place was taken.
    refused: AtomicU64,
}

impl RecursorChain {
    pub(crate) fn new(recursors: &Recursors, dnstap: Option<Dnstap>) -> Result<Self, String> {
        let upstreams = recursors
            .addrs
            .iter()
            .map(|addr| {
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                let mut options = ResolverOpts::default();
                options.timeout = recursors.timeout;
                // One try: the next upstream is the retry.
                options.attempts = 0;
                let config = ForwardConfig {
                    name_servers: vec![server],
                    options: Some(options),
                };
                ForwardZoneHandler::builder_tokio(config)
                    .build()
                    .map_err(|e| format!("--recursor {addr}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            origin: LowerName::from(Name::root()),
            upstreams,
            addrs: recursors.addrs.clone(),
            strategy: recursors.strategy,
            dnstap,
            outstanding: Arc::new(tokio::sync::Semaphore::new(
                recursors.max_outstanding.max(1),
            )),
            refused: AtomicU64::new(0),
        })
    }

    /// Questions answered SERVFAIL because every place upstream was taken, since start.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The first upstream to ask: always the first for `sequential`, a random one for `random`.
    fn first(&self) -> usize {
        match self.strategy {
            RecursorStrategy::Sequential => 0,
            RecursorStrategy::Random => {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                // Spreading evenly is what `random` is for; a counter does that without an RNG
                // on the query path.
                NEXT.fetch_add(1, Ordering::Relaxed) % self.upstreams.len().max(1)
            }
        }
    }
}

/// A forwarded question and what came back, as dnstap records them.
fn record_forwarded(
    dnstap: &Dnstap,
    upstream: SocketAddr,
    name: &LowerName,
    rtype: RecordType,
    asked_at: SystemTime,
    result: &LookupControlFlow<AuthLookup>,
) {
    let mut message = Message::new(0, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from(name), rtype));
    let record = |kind, message: &[u8]| {
        dnstap.record(&Seen {
            kind,
            transport: Transport::Udp,
            query_address: None,
            response_address: Some(upstream),
            query_time: asked_at,
            response_time: Some(SystemTime::now()),
            message,
        });
    };
    if let Ok(query) = message.to_vec() {
        record(DnstapKind::ForwarderQuery, &query);
    }
    let (rcode, records) = match result {
        LookupControlFlow::Continue(Ok(lookup)) | LookupControlFlow::Break(Ok(lookup)) => {
            (ResponseCode::NoError, lookup.iter().cloned().collect())
        }
        LookupControlFlow::Continue(Err(e)) | LookupControlFlow::Break(Err(e))
            if e.is_nx_domain() =>
        {
            (ResponseCode::NXDomain, Vec::new())
        }
        LookupControlFlow::Continue(Err(e)) | LookupControlFlow::Break(Err(e))
            if e.is_no_records_found() =>
        {
            (ResponseCode::NoError, Vec::new())
        }
        // Nothing came back (a timeout, a network error): no response to record.
        _ => return,
    };
    message.metadata.message_type = MessageType::Response;
    message.metadata.response_code = rcode;
    message.metadata.recursion_available = true;
    message.add_answers(records);
    if let Ok(response) = message.to_vec() {
        record(DnstapKind::ForwarderResponse, &response);
    }
}

/// Whether an upstream's result settles the question: data, or a negative answer it gave.
fn is_answer(result: &LookupControlFlow<AuthLookup>) -> bool {
    match result {
        LookupControlFlow::Continue(Ok(_)) | LookupControlFlow::Break(Ok(_)) => true,
        LookupControlFlow::Continue(Err(e)) | LookupControlFlow::Break(Err(e)) => {
            is_negative_answer(e)
        }
        LookupControlFlow::Skip => false,
    }
}

fn is_negative_answer(error: &LookupError) -> bool {
    error.is_nx_domain() || error.is_no_records_found()
}

#[async_trait::async_trait]
impl ZoneHandler for RecursorChain {
    fn zone_type(&self) -> ZoneType {
        ZoneType::External
    }

    fn axfr_policy(&self) -> AxfrPolicy {
        AxfrPolicy::Deny
    }

    fn origin(&self) -> &LowerName {
        &self.origin
    }

    async fn lookup(
        &self,
        name: &LowerName,
        rtype: RecordType,
        request_info: Option<&RequestInfo<'_>>,
        lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        let Ok(_place) = self.outstanding.try_acquire() else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            note_extended_error(ExtendedError::RECURSORS_BUSY);
            return LookupControlFlow::Break(Err(LookupError::from(std::io::Error::other(
                "too many questions outstanding to the recursors",
            ))));
        };
        let first = self.first();
        let count = self.upstreams.len();
        let mut last = LookupControlFlow::Skip;
        for offset in 0..count {
            let index = (first + offset) % count;
            let upstream = &self.upstreams[index];
            let asked_at = SystemTime::now();
            last = upstream
                .lookup(name, rtype, request_info, lookup_options)
                .await;
            if let (Some(dnstap), Some(addr)) = (&self.dnstap, self.addrs.get(index)) {
                record_forwarded(dnstap, *addr, name, rtype, asked_at, &last);
            }
            if is_answer(&last) {
                return last;
            }
        }
        // No recursor answered: say why, as Extended DNS Errors 22 and 23 do.
        let timed_out = match &last {
            LookupControlFlow::Continue(Err(e)) | LookupControlFlow::Break(Err(e)) => matches!(
                e,
                LookupError::NetError(NetError::Timeout | NetError::NoConnections)
            ),
            _ => true,
        };
        note_extended_error(match timed_out {
            true => ExtendedError::NO_REACHABLE_AUTHORITY,
            false => ExtendedError::NETWORK_ERROR,
        });
        last
    }

    async fn search(
        &self,
        request: &Request,
        lookup_options: LookupOptions,
    ) -> (LookupControlFlow<AuthLookup>, Option<TSigResponseContext>) {
        let request_info = match request.request_info() {
            Ok(info) => info,
            Err(e) => return (LookupControlFlow::Break(Err(e)), None),
        };
        let result = self
            .lookup(
                request_info.query.name(),
                request_info.query.query_type(),
                Some(&request_info),
                lookup_options,
            )
            .await;
        (result, None)
    }

    async fn nsec_records(
        &self,
        _name: &LowerName,
        _lookup_options: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        LookupControlFlow::Continue(Err(LookupError::from(std::io::Error::other(
            "NSEC records are not forwarded",
        ))))
    }
}
