//! Writes a response to the wire, with or without name compression (Consul's
//! `disable_compression`), and queues it to the peer: hickory-server's own response handle
//! always compresses.

use std::{net::SocketAddr, sync::Arc};

use hickory_proto::{
    ProtoError,
    op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode},
    rr::Record,
    serialize::binary::{BinEncodable, BinEncoder, NameEncoding},
};
use hickory_server::{
    net::{BufDnsStreamHandle, DnsStreamHandle, NetError, xfer::Protocol},
    proto::op::SerialMessage,
    server::{ResponseHandler, ResponseInfo},
    zone_handler::MessageResponse,
};
use tracing::error;

use super::{
    rate_limit::{AnswerKey, RateLimiter, Verdict},
    wire::{HEADER_LEN, question_end, truncate_to_question},
};

/// Sends responses to one peer over one connection or socket.
#[derive(Clone)]
pub(crate) struct WireResponse {
    peer: SocketAddr,
    replies: BufDnsStreamHandle,
    protocol: Protocol,
    compress: bool,
    /// Response rate limiting, for UDP answers.
    limiter: Arc<RateLimiter>,
}

impl WireResponse {
    pub(crate) fn new(
        peer: SocketAddr,
        replies: BufDnsStreamHandle,
        protocol: Protocol,
        compress: bool,
        limiter: Arc<RateLimiter>,
    ) -> Self {
        Self {
            peer,
            replies,
            protocol,
            compress,
            limiter,
        }
    }

    /// Applies rate limiting to an encoded UDP answer: `false` when it must not go out, and
    /// the answer cut to its question when it is sent truncated instead.
    fn rate_limited(&self, bytes: &mut Vec<u8>, rcode: ResponseCode) -> bool {
        if self.protocol != Protocol::Udp || self.limiter.exempts(self.peer.ip()) {
            return true;
        }
        let Some(end) = question_end(bytes) else {
            return true;
        };
        let key = AnswerKey {
            name_wire: &bytes[HEADER_LEN..end - 4],
            qtype: u16::from_be_bytes([bytes[end - 4], bytes[end - 3]]),
            rcode,
        };
        match self.limiter.check(self.peer.ip(), &key) {
            Verdict::Send => true,
            Verdict::Slip => {
                truncate_to_question(bytes, end);
                true
            }
            Verdict::Drop => false,
        }
    }
}

/// A bare SERVFAIL with the ID `id`, written into `bytes` (emptied first).
fn servfail(id: u16, bytes: &mut Vec<u8>) -> Result<ResponseInfo, ProtoError> {
    bytes.clear();
    let mut encoder = BinEncoder::new(bytes);
    let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
    metadata.response_code = ResponseCode::ServFail;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    header.emit(&mut encoder)?;
    Ok(ResponseInfo::from(header))
}

#[async_trait::async_trait]
impl ResponseHandler for WireResponse {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // Within the client's UDP size (hickory truncates with TC); a response that cannot be
        // encoded becomes a SERVFAIL with the same ID.
        let id = response.metadata().id;
        let rcode = response.metadata().response_code;
        let max_size = match self.protocol {
            Protocol::Udp => response.edns().map_or(512, |edns| edns.max_payload()),
            _ => u16::MAX,
        };
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_size);
        if !self.compress {
            encoder.set_name_encoding(NameEncoding::Uncompressed);
        }
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(failure) => {
                error!(error = %failure, "cannot encode a response; answering SERVFAIL");
                servfail(id, &mut bytes)?
            }
        };
        if self.rate_limited(&mut bytes, rcode) {
            self.replies.send(SerialMessage::new(bytes, self.peer))?;
        }
        Ok(info)
    }
}
