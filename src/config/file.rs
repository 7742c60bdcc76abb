//! The `--config` file: TOML holding any option under its own name (`service-ttl`) or Consul's
//! spelling of it (`service_ttl`, `recursors`), plus Consul's shapes (`service_ttl` as a map,
//! a `[soa]` table). Each value is checked here by the option's own parser, so a bad one is
//! reported with the file and the option it came from.

use std::{ffi::OsString, path::Path};

use clap::Command;

use super::error::{ConfigError, first_line};

/// One option set in the file: the option's long name and its values as text.
pub(super) struct FileEntry {
    pub(crate) long: String,
    /// The option's id, for asking whether the command line or environment gave it too.
    pub(crate) id: String,
    pub(crate) values: Vec<String>,
}

impl FileEntry {
    /// The entry as command-line arguments (`--name=value`, once per value).
    pub(crate) fn arguments(&self) -> impl Iterator<Item = OsString> + '_ {
        self.values
            .iter()
            .map(|value| OsString::from(format!("--{}={value}", self.long)))
    }
}

/// Reads `path` and checks every entry against `command`, the options' declaration.
pub(super) fn read(path: &Path, command: &Command) -> Result<Vec<FileEntry>, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::File {
            path: shown.clone(),
            reason: first_line(e.message()),
        })?;
    let mut entries = Vec::new();
    for (key, value) in flatten_consul_tables(table) {
        let option = key.replace('_', "-");
        let bad = |reason: String| ConfigError::FileValue {
            path: shown.clone(),
            option: option.clone(),
            value: value.to_string(),
            reason,
        };
        let known = command.get_arguments().find(|arg| {
            arg.get_long().is_some_and(|long| long != "config")
                && (arg.get_long() == Some(option.as_str())
                    || arg
                        .get_all_aliases()
                        .is_some_and(|aliases| aliases.contains(&option.as_str())))
        });
        let Some(arg) = known else {
            return Err(ConfigError::UnknownFileOption {
                path: shown,
                option: key,
            });
        };
        let values = strings(&value, &option).map_err(bad)?;
        let entry = FileEntry {
            long: arg.get_long().unwrap_or_default().to_owned(),
            id: arg.get_id().to_string(),
            values,
        };
        if !matches!(arg.get_action(), clap::ArgAction::Append) && entry.values.len() != 1 {
            return Err(bad("expected a single value".into()));
        }
        check(command, &entry).map_err(bad)?;
        entries.push(entry);
    }
    Ok(entries)
}

/// A TOML value as the option's text values.
fn strings(value: &toml::Value, option: &str) -> Result<Vec<String>, String> {
    let text = |value: &toml::Value| match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    };
    match value {
        // Consul's map form: `service_ttl = { "*" = "5s", web = "30s" }`.
        toml::Value::Table(entries) if option == "service-ttl" => entries
            .iter()
            .map(|(name, ttl)| ttl.as_str().map(|ttl| format!("{name}={ttl}")))
            .collect::<Option<_>>()
            .ok_or_else(|| "expected durations as strings".into()),
        toml::Value::Array(items) => items
            .iter()
            .map(text)
            .collect::<Option<_>>()
            .ok_or_else(|| "expected a list of strings".into()),
        other => text(other)
            .map(|one| vec![one])
            .ok_or_else(|| "expected a string".into()),
    }
}

/// Runs the option's own parser over the entry's values; the parser's reason on failure.
fn check(command: &Command, entry: &FileEntry) -> Result<(), String> {
    let arguments = std::iter::once(OsString::from("consul-dns-bridge")).chain(entry.arguments());
    match command.clone().try_get_matches_from(arguments) {
        Ok(_) => Ok(()),
        Err(error) => Err(std::error::Error::source(&error)
            .map(ToString::to_string)
            .unwrap_or_else(|| first_line(&error.to_string()))),
    }
}

/// Consul's `soa { refresh = .. }` block, written `[soa]` in TOML, read as `soa_refresh` and so
/// on; every other key as it is.
fn flatten_consul_tables(table: toml::Table) -> Vec<(String, toml::Value)> {
    let mut flat = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) if key == "soa" => {
                flat.extend(inner.into_iter().map(|(k, v)| (format!("soa_{k}"), v)));
            }
            other => flat.push((key, other)),
        }
    }
    flat
}
