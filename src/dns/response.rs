//! Writes a response to the wire, with or without name compression (Consul's
//! `disable_compression`), and queues it to the peer: hickory-server's own response handle
//! always compresses.

use std::net::SocketAddr;

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

/// Sends responses to one peer over one connection or socket.
#[derive(Clone)]
pub(crate) struct WireResponse {
    peer: SocketAddr,
    replies: BufDnsStreamHandle,
    protocol: Protocol,
    compress: bool,
}

impl WireResponse {
    pub(crate) fn new(
        peer: SocketAddr,
        replies: BufDnsStreamHandle,
        protocol: Protocol,
        compress: bool,
    ) -> Self {
        Self {
            peer,
            replies,
            protocol,
            compress,
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
        self.replies.send(SerialMessage::new(bytes, self.peer))?;
        Ok(info)
    }
}
