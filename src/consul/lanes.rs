//! Which HTTP connection a request to Consul goes out on, within the connection budget.
//!
//! A Consul agent allows each client address `limits { http_max_conns_per_client }` connections
//! (200 by default), counted by source address: a process holding them all locks out every
//! other client on the host, the applications that register themselves included. So the bridge
//! holds at most `--consul-max-connections` to an agent, whatever it watches:
//! - requests that return at once (reads, prepared-query executions) share a few connections:
//!   at most [`Budget::plain`] at a time;
//! - parked blocking queries get the rest. Over plain HTTP/1.1 each holds a connection of its
//!   own, so at most `max_connections - plain` park at once. Over HTTPS Consul's Go server
//!   speaks HTTP/2 and parked queries share connections as streams, at most
//!   [`PARKED_PER_LANE`] per connection ("lane": one client each; Go allows 250 streams and
//!   hyper would queue a stream past that behind queries parked for minutes), so the bound is
//!   `--max-parked-queries`, which keeps memory bounded too.
//!
//! An agent whose operator set its limit below the budget closes the connections past it, and
//! the host's other clients are refused with the bridge's. Over plain HTTP the bridge then
//! learns the limit: it parks a quarter fewer queries than it held when refused (at least 2
//! fewer), again on each later refusal, so that its reads on demand and the host's clients get
//! through. A refusal while holding fewer than [`MIN_LEARNABLE`] is not the agent's limit (a
//! connection closed as it was reused, say) and teaches nothing. The lower limit holds for
//! [`LEARNED_FOR`] after the last refusal, or until the agent is seen restarting (it refuses to
//! connect at all, and may come back with another limit).
//!
//! A few parked places are kept for the watches every answer depends on (service lists, node
//! lists, query definitions, health changes). Those of the local datacenter always park
//! ([`Parking::Essential`]); those of other datacenters ([`Parking::List`]) park within the
//! limit, ahead of services, and are read every few seconds when there is no room, so that a
//! federation of many datacenters cannot take more than the budget. Service watches park only
//! in what the lists leave, and are read on demand when there is no room ([`super::watch`]).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Budget;

/// Parked queries per HTTP/2 connection: below Go's default of 250 concurrent streams, with a
/// margin for the agent's own limits changing.
pub(crate) const PARKED_PER_LANE: usize = 200;
/// Parked places kept for essential watches.
const ESSENTIAL_RESERVE: usize = 8;
/// The local datacenter's lists (services, failing checks, nodes, query definitions), which
/// park whatever the others hold.
const LOCAL_LISTS: usize = 4;
/// Fewer parked queries than this when a connection is refused cannot be the agent's limit.
const MIN_LEARNABLE: usize = 16;
/// How long a learned lower limit holds after the last refusal.
const LEARNED_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Which HTTP versions a client may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Versions {
    Http1Only,
    /// HTTP/2 when the agent offers it (ALPN over HTTPS), else HTTP/1.1.
    Negotiated,
}

/// Builds one more HTTP client with the bridge's settings.
pub(crate) type MakeClient = Box<dyn Fn(Versions) -> Result<reqwest::Client, String> + Send + Sync>;

/// Whether a parked query may use the places kept for essential watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parking {
    /// A list of the local datacenter: always parks (a handful, within the reserve).
    Essential,
    /// A list of another datacenter: parks while the limit has room.
    List,
    /// A service watch: parks only while there is room beyond the lists' places.
    IfRoom,
}

/// The clients requests go out on.
pub(crate) struct Lanes {
    /// Requests that do not park, the agent's datacenter first among them. HTTP/1.1 only: an
    /// agent refusing the client certificate (TLS 1.3 says so after the handshake) is then
    /// reported by its alert, `BadCertificate`; over HTTP/2 the client's first write fails first
    /// and the error only says "broken pipe".
    plain: reqwest::Client,
    plain_permits: Arc<Semaphore>,
    /// Of the plain places, how many background reads (sweeps) may take at once, so that the
    /// others never queue behind a sweep of thousands.
    background_permits: Arc<Semaphore>,
    plain_total: usize,
    /// Over plain HTTP one lane, sharing the plain client; over HTTPS as many as needed, up to
    /// the budget.
    parked: Mutex<Vec<Arc<Lane>>>,
    parked_now: Arc<AtomicUsize>,
    /// Of those, service watches: the keeper parks up to [`Self::service_parking`] of them,
    /// and a place it hands out must not be refused for essential watches counted in.
    services_now: Arc<AtomicUsize>,
    parked_limit: usize,
    /// Parked queries allowed after the agent refused a connection (see the module's text),
    /// and until when.
    learned_limit: AtomicUsize,
    learned_until: Mutex<Option<std::time::Instant>>,
    max_lanes: usize,
    multiplexed: bool,
    make: MakeClient,
}

struct Lane {
    http: reqwest::Client,
    parked: AtomicUsize,
}

/// A parked query's place, given back when the query ends (dropped).
pub(crate) struct ParkedSlot {
    lane: Arc<Lane>,
    parked_now: Arc<AtomicUsize>,
    /// For a service watch: the count of those parked, which the keeper's quota is about.
    services_now: Option<Arc<AtomicUsize>>,
}

impl Drop for ParkedSlot {
    fn drop(&mut self) {
        self.lane.parked.fetch_sub(1, Ordering::Relaxed);
        self.parked_now.fetch_sub(1, Ordering::Relaxed);
        if let Some(services) = &self.services_now {
            services.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl ParkedSlot {
    /// The client to send the parked query with.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.lane.http
    }
}

/// A request that does not park: its client and its place among the plain requests.
pub(crate) struct PlainSlot<'a> {
    pub(crate) client: &'a reqwest::Client,
    _permit: OwnedSemaphorePermit,
    _background: Option<OwnedSemaphorePermit>,
}

impl Lanes {
    /// `multiplexed`: the agents are reached over HTTPS, where parked queries share connections.
    /// Builds the first client now, so that bad settings are reported at start.
    pub(crate) fn new(multiplexed: bool, budget: Budget, make: MakeClient) -> Result<Self, String> {
        let plain = make(Versions::Http1Only)?;
        let plain_count = budget.plain.clamp(1, budget.max_connections.max(2) - 1);
        let (lanes, parked_limit, max_lanes) = if multiplexed {
            let max_lanes = budget.max_connections.saturating_sub(1).max(1);
            (
                Vec::new(),
                budget.max_parked.min(max_lanes * PARKED_PER_LANE),
                max_lanes,
            )
        } else {
            let lane = Arc::new(Lane {
                http: plain.clone(),
                parked: AtomicUsize::new(0),
            });
            let limit = budget.max_connections.saturating_sub(plain_count);
            (vec![lane], limit.min(budget.max_parked), 1)
        };
        Ok(Self {
            plain,
            plain_permits: Arc::new(Semaphore::new(plain_count)),
            background_permits: Arc::new(Semaphore::new((plain_count / 2).max(1))),
            plain_total: plain_count,
            parked: Mutex::new(lanes),
            parked_now: Arc::default(),
            services_now: Arc::default(),
            parked_limit,
            learned_limit: AtomicUsize::new(usize::MAX),
            learned_until: Mutex::new(None),
            max_lanes,
            multiplexed,
            make,
        })
    }

    /// The client for a request that does not park, once one of the plain places is free; a
    /// `background` request first waits for one of the places background requests may take.
    pub(crate) async fn plain(&self, background: bool) -> Result<PlainSlot<'_>, String> {
        let closed = |_| "the Consul client is shutting down".to_owned();
        let background = match background {
            true => Some(
                self.background_permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(closed)?,
            ),
            false => None,
        };
        let permit = self
            .plain_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(closed)?;
        Ok(PlainSlot {
            client: &self.plain,
            _permit: permit,
            _background: background,
        })
    }

    /// How many service watches may park at once: the limit less the places of the lists (at
    /// least the essential reserve).
    pub(crate) fn service_parking(&self) -> usize {
        let lists = self.parked() - self.services_now.load(Ordering::Relaxed).min(self.parked());
        self.parking_limit()
            .saturating_sub(lists.max(ESSENTIAL_RESERVE))
    }

    /// How many queries may park at once now: the budget's number, or fewer once the agent
    /// refused connections.
    pub(crate) fn parking_limit(&self) -> usize {
        self.parking_limit_at(std::time::Instant::now())
    }

    fn parking_limit_at(&self, now: std::time::Instant) -> usize {
        let learned = self.learned_limit.load(Ordering::Relaxed);
        if learned != usize::MAX {
            let mut until = self.learned_until.lock().unwrap_or_else(|p| p.into_inner());
            if until.is_some_and(|until| now >= until) {
                *until = None;
                self.learned_limit.store(usize::MAX, Ordering::Relaxed);
                return self.parked_limit;
            }
        }
        self.parked_limit.min(learned)
    }

    /// The agent refused a connection: over plain HTTP, park fewer from now on (a quarter fewer
    /// than held now, at least 2) and return the new limit of parked queries. Over HTTP/2 the
    /// parked queries hold few connections, so nothing changes (`None`).
    pub(crate) fn learn_refusal(&self) -> Option<usize> {
        if self.multiplexed {
            return None;
        }
        let held = self.parked();
        if held < MIN_LEARNABLE {
            return Some(self.parking_limit());
        }
        let lower = held.saturating_sub((held / 4).max(2));
        self.learned_limit.fetch_min(lower, Ordering::Relaxed);
        *self.learned_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::time::Instant::now() + LEARNED_FOR);
        Some(self.parking_limit())
    }

    /// The agent is not listening (restarting, perhaps with another limit): park up to the
    /// budget again.
    pub(crate) fn forget_refusals(&self) {
        self.learned_limit.store(usize::MAX, Ordering::Relaxed);
        *self.learned_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Blocking queries parked now.
    pub(crate) fn parked(&self) -> usize {
        self.parked_now.load(Ordering::Relaxed)
    }

    /// Connections held or about to be: over HTTP/1.1 one per parked query plus the plain
    /// requests in flight; over HTTP/2 the lanes plus the plain client's.
    pub(crate) fn connections(&self) -> usize {
        let plain_in_flight = self.plain_total - self.plain_permits.available_permits();
        match self.multiplexed {
            true => self.lanes().len() + plain_in_flight.max(1),
            false => self.parked() + plain_in_flight,
        }
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Lane>>> {
        // A poisoned lock only means another watch panicked while choosing; the list is intact.
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more parked query, on a lane with room (opening one when all are full
    /// and the budget allows); `None` when the budget has no room for it.
    pub(crate) fn park(&self, parking: Parking) -> Result<Option<ParkedSlot>, String> {
        let mut lanes = self.lanes();
        let full = match parking {
            Parking::Essential => false,
            // The local datacenter's lists always find their places.
            Parking::List => self.parked() + LOCAL_LISTS >= self.parking_limit(),
            Parking::IfRoom => {
                self.services_now.load(Ordering::Relaxed) >= self.service_parking()
                    || self.parked() >= self.parking_limit()
            }
        };
        if full {
            return Ok(None);
        }
        let roomy = lanes.iter().find(|lane| {
            !self.multiplexed || lane.parked.load(Ordering::Relaxed) < PARKED_PER_LANE
        });
        if let Some(lane) = roomy {
            return Ok(Some(self.take(lane, parking)));
        }
        if lanes.len() >= self.max_lanes && parking == Parking::IfRoom {
            return Ok(None);
        }
        let lane = Arc::new(Lane {
            http: (self.make)(Versions::Negotiated)?,
            parked: AtomicUsize::new(0),
        });
        lanes.push(Arc::clone(&lane));
        Ok(Some(self.take(&lane, parking)))
    }

    fn take(&self, lane: &Arc<Lane>, parking: Parking) -> ParkedSlot {
        lane.parked.fetch_add(1, Ordering::Relaxed);
        self.parked_now.fetch_add(1, Ordering::Relaxed);
        let services_now = (parking == Parking::IfRoom).then(|| {
            self.services_now.fetch_add(1, Ordering::Relaxed);
            self.services_now.clone()
        });
        ParkedSlot {
            lane: Arc::clone(lane),
            parked_now: self.parked_now.clone(),
            services_now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane_loads(lanes: &Lanes) -> Vec<usize> {
        lanes
            .lanes()
            .iter()
            .map(|lane| lane.parked.load(Ordering::Relaxed))
            .collect()
    }

    fn lanes(multiplexed: bool, budget: Budget) -> Lanes {
        super::super::tls::install_crypto_provider();
        let make: MakeClient = Box::new(|_| {
            reqwest::Client::builder()
                .build()
                .map_err(|e| e.to_string())
        });
        Lanes::new(multiplexed, budget, make).unwrap_or_else(|e| panic!("client: {e}"))
    }

    fn park(lanes: &Lanes, parking: Parking) -> Option<ParkedSlot> {
        lanes.park(parking).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_refusal_over_plain_http_parks_fewer_and_https_keeps_its_lanes() {
        let budget = Budget {
            max_connections: 32,
            plain: 4,
            max_parked: 1000,
        };
        let plain = lanes(false, budget);
        assert_eq!(plain.parking_limit(), 28);
        let held: Vec<_> = (0..20)
            .filter_map(|_| park(&plain, Parking::Essential))
            .collect();
        // Refused while holding 20: a quarter fewer.
        assert_eq!(plain.learn_refusal(), Some(15));
        // The lists' 20 places leave services none.
        assert_eq!(plain.service_parking(), 0);
        // Refused again at 20 (not yet fewer): no lower; refused at 16: at least 2 fewer.
        assert_eq!(plain.learn_refusal(), Some(15));
        drop(held);
        assert_eq!(plain.service_parking(), 15 - ESSENTIAL_RESERVE);
        let held: Vec<_> = (0..16)
            .filter_map(|_| park(&plain, Parking::Essential))
            .collect();
        assert_eq!(plain.learn_refusal(), Some(12));
        drop(held);
        assert_eq!(plain.service_parking(), 12 - ESSENTIAL_RESERVE);
        // A refusal while holding a few (a closed keep-alive connection) teaches nothing.
        let held: Vec<_> = (0..2)
            .filter_map(|_| park(&plain, Parking::Essential))
            .collect();
        assert_eq!(plain.learn_refusal(), Some(12));
        drop(held);
        // The lower limit holds for a while after the last refusal, then the budget's again.
        let later = std::time::Instant::now() + LEARNED_FOR + std::time::Duration::from_secs(1);
        assert_eq!(plain.parking_limit_at(later), 28);
        // The agent seen restarting: the budget's number again.
        plain.forget_refusals();
        assert_eq!(plain.parking_limit(), 28);
        let multiplexed = lanes(true, budget);
        assert_eq!(multiplexed.learn_refusal(), None);
        assert_eq!(multiplexed.parking_limit(), 1000);
    }

    #[test]
    fn https_opens_a_lane_per_full_set_of_parked_queries_and_reuses_freed_places() {
        let budget = Budget {
            max_connections: 10,
            plain: 2,
            max_parked: 1000,
        };
        let lanes = lanes(true, budget);
        let mut slots: Vec<_> = (0..PARKED_PER_LANE * 2 + 1)
            .map(|_| park(&lanes, Parking::IfRoom).expect("room"))
            .collect();
        assert_eq!(lane_loads(&lanes), [PARKED_PER_LANE, PARKED_PER_LANE, 1]);
        slots.drain(..10);
        for _ in 0..10 {
            slots.push(park(&lanes, Parking::IfRoom).expect("room"));
        }
        assert_eq!(
            lane_loads(&lanes),
            [PARKED_PER_LANE, PARKED_PER_LANE, 1],
            "freed places are used before a new lane"
        );
        drop(slots);
        assert_eq!(lane_loads(&lanes), [0, 0, 0]);
    }

    #[test]
    fn plain_http_parks_within_the_connection_budget_and_keeps_the_reserve() {
        let budget = Budget {
            max_connections: 30,
            plain: 4,
            max_parked: 1000,
        };
        let lanes = lanes(false, budget);
        // 26 parked places, 8 of them kept for essential watches.
        let services: Vec<_> = std::iter::from_fn(|| park(&lanes, Parking::IfRoom)).collect();
        assert_eq!(services.len(), 18);
        let essential: Vec<_> = (0..8)
            .map(|_| park(&lanes, Parking::Essential).expect("reserved"))
            .collect();
        assert_eq!(lanes.parked(), 26);
        assert_eq!(lanes.connections(), 26);
        drop(services);
        assert_eq!(lanes.parked(), 8);
        drop(essential);
        assert_eq!(lane_loads(&lanes), [0]);
    }

    #[test]
    fn https_stops_at_the_parked_bound_and_the_lane_bound() {
        let lanes = lanes(
            true,
            Budget {
                max_connections: 3,
                plain: 1,
                max_parked: 10_000,
            },
        );
        // 2 lanes of 200, less the reserve.
        let services: Vec<_> = std::iter::from_fn(|| park(&lanes, Parking::IfRoom)).collect();
        assert_eq!(services.len(), 2 * PARKED_PER_LANE - ESSENTIAL_RESERVE);
        assert_eq!(lane_loads(&lanes).len(), 2);
        let lanes = super::tests::lanes(
            true,
            Budget {
                max_connections: 50,
                plain: 2,
                max_parked: 100,
            },
        );
        let services: Vec<_> = std::iter::from_fn(|| park(&lanes, Parking::IfRoom)).collect();
        assert_eq!(services.len(), 100 - ESSENTIAL_RESERVE);
    }

    #[tokio::test]
    async fn plain_requests_wait_for_a_free_place() {
        let lanes = lanes(
            false,
            Budget {
                max_connections: 10,
                plain: 2,
                max_parked: 1000,
            },
        );
        let wait = std::time::Duration::from_millis(50);
        let first = lanes.plain(true).await.expect("place");
        // One of the two places may be taken by background requests.
        let second = tokio::time::timeout(wait, lanes.plain(true)).await;
        assert!(second.is_err(), "a second background request waits");
        let urgent = lanes.plain(false).await.expect("the other place");
        let third = tokio::time::timeout(wait, lanes.plain(false)).await;
        assert!(third.is_err(), "a third waits");
        drop(first);
        let third = tokio::time::timeout(wait, lanes.plain(false)).await;
        assert!(third.is_ok(), "and goes once one ends");
        drop(urgent);
    }
}
