//! A busy catalog, as a mid-size cluster's: long-lived and rolling services on external nodes,
//! changed every second through `/v1/txn` (deploys that register a new service and deregister
//! an old one, health flips of random instances, instances moving address), with a model of
//! what Consul holds, so that every answer can be checked. Also the DNS load that asks live,
//! deregistered and random names from several client addresses, counting SERVFAILs.
//!
//! The churn test (`tests/it/churn.rs`) and `benches/churn.sh` drive it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde_json::{Value, json};

use super::{consul::ConsulApi, dns::query_bytes};

/// External nodes the instances live on.
const NODES: usize = 50;
/// Consul 1.8 takes at most 64 operations in one transaction.
const TXN_OPS: usize = 64;

/// One instance as Consul holds it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub node: String,
    pub address: String,
    pub passing: bool,
}

/// What changes one second brings.
#[derive(Debug, Clone, Copy)]
pub struct ChurnRate {
    pub deploys: usize,
    pub flips: usize,
    pub moves: usize,
}

/// One change written to Consul: when its write returned, and which service it touched.
#[derive(Debug, Clone)]
pub struct Change {
    pub at: Instant,
    pub service: String,
    pub kind: &'static str,
}

/// The catalog under churn: the model of what Consul holds.
pub struct BusyCatalog {
    api: ConsulApi,
    pub services: BTreeMap<String, Vec<Instance>>,
    /// Rolling services live now, oldest first.
    rolling: std::collections::VecDeque<String>,
    next_rolling: usize,
    next_address: u32,
    per_service: usize,
    rng: StdRng,
    /// Services that existed once and were deregistered.
    pub gone: Vec<String>,
}

impl BusyCatalog {
    /// Registers `long_lived` services (`live0000`...) and `rolling` ones (`roll000000`...), each
    /// with `per_service` passing instances on the external nodes.
    pub async fn register(
        api: &ConsulApi,
        long_lived: usize,
        rolling: usize,
        per_service: usize,
    ) -> Self {
        let mut catalog = Self {
            api: api.clone(),
            services: BTreeMap::new(),
            rolling: Default::default(),
            next_rolling: 0,
            next_address: 0,
            per_service,
            rng: StdRng::seed_from_u64(18),
            gone: Vec::new(),
        };
        let mut ops: Vec<Value> = (0..NODES)
            .map(|n| {
                json!({"Node": {"Verb": "set", "Node": {
                    "Node": format!("ext{n:02}"), "Address": format!("10.250.0.{n}")}}})
            })
            .collect();
        for i in 0..long_lived {
            ops.extend(catalog.new_service(format!("live{i:04}")));
        }
        for _ in 0..rolling {
            let name = catalog.next_rolling_name();
            ops.extend(catalog.new_service(name.clone()));
            catalog.rolling.push_back(name);
        }
        catalog.write(ops).await;
        catalog
    }

    fn next_rolling_name(&mut self) -> String {
        self.next_rolling += 1;
        format!("roll{:06}", self.next_rolling)
    }

    fn fresh_address(&mut self) -> String {
        self.next_address += 1;
        let a = self.next_address;
        format!("10.{}.{}.{}", 1 + (a >> 16) % 200, (a >> 8) & 255, a & 255)
    }

    /// The operations registering `name` with passing instances, added to the model.
    fn new_service(&mut self, name: String) -> Vec<Value> {
        let mut ops = Vec::new();
        let mut instances = Vec::new();
        let first_node = self.rng.random_range(0..NODES);
        for j in 0..self.per_service {
            let instance = Instance {
                id: format!("{name}-{j}"),
                node: format!("ext{:02}", (first_node + j) % NODES),
                address: self.fresh_address(),
                passing: true,
            };
            ops.push(service_op(&name, &instance));
            ops.push(check_op(&instance));
            instances.push(instance);
        }
        self.services.insert(name, instances);
        ops
    }

    /// Writes `ops` in transactions of at most 64 operations.
    async fn write(&self, ops: Vec<Value>) {
        for chunk in ops.chunks(TXN_OPS) {
            self.api.put("/v1/txn", json!(chunk)).await;
        }
    }

    /// One round of changes: `rate` of each kind, written in one transaction per kind; returns
    /// them with the moment each write returned.
    pub async fn step(&mut self, rate: ChurnRate) -> Vec<Change> {
        let mut changes = Vec::new();
        // Deploys: a new rolling service, the oldest rolling one deregistered.
        let mut ops = Vec::new();
        let mut touched = Vec::new();
        for _ in 0..rate.deploys {
            let name = self.next_rolling_name();
            ops.extend(self.new_service(name.clone()));
            self.rolling.push_back(name);
            if let Some(old) = self.rolling.pop_front() {
                for instance in self.services.remove(&old).unwrap_or_default() {
                    ops.push(json!({"Service": {"Verb": "delete", "Node": instance.node,
                        "Service": {"ID": instance.id, "Service": old}}}));
                }
                self.gone.push(old.clone());
                touched.push(old);
            }
        }
        self.write(ops).await;
        changes.extend(touched.into_iter().map(|service| Change {
            at: Instant::now(),
            service,
            kind: "deregister",
        }));
        // Flips and moves of random instances of live services.
        let names: Vec<String> = self.services.keys().cloned().collect();
        // One change per service per round, so each change's answer is known.
        let mut changed_now = HashSet::new();
        for (kind, count) in [("move", rate.moves), ("flip", rate.flips)] {
            let mut ops = Vec::new();
            let mut touched: Vec<(String, &'static str)> = Vec::new();
            for _ in 0..count {
                let Some(name) = names.choose(&mut self.rng).cloned() else {
                    break;
                };
                if !changed_now.insert(name.clone()) {
                    continue;
                }
                let address = self.fresh_address();
                let instances = self.services.get_mut(&name).expect("live service");
                let at = self.rng.random_range(0..instances.len());
                let instance = &mut instances[at];
                let kind = match kind {
                    "flip" => {
                        instance.passing = !instance.passing;
                        ops.push(check_op(instance));
                        match instance.passing {
                            true => "recovery",
                            false => "failure",
                        }
                    }
                    _ => {
                        instance.address = address;
                        ops.push(service_op(&name, instance));
                        "move"
                    }
                };
                touched.push((name.clone(), kind));
            }
            self.write(ops).await;
            let at = Instant::now();
            changes.extend(
                touched
                    .into_iter()
                    .map(|(service, kind)| Change { at, service, kind }),
            );
        }
        changes
    }

    /// The passing addresses of `service` now, sorted (empty: none, or not registered).
    pub fn expected(&self, service: &str) -> Vec<IpAddr> {
        let mut addresses: Vec<IpAddr> = self
            .services
            .get(service)
            .into_iter()
            .flatten()
            .filter(|i| i.passing)
            .filter_map(|i| i.address.parse().ok())
            .collect();
        addresses.sort();
        addresses
    }

    /// The names a client may ask now: live ones, deregistered ones and random ones.
    pub fn live_names(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// Consul's own view of `service`'s passing addresses, sorted.
    pub async fn consul_passing(&self, service: &str) -> Vec<IpAddr> {
        let body = self
            .api
            .get(&format!("/v1/health/service/{service}?passing"))
            .await
            .unwrap_or(Value::Null);
        let mut addresses: Vec<IpAddr> = body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["Service"]["Address"].as_str()?.parse().ok())
            .collect();
        addresses.sort();
        addresses
    }
}

fn service_op(name: &str, instance: &Instance) -> Value {
    json!({"Service": {"Verb": "set", "Node": instance.node, "Service": {
        "ID": instance.id, "Service": name, "Address": instance.address, "Port": 80}}})
}

fn check_op(instance: &Instance) -> Value {
    let status = if instance.passing {
        "passing"
    } else {
        "critical"
    };
    json!({"Check": {"Verb": "set", "Check": {
        "Node": instance.node, "CheckID": format!("chk-{}", instance.id), "Name": "up",
        "Status": status, "ServiceID": instance.id}}})
}

/// Which names the load asks, shared with the churn so it follows deploys.
#[derive(Default)]
pub struct AskedNames {
    live: Vec<String>,
    gone: Vec<String>,
}

/// DNS questions at a steady rate from several client addresses, until stopped. Counts the
/// SERVFAILs for names that were registered when asked.
pub struct DnsLoad {
    names: Arc<Mutex<AskedNames>>,
    stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicU64>,
    pub servfail_for_live: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
    servfail_names: Arc<Mutex<Vec<String>>>,
}

impl DnsLoad {
    /// `rate` questions a second in all, from each of `sources` (loopback addresses) in turn.
    pub fn start(server: SocketAddr, sources: &[&str], rate: u32) -> Self {
        let names = Arc::new(Mutex::new(AskedNames::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let servfail_for_live = Arc::new(AtomicU64::new(0));
        let servfail_names = Arc::new(Mutex::new(Vec::new()));
        let per_source = (rate / sources.len().max(1) as u32).max(1);
        let threads = sources
            .iter()
            .enumerate()
            .map(|(at, source)| {
                let source: IpAddr = source.parse().expect("source address");
                let (names, stop, sent) = (names.clone(), stop.clone(), sent.clone());
                let (servfails, servfail_names) =
                    (servfail_for_live.clone(), servfail_names.clone());
                std::thread::spawn(move || {
                    ask_from(
                        server,
                        source,
                        per_source,
                        at as u64,
                        &names,
                        &stop,
                        &sent,
                        &servfails,
                        &servfail_names,
                    )
                })
            })
            .collect();
        Self {
            names,
            stop,
            sent,
            servfail_for_live,
            threads,
            servfail_names,
        }
    }

    /// The names to ask from now on.
    pub fn follow(&self, catalog: &BusyCatalog) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.live = catalog.live_names();
        names.gone = catalog.gone.iter().rev().take(200).cloned().collect();
    }

    /// Names answered SERVFAIL while registered (at most 20 kept).
    pub fn servfail_names(&self) -> Vec<String> {
        self.servfail_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for DnsLoad {
    fn drop(&mut self) {
        self.stop();
    }
}

#[allow(clippy::too_many_arguments)] // one thread's whole setup, called once above
fn ask_from(
    server: SocketAddr,
    source: IpAddr,
    rate: u32,
    seed: u64,
    names: &Mutex<AskedNames>,
    stop: &AtomicBool,
    sent: &AtomicU64,
    servfails: &AtomicU64,
    servfail_names: &Mutex<Vec<String>>,
) {
    let Ok(socket) = UdpSocket::bind(SocketAddr::new(source, 0)) else {
        return;
    };
    let _ = socket.set_nonblocking(true);
    let mut rng = StdRng::seed_from_u64(seed);
    // What each ID asked, and whether the name was registered then.
    let mut asked: HashMap<u16, (String, bool)> = HashMap::new();
    let pause = Duration::from_secs(1) / rate;
    let mut next = Instant::now();
    let mut id: u16 = 0;
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let (name, live) = {
            let names = names.lock().unwrap_or_else(|e| e.into_inner());
            match rng.random_range(0..10) {
                0 => match names.gone.choose(&mut rng) {
                    Some(name) => (name.clone(), false),
                    None => (format!("nope{}", rng.random::<u32>()), false),
                },
                1 => (format!("nope{}", rng.random::<u32>()), false),
                // Real traffic is skewed: half the questions go to a tenth of the names.
                n => {
                    let live = &names.live;
                    let hot = (live.len() / 10).max(1).min(live.len());
                    let pick = match n % 2 {
                        0 => live[..hot].choose(&mut rng),
                        _ => live.choose(&mut rng),
                    };
                    match pick {
                        Some(name) => (name.clone(), true),
                        None => (format!("nope{}", rng.random::<u32>()), false),
                    }
                }
            }
        };
        id = id.wrapping_add(1);
        let question = query_bytes(
            id,
            &format!("{name}.service.consul."),
            RecordType::A,
            Some(1232),
        );
        if socket.send_to(&question, server).is_ok() {
            sent.fetch_add(1, Ordering::Relaxed);
            asked.insert(id, (name, live));
        }
        while let Ok(len) = socket.recv(&mut buf) {
            let Ok(answer) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            if let Some((name, live)) = asked.remove(&answer.metadata.id)
                && live
                && answer.metadata.response_code == ResponseCode::ServFail
            {
                servfails.fetch_add(1, Ordering::Relaxed);
                let mut seen = servfail_names.lock().unwrap_or_else(|e| e.into_inner());
                if seen.len() < 20 {
                    seen.push(name);
                }
            }
        }
        if asked.len() > 4096 {
            asked.clear();
        }
        next += pause;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_millis(200) {
            // Behind by more than a moment (a loaded machine): do not burst to catch up.
            next = now;
        }
    }
}
