//! Which watched local services have an instance at an address: the index reverse lookups read,
//! kept up to date on the watch side as each service's answers change, so a PTR question costs
//! one hash lookup however large the catalog.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    sync::RwLock,
};

use hickory_proto::rr::Name;

/// Per address, the services with an instance there, by name, each with the name a PTR answer
/// gives (`<service>.service.<dc>.<domain>`), built once.
#[derive(Default)]
pub(crate) struct ServiceAddresses {
    by_address: RwLock<HashMap<IpAddr, BTreeMap<String, Name>>>,
}

impl ServiceAddresses {
    /// Records that `service` (whose PTR name is `target`) now has instances at `now` and no
    /// longer at `before`.
    pub(crate) fn update(
        &self,
        service: &str,
        target: &Name,
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
                services.remove(service);
                if services.is_empty() {
                    map.remove(gone);
                }
            }
        }
        for added in now.difference(before) {
            let services = map.entry(*added).or_default();
            services.insert(service.to_owned(), target.clone());
        }
    }

    /// Calls `answer` with the PTR name of the first service (by name) with an instance at `ip`.
    pub(crate) fn with_service_at<R>(
        &self,
        ip: IpAddr,
        answer: impl FnOnce(&Name) -> R,
    ) -> Option<R> {
        let map = self.by_address.read().unwrap_or_else(|p| p.into_inner());
        let (_, target) = map.get(&ip)?.first_key_value()?;
        Some(answer(target))
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

    #[test]
    fn changes_move_services_between_addresses_and_the_first_name_wins() {
        let index = ServiceAddresses::default();
        let web = Name::from_ascii("web.").unwrap();
        let api = Name::from_ascii("api.").unwrap();
        index.update("web", &web, &ips(&[]), &ips(&["10.0.0.1", "10.0.0.2"]));
        index.update("api", &api, &ips(&[]), &ips(&["10.0.0.2"]));
        assert_eq!(at(&index, "10.0.0.2").as_deref(), Some("api."));
        index.update("api", &api, &ips(&["10.0.0.2"]), &ips(&[]));
        assert_eq!(at(&index, "10.0.0.2").as_deref(), Some("web."));
        index.update(
            "web",
            &web,
            &ips(&["10.0.0.1", "10.0.0.2"]),
            &ips(&["10.0.0.1"]),
        );
        assert_eq!(at(&index, "10.0.0.2"), None);
        assert_eq!(at(&index, "10.0.0.1").as_deref(), Some("web."));
        assert_eq!(index.by_address.read().unwrap().len(), 1);
    }
}
