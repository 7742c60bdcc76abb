//! A value kept fresh by its own watch task, which stops when the slot is dropped.
//!
//! The cache holds slots; when moka evicts an idle slot and the last query holding it finishes,
//! the drop guard cancels the task, so the set of Consul watches follows the DNS traffic without
//! any bookkeeping of its own.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

pub type Publisher<T> = watch::Sender<Option<Arc<T>>>;

pub struct WatchedSlot<T> {
    current: watch::Receiver<Option<Arc<T>>>,
    _stop: DropGuard,
}

impl<T: Send + Sync + 'static> WatchedSlot<T> {
    /// Spawns `task` with the sender it publishes into and a token that fires when the slot is
    /// dropped or `parent` is cancelled.
    pub fn start<F, Fut>(parent: &CancellationToken, task: F) -> Self
    where
        F: FnOnce(Publisher<T>, CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (publisher, current) = watch::channel(None);
        let stop = parent.child_token();
        tokio::spawn(task(publisher, stop.clone()));
        Self {
            current,
            _stop: stop.drop_guard(),
        }
    }

    /// The latest value, if the first one has arrived.
    pub fn current(&self) -> Option<Arc<T>> {
        self.current.borrow().clone()
    }

    /// The latest value, waiting up to `timeout` for the first one.
    pub async fn first(&self, timeout: Duration) -> Option<Arc<T>> {
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
