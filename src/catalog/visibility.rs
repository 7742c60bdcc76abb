//! Who may see an instance: an instance whose service metadata holds the visibility key
//! (`dns-allow` by default, `--visibility-meta-key`) with a comma-separated list of networks is
//! answered only to clients in them; for any other client it does not exist. Read once per
//! change of the service, checked per answer.

use std::{collections::BTreeMap, sync::Arc};

use crate::cidr::{Cidr, ClientNet};

/// Which clients see an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Visibility {
    /// No rule: everyone.
    All,
    /// Only clients in these networks (none: no one, as for an unreadable rule).
    Networks(Arc<[Cidr]>),
}

impl Visibility {
    /// The rule in `meta` under `key`; `Err` (with why) for a value that is not a list of
    /// networks: the caller logs it and treats the instance as visible to no one (fail closed).
    pub(crate) fn from_meta(meta: &BTreeMap<String, String>, key: &str) -> Result<Self, String> {
        let Some(value) = meta.get(key) else {
            return Ok(Visibility::All);
        };
        let networks: Vec<Cidr> = value
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::parse)
            .collect::<Result<_, String>>()?;
        if networks.is_empty() {
            return Err(format!("'{value}' names no network"));
        }
        Ok(Visibility::Networks(networks.into()))
    }

    /// Visible to no one: what an unreadable rule means.
    pub(crate) fn nobody() -> Self {
        Visibility::Networks(Arc::new([]))
    }

    /// Whether `client` sees the instance (a subnet: all of its clients do).
    pub(crate) fn allows(&self, client: ClientNet) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Networks(networks) => networks.iter().any(|net| net.holds(client)),
        }
    }

    /// How much of a client's address of `client`'s family decides whether it sees the
    /// instance: the longest prefix of the rule's networks of that family (0: none does).
    pub(crate) fn scope(&self, client: ClientNet) -> u8 {
        match self {
            Visibility::All => 0,
            Visibility::Networks(networks) => networks
                .iter()
                .filter_map(|net| net.prefix_for(client))
                .max()
                .unwrap_or(0),
        }
    }

    /// Who sees at least one of two instances (on one address, for reverse lookups).
    pub(crate) fn union(&self, other: &Self) -> Self {
        match (self, other) {
            (Visibility::Networks(a), Visibility::Networks(b)) => {
                Visibility::Networks(a.iter().chain(b.iter()).copied().collect())
            }
            _ => Visibility::All,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("dns-allow".to_owned(), value.to_owned())])
    }

    fn ip(text: &str) -> ClientNet {
        let address: std::net::IpAddr = text.parse().unwrap_or_else(|e| panic!("{e}"));
        ClientNet::from(address)
    }

    #[test]
    fn a_list_of_networks_shows_an_instance_to_them_only() {
        let rule = Visibility::from_meta(&meta("127.0.0.9/32, 10.0.0.0/8"), "dns-allow");
        let rule = rule.unwrap_or_else(|e| panic!("{e}"));
        assert!(rule.allows(ip("127.0.0.9")) && rule.allows(ip("10.1.2.3")));
        assert!(!rule.allows(ip("127.0.0.1")));
        let none = Visibility::from_meta(&BTreeMap::new(), "dns-allow");
        assert_eq!(none, Ok(Visibility::All));
        let other_key = Visibility::from_meta(&meta("10.0.0.0/8"), "who");
        assert_eq!(other_key, Ok(Visibility::All));
    }

    #[test]
    fn a_bad_value_is_an_error_and_union_widens() {
        for bad in ["10.0.0.0/40", "everyone", "", " , "] {
            assert!(
                Visibility::from_meta(&meta(bad), "dns-allow").is_err(),
                "{bad}"
            );
        }
        assert!(!Visibility::nobody().allows(ip("127.0.0.1")));
        let a = Visibility::from_meta(&meta("127.0.0.2"), "dns-allow")
            .unwrap_or_else(|e| panic!("{e}"));
        let b = Visibility::from_meta(&meta("127.0.0.3"), "dns-allow")
            .unwrap_or_else(|e| panic!("{e}"));
        let both = a.union(&b);
        assert!(both.allows(ip("127.0.0.2")) && both.allows(ip("127.0.0.3")));
        assert_eq!(a.union(&Visibility::All), Visibility::All);
    }

    #[test]
    fn the_scope_is_the_longest_prefix_of_the_clients_family() {
        let rule = Visibility::from_meta(&meta("10.0.0.0/8, 10.1.2.0/24, fd00::/16"), "dns-allow")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rule.scope(ip("10.9.9.9")), 24);
        assert_eq!(rule.scope(ip("fd00::1")), 16);
        assert_eq!(Visibility::All.scope(ip("10.9.9.9")), 0);
        let v6_only = Visibility::from_meta(&meta("fd00::/16"), "dns-allow")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v6_only.scope(ip("10.9.9.9")), 0);
    }
}
