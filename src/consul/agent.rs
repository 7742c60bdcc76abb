//! Which Consul the bridge talks to: the agent's version and edition from `/v1/agent/self`
//! (`Config.Version`, `1.21.3+ent` on Enterprise; `Stats.build.version_metadata`), and so
//! which DNS name forms that agent's own DNS answers. A form the agent does not know gets what
//! that agent gives for it.

use std::fmt;

/// A name form newer than Consul 1.8, and what an agent needs to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NameFeature {
    /// `.<peer>.peer` (cluster peering, 1.13 and later; established from 1.15).
    Peering,
    /// `.<ns>.ns` and `.<ap>.ap` (Enterprise).
    Namespaces,
    /// `.<sg>.sg` (Enterprise 1.16 and later).
    SamenessGroups,
    /// `.<port>.port` (1.22 and later).
    NamedPorts,
    /// `<svc>.virtual` (present by 1.15).
    VirtualIps,
}

impl NameFeature {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Peering => "peers (.peer)",
            Self::Namespaces => "namespaces and partitions (.ns, .ap)",
            Self::SamenessGroups => "sameness groups (.sg)",
            Self::NamedPorts => "named ports (.port)",
            Self::VirtualIps => "virtual IPs (.virtual)",
        }
    }

    const ALL: [Self; 5] = [
        Self::Peering,
        Self::Namespaces,
        Self::SamenessGroups,
        Self::NamedPorts,
        Self::VirtualIps,
    ];
}

/// The agent's version and edition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AgentVersion {
    /// Major, minor, patch (`(1, 8, 7)`); `(0, 0, 0)` when the agent's text could not be read.
    pub(crate) number: (u32, u32, u32),
    pub(crate) enterprise: bool,
}

impl AgentVersion {
    /// From `Config.Version` (`1.21.3+ent`, `1.8.7`, `1.19.0-rc1`) and the build metadata
    /// (`ent` on Enterprise, empty otherwise).
    pub(crate) fn parse(version: &str, metadata: &str) -> Self {
        let (core, suffix) = version.split_once('+').unwrap_or((version, ""));
        let core = core.trim_start_matches('v');
        let core = core.split_once('-').map_or(core, |(numbers, _)| numbers);
        let mut numbers = core.split('.').map(|part| part.parse::<u32>().ok());
        let mut next = || numbers.next().flatten();
        let number = match (next(), next(), next()) {
            (Some(major), Some(minor), patch) => (major, minor, patch.unwrap_or(0)),
            _ => (0, 0, 0),
        };
        let enterprise = suffix.contains("ent") || metadata.contains("ent");
        Self { number, enterprise }
    }

    /// Whether this agent's DNS answers names that need `feature`.
    pub(crate) fn supports(&self, feature: NameFeature) -> bool {
        let at_least = |minor: u32| self.number >= (1, minor, 0);
        match feature {
            NameFeature::Peering | NameFeature::VirtualIps => at_least(15),
            NameFeature::Namespaces => self.enterprise,
            NameFeature::SamenessGroups => self.enterprise && at_least(16),
            NameFeature::NamedPorts => at_least(22),
        }
    }

    /// Whether this agent answers a question in `alt_domain` with that domain in SRV targets,
    /// additional records and the SOA (from 1.11, PR #11274), rather than the primary domain.
    pub(crate) fn answers_in_alt_domain(&self) -> bool {
        self.number >= (1, 11, 0)
    }

    /// The newer name forms this agent answers, for the log.
    pub(crate) fn supported(&self) -> Vec<&'static str> {
        NameFeature::ALL
            .into_iter()
            .filter(|feature| self.supports(*feature))
            .map(NameFeature::label)
            .collect()
    }
}

impl fmt::Display for AgentVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor, patch) = self.number;
        let edition = match self.enterprise {
            true => "Enterprise",
            false => "Community Edition",
        };
        write!(f, "{major}.{minor}.{patch} ({edition})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_editions_are_read_as_consul_writes_them() {
        let ce = AgentVersion::parse("1.8.7", "");
        assert_eq!((ce.number, ce.enterprise), ((1, 8, 7), false));
        let ent = AgentVersion::parse("1.21.3+ent", "ent");
        assert_eq!((ent.number, ent.enterprise), ((1, 21, 3), true));
        assert!(AgentVersion::parse("1.16.0", "ent").enterprise);
        assert_eq!(AgentVersion::parse("1.19.0-rc1", "").number, (1, 19, 0));
        assert_eq!(AgentVersion::parse("nonsense", "").number, (0, 0, 0));
        assert_eq!(ent.to_string(), "1.21.3 (Enterprise)");
    }

    #[test]
    fn each_feature_needs_its_version_and_edition() {
        let old = AgentVersion::parse("1.8.7", "");
        assert!(NameFeature::ALL.iter().all(|f| !old.supports(*f)));
        let ce = AgentVersion::parse("1.21.0", "");
        assert!(ce.supports(NameFeature::Peering) && ce.supports(NameFeature::VirtualIps));
        assert!(!ce.supports(NameFeature::Namespaces));
        assert!(!ce.supports(NameFeature::SamenessGroups));
        assert!(!ce.supports(NameFeature::NamedPorts));
        let ent = AgentVersion::parse("1.22.0+ent", "ent");
        assert!(NameFeature::ALL.iter().all(|f| ent.supports(*f)));
        assert!(!old.answers_in_alt_domain() && ce.answers_in_alt_domain());
        let ent15 = AgentVersion::parse("1.15.2+ent", "ent");
        assert!(!ent15.supports(NameFeature::SamenessGroups));
    }
}
