//! Writes a response to the wire, with or without name compression (Consul's
//! `disable_compression`), hands it to the [`Gate`] and queues it to the peer: hickory-server's
//! own response handle always compresses, and sizes a UDP answer by what the response says
//! (a forwarded answer echoes the client's 65,535), not by what the client may be sent.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Instant,
};

use hickory_proto::{
    ProtoError,
    op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode},
    rr::{Record, RecordType, rdata::opt::ClientSubnet},
    serialize::binary::{BinEncodable, BinEncoder, NameEncoding},
};
use hickory_server::{
    net::{BufDnsStreamHandle, DnsStreamHandle, NetError},
    proto::op::SerialMessage,
    server::{ResponseHandler, ResponseInfo},
    zone_handler::MessageResponse,
};
use tracing::error;

use crate::dns::gate::Transport;
use crate::dns::gate::{Asked, Count, Gate, Outgoing, client_scope, take_extended_error};
use crate::wire::{
    OPTION_CLIENT_SUBNET, OPTION_EDE, OPTION_NSID, append_edns_option, question_end,
};

/// The question a response answers, as the gate needs it (owned: it outlives the request).
#[derive(Debug, Clone)]
pub(crate) struct AskedBy {
    pub(crate) peer: SocketAddr,
    /// Who asked: the peer's address, or the client subnet a trusted forwarder reported.
    pub(crate) client: IpAddr,
    /// A trusted forwarder's client subnet option, answered with its scope (RFC 7871).
    pub(crate) subnet: Option<ClientSubnet>,
    pub(crate) transport: Transport,
    pub(crate) arrived: Instant,
    pub(crate) name_wire: Vec<u8>,
    pub(crate) qtype: Option<RecordType>,
    pub(crate) udp_payload: u16,
    /// Whether the question came with EDNS (options in the answer need it).
    pub(crate) edns: bool,
    /// Whether it asked for the server's identifier (NSID, RFC 5001).
    pub(crate) nsid_requested: bool,
    /// The data of its COOKIE option (well formed), if it sent one.
    pub(crate) cookie: Option<Vec<u8>>,
    /// The question as it came, when kept (for dnstap).
    pub(crate) query: Vec<u8>,
}

impl AskedBy {
    fn borrowed(&self) -> Asked<'_> {
        Asked {
            peer: self.peer,
            client: self.client,
            transport: self.transport,
            arrived: self.arrived,
            name_wire: &self.name_wire,
            qtype: self.qtype,
            udp_payload: self.udp_payload,
            cookie: self.cookie.as_deref(),
            query: &self.query,
        }
    }
}

/// Sends the response to one question.
#[derive(Clone)]
pub(crate) struct WireResponse {
    replies: BufDnsStreamHandle,
    compress: bool,
    gate: Arc<Gate>,
    asked: AskedBy,
}

impl WireResponse {
    pub(crate) fn new(
        replies: BufDnsStreamHandle,
        compress: bool,
        gate: Arc<Gate>,
        asked: AskedBy,
    ) -> Self {
        Self {
            replies,
            compress,
            gate,
            asked,
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
        // Room is left for the server cookie the gate adds, and for the client subnet: an
        // answer without it would be cached by the forwarder for every client (RFC 7871 7.3).
        let cookie_room = self.gate.cookie_room(self.asked.cookie.as_deref()) as u16;
        let subnet_room = self.asked.subnet.map_or(0, |subnet| 4 + subnet.len());
        let max_size = match self.asked.transport {
            Transport::Udp => self.asked.udp_payload - cookie_room - subnet_room,
            _ => u16::MAX - cookie_room - subnet_room,
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
        // The options the answer path noted, whoever built the answer (the catalog's handler
        // or hickory's, for zone files and recursors), in the OPT record if room is left.
        if self.asked.edns {
            let limit = usize::from(max_size);
            if let Some(error) = take_extended_error() {
                append_edns_option(&mut bytes, OPTION_EDE, &error.data(), limit);
            }
            if let (true, Some(nsid)) = (self.asked.nsid_requested, self.gate.nsid()) {
                append_edns_option(&mut bytes, OPTION_NSID, nsid, limit);
            }
            // RFC 7871 7.2.1: the forwarder's option back, with how much of the subnet the
            // answer holds for (0: all of the Internet) so that it caches it for that many.
            if let Some(subnet) = self.asked.subnet {
                let scope = client_scope().unwrap_or(0);
                let answered = ClientSubnet::new(subnet.addr(), subnet.source_prefix(), scope);
                if let Ok(data) = Vec::<u8>::try_from(&answered) {
                    let limit = limit + usize::from(subnet_room);
                    append_edns_option(&mut bytes, OPTION_CLIENT_SUBNET, &data, limit);
                }
            }
        }
        let outgoing = Outgoing {
            rcode: info.response_code,
            question_end: question_end(&bytes),
            bytes: &mut bytes,
            fast: false,
            opt_at: None,
        };
        if self
            .gate
            .release(&self.asked.borrowed(), outgoing, Count::Now)
        {
            let peer = self.asked.peer;
            self.replies.send(SerialMessage::new(bytes, peer))?;
        }
        Ok(info)
    }
}
