//! The general path: one DNS message, from any transport, through the request handler. UDP
//! hands it the messages the fast path leaves, TCP, DoT and DoH every message.
//!
//! As hickory-server's own loop treats a message: no header, no answer; a header but an
//! unreadable rest, FORMERR; a response, ignored (no reflection); else the handler, whose
//! answer is written by [`super::response::WireResponse`]. Every answer, FORMERR and the
//! SERVFAIL of a full general path included, leaves through the [`Gate`].

use std::{net::SocketAddr, sync::Arc, time::Instant};

use hickory_proto::{
    op::{Header, Message, MessageType, Metadata, Query, ResponseCode},
    rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption},
};
use hickory_server::{
    net::{BufDnsStreamHandle, DnsStreamHandle, runtime::TokioTime, xfer::Protocol},
    proto::{
        op::SerialMessage,
        serialize::binary::{BinDecodable, BinDecoder, BinEncodable},
    },
    server::{Request, RequestHandler},
};
use tokio::sync::OwnedSemaphorePermit;
use tracing::debug;

use super::response::{AskedBy, WireResponse};
use crate::cidr::ClientNet;
use crate::dns::gate::Transport;
use crate::dns::gate::{Asked, Count, Gate, Outgoing, cookie_well_formed, with_answer_notes};
use crate::wire::{question_end, udp_payload};

/// A request handler and how its answers are written; cheap to clone into each task.
pub(crate) struct GeneralPath<H> {
    handler: Arc<H>,
    /// Whether names in answers may be compressed (Consul's `disable_compression` off).
    compress: bool,
    gate: Arc<Gate>,
}

impl<H> Clone for GeneralPath<H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            compress: self.compress,
            gate: self.gate.clone(),
        }
    }
}

impl<H: RequestHandler> GeneralPath<H> {
    pub(crate) fn new(handler: Arc<H>, compress: bool, gate: Arc<Gate>) -> Self {
        Self {
            handler,
            compress,
            gate,
        }
    }

    /// Whether `peer` may ask, for itself or as a trusted forwarder (the gate's access step).
    pub(crate) fn admits(&self, peer: std::net::IpAddr) -> bool {
        self.gate.admits(peer)
    }

    /// Answers one message from `peer`, which arrived at `arrived`; the answer, if any, goes
    /// out through `replies`. `place` is its place among the questions in flight, taken here
    /// when the transport did not take it before.
    pub(crate) async fn answer(
        &self,
        bytes: Vec<u8>,
        peer: SocketAddr,
        replies: BufDnsStreamHandle,
        protocol: Protocol,
        arrived: Instant,
        place: Option<OwnedSemaphorePermit>,
    ) {
        let Some(_place) = place.or_else(|| self.gate.enter()) else {
            self.refuse_overloaded(&bytes, peer, replies, protocol, arrived);
            return;
        };
        let Ok(header) = Header::read(&mut BinDecoder::new(&bytes)) else {
            return;
        };
        // The question as it came, for dnstap (hickory keeps only what it decoded).
        let query = match self.gate.keeps_questions() {
            true => bytes.clone(),
            false => Vec::new(),
        };
        let request = match Request::from_bytes(bytes, peer, protocol) {
            Ok(request) if request.metadata.message_type == MessageType::Response => return,
            Ok(request) => request,
            Err(error) => {
                debug!(%peer, %error, ?protocol, "undecodable query");
                let reply = error_reply(&header.metadata, ResponseCode::FormErr, &None);
                let sent = Sent {
                    peer,
                    protocol,
                    arrived,
                    query: &query,
                };
                self.send_error(reply, None, replies, sent);
                return;
            }
        };
        // Read once here: who asked is the gate's record and the subnet answered with.
        let client = self.gate.client_of(peer.ip(), request.edns.as_ref());
        match (client, cookie_of(&request)) {
            (Ok(client), Ok(cookie)) => {
                let mut asked = asked_by(&request, client, cookie, protocol, arrived);
                asked.query = query;
                let response = WireResponse::new(replies, self.compress, self.gate.clone(), asked);
                let handling = self
                    .handler
                    .handle_request::<_, TokioTime>(&request, response);
                with_answer_notes(handling).await;
            }
            _ => {
                debug!(%peer, ?protocol, "malformed cookie or client subnet");
                let question = request
                    .queries
                    .queries()
                    .first()
                    .map(|q| q.original().clone());
                let reply = error_reply(&header.metadata, ResponseCode::FormErr, &question);
                let sent = Sent {
                    peer,
                    protocol,
                    arrived,
                    query: &query,
                };
                self.send_error(reply, question, replies, sent);
            }
        }
    }

    /// Answers `bytes` SERVFAIL at once: the general path has no place left for it.
    pub(crate) fn refuse_overloaded(
        &self,
        bytes: &[u8],
        peer: SocketAddr,
        replies: BufDnsStreamHandle,
        protocol: Protocol,
        arrived: Instant,
    ) {
        let Ok(message) = Message::from_vec(bytes) else {
            return;
        };
        if message.metadata.message_type == MessageType::Response {
            return;
        }
        let question = message.queries.first().cloned();
        let reply = error_reply(&message.metadata, ResponseCode::ServFail, &question);
        let query = match self.gate.keeps_questions() {
            true => bytes,
            false => &[],
        };
        let sent = Sent {
            peer,
            protocol,
            arrived,
            query,
        };
        self.send_error(reply, question, replies, sent);
    }

    /// Sends an answer made here (FORMERR, SERVFAIL) through the gate.
    fn send_error(
        &self,
        reply: Message,
        question: Option<Query>,
        mut replies: BufDnsStreamHandle,
        sent: Sent<'_>,
    ) {
        let Sent {
            peer,
            protocol,
            arrived,
            query,
        } = sent;
        let Ok(mut encoded) = reply.to_vec() else {
            return;
        };
        let name = question
            .as_ref()
            .and_then(|q| q.name().to_bytes().ok())
            .unwrap_or_default();
        let asked = Asked {
            peer,
            client: peer.ip(),
            transport: Transport::from(protocol),
            arrived,
            name_wire: &name,
            qtype: question.as_ref().map(|q| q.query_type()),
            udp_payload: udp_payload(None),
            cookie: None,
            query,
        };
        let outgoing = Outgoing {
            rcode: reply.metadata.response_code,
            question_end: question_end(&encoded),
            bytes: &mut encoded,
            fast: false,
            opt_at: None,
        };
        if self.gate.release(&asked, outgoing, Count::Now) {
            let _ = replies.send(SerialMessage::new(encoded, peer));
        }
    }
}

/// An answer made here to a message with `metadata`: `rcode`, its ID, opcode and RD, and its
/// question when it could be read.
fn error_reply(metadata: &Metadata, rcode: ResponseCode, question: &Option<Query>) -> Message {
    let mut reply = Message::error_msg(metadata.id, metadata.op_code, rcode);
    reply.metadata.recursion_desired = metadata.recursion_desired;
    if let Some(query) = question {
        reply.add_query(query.clone());
    }
    reply
}

/// Where a message came from, how, when, and as it came (empty when not kept).
struct Sent<'a> {
    peer: SocketAddr,
    protocol: Protocol,
    arrived: Instant,
    query: &'a [u8],
}

/// What the gate must know of `request`: who asked (as the gate read it), its cookie, its
/// question as parsed (the name in wire form, so that a name written with compression pointers
/// is keyed as any other) and its UDP size.
fn asked_by(
    request: &Request,
    (client, subnet): (ClientNet, Option<ClientSubnet>),
    cookie: Option<&[u8]>,
    protocol: Protocol,
    arrived: Instant,
) -> AskedBy {
    let question = request.request_info().ok().map(|info| info.query);
    AskedBy {
        peer: request.src(),
        client: client.address(),
        subnet,
        transport: Transport::from(protocol),
        arrived,
        name_wire: question
            .and_then(|query| query.original().name().to_bytes().ok())
            .unwrap_or_default(),
        qtype: question.map(|query| query.query_type()),
        udp_payload: udp_payload(request.edns.as_ref().map(|edns| edns.max_payload())),
        edns: request.edns.is_some(),
        nsid_requested: request
            .edns
            .as_ref()
            .is_some_and(|edns| edns.options().get(EdnsCode::NSID).is_some()),
        cookie: cookie.map(<[u8]>::to_vec),
        query: Vec::new(),
    }
}

/// The data of the request's COOKIE option, if it has one; `Err` when it is malformed (RFC
/// 7873 section 5.2.2: FORMERR).
fn cookie_of(request: &Request) -> Result<Option<&[u8]>, ()> {
    let option = request
        .edns
        .as_ref()
        .and_then(|edns| edns.options().get(EdnsCode::Cookie));
    match option {
        None => Ok(None),
        Some(EdnsOption::Unknown(_, data)) if cookie_well_formed(data.len()) => Ok(Some(data)),
        Some(_) => Err(()),
    }
}
