//! Answers names outside the Consul domain: the zone files of `--zones-dir` ([`zones`]),
//! served authoritatively, and everything else forwarded to the `--recursor`s
//! ([`recursors`]). Both are hickory-server's own zone handlers in a hickory `Catalog`,
//! so this module only holds them and swaps in a new set of zones on reload (SIGHUP) without
//! dropping a query.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use hickory_proto::rr::{LowerName, Name};
use hickory_server::{
    net::runtime::Time,
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::{Catalog, ZoneHandler},
};
use tokio::sync::watch;

mod recursors;
mod zones;

use crate::config::Recursors;
use crate::dns::gate::Dnstap;
use recursors::RecursorChain;
use zones::Zone;

pub(crate) struct Fallback {
    zones_dir: Option<PathBuf>,
    forwarder: Option<Arc<RecursorChain>>,
    /// The zones and forwarder in use; a reload publishes a new set.
    catalog: watch::Sender<Arc<Catalog>>,
}

impl Fallback {
    /// Loads every zone file of `zones_dir` and sets up forwarding. `None` when there is
    /// nothing to serve outside the Consul domain (such names are then REFUSED).
    pub(crate) async fn load(
        zones_dir: Option<&Path>,
        recursors: &Recursors,
        dnstap: Option<Dnstap>,
    ) -> Result<Option<Self>, String> {
        let forwarder = match recursors.addrs.is_empty() {
            true => None,
            false => Some(forwarder(recursors, dnstap)?),
        };
        let zones = match zones_dir {
            Some(dir) => zones::load(dir).await?,
            None => Vec::new(),
        };
        if zones.is_empty() && forwarder.is_none() {
            return Ok(None);
        }
        let catalog = catalog(zones, forwarder.clone());
        Ok(Some(Self {
            zones_dir: zones_dir.map(Path::to_owned),
            forwarder,
            catalog: watch::Sender::new(Arc::new(catalog)),
        }))
    }

    /// Whether outside names are forwarded (so recursion is available, as DNS clients see it).
    pub(crate) fn forwards(&self) -> bool {
        self.forwarder.is_some()
    }

    /// Questions not forwarded because too many were outstanding, since start.
    pub(crate) fn recursor_refusals(&self) -> u64 {
        self.forwarder.as_ref().map_or(0, |f| f.refused())
    }

    /// Reads the zone files again and serves them from now on; on an error the zones in use stay.
    /// Returns how many zones are served.
    pub(crate) async fn reload(&self) -> Result<usize, String> {
        let zones = match &self.zones_dir {
            Some(dir) => zones::load(dir).await?,
            None => Vec::new(),
        };
        let count = zones.len();
        let catalog = Arc::new(catalog(zones, self.forwarder.clone()));
        self.catalog.send_replace(catalog);
        Ok(count)
    }

    pub(crate) async fn handle<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        // Queries in flight keep the catalog they started with; a reload only swaps the pointer.
        let catalog = self.catalog.borrow().clone();
        catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

fn catalog(zones: Vec<Zone>, forwarder: Option<Arc<RecursorChain>>) -> Catalog {
    let mut catalog = Catalog::new();
    if let Some(forwarder) = forwarder {
        let handler: Arc<dyn ZoneHandler> = forwarder;
        catalog.upsert(LowerName::from(Name::root()), vec![handler]);
    }
    for zone in zones {
        catalog.upsert(LowerName::from(zone.origin), vec![zone.handler]);
    }
    catalog
}

fn forwarder(recursors: &Recursors, dnstap: Option<Dnstap>) -> Result<Arc<RecursorChain>, String> {
    Ok(Arc::new(RecursorChain::new(recursors, dnstap)?))
}
