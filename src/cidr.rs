//! IP networks written as CIDR (`10.0.0.0/8`, `fd00::/8`, or a single address): parsed once,
//! matched against clients on the answer path without allocating. A client is an address, or
//! the subnet a trusted forwarder reports for it (EDNS Client Subnet).

use std::{fmt, net::IpAddr, str::FromStr};

/// An IP network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Cidr {
    /// The network address, host bits cleared.
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network. An IPv4 network also holds the IPv4-mapped IPv6 form of
    /// its addresses (`::ffff:10.0.0.1`), as clients on a dual-stack socket appear.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                mask_v4(u32::from(ip), self.prefix) == u32::from(network)
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                mask_v6(u128::from(ip), self.prefix) == u128::from(network)
            }
            _ => false,
        }
    }
}

/// Who asked, as far as is known: one address, or a subnet a trusted forwarder reported (its
/// clients are somewhere in it). IPv4-mapped IPv6 addresses are held as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientNet {
    /// The address, bits past the prefix cleared.
    address: IpAddr,
    prefix: u8,
}

impl ClientNet {
    /// The clients in `address/prefix` (a prefix past the family's length is read as the whole
    /// address; bits past the prefix are cleared).
    pub(crate) fn new(address: IpAddr, prefix: u8) -> Self {
        let (address, prefix) = match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix.saturating_sub(96)),
                None => (address, prefix.min(128)),
            },
            v4 => (v4, prefix.min(32)),
        };
        Self {
            address: masked(address, prefix, prefix),
            prefix,
        }
    }

    pub(crate) fn address(&self) -> IpAddr {
        self.address
    }

    pub(crate) fn is_ipv4(&self) -> bool {
        self.address.is_ipv4()
    }
}

impl From<IpAddr> for ClientNet {
    fn from(address: IpAddr) -> Self {
        Self::new(address, 128)
    }
}

impl Cidr {
    /// Whether every client of `client` is in this network: a subnet shorter than the network
    /// matches only if wholly inside it, so a forwarder's coarse subnet never widens a rule.
    pub(crate) fn holds(&self, client: ClientNet) -> bool {
        client.prefix >= self.prefix && self.contains(client.address)
    }

    /// The network's prefix length, for clients of the same family as `client`; `None` for
    /// the other family.
    pub(crate) fn prefix_for(&self, client: ClientNet) -> Option<u8> {
        (self.network.is_ipv4() == client.is_ipv4()).then_some(self.prefix)
    }
}

/// `ip` with all but its first `prefix` bits cleared.
pub(crate) fn masked(ip: IpAddr, prefix_v4: u8, prefix_v6: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(mask_v4(u32::from(v4), prefix_v4).into()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(mask_v4(u32::from(v4), prefix_v4).into()),
            None => IpAddr::V6(mask_v6(u128::from(v6), prefix_v6).into()),
        },
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => bits & (u32::MAX << (32 - u32::from(p.min(32)))),
    }
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => bits & (u128::MAX << (128 - u32::from(p.min(128)))),
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDRESS/PREFIX`, or an address alone (a network of one). Host bits must be zero, so a
    /// typo such as `10.1.2.3/8` is caught rather than read as `10.0.0.0/8`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let ip: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("not an IP network: '{text}'"))?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("not a prefix length (0 to {bits}): '{text}'"))?,
            None => bits,
        };
        // An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 network it maps, which
        // also holds the mapped form of its addresses (see `contains`).
        let (ip, prefix) = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
                Some(_) => {
                    return Err(format!(
                        "'{text}' is an IPv4-mapped address with a prefix under 96; write the \
                         IPv4 network (e.g. 10.0.0.0/8) or a prefix of 96 to 128"
                    ));
                }
                None => (ip, prefix),
            },
            v4 => (v4, prefix),
        };
        let network = match ip {
            IpAddr::V4(v4) => IpAddr::V4(mask_v4(u32::from(v4), prefix).into()),
            IpAddr::V6(v6) => IpAddr::V6(mask_v6(u128::from(v6), prefix).into()),
        };
        if network != ip {
            return Err(format!(
                "'{text}' has bits set past its prefix; the network is {network}/{prefix}"
            ));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn networks_hold_their_addresses_and_no_others() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.0.0.1")));
        assert!(cidr("127.0.0.9").contains(ip("127.0.0.9")));
        assert!(!cidr("127.0.0.9").contains(ip("127.0.0.8")));
        assert!(cidr("fd00::/8").contains(ip("fd12::1")));
        assert!(!cidr("fd00::/8").contains(ip("10.0.0.1")));
        assert!(cidr("0.0.0.0/0").contains(ip("192.0.2.1")));
        assert_eq!(cidr("::1").to_string(), "::1/128");
    }

    #[test]
    fn bad_networks_say_why() {
        for bad in [
            "10.0.0.0/33",
            "10.1.2.3/8",
            "nope",
            "fd00::/129",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert!(
            "10.1.2.3/8"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        // An IPv4-mapped network is its IPv4 network; a suggestion names a real network.
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("10.9.9.9")));
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("::ffff:10.9.9.9")));
        let mapped = "::ffff:10.1.0.0/104".parse::<Cidr>().unwrap_err();
        assert!(mapped.contains("the network is 10.0.0.0/8"), "{mapped}");
        assert!("::ffff:10.0.0.0/64".parse::<Cidr>().is_err());
        let v6 = "fd00::1/8".parse::<Cidr>().unwrap_err();
        assert!(v6.contains("the network is fd00::/8"), "{v6}");
    }

    #[test]
    fn a_subnet_matches_only_networks_that_hold_all_of_it() {
        let subnet = |text: &str, prefix| ClientNet::new(ip(text), prefix);
        assert!(cidr("10.1.0.0/16").holds(subnet("10.1.2.0", 24)));
        assert!(!cidr("10.1.2.0/24").holds(subnet("10.1.0.0", 16)));
        assert!(!cidr("10.1.2.9").holds(subnet("10.1.2.0", 24)));
        assert!(cidr("0.0.0.0/0").holds(subnet("0.0.0.0", 0)));
        assert!(!cidr("10.0.0.0/8").holds(subnet("0.0.0.0", 0)));
        assert!(cidr("10.1.2.9").holds(ClientNet::from(ip("10.1.2.9"))));
        assert!(cidr("10.0.0.0/8").holds(ClientNet::from(ip("::ffff:10.1.2.9"))));
        assert!(!cidr("fd00::/8").holds(ClientNet::from(ip("10.1.2.9"))));
        // Bits past the prefix are not the client's.
        assert!(!cidr("10.1.2.9").holds(subnet("10.1.2.9", 24)));
        assert_eq!(subnet("10.1.2.9", 24).address(), ip("10.1.2.0"));
        assert_eq!(cidr("fd00::/8").prefix_for(subnet("10.0.0.0", 8)), None);
        assert_eq!(
            cidr("10.0.0.0/8").prefix_for(subnet("10.0.0.0", 8)),
            Some(8)
        );
    }

    #[test]
    fn masking_keeps_the_prefix() {
        assert_eq!(masked(ip("192.0.2.77"), 24, 56), ip("192.0.2.0"));
        assert_eq!(
            masked(ip("2001:db8:1:2ab:3::1"), 24, 56),
            ip("2001:db8:1:200::")
        );
    }
}
