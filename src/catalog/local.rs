//! The local datacenter: learned from the agent at start (unless configured), with its service
//! list watched from then on; the list of WAN-known datacenters and the agent's version and
//! edition (which name forms its DNS answers) read every 30 s.

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{
    caches::Caches,
    signals::{DatacenterSignals, SignalStats},
    slot::WatchedSlot,
    watches::{ServiceList, WatchContext, watch_service_names},
};
use crate::consul::{AgentVersion, warns};

/// How often the list of datacenters is read again (that endpoint cannot block).
const DATACENTERS_REFRESH: Duration = Duration::from_secs(30);

/// Known once the agent has told us where we are.
pub(crate) struct LocalDatacenter {
    pub(crate) name: String,
    pub(crate) names: Arc<WatchedSlot<ServiceList>>,
    /// Its change signals, for as long as the bridge runs.
    pub(crate) signals: Arc<DatacenterSignals>,
    /// Every datacenter Consul knows over the WAN, lower-case.
    datacenters: watch::Sender<Arc<HashSet<String>>>,
    /// The agent's version and edition, once it has said.
    agent: watch::Sender<Option<AgentVersion>>,
}

/// Where the local datacenter is published once known.
pub(crate) type LocalPublisher = watch::Sender<Option<Arc<LocalDatacenter>>>;

impl LocalDatacenter {
    pub(crate) fn new(name: String, signals: Arc<DatacenterSignals>) -> Self {
        let (datacenters, _) = watch::channel(Arc::new(HashSet::from([name.clone()])));
        Self {
            name,
            names: signals.names.clone(),
            signals,
            datacenters,
            agent: watch::Sender::new(None),
        }
    }

    /// The agent's version and edition; `None` until it has said.
    pub(crate) fn agent(&self) -> Option<AgentVersion> {
        *self.agent.borrow()
    }

    /// Keeps `version` as the agent's, logging what it supports when that is news.
    fn learn_agent(&self, version: AgentVersion) {
        if self.agent.send_replace(Some(version)) != Some(version) {
            let newer = version.supported();
            let newer = match newer.is_empty() {
                true => "none".to_owned(),
                false => newer.join(", "),
            };
            info!(
                agent = %version,
                newer_names = %newer,
                "Consul agent: names since Consul 1.8 its DNS answers (labelled .dc always)"
            );
        }
    }

    /// Whether `dc` (lower-case) is this datacenter or one Consul knows over the WAN.
    /// A scope key is known by its datacenter; a peer's is not a datacenter.
    pub(crate) fn knows(&self, dc: &str) -> bool {
        let dc = match crate::consul::Scope::parse(dc) {
            crate::consul::Scope {
                datacenter: Some(dc),
                peer: None,
                ..
            } => dc,
            _ => return false,
        };
        dc == self.name || self.datacenters.borrow().contains(dc)
    }
}

/// Learns the local datacenter (from the agent unless `configured`) and the list of
/// datacenters, retrying until Consul answers, then publishes them and keeps the list fresh.
pub(crate) async fn bootstrap(
    context: WatchContext,
    configured: Option<String>,
    publish: LocalPublisher,
    caches: Arc<Caches>,
    signal_stats: Arc<SignalStats>,
) {
    let mut failures: u32 = 0;
    let (name, agent) = loop {
        match (context.client.agent_self().await, &configured) {
            (Ok((dc, version)), configured) => {
                break (
                    configured.clone().unwrap_or(dc).to_ascii_lowercase(),
                    Some(version),
                );
            }
            // Without agent:read the version stays unknown; a configured datacenter is enough.
            (Err(error), Some(dc)) => {
                warn!(%error, "cannot read the agent's version; asking again every 30 s");
                break (dc.to_ascii_lowercase(), None);
            }
            (Err(error), None) => {
                failures = failures.saturating_add(1);
                if warns(failures) {
                    warn!(failures, %error, "cannot learn the agent's datacenter; retrying");
                } else {
                    debug!(failures, %error, "cannot learn the agent's datacenter; retrying");
                }
            }
        }
        tokio::select! {
            _ = context.stop.cancelled() => return,
            _ = tokio::time::sleep(context.policy.backoff(failures)) => {}
        }
    };
    info!(datacenter = %name, "serving the Consul catalog");
    let _ = context.local_dc.set(name.clone());
    let names = Arc::new(watch_service_names(&context, &name));
    let signals =
        DatacenterSignals::start(&context, &name, names, &caches.instances, &signal_stats);
    let local = Arc::new(LocalDatacenter::new(name, Arc::new(signals)));
    if let Some(version) = agent {
        local.learn_agent(version);
    }
    publish.send_replace(Some(local.clone()));
    let mut first = true;
    loop {
        // The agent may have been upgraded or replaced behind its address.
        if !first {
            match context.client.agent_self().await {
                Ok((_, version)) => local.learn_agent(version),
                Err(error) => debug!(%error, "cannot read the agent's version"),
            }
        }
        first = false;
        match context.client.datacenters().await {
            Ok(list) => {
                let set = list.into_iter().map(|dc| dc.to_ascii_lowercase()).collect();
                local.datacenters.send_replace(Arc::new(set));
            }
            Err(error) => {
                warn!(%error, "cannot read the list of datacenters; keeping the last one")
            }
        }
        tokio::select! {
            _ = context.stop.cancelled() => return,
            _ = tokio::time::sleep(DATACENTERS_REFRESH) => {}
        }
    }
}
