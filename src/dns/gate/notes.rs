//! What the answer path notes about an answer for the transports and the gate, as it builds
//! it, without the answer's types carrying it: whether the answer depends on who asked, and
//! how much of the client's address decided it (DoH then marks it `private`; a trusted
//! forwarder gets it as the client subnet's scope, RFC 7871), and the Extended DNS Error
//! (RFC 8914) that explains it.
//! Each is kept for the task answering one question, and read where the answer is written.

use std::{cell::Cell, future::Future};

/// An Extended DNS Error: its code and a short text (RFC 8914 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExtendedError {
    pub(crate) code: u16,
    pub(crate) text: &'static str,
}

impl ExtendedError {
    /// 3: the answer comes from data Consul has not confirmed lately (serve-stale).
    pub(crate) const STALE_ANSWER: Self = Self::new(3, "Consul does not answer: last known data");
    /// 14: Consul has not answered a first question for this name yet.
    pub(crate) const NOT_READY: Self = Self::new(14, "waiting for Consul's first answer");
    /// 21: a name form the agent answers whose data the bridge does not read yet.
    pub(crate) const NOT_SUPPORTED: Self =
        Self::new(21, "this name form is not served by consul-dns-bridge yet");
    /// 18: the client is outside `--allow-query`.
    pub(crate) const PROHIBITED: Self = Self::new(18, "");
    /// 22: no recursor answered in time.
    pub(crate) const NO_REACHABLE_AUTHORITY: Self = Self::new(22, "no recursor answered");
    /// 23: asking the recursors failed on the network.
    pub(crate) const NETWORK_ERROR: Self = Self::new(23, "cannot reach the recursors");
    /// 0 (other): too many questions to the recursors outstanding already.
    pub(crate) const RECURSORS_BUSY: Self = Self::new(0, "too many questions to the recursors");

    const fn new(code: u16, text: &'static str) -> Self {
        Self { code, text }
    }

    /// The option's data: the code, then the text.
    pub(crate) fn data(self) -> Vec<u8> {
        let mut data = self.code.to_be_bytes().to_vec();
        data.extend_from_slice(self.text.as_bytes());
        data
    }
}

tokio::task_local! {
    /// Whether the answer being built depends on who asked (an access rule refused it, or a
    /// visibility rule shaped it), with the longest prefix of the client's address that
    /// decided it (`Some(0)`: it depends on who asked, but no prefix of this family decided).
    static CLIENT_SCOPE: Cell<Option<u8>>;
    /// The Extended DNS Error the answer being built carries, if any.
    static EXTENDED_ERROR: Cell<Option<ExtendedError>>;
}

/// Notes that the answer being built depends on who asked, on the first `scope` bits of the
/// client's address (the longest noted counts).
pub(crate) fn mark_client_dependent(scope: u8) {
    let _ =
        CLIENT_SCOPE.try_with(|noted| noted.set(Some(noted.get().map_or(scope, |s| s.max(scope)))));
}

/// Whether the answer being built depends on who asked, and on how many bits of the client's
/// address (`None`: it does not).
pub(crate) fn client_scope() -> Option<u8> {
    CLIENT_SCOPE.try_with(Cell::get).ok().flatten()
}

/// Runs `answering` and says whether its answer depends on who asked.
pub(crate) async fn noting_client_dependence<F: Future>(answering: F) -> (F::Output, bool) {
    CLIENT_SCOPE
        .scope(Cell::new(None), async {
            let output = answering.await;
            (output, CLIENT_SCOPE.with(Cell::get).is_some())
        })
        .await
}

/// Notes the Extended DNS Error of the answer being built (the last one noted wins).
pub(crate) fn note_extended_error(error: ExtendedError) {
    let _ = EXTENDED_ERROR.try_with(|noted| noted.set(Some(error)));
}

/// The Extended DNS Error noted for the answer being built, taken (once).
pub(crate) fn take_extended_error() -> Option<ExtendedError> {
    EXTENDED_ERROR.try_with(Cell::take).ok().flatten()
}

/// Runs `answering` where the notes on its answer are kept (those on client dependence in the
/// caller's place, when it keeps them: DoH reads them after the answer is written).
pub(crate) async fn with_answer_notes<F: Future>(answering: F) -> F::Output {
    let answering = EXTENDED_ERROR.scope(Cell::new(None), answering);
    match CLIENT_SCOPE.try_with(|_| ()) {
        Ok(()) => answering.await,
        Err(_) => CLIENT_SCOPE.scope(Cell::new(None), answering).await,
    }
}
