//! The cached form of one service: its passing instances with their DNS records already built.
//!
//! Built on the watch side, once per change reported by Consul, so that answering a query is a
//! filter by tag plus copies. Names follow Consul's DNS: an SRV target is `<hex-ip>.addr.<dc>.<domain>`
//! for a service address and `<node>.node.<dc>.<domain>` when the instance uses its node's address.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use hickory_proto::rr::{
    Name, RData, Record,
    rdata::{SRV, TXT},
};
use tracing::debug;

pub(crate) use super::instance_address::{InstanceAddress, hex_address};
use super::visibility::Visibility;
use crate::cidr::ClientNet;
use crate::{
    consul::{HealthEntry, Scope},
    wire::{self, ip_rdata},
};

/// What every record of an entry shares: where it lives and how long it may be cached.
#[derive(Debug, Clone)]
pub(crate) struct EntryContext {
    /// The datacenter, or a key of [`Scope`] (a peer, a namespace) read from.
    pub(crate) datacenter: String,
    /// The datacenter SRV targets name (a group's or a namespace's own, or the local one).
    pub(crate) target_datacenter: String,
    pub(crate) domain: Name,
    pub(crate) ttl: u32,
    /// The service metadata key holding an instance's visibility rule.
    pub(crate) visibility_key: Arc<str>,
}

/// One passing instance, ready to answer with.
#[derive(Debug, Clone)]
pub(crate) struct InstanceRecords {
    /// Lower-case, for Consul's case-insensitive tag match.
    pub(crate) tags: Vec<String>,
    pub(crate) address: InstanceAddress,
    pub(crate) srv: SRV,
    /// The node's metadata as TXT strings (Consul's `rfc1035-` keys bare, others `key=value`).
    pub(crate) node_meta_txt: Vec<String>,
    /// `<node>.node.<dc>.<domain>` and the node's own address, for NS answers.
    pub(crate) node_name: Name,
    pub(crate) node_address: Option<IpAddr>,
    /// The same answers as wire bytes, for the UDP fast path; `None` when this instance needs the
    /// general path (a host-name address, a TXT string over 255 bytes).
    pub(crate) wire: Option<InstanceWire>,
    /// Which clients see it.
    pub(crate) visibility: Visibility,
    /// Consul 1.22's named ports (lower-case names), for `.port` names.
    pub(crate) named_ports: Vec<(String, u16)>,
}

/// An instance's record data encoded once, when Consul's data changed. Names are written whole
/// (no compression pointers), so the bytes can be copied into any message at any offset.
#[derive(Debug, Clone)]
pub(crate) struct InstanceWire {
    pub(crate) ip: IpAddr,
    /// SRV record data: priority, weight, port, target.
    pub(crate) srv_rdata: Vec<u8>,
    /// The additional-section records of an SRV answer, whole, one after another.
    pub(crate) additionals: Vec<u8>,
    pub(crate) additional_count: u16,
}

/// All passing instances of one service in one datacenter.
#[derive(Debug, Default)]
pub(crate) struct ServiceAnswers {
    instances: Vec<InstanceRecords>,
    /// Whether two instances have the same address, or the same node, target and port: answers
    /// then leave the repeats out, which the fast path does not do.
    has_repeats: bool,
    ttl: u32,
    /// Start of the next answer, so that successive answers rotate (round-robin).
    rotation: AtomicUsize,
    /// IDs of instances whose visibility rule could not be read (visible to no one).
    unreadable_visibility: Vec<String>,
    /// Whether an instance has a visibility rule: then who asks decides what is answered.
    depends_on_client: bool,
    /// The virtual IP Consul assigned the service (`consul-virtual` on its Connect proxies and
    /// native instances), for `.virtual` names.
    virtual_ip: Option<IpAddr>,
}

impl ServiceAnswers {
    /// Builds the records of every passing instance in `entries` (by their own checks).
    pub(crate) fn build(entries: &[HealthEntry], context: &EntryContext) -> Self {
        let passing: Vec<&HealthEntry> = entries.iter().filter(|e| e.is_passing()).collect();
        Self::from_entries(passing, context)
    }

    /// Builds the records of `passing`, the instances already found passing.
    pub(crate) fn build_passing(passing: Vec<&HealthEntry>, context: &EntryContext) -> Self {
        Self::from_entries(passing, context)
    }

    /// Builds the records of every instance in `entries`, whatever its checks say (a prepared
    /// query's result, already filtered by Consul as the query asks).
    pub(crate) fn build_unfiltered(entries: &[HealthEntry], context: &EntryContext) -> Self {
        Self::from_entries(entries.iter().collect(), context)
    }

    fn from_entries(entries: Vec<&HealthEntry>, context: &EntryContext) -> Self {
        let virtual_ip = entries.iter().find_map(|entry| {
            let tagged = entry.service.tagged_addresses.get("consul-virtual")?;
            tagged.address.parse::<IpAddr>().ok()
        });
        let mut unreadable_visibility = Vec::new();
        let mut instances: Vec<InstanceRecords> = entries
            .into_iter()
            .filter_map(|entry| {
                let visibility =
                    Visibility::from_meta(&entry.service.meta, &context.visibility_key)
                        .unwrap_or_else(|_| {
                            unreadable_visibility.push(entry.service.id.clone());
                            Visibility::nobody()
                        });
                build_instance(entry, context, visibility)
            })
            .collect();
        // Kept until the next change: without this a collected Vec holds up to twice the room
        // (an instance is ~400 bytes), which is most of the cache's memory at 10,000 services.
        instances.shrink_to_fit();
        let mut addresses = std::collections::HashSet::new();
        let mut endpoints = std::collections::HashSet::new();
        let has_repeats = !instances.iter().all(|i| {
            addresses.insert(&i.address)
                && endpoints.insert((&i.node_name, &i.srv.target, i.srv.port))
        });
        let depends_on_client = instances
            .iter()
            .any(|instance| instance.visibility != Visibility::All);
        Self {
            instances,
            has_repeats,
            ttl: context.ttl,
            rotation: AtomicUsize::new(0),
            unreadable_visibility,
            depends_on_client,
            virtual_ip,
        }
    }

    /// The instances that have the named `port` (lower-case), their SRV records carrying it
    /// (Consul 1.22's `<port>.port` names); `None` when no instance has it.
    pub(crate) fn with_port(&self, port: &str) -> Option<Self> {
        let instances: Vec<InstanceRecords> = (self.instances.iter())
            .filter_map(|instance| {
                let (_, number) = instance.named_ports.iter().find(|(n, _)| n == port)?;
                let mut instance = instance.clone();
                instance.srv = SRV::new(1, instance.srv.weight, *number, instance.srv.target);
                instance.wire = None;
                Some(instance)
            })
            .collect();
        (!instances.is_empty()).then(|| Self {
            instances,
            has_repeats: self.has_repeats,
            ttl: self.ttl,
            rotation: AtomicUsize::new(0),
            unreadable_visibility: self.unreadable_visibility.clone(),
            depends_on_client: self.depends_on_client,
            virtual_ip: self.virtual_ip,
        })
    }

    /// An instance on the node `name` (lower-case), for a node Consul lists nowhere else.
    pub(crate) fn instance_on_node(&self, name: &str) -> Option<&InstanceRecords> {
        let first = |instance: &&InstanceRecords| {
            let label = instance.node_name.iter().next();
            label.is_some_and(|label| label.eq_ignore_ascii_case(name.as_bytes()))
        };
        self.instances.iter().find(first)
    }

    /// The virtual IP Consul assigned the service, read from its Connect instances.
    pub(crate) fn virtual_ip(&self) -> Option<IpAddr> {
        self.virtual_ip
    }

    /// IDs of the instances whose visibility rule could not be read: they are answered to no
    /// one.
    pub(crate) fn unreadable_visibility(&self) -> &[String] {
        &self.unreadable_visibility
    }

    /// How much of `client`'s address decides what is answered (the longest prefix of the
    /// visibility rules' networks of its family); `None` when who asks decides nothing (no
    /// instance has a rule).
    pub(crate) fn client_scope(&self, client: ClientNet) -> Option<u8> {
        self.depends_on_client.then(|| {
            self.instances
                .iter()
                .map(|instance| instance.visibility.scope(client))
                .max()
                .unwrap_or(0)
        })
    }

    pub(crate) fn ttl(&self) -> u32 {
        self.ttl
    }

    /// Whether answers must leave repeated instances out.
    pub(crate) fn has_repeats(&self) -> bool {
        self.has_repeats
    }

    /// The distinct IP addresses of the instances, each with who sees an instance there.
    pub(crate) fn ip_addresses(&self) -> HashMap<IpAddr, Visibility> {
        let mut addresses: HashMap<IpAddr, Visibility> = HashMap::new();
        for instance in &self.instances {
            if let InstanceAddress::Ip(ip) = instance.address {
                let seen = match addresses.get(&ip) {
                    Some(known) => known.union(&instance.visibility),
                    None => instance.visibility.clone(),
                };
                addresses.insert(ip, seen);
            }
        }
        addresses
    }

    /// The instances `client` sees that carry `tag` (all when `None`), starting at the next
    /// rotation offset.
    pub(crate) fn select<'a>(
        &'a self,
        tag: Option<&'a str>,
        client: ClientNet,
    ) -> impl Iterator<Item = &'a InstanceRecords> {
        let count = self.instances.len().max(1);
        let start = self.rotation.fetch_add(1, Ordering::Relaxed) % count;
        let (tail, head) = self.instances.split_at(start.min(self.instances.len()));
        head.iter().chain(tail).filter(move |instance| {
            tag.is_none_or(|t| instance.tags.iter().any(|it| it == t))
                && instance.visibility.allows(client)
        })
    }
}

impl EntryContext {
    /// The labels after `<node>.node` and after `<hex>.addr` in SRV targets, as Consul's
    /// `nodeCanonicalDNSName`: the datacenter; for a peer's instances (`peer` of the node, a
    /// group's member) `<peer>.peer` and none.
    fn target_suffixes<'a>(&'a self, peer: &'a str) -> (Vec<&'a str>, Vec<&'a str>) {
        let scope = Scope::parse(&self.datacenter);
        let dc = self.target_datacenter.as_str();
        match Some(peer).filter(|peer| !peer.is_empty()).or(scope.peer) {
            Some(peer) => (vec![peer, "peer"], vec![]),
            None => (vec![dc], vec![dc]),
        }
    }
}

fn build_instance(
    entry: &HealthEntry,
    context: &EntryContext,
    visibility: Visibility,
) -> Option<InstanceRecords> {
    let peer = entry.node.peer_name.to_ascii_lowercase();
    let (node_suffix, addr_suffix) = context.target_suffixes(&peer);
    let node_labels = [&[entry.node.node.as_str(), "node"][..], &node_suffix].concat();
    let node_name = label_name(&node_labels, &context.domain)?;
    let node_address = entry.node.address.parse::<IpAddr>().ok();
    let (address, target) = if entry.service.address.is_empty() {
        (InstanceAddress::Ip(node_address?), node_name.clone())
    } else {
        match InstanceAddress::parse(&entry.service.address)? {
            InstanceAddress::Ip(ip) => {
                let hex = hex_address(ip);
                let labels = [&[hex.as_str(), "addr"][..], &addr_suffix].concat();
                let target = label_name(&labels, &context.domain)?;
                (InstanceAddress::Ip(ip), target)
            }
            InstanceAddress::Host(host) => (InstanceAddress::Host(host.clone()), host),
        }
    };
    let weight = entry.srv_weight();
    let mut instance = InstanceRecords {
        tags: entry
            .service
            .tags
            .iter()
            .map(|t| t.to_ascii_lowercase())
            .collect(),
        address,
        srv: SRV::new(1, weight, entry.service.port, target),
        node_meta_txt: meta_txt(&entry.node.meta),
        node_name,
        node_address,
        wire: None,
        visibility,
        named_ports: (entry.service.ports.iter())
            .map(|port| (port.name.to_ascii_lowercase(), port.port))
            .collect(),
    };
    if let InstanceAddress::Ip(ip) = instance.address {
        instance.wire = instance_wire(ip, &instance.srv, &instance.srv_additionals(context.ttl));
    }
    Some(instance)
}

impl InstanceRecords {
    /// Records for the additional section of an SRV answer: the target's address and the node's
    /// metadata as TXT. Built when asked (the general path; the fast path copies `wire`), so that
    /// the cache does not hold them twice: as hickory records they are 272 bytes each.
    pub(crate) fn srv_additionals(&self, ttl: u32) -> Vec<Record> {
        let address = match self.address {
            InstanceAddress::Ip(ip) => Some(Record::from_rdata(
                self.srv.target.clone(),
                ttl,
                ip_rdata(ip),
            )),
            InstanceAddress::Host(_) => None,
        };
        let meta = self.node_meta_txt.iter().map(|text| {
            Record::from_rdata(
                self.node_name.clone(),
                ttl,
                RData::TXT(TXT::new(vec![text.clone()])),
            )
        });
        address.into_iter().chain(meta).collect()
    }
}

fn instance_wire(ip: IpAddr, srv: &SRV, additionals: &[Record]) -> Option<InstanceWire> {
    let mut srv_rdata = Vec::with_capacity(64);
    wire::write_srv_rdata(&mut srv_rdata, srv);
    let mut bytes = Vec::with_capacity(64 * additionals.len());
    for record in additionals {
        wire::write_record(&mut bytes, record)?;
    }
    Some(InstanceWire {
        ip,
        srv_rdata,
        additionals: bytes,
        additional_count: u16::try_from(additionals.len()).ok()?,
    })
}

/// A node's metadata as Consul writes it into TXT records: `key=value`, or just the value for
/// keys starting with `rfc1035-`.
pub(crate) fn meta_txt(meta: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    meta.iter()
        .map(|(key, value)| {
            if key.to_ascii_lowercase().starts_with("rfc1035-") {
                value.clone()
            } else {
                format!("{key}={value}")
            }
        })
        .collect()
}

/// `labels` followed by `domain`, or `None` (logged) when a label is not valid in DNS.
fn label_name(labels: &[&str], domain: &Name) -> Option<Name> {
    let built = Name::from_labels(labels.iter().map(|l| l.as_bytes()))
        .and_then(|name| name.append_domain(domain));
    match built {
        Ok(name) => Some(name),
        Err(error) => {
            debug!(?labels, %error, "instance left out: its name is not valid in DNS");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> HealthEntry {
        serde_json::from_str(json).unwrap()
    }

    fn anyone() -> ClientNet {
        ClientNet::from(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
    }

    fn context() -> EntryContext {
        EntryContext {
            datacenter: "dc1".into(),
            target_datacenter: "dc1".into(),
            domain: Name::from_ascii("consul.").unwrap(),
            ttl: 0,
            visibility_key: Arc::from("dns-allow"),
        }
    }

    #[test]
    fn service_address_gives_addr_target() {
        let e = entry(
            r#"{"Node":{"Node":"n1","Address":"127.0.0.1"},
            "Service":{"Service":"web","Address":"10.1.0.1","Port":8080,"Tags":["V1"]},
            "Checks":[{"Status":"passing"}]}"#,
        );
        let answers = ServiceAnswers::build(&[e], &context());
        let instance = answers.select(Some("v1"), anyone()).next().unwrap();
        assert_eq!(instance.srv.target.to_string(), "0a010001.addr.dc1.consul.");
        assert_eq!(instance.srv.port, 8080);
    }

    #[test]
    fn node_address_gives_node_target_and_warning_is_left_out() {
        let passing = entry(
            r#"{"Node":{"Node":"n1","Address":"127.0.0.1"},
            "Service":{"Service":"db","Address":"","Port":5432},"Checks":[{"Status":"passing"}]}"#,
        );
        let warning = entry(
            r#"{"Node":{"Node":"n2","Address":"127.0.0.2"},
            "Service":{"Service":"db","Address":"","Port":5432},"Checks":[{"Status":"warning"}]}"#,
        );
        let answers = ServiceAnswers::build(&[passing, warning], &context());
        assert_eq!(answers.select(None, anyone()).count(), 1);
        let instance = answers.select(None, anyone()).next().unwrap();
        assert_eq!(instance.srv.target.to_string(), "n1.node.dc1.consul.");
    }

    #[test]
    fn ipv6_hex_has_32_digits() {
        assert_eq!(
            hex_address("fd00::1".parse().unwrap()),
            "fd000000000000000000000000000001"
        );
    }

    #[test]
    fn selection_rotates() {
        let entries: Vec<_> = (1..=3)
            .map(|i| {
                entry(&format!(
                    r#"{{"Node":{{"Node":"n","Address":"127.0.0.1"}},
                    "Service":{{"Service":"web","Address":"10.0.0.{i}","Port":80}},"Checks":[]}}"#
                ))
            })
            .collect();
        let answers = ServiceAnswers::build(&entries, &context());
        let targets: Vec<String> = (0..3)
            .map(|_| {
                answers
                    .select(None, anyone())
                    .next()
                    .unwrap()
                    .srv
                    .target
                    .to_string()
            })
            .collect();
        assert_ne!(targets[0], targets[1]);
        assert_ne!(targets[1], targets[2]);
    }
}
