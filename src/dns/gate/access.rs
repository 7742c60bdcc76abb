//! Which clients are answered at all (`--allow-query`): the rest get REFUSED, on every
//! transport. Checked on the answer path for every query, so the check is a scan of a few
//! networks, and nothing when no network is given (everyone is answered).

use std::net::IpAddr;

use crate::cidr::Cidr;

/// The networks allowed to ask; empty: everyone.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientAccess {
    allowed: Box<[Cidr]>,
}

impl ClientAccess {
    pub(crate) fn new(allowed: Vec<Cidr>) -> Self {
        Self {
            allowed: allowed.into_boxed_slice(),
        }
    }

    /// Whether everyone is answered (no network given).
    pub(crate) fn is_open(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Whether `client` is answered.
    pub(crate) fn allows(&self, client: IpAddr) -> bool {
        self.allowed.is_empty() || self.allowed.iter().any(|net| net.contains(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_network_given_allows_everyone_else_only_those_given() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}"));
        assert!(ClientAccess::default().allows(ip("192.0.2.1")));
        let access = ClientAccess::new(vec![
            "127.0.0.0/24".parse().unwrap_or_else(|e| panic!("{e}")),
            "fd00::/8".parse().unwrap_or_else(|e| panic!("{e}")),
        ]);
        assert!(access.allows(ip("127.0.0.9")));
        assert!(access.allows(ip("fd12::1")));
        assert!(!access.allows(ip("127.0.1.1")));
        assert!(!access.allows(ip("::1")));
    }
}
