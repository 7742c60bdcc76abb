//! Which HTTP client a request to Consul goes out on.
//!
//! Every watched service keeps one blocking query parked at the agent. Over plain HTTP/1.1 each
//! parked query holds a connection of its own, whichever client sends it, so one client serves
//! everything. Over HTTPS, Consul's Go server speaks HTTP/2, and parked queries share a connection
//! as streams: 51 connections for 10,000 watched services instead of 10,000, which cuts the
//! bridge's memory by ~40 % (hyper's per-connection buffers are much of a parked HTTP/1.1 query's
//! cost) and stays under the agent's `http_max_conns_per_client` (200 by default). Go allows 250
//! concurrent streams per connection and hyper would queue a stream past that behind queries that
//! park for minutes, so parked queries are spread over "lanes", one client (and so one
//! connection per agent) each, at most [`PARKED_PER_LANE`] per lane.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

/// Parked queries per HTTP/2 connection: below Go's default of 250 concurrent streams, with a
/// margin for the agent's own limits changing.
pub(crate) const PARKED_PER_LANE: usize = 200;

/// Which HTTP versions a client may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Versions {
    Http1Only,
    /// HTTP/2 when the agent offers it (ALPN over HTTPS), else HTTP/1.1.
    Negotiated,
}

/// Builds one more HTTP client with the bridge's settings.
pub(crate) type MakeClient = Box<dyn Fn(Versions) -> Result<reqwest::Client, String> + Send + Sync>;

/// The clients requests go out on.
pub(crate) struct Lanes {
    /// Requests that do not park, the agent's datacenter first among them. HTTP/1.1 only: an
    /// agent refusing the client certificate (TLS 1.3 says so after the handshake) is then
    /// reported by its alert, `BadCertificate`; over HTTP/2 the client's first write fails first
    /// and the error only says "broken pipe".
    plain: reqwest::Client,
    /// Over plain HTTP one lane, sharing the plain client; over HTTPS as many as needed.
    parked: Mutex<Vec<Arc<Lane>>>,
    multiplexed: bool,
    make: MakeClient,
}

struct Lane {
    http: reqwest::Client,
    parked: AtomicUsize,
}

/// A parked query's place in its lane, given back when the query ends (dropped).
pub(crate) struct ParkedSlot {
    lane: Arc<Lane>,
}

impl Drop for ParkedSlot {
    fn drop(&mut self) {
        self.lane.parked.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ParkedSlot {
    /// The client to send the parked query with.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.lane.http
    }
}

impl Lanes {
    /// `multiplexed`: the agents are reached over HTTPS, where parked queries share connections.
    /// Builds the first client now, so that bad settings are reported at start.
    pub(crate) fn new(multiplexed: bool, make: MakeClient) -> Result<Self, String> {
        let plain = make(Versions::Http1Only)?;
        let lanes = if multiplexed {
            Vec::new()
        } else {
            vec![Arc::new(Lane {
                http: plain.clone(),
                parked: AtomicUsize::new(0),
            })]
        };
        Ok(Self {
            plain,
            parked: Mutex::new(lanes),
            multiplexed,
            make,
        })
    }

    /// The client for a request that does not park.
    pub(crate) fn plain(&self) -> &reqwest::Client {
        &self.plain
    }

    /// A lane with room for one more parked query, opening a new one when all are full.
    pub(crate) fn park(&self) -> Result<ParkedSlot, String> {
        // A poisoned lock only means another watch panicked while choosing; the list is intact.
        let mut lanes = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        let roomy = lanes.iter().find(|lane| {
            !self.multiplexed || lane.parked.load(Ordering::Relaxed) < PARKED_PER_LANE
        });
        if let Some(lane) = roomy {
            return Ok(Self::take(lane));
        }
        let lane = Arc::new(Lane {
            http: (self.make)(Versions::Negotiated)?,
            parked: AtomicUsize::new(0),
        });
        lanes.push(Arc::clone(&lane));
        Ok(Self::take(&lane))
    }

    fn take(lane: &Arc<Lane>) -> ParkedSlot {
        lane.parked.fetch_add(1, Ordering::Relaxed);
        ParkedSlot {
            lane: Arc::clone(lane),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane_loads(lanes: &Lanes) -> Vec<usize> {
        let lanes = lanes.parked.lock().unwrap_or_else(|p| p.into_inner());
        lanes
            .iter()
            .map(|lane| lane.parked.load(Ordering::Relaxed))
            .collect()
    }

    fn lanes(multiplexed: bool) -> Lanes {
        super::super::tls::install_crypto_provider();
        Lanes::new(
            multiplexed,
            Box::new(|_| {
                reqwest::Client::builder()
                    .build()
                    .map_err(|e| e.to_string())
            }),
        )
        .unwrap_or_else(|e| panic!("client: {e}"))
    }

    #[test]
    fn https_opens_a_lane_per_full_set_of_parked_queries_and_reuses_freed_places() {
        let lanes = lanes(true);
        let mut slots: Vec<_> = (0..PARKED_PER_LANE * 2 + 1)
            .map(|_| lanes.park().unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_eq!(lane_loads(&lanes), [PARKED_PER_LANE, PARKED_PER_LANE, 1]);
        slots.drain(..10);
        for _ in 0..10 {
            slots.push(lanes.park().unwrap_or_else(|e| panic!("{e}")));
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
    fn plain_http_keeps_one_client() {
        let lanes = lanes(false);
        let slots: Vec<_> = (0..PARKED_PER_LANE * 3)
            .map(|_| lanes.park().unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_eq!(lane_loads(&lanes), [PARKED_PER_LANE * 3]);
        drop(slots);
    }
}
