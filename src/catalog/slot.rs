//! A value kept fresh by its own watch task, which stops when the slot is dropped.
//!
//! The cache holds slots; when moka evicts an idle slot and the last query holding it finishes,
//! the drop guard cancels the task, so the set of Consul watches follows the DNS traffic without
//! any bookkeeping of its own.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::consul::Freshness;

pub(crate) type Publisher<T> = watch::Sender<Option<Arc<T>>>;

pub(crate) struct WatchedSlot<T> {
    current: watch::Receiver<Option<Arc<T>>>,
    freshness: Arc<Freshness>,
    _stop: DropGuard,
}

impl<T: Send + Sync + 'static> WatchedSlot<T> {
    /// Spawns `task` with the sender it publishes into, a token that fires when the slot is
    /// dropped or `parent` is cancelled, and the freshness it must keep up to date.
    pub(crate) fn start<F, Fut>(parent: &CancellationToken, freshness: Freshness, task: F) -> Self
    where
        F: FnOnce(Publisher<T>, CancellationToken, Arc<Freshness>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (publisher, current) = watch::channel(None);
        let stop = parent.child_token();
        let freshness = Arc::new(freshness);
        tokio::spawn(task(publisher, stop.clone(), freshness.clone()));
        Self {
            current,
            freshness,
            _stop: stop.drop_guard(),
        }
    }

    /// A slot holding `value` with no watch behind it (a preloaded catalog).
    pub(crate) fn fixed(value: T, freshness: Freshness) -> Self {
        let (_, current) = watch::channel(Some(Arc::new(value)));
        Self {
            current,
            freshness: Arc::new(freshness),
            _stop: CancellationToken::new().drop_guard(),
        }
    }

    /// Whether the value may still be served: fresh, or stale for no longer than `serve_stale`.
    pub(crate) fn servable(&self, serve_stale: Duration) -> bool {
        self.freshness
            .stale_for()
            .is_none_or(|stale| stale <= serve_stale)
    }

    pub(crate) fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    /// The latest value, if the first one has arrived.
    pub(crate) fn current(&self) -> Option<Arc<T>> {
        self.current.borrow().clone()
    }

    /// The latest value if it may be served (see [`Self::servable`]), waiting up to `timeout`
    /// for the first one; `None` when it may not or has not arrived in time.
    pub(crate) async fn servable_value(
        &self,
        serve_stale: Duration,
        timeout: Duration,
    ) -> Option<Arc<T>> {
        if !self.servable(serve_stale) {
            return None;
        }
        self.first(timeout).await
    }

    /// A receiver that sees every new value.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<Arc<T>>> {
        self.current.clone()
    }

    /// The latest value, waiting up to `timeout` for the first one.
    pub(crate) async fn first(&self, timeout: Duration) -> Option<Arc<T>> {
        if let Some(value) = self.current() {
            return Some(value);
        }
        let mut current = self.current.clone();
        let waited = tokio::time::timeout(timeout, current.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(value)) => value.clone(),
            _ => None,
        }
    }
}
