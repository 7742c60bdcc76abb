//! Why options could not be used; each one prints as the one line an operator needs.

/// Why the options could not be turned into a [`super::Config`]; `Display` is the one line to
/// print.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    CommandLine(String),
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("invalid value {value} for '{option}' in {path}: {reason}")]
    FileValue {
        path: String,
        option: String,
        value: String,
        reason: String,
    },
    #[error("unknown option '{option}' in {path}")]
    UnknownFileOption { path: String, option: String },
}

/// The first line of a multi-line message (clap's errors carry usage hints below it).
pub(super) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}
