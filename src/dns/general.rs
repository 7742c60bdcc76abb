//! The general path: one DNS message, from any transport, through the request handler. UDP
//! hands it the messages the fast path leaves, TCP every message.
//!
//! As hickory-server's own loop treats a message: no header, no answer; a header but an
//! unreadable rest, FORMERR; a response, ignored (no reflection); else the handler, whose
//! answer is written by [`super::response::WireResponse`].

use std::{net::SocketAddr, sync::Arc};

use hickory_proto::op::{Header, Message, MessageType, ResponseCode};
use hickory_server::{
    net::{BufDnsStreamHandle, DnsStreamHandle, runtime::TokioTime, xfer::Protocol},
    proto::{
        op::SerialMessage,
        serialize::binary::{BinDecodable, BinDecoder},
    },
    server::{Request, RequestHandler},
};
use tracing::debug;

use super::{
    rate_limit::{AnswerKey, RateLimiter, Verdict},
    response::WireResponse,
};

/// A request handler and how its answers are written; cheap to clone into each task.
pub(crate) struct GeneralPath<H> {
    handler: Arc<H>,
    /// Whether names in answers may be compressed (Consul's `disable_compression` off).
    compress: bool,
    /// Response rate limiting of UDP answers.
    limiter: Arc<RateLimiter>,
}

impl<H> Clone for GeneralPath<H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            compress: self.compress,
            limiter: self.limiter.clone(),
        }
    }
}

impl<H: RequestHandler> GeneralPath<H> {
    pub(crate) fn new(handler: Arc<H>, compress: bool, limiter: Arc<RateLimiter>) -> Self {
        Self {
            handler,
            compress,
            limiter,
        }
    }

    /// Answers one message from `peer`; the answer, if any, goes out through `replies`.
    pub(crate) async fn answer(
        &self,
        bytes: Vec<u8>,
        peer: SocketAddr,
        mut replies: BufDnsStreamHandle,
        protocol: Protocol,
    ) {
        let Ok(header) = Header::read(&mut BinDecoder::new(&bytes)) else {
            return;
        };
        match Request::from_bytes(bytes, peer, protocol) {
            Ok(request) if request.metadata.message_type == MessageType::Response => {}
            Ok(request) => {
                let limiter = self.limiter.clone();
                let response = WireResponse::new(peer, replies, protocol, self.compress, limiter);
                self.handler
                    .handle_request::<_, TokioTime>(&request, response)
                    .await;
            }
            Err(error) => {
                debug!(%peer, %error, ?protocol, "undecodable query");
                let mut reply = Message::error_msg(
                    header.metadata.id,
                    header.metadata.op_code,
                    ResponseCode::FormErr,
                );
                reply.metadata.recursion_desired = header.metadata.recursion_desired;
                // A FORMERR is no larger than the packet, but a spoofed flood of junk must not
                // be echoed at full rate either.
                let key = AnswerKey {
                    name_wire: &[],
                    qtype: 0,
                    rcode: ResponseCode::FormErr,
                };
                let limited = protocol == Protocol::Udp
                    && self.limiter.check(peer.ip(), &key) == Verdict::Drop;
                if limited {
                    return;
                }
                if let Ok(encoded) = reply.to_vec() {
                    let _ = replies.send(SerialMessage::new(encoded, peer));
                }
            }
        }
    }
}
