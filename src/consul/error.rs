//! Why a request to Consul failed. No error carries a header or a query string, so the ACL
//! token cannot reach a log line through one.

use reqwest::StatusCode;

/// The largest answer body read. A health answer for a service with thousands of instances is a
/// few MB; anything far past that is a broken or hostile server, not data to hold.
pub(crate) const MAX_BODY_BYTES: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    /// The client cannot be built from the options given.
    #[error("{0}")]
    Setup(String),
    #[error("{path}: request failed: {reason}")]
    Transport { path: String, reason: String },
    #[error("{path}: HTTP {status}{}{reason}", if reason.is_empty() { "" } else { ": " })]
    Status {
        path: String,
        status: StatusCode,
        /// The start of the body, on one line.
        reason: String,
    },
    #[error("{path}: answer larger than {MAX_BODY_BYTES} bytes")]
    TooLarge { path: String },
    #[error("{path}: cannot decode the answer: {reason}")]
    Decode { path: String, reason: String },
    /// The connection budget has no room for another parked service watch: read it instead.
    #[error("{path}: no room for another parked query within --consul-max-connections")]
    NoParkingRoom { path: String },
    #[error("{path}: answer has no valid X-Consul-Index header")]
    MissingIndex { path: String },
}
