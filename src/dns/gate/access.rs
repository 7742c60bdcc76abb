//! Who asked, and whether they are answered at all. Who asked is the peer's address, or, when
//! the peer is a forwarder named in `--trust-client-subnet`, the client subnet its EDNS Client
//! Subnet option reports (RFC 7871); from anyone else that option is ignored. Only clients in
//! `--allow-query` are answered; the rest get REFUSED, on every transport. Checked on the
//! answer path for every query, so each check is a scan of a few networks, and nothing when
//! none is given.

use std::net::IpAddr;

use hickory_proto::rr::rdata::opt::ClientSubnet;

use crate::cidr::{Cidr, ClientNet};

/// The networks allowed to ask (empty: everyone), and the forwarders believed about their
/// clients.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientAccess {
    allowed: Box<[Cidr]>,
    trusted_forwarders: Box<[Cidr]>,
}

/// A trusted forwarder's client subnet option that breaks RFC 7871 section 6 (a prefix past
/// the family's length, a scope in a query, address bits past the prefix): FORMERR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MalformedSubnet;

impl ClientAccess {
    pub(crate) fn new(allowed: Vec<Cidr>, trusted_forwarders: Vec<Cidr>) -> Self {
        Self {
            allowed: allowed.into_boxed_slice(),
            trusted_forwarders: trusted_forwarders.into_boxed_slice(),
        }
    }

    /// Whether everyone is answered (no network given).
    pub(crate) fn is_open(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Whether `client` is answered (a subnet: only if all of it is allowed).
    pub(crate) fn allows(&self, client: ClientNet) -> bool {
        self.allowed.is_empty() || self.allowed.iter().any(|net| net.holds(client))
    }

    /// How much of `client`'s address decides whether it is answered: the longest prefix of
    /// the allowed networks of its family (0 when none is given).
    pub(crate) fn scope(&self, client: ClientNet) -> u8 {
        self.allowed
            .iter()
            .filter_map(|net| net.prefix_for(client))
            .max()
            .unwrap_or(0)
    }

    /// Whether `peer` may ask, for itself or for clients it forwards for: a transport lets it
    /// in, and each question is then checked for the client it is asked for.
    pub(crate) fn admits(&self, peer: IpAddr) -> bool {
        self.trusts(peer) || self.allows(ClientNet::from(peer))
    }

    /// Whether `peer`'s client subnet options are believed.
    pub(crate) fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted_forwarders.iter().any(|net| net.contains(peer))
    }

    /// Who asked a question that `peer` sent with the client subnet option `subnet`: the
    /// subnet when `peer` is trusted (`Some` second: the option to answer with), else `peer`.
    pub(crate) fn client(
        &self,
        peer: IpAddr,
        subnet: Option<&ClientSubnet>,
    ) -> Result<(ClientNet, Option<ClientSubnet>), MalformedSubnet> {
        match subnet {
            Some(subnet) if self.trusts(peer) => Ok((reported(subnet)?, Some(*subnet))),
            _ => Ok((ClientNet::from(peer), None)),
        }
    }
}

/// The clients the data of a client subnet option (as on the wire: family, source prefix,
/// scope, the address's first bytes) reports; `None` unless it is exactly as RFC 7871 section
/// 6 writes it (the address in just the bytes the prefix needs).
pub(crate) fn reported_on_wire(data: &[u8]) -> Option<ClientNet> {
    let (head, address) = data.split_at_checked(4)?;
    let family = u16::from_be_bytes([head[0], head[1]]);
    let (source, scope) = (head[2], head[3]);
    let mut bytes = [0u8; 16];
    let width = match family {
        1 => 4,
        2 => 16,
        _ => return None,
    };
    if usize::from(source).div_ceil(8) != address.len() || address.len() > width {
        return None;
    }
    bytes[..address.len()].copy_from_slice(address);
    let ip = match family {
        1 => IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]]),
        _ => IpAddr::from(bytes),
    };
    reported(&ClientSubnet::new(ip, source, scope)).ok()
}

/// The clients a client subnet option reports.
fn reported(subnet: &ClientSubnet) -> Result<ClientNet, MalformedSubnet> {
    let family_bits = match subnet.addr() {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    if subnet.source_prefix() > family_bits || subnet.scope_prefix() != 0 {
        return Err(MalformedSubnet);
    }
    let client = ClientNet::new(subnet.addr(), subnet.source_prefix());
    match client.address() == subnet.addr() {
        true => Ok(client),
        false => Err(MalformedSubnet),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn no_network_given_allows_everyone_else_only_those_given() {
        let client = |text: &str| ClientNet::from(ip(text));
        assert!(ClientAccess::default().allows(client("192.0.2.1")));
        let access = ClientAccess::new(vec![cidr("127.0.0.0/24"), cidr("fd00::/8")], vec![]);
        assert!(access.allows(client("127.0.0.9")));
        assert!(access.allows(client("fd12::1")));
        assert!(!access.allows(client("127.0.1.1")));
        assert!(!access.allows(client("::1")));
        assert_eq!(access.scope(client("10.0.0.1")), 24);
        assert_eq!(access.scope(client("fd00::1")), 8);
    }

    #[test]
    fn only_trusted_forwarders_speak_for_their_clients() {
        let access = ClientAccess::new(vec![cidr("10.1.0.0/16")], vec![cidr("127.0.0.1")]);
        let subnet = ClientSubnet::new(ip("10.1.2.0"), 24, 0);
        let (client, echo) = access
            .client(ip("127.0.0.1"), Some(&subnet))
            .unwrap_or_else(|_| panic!("a well-formed subnet"));
        assert_eq!(client, ClientNet::new(ip("10.1.2.0"), 24));
        assert_eq!(echo, Some(subnet));
        assert!(access.allows(client));
        // Anyone else is who it is, whatever it claims.
        let (client, echo) = access
            .client(ip("127.0.0.2"), Some(&subnet))
            .unwrap_or_else(|_| panic!("ignored, not malformed"));
        assert_eq!((client, echo), (ClientNet::from(ip("127.0.0.2")), None));
        assert!(!access.allows(client));
        assert!(access.admits(ip("127.0.0.1")) && !access.admits(ip("127.0.0.2")));
        // A trusted forwarder's subnet wider than the allowed network is not allowed.
        let wide = ClientSubnet::new(ip("10.0.0.0"), 8, 0);
        let (client, _) = access
            .client(ip("127.0.0.1"), Some(&wide))
            .unwrap_or_else(|_| panic!("a well-formed subnet"));
        assert!(!access.allows(client));
    }

    #[test]
    fn subnets_on_the_wire_are_read_exactly() {
        let v4 = reported_on_wire(&[0, 1, 24, 0, 10, 1, 2]);
        assert_eq!(v4, Some(ClientNet::new(ip("10.1.2.0"), 24)));
        let v6 = reported_on_wire(&[0, 2, 56, 0, 0x20, 1, 0x0d, 0xb8, 0, 1, 2]);
        assert_eq!(v6, Some(ClientNet::new(ip("2001:db8:1:200::"), 56)));
        for bad in [
            &[0, 1, 24, 0, 10, 1][..],       // an address byte short
            &[0, 1, 24, 0, 10, 1, 2, 3][..], // a byte too many
            &[0, 1, 20, 0, 10, 1, 2][..],    // bits past the prefix
            &[0, 1, 24, 8, 10, 1, 2][..],    // a scope in a question
            &[0, 3, 8, 0, 10][..],           // no such family
            &[0, 1][..],
        ] {
            assert_eq!(reported_on_wire(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_malformed_subnet_from_a_trusted_forwarder_is_an_error() {
        let access = ClientAccess::new(vec![], vec![cidr("127.0.0.1")]);
        for bad in [
            ClientSubnet::new(ip("10.1.2.3"), 24, 0),
            ClientSubnet::new(ip("10.1.2.0"), 24, 24),
            ClientSubnet::new(ip("10.1.2.0"), 33, 0),
            ClientSubnet::new(ip("fd00::"), 129, 0),
        ] {
            assert!(
                access.client(ip("127.0.0.1"), Some(&bad)).is_err(),
                "{bad:?}"
            );
            assert!(
                access.client(ip("127.0.0.2"), Some(&bad)).is_ok(),
                "{bad:?}"
            );
        }
    }
}
