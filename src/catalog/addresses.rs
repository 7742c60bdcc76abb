//! Which watched local services have an instance at an address: the index reverse lookups read,
//! kept up to date on the watch side as each service's answers change, so a PTR question costs
//! one hash lookup however large the catalog.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, RwLock},
};

use hickory_proto::rr::Name;

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
    by_address: RwLock<HashMap<IpAddr, Vec<Arc<ServiceTarget>>>>,
}

impl ServiceAddresses {
    /// Records that `service` now has instances at `now` and no longer at `before`.
    pub(crate) fn update(
        &self,
        service: &Arc<ServiceTarget>,
        before: &HashSet<IpAddr>,
        now: &HashSet<IpAddr>,
    ) {
        if before == now {
            return;
        }
        // Writers finish every change they start; a panic elsewhere leaves the map usable.
        let mut map = self.by_address.write().unwrap_or_else(|p| p.into_inner());
        for gone in before.difference(now) {
            if let Some(services) = map.get_mut(gone) {
                services.retain(|known| !Arc::ptr_eq(known, service));
                if services.is_empty() {
                    map.remove(gone);
                }
            }
        }
        for added in now.difference(before) {
            let services = map.entry(*added).or_default();
            let at = services.partition_point(|known| known.service < service.service);
            services.insert(at, service.clone());
            services.shrink_to_fit();
        }
    }

    /// Calls `answer` with the PTR name of the first service (by name) with an instance at `ip`.
    pub(crate) fn with_service_at<R>(
        &self,
        ip: IpAddr,
        answer: impl FnOnce(&Name) -> R,
    ) -> Option<R> {
        let map = self.by_address.read().unwrap_or_else(|p| p.into_inner());
        let first = map.get(&ip)?.first()?;
        Some(answer(&first.target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> HashSet<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    fn at(index: &ServiceAddresses, ip: &str) -> Option<String> {
        index.with_service_at(ip.parse().unwrap(), |name| name.to_string())
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
    }
}
