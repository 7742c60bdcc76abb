//! Which watched local services have an instance at an address: the index reverse lookups read,
//! kept up to date on the watch side as each service's answers change, so a PTR question costs
//! one hash lookup however large the catalog.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, RwLock},
};

use hickory_proto::rr::Name;

use super::visibility::Visibility;
use crate::cidr::ClientNet;

/// A service as reverse lookups name it; one per watched service, shared by its addresses.
#[derive(Debug)]
pub(crate) struct ServiceTarget {
    /// Lower-case, for the order of several services on one address.
    pub(crate) service: String,
    /// `<service>.service.<dc>.<domain>`.
    pub(crate) target: Name,
}

/// Per address, the services with an instance there, sorted by name. Most addresses have one
/// service, so a short Vec of shared pointers: at 50,000 addresses a map per address (a
/// B-tree node of 11 entries each) took most of the memory of 10,000 watched services.
#[derive(Default)]
pub(crate) struct ServiceAddresses {
    by_address: RwLock<HashMap<IpAddr, Vec<ServiceAt>>>,
}

/// A service with an instance at an address, and who sees an instance of it there.
type ServiceAt = (Arc<ServiceTarget>, Visibility);

impl ServiceAddresses {
    /// Records that `service` now has instances at the addresses of `now` (each seen by whom
    /// its visibility says) and no longer at those of `before`.
    pub(crate) fn update(
        &self,
        service: &Arc<ServiceTarget>,
        before: &HashMap<IpAddr, Visibility>,
        now: &HashMap<IpAddr, Visibility>,
    ) {
        if before == now {
            return;
        }
        // Writers finish every change they start; a panic elsewhere leaves the map usable.
        let mut map = self.by_address.write().unwrap_or_else(|p| p.into_inner());
        for (gone, _) in before.iter().filter(|(ip, seen)| now.get(ip) != Some(seen)) {
            if let Some(services) = map.get_mut(gone) {
                services.retain(|(known, _)| !Arc::ptr_eq(known, service));
                if services.is_empty() {
                    map.remove(gone);
                }
            }
        }
        for (added, seen) in now.iter().filter(|(ip, seen)| before.get(ip) != Some(seen)) {
            let services = map.entry(*added).or_default();
            let at = services.partition_point(|(known, _)| known.service < service.service);
            services.insert(at, (service.clone(), seen.clone()));
            services.shrink_to_fit();
        }
    }

    /// Calls `answer` with the PTR name of the first service (by name) with an instance at `ip`
    /// that `client` sees.
    pub(crate) fn with_service_at<R>(
        &self,
        ip: IpAddr,
        client: ClientNet,
        answer: impl FnOnce(&Name) -> R,
    ) -> Option<R> {
        let map = self.by_address.read().unwrap_or_else(|p| p.into_inner());
        let (first, _) = map.get(&ip)?.iter().find(|(_, seen)| seen.allows(client))?;
        Some(answer(&first.target))
    }

    /// How much of `client`'s address decides what a reverse lookup of `ip` gives: the longest
    /// prefix of the visibility rules of the instances there; `None` when none has a rule.
    pub(crate) fn client_scope_at(&self, ip: IpAddr, client: ClientNet) -> Option<u8> {
        let map = self.by_address.read().unwrap_or_else(|p| p.into_inner());
        map.get(&ip)?
            .iter()
            .filter(|(_, seen)| *seen != Visibility::All)
            .map(|(_, seen)| seen.scope(client))
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> HashMap<IpAddr, Visibility> {
        list.iter()
            .map(|ip| (ip.parse().unwrap(), Visibility::All))
            .collect()
    }

    fn at(index: &ServiceAddresses, ip: &str) -> Option<String> {
        let client = ClientNet::from("127.0.0.1".parse::<IpAddr>().unwrap());
        index.with_service_at(ip.parse().unwrap(), client, |name| name.to_string())
    }

    fn target(service: &str) -> Arc<ServiceTarget> {
        Arc::new(ServiceTarget {
            service: service.into(),
            target: Name::from_ascii(format!("{service}.")).unwrap(),
        })
    }

    #[test]
    fn changes_move_services_between_addresses_and_the_first_name_wins() {
        let index = ServiceAddresses::default();
        let (web, api) = (target("web"), target("api"));
        index.update(&web, &ips(&[]), &ips(&["10.0.0.1", "10.0.0.2"]));
        index.update(&api, &ips(&[]), &ips(&["10.0.0.2"]));
        assert_eq!(at(&index, "10.0.0.2").as_deref(), Some("api."));
        index.update(&api, &ips(&["10.0.0.2"]), &ips(&[]));
        assert_eq!(at(&index, "10.0.0.2").as_deref(), Some("web."));
        index.update(&web, &ips(&["10.0.0.1", "10.0.0.2"]), &ips(&["10.0.0.1"]));
        assert_eq!(at(&index, "10.0.0.2"), None);
        assert_eq!(at(&index, "10.0.0.1").as_deref(), Some("web."));
        assert_eq!(index.by_address.read().unwrap().len(), 1);
        // Hidden from this client: the address names no service for it.
        let hidden = HashMap::from([("10.0.0.1".parse().unwrap(), Visibility::nobody())]);
        index.update(&web, &ips(&["10.0.0.1"]), &hidden);
        assert_eq!(at(&index, "10.0.0.1"), None);
    }
}
