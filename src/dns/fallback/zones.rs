//! The zone files of `--zones-dir`: every `<origin>.zone` file (RFC 1035) read and parsed into
//! hickory's in-memory zone handler. Reading and parsing are blocking work, so they run on a
//! blocking thread, at start and on each SIGHUP, never on a runtime worker.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use hickory_proto::{
    rr::{Name, RecordSet, RrKey},
    serialize::txt::Parser,
};
use hickory_server::{
    store::{file::FileZoneHandler, in_memory::InMemoryZoneHandler},
    zone_handler::{AxfrPolicy, ZoneHandler, ZoneType},
};
use tracing::info;

/// The file name of a zone file: `<origin>.zone`, e.g. `example.internal.zone`.
const ZONE_SUFFIX: &str = ".zone";

/// One zone served from a file.
pub(crate) struct Zone {
    pub(crate) origin: Name,
    pub(crate) handler: Arc<dyn ZoneHandler>,
}

/// A zone file read and parsed, not yet turned into a handler.
struct ParsedZone {
    origin: Name,
    shown: String,
    records: std::collections::BTreeMap<RrKey, RecordSet>,
}

/// Every `<origin>.zone` file in `dir`, in name order. A broken file is an error naming it and
/// its line.
pub(crate) async fn load(dir: &Path) -> Result<Vec<Zone>, String> {
    let dir = dir.to_owned();
    let parsed = tokio::task::spawn_blocking(move || parse_dir(&dir))
        .await
        .map_err(|e| format!("reading the zone files stopped: {e}"))??;
    let mut zones = Vec::with_capacity(parsed.len());
    for zone in parsed {
        let count = zone.records.len();
        let in_memory = InMemoryZoneHandler::new(
            zone.origin.clone(),
            zone.records,
            ZoneType::Primary,
            AxfrPolicy::Deny,
        )
        .map_err(|e| format!("{}: {e}", zone.shown))?;
        info!(zone = %zone.origin, file = %zone.shown, record_sets = count, "serving zone file");
        zones.push(Zone {
            origin: zone.origin,
            handler: Arc::new(FileZoneHandler::new(in_memory).await),
        });
    }
    Ok(zones)
}

fn parse_dir(dir: &Path) -> Result<Vec<ParsedZone>, String> {
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
    paths.iter().map(|path| parse_file(path)).collect()
}

fn parse_file(path: &Path) -> Result<ParsedZone, String> {
    let shown = path.display().to_string();
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let origin = Name::from_ascii(file_name.trim_end_matches(ZONE_SUFFIX))
        .map(|mut n| {
            n.set_fqdn(true);
            n
        })
        .map_err(|e| format!("{shown}: the file name is not a zone name ({e})"))?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read ({e})"))?;
    let parse = |text: &str| {
        Parser::new(text, Some(path.to_owned()), Some(origin.clone()))
            .parse()
            .map_err(|error| error.to_string())
    };
    match parse(&text) {
        Ok((_, records)) => Ok(ParsedZone {
            origin,
            shown,
            records,
        }),
        Err(error) => Err(
            match error_line(&text, &error, |prefix| parse(prefix).err()) {
                Some(line) => format!("{shown}:{line}: {error}"),
                None => format!("{shown}: {error}"),
            },
        ),
    }
}

/// The line a parse `error` of `text` is on. hickory's parser does not say, so this finds the
/// shortest run of whole lines from the start that `parse` fails on with the same error. A
/// prefix shorter than the broken line parses, or fails otherwise (cut inside a record); every
/// longer one fails with this error at the same place; so the line is found by bisection, in
/// about log2(lines) parses.
fn error_line(
    text: &str,
    error: &str,
    mut parse: impl FnMut(&str) -> Option<String>,
) -> Option<usize> {
    let ends: Vec<usize> = text
        .split_inclusive('\n')
        .scan(0, |end, line| {
            *end += line.len();
            Some(*end)
        })
        .collect();
    let (mut low, mut high) = (0, ends.len());
    // Invariant: the first `low` lines do not fail with `error`; the first `high` lines do.
    while low < high {
        let middle = low + (high - low) / 2;
        if parse(&text[..ends[middle]]).as_deref() == Some(error) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    (low < ends.len()).then_some(low + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broken_line_of_a_large_file_is_found_in_few_parses() {
        let origin = Name::from_ascii("example.internal.").unwrap();
        let mut text = String::from("$TTL 60\n@ IN SOA ns hostmaster 1 2 3 4 5\n");
        for i in 0..20_000 {
            text.push_str(&format!("host{i} IN A 10.0.{}.{}\n", i / 250, i % 250));
        }
        let broken_at = text.lines().count() + 1;
        text.push_str("bad IN A not-an-address\n");
        text.push_str("after IN A 10.9.9.9\n");
        let mut parses = 0;
        let mut parse = |text: &str| {
            parses += 1;
            Parser::new(text, None, Some(origin.clone()))
                .parse()
                .err()
                .map(|e| e.to_string())
        };
        let error = parse(&text).expect("the file is broken");
        assert_eq!(error_line(&text, &error, &mut parse), Some(broken_at));
        // A scan from the first line would parse 20,000 growing prefixes.
        assert!(parses <= 20, "{parses} parses");
    }
}
