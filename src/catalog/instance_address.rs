//! How an instance or a node is reached by address: an IP, or a host name answered with a
//! CNAME, as Consul does; and Consul's `.addr.` spelling of an IP.

use std::net::IpAddr;

use hickory_proto::rr::{Name, RData, rdata::CNAME};

use crate::wire::ip_rdata;

/// How an instance is reached by address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum InstanceAddress {
    Ip(IpAddr),
    /// A service registered with a host name: answered with a CNAME, as Consul does.
    Host(Name),
}

/// Consul's `.addr.` label: the address's bytes in hex, 8 digits for IPv4, 32 for IPv6.
pub(crate) fn hex_address(ip: IpAddr) -> String {
    let bytes = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl InstanceAddress {
    /// An address as Consul stores it: an IP, else a host name (fully qualified); `None` when it
    /// is neither.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(InstanceAddress::Ip(ip));
        }
        let mut host = Name::from_ascii(text).ok()?;
        host.set_fqdn(true);
        Some(InstanceAddress::Host(host))
    }

    /// The record data for an address question: `None` when this instance has no record of the
    /// asked family. `v4`/`v6` say which families the question takes.
    pub(crate) fn rdata(&self, v4: bool, v6: bool) -> Option<RData> {
        match self {
            InstanceAddress::Ip(ip @ IpAddr::V4(_)) if v4 => Some(ip_rdata(*ip)),
            InstanceAddress::Ip(ip @ IpAddr::V6(_)) if v6 => Some(ip_rdata(*ip)),
            InstanceAddress::Ip(_) => None,
            InstanceAddress::Host(host) => Some(RData::CNAME(CNAME(host.clone()))),
        }
    }
}
