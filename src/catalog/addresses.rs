//! Which watched local services have an instance at an address: the index reverse lookups read,
//! kept up to date on the watch side as each service's answers change, so a PTR question costs
//! one hash lookup however large the catalog.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::IpAddr,
    sync::RwLock,
};

#[derive(Default)]
pub(crate) struct ServiceAddresses {
    by_address: RwLock<HashMap<IpAddr, BTreeSet<String>>>,
}

impl ServiceAddresses {
    /// Records that `service` now has instances at `now` and no longer at `before`.
    pub(crate) fn update(&self, service: &str, before: &HashSet<IpAddr>, now: &HashSet<IpAddr>) {
        if before == now {
            return;
        }
        // Writers finish every change they start; a panic elsewhere leaves the map usable.
        let mut map = self.by_address.write().unwrap_or_else(|p| p.into_inner());
        for gone in before.difference(now) {
            if let Some(services) = map.get_mut(gone) {
                services.remove(service);
                if services.is_empty() {
                    map.remove(gone);
                }
            }
        }
        for added in now.difference(before) {
            map.entry(*added).or_default().insert(service.to_owned());
        }
    }

    /// The first service (by name) with an instance at `ip`.
    pub(crate) fn service_at(&self, ip: IpAddr) -> Option<String> {
        let map = self.by_address.read().unwrap_or_else(|p| p.into_inner());
        map.get(&ip).and_then(|services| services.first().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> HashSet<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[test]
    fn changes_move_services_between_addresses_and_the_first_name_wins() {
        let index = ServiceAddresses::default();
        index.update("web", &ips(&[]), &ips(&["10.0.0.1", "10.0.0.2"]));
        index.update("api", &ips(&[]), &ips(&["10.0.0.2"]));
        assert_eq!(
            index.service_at("10.0.0.2".parse().unwrap()).as_deref(),
            Some("api")
        );
        index.update("api", &ips(&["10.0.0.2"]), &ips(&[]));
        assert_eq!(
            index.service_at("10.0.0.2".parse().unwrap()).as_deref(),
            Some("web")
        );
        index.update("web", &ips(&["10.0.0.1", "10.0.0.2"]), &ips(&["10.0.0.1"]));
        assert_eq!(index.service_at("10.0.0.2".parse().unwrap()), None);
        assert_eq!(
            index.service_at("10.0.0.1".parse().unwrap()).as_deref(),
            Some("web")
        );
        assert!(index.by_address.read().unwrap().len() == 1);
    }
}
