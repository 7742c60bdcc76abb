//! Answers names outside the Consul domain: the zone files of `--zones-dir`, served
//! authoritatively, and everything else forwarded to the `--recursor`s. Both are hickory-server's
//! own zone handlers in a hickory `Catalog`, so this module only loads them and swaps in a new
//! set of zones on reload (SIGHUP) without dropping a query.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use hickory_proto::{
    rr::{LowerName, Name},
    serialize::txt::Parser,
};
use hickory_server::{
    net::runtime::Time,
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    store::{file::FileZoneHandler, in_memory::InMemoryZoneHandler},
    zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType},
};
use tracing::info;

use super::recursors::RecursorChain;
use crate::config::Recursors;

/// The file name of a zone file: `<origin>.zone`, e.g. `example.internal.zone`.
const ZONE_SUFFIX: &str = ".zone";

pub struct Fallback {
    zones_dir: Option<PathBuf>,
    forwarder: Option<Arc<dyn ZoneHandler>>,
    catalog: RwLock<Arc<Catalog>>,
}

impl Fallback {
    /// Loads every zone file of `zones_dir` and sets up forwarding. `None` when there is
    /// nothing to serve outside the Consul domain (such names are then REFUSED).
    pub async fn load(
        zones_dir: Option<&Path>,
        recursors: &Recursors,
    ) -> Result<Option<Self>, String> {
        let forwarder = match recursors.addrs.is_empty() {
            true => None,
            false => Some(forwarder(recursors)?),
        };
        let zones = match zones_dir {
            Some(dir) => load_zones(dir).await?,
            None => Vec::new(),
        };
        if zones.is_empty() && forwarder.is_none() {
            return Ok(None);
        }
        let catalog = catalog(zones, forwarder.clone());
        Ok(Some(Self {
            zones_dir: zones_dir.map(Path::to_owned),
            forwarder,
            catalog: RwLock::new(Arc::new(catalog)),
        }))
    }

    /// Whether outside names are forwarded (so recursion is available, as DNS clients see it).
    pub fn forwards(&self) -> bool {
        self.forwarder.is_some()
    }

    /// Reads the zone files again and serves them from now on; on an error the zones in use stay.
    /// Returns how many zones are served.
    pub async fn reload(&self) -> Result<usize, String> {
        let zones = match &self.zones_dir {
            Some(dir) => load_zones(dir).await?,
            None => Vec::new(),
        };
        let count = zones.len();
        let catalog = Arc::new(catalog(zones, self.forwarder.clone()));
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = catalog;
        Ok(count)
    }

    pub async fn handle<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        // Queries in flight keep the catalog they started with; a reload only swaps the pointer.
        let catalog = self
            .catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

fn catalog(zones: Vec<Zone>, forwarder: Option<Arc<dyn ZoneHandler>>) -> Catalog {
    let mut catalog = Catalog::new();
    if let Some(forwarder) = forwarder {
        catalog.upsert(LowerName::from(Name::root()), vec![forwarder]);
    }
    for zone in zones {
        catalog.upsert(LowerName::from(zone.origin), vec![zone.handler]);
    }
    catalog
}

fn forwarder(recursors: &Recursors) -> Result<Arc<dyn ZoneHandler>, String> {
    Ok(Arc::new(RecursorChain::new(recursors)?))
}

struct Zone {
    origin: Name,
    handler: Arc<dyn ZoneHandler>,
}

/// Every `<origin>.zone` file in `dir`, in name order.
async fn load_zones(dir: &Path) -> Result<Vec<Zone>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("--zones-dir {}: cannot read ({e})", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(ZONE_SUFFIX) && n.len() > ZONE_SUFFIX.len())
        })
        .collect();
    paths.sort();
    let mut zones = Vec::with_capacity(paths.len());
    for path in paths {
        zones.push(load_zone(&path).await?);
    }
    Ok(zones)
}

async fn load_zone(path: &Path) -> Result<Zone, String> {
    let shown = path.display();
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let origin_text = file_name.trim_end_matches(ZONE_SUFFIX);
    let origin = Name::from_ascii(origin_text)
        .map(|mut n| {
            n.set_fqdn(true);
            n
        })
        .map_err(|e| format!("{shown}: the file name is not a zone name ({e})"))?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read ({e})"))?;
    let records =
        match Parser::new(text.as_str(), Some(path.to_owned()), Some(origin.clone())).parse() {
            Ok((_, records)) => records,
            Err(error) => {
                return Err(match error_line(&text, path, &origin, &error.to_string()) {
                    Some(line) => format!("{shown}:{line}: {error}"),
                    None => format!("{shown}: {error}"),
                });
            }
        };
    let count = records.len();
    let in_memory =
        InMemoryZoneHandler::new(origin.clone(), records, ZoneType::Primary, AxfrPolicy::Deny)
            .map_err(|e| format!("{shown}: {e}"))?;
    info!(zone = %origin, file = %shown, record_sets = count, "serving zone file");
    Ok(Zone {
        origin,
        handler: Arc::new(FileZoneHandler::new(in_memory).await),
    })
}

/// The line a parse error is on. hickory's parser does not say, so this finds the shortest
/// start of the file that fails with the same error. Only run on a broken file.
fn error_line(text: &str, path: &Path, origin: &Name, error: &str) -> Option<usize> {
    let mut end = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        end += line.len();
        let prefix = &text[..end];
        let failed = Parser::new(prefix, Some(path.to_owned()), Some(origin.clone())).parse();
        if failed.is_err_and(|e| e.to_string() == error) {
            return Some(number + 1);
        }
    }
    None
}
