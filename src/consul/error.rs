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

/// What a failed connection says about the agent's side of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Nothing listens: the agent is down or restarting.
    NotListening,
    /// Accepted, then closed before an answer: the agent's per-client limit (or the agent
    /// going away under a request).
    ClosedAtOnce,
}

impl ConsulError {
    /// Whether this failure is a connection the agent refused, and how.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        let ConsulError::Transport { reason, .. } = self else {
            return None;
        };
        let closed = [
            "connection closed before message completed",
            "reset by peer",
        ];
        if reason.contains("Connection refused") {
            Some(Refusal::NotListening)
        } else if closed.iter().any(|sign| reason.contains(sign)) {
            Some(Refusal::ClosedAtOnce)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_apart_from_other_failures() {
        let transport = |reason: &str| ConsulError::Transport {
            path: "/v1/health/service".into(),
            reason: reason.into(),
        };
        let cases = [
            (
                "tcp connect error: Connection refused (os error 111)",
                Some(Refusal::NotListening),
            ),
            (
                "connection closed before message completed",
                Some(Refusal::ClosedAtOnce),
            ),
            (
                "Connection reset by peer (os error 104)",
                Some(Refusal::ClosedAtOnce),
            ),
            ("operation timed out", None),
        ];
        for (reason, expected) in cases {
            assert_eq!(transport(reason).refusal(), expected, "{reason}");
        }
        let status = ConsulError::MissingIndex {
            path: "/v1/query".into(),
        };
        assert_eq!(status.refusal(), None);
    }
}
