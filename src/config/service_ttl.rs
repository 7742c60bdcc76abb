//! Consul's `service_ttl` map: the TTL of a service's answers by its name.

use std::{collections::HashMap, time::Duration};

/// TTLs of service answers by service name, as Consul's `service_ttl` map: an exact name wins,
/// then the longest `prefix*` entry (`*` alone matches every name); 0 s otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServiceTtls {
    exact: HashMap<String, Duration>,
    /// Longest prefix first.
    prefixes: Vec<(String, Duration)>,
}

impl ServiceTtls {
    /// From the option's entries: `None` as the name means every service (`*`).
    pub(super) fn from_entries(entries: Vec<(Option<String>, Duration)>) -> Self {
        let mut ttls = Self::default();
        for (name, ttl) in entries {
            ttls.add(name.as_deref().unwrap_or("*"), ttl);
        }
        ttls
    }

    fn add(&mut self, name: &str, ttl: Duration) {
        let name = name.to_ascii_lowercase();
        match name.strip_suffix('*') {
            Some(prefix) => {
                self.prefixes.retain(|(p, _)| p != prefix);
                self.prefixes.push((prefix.to_owned(), ttl));
                self.prefixes
                    .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
            }
            None => {
                self.exact.insert(name, ttl);
            }
        }
    }

    /// The TTL for `service` (any case).
    pub(crate) fn for_service(&self, service: &str) -> Duration {
        let service = service.to_ascii_lowercase();
        if let Some(ttl) = self.exact.get(&service) {
            return *ttl;
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| service.starts_with(prefix.as_str()))
            .map_or(Duration::ZERO, |(_, ttl)| *ttl)
    }
}
