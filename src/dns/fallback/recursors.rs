//! Forwarding to the `--recursor`s the way Consul does: one upstream at a time, each given
//! `recursor_timeout`, the next one tried when it fails. Each upstream is hickory's own
//! forwarder; this only chains them, because hickory's pool gives all its servers together one
//! timeout, so a dead first upstream would hide a live second one.

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use hickory_proto::rr::{LowerName, Name, RecordType, TSigResponseContext};
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
    dns::gate::{ExtendedError, note_extended_error},
};

pub(crate) struct RecursorChain {
    origin: LowerName,
    upstreams: Vec<ForwardZoneHandler>,
    strategy: RecursorStrategy,
    /// Places for questions outstanding upstream: each holds a socket for up to the timeout,
    /// so a flood of names a recursor does not answer cannot take every descriptor.
    outstanding: Arc<tokio::sync::Semaphore>,
    /// Questions answered SERVFAIL at once because every place was taken.
    refused: AtomicU64,
}

impl RecursorChain {
    pub(crate) fn new(recursors: &Recursors) -> Result<Self, String> {
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
            strategy: recursors.strategy,
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
            let upstream = &self.upstreams[(first + offset) % count];
            last = upstream
                .lookup(name, rtype, request_info, lookup_options)
                .await;
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
