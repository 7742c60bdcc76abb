//! Where a read is asked, as one string the caches key on: a datacenter (`dc2`), or a
//! datacenter with an Enterprise namespace and partition (`dc2;ns=team;ap=ap1`), or a cluster
//! peer's imported catalog (`peer=p1`, with a namespace and partition too on Enterprise), or an
//! Enterprise sameness group (`sg=sg1`, the same). A
//! plain datacenter stays its bare name, so everything keyed by datacenter before keeps its
//! key; Consul's datacenter names hold neither `;` nor `=`, so the forms cannot meet.

/// The parts of a scope; `None` where the name did not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Scope<'a> {
    pub(crate) datacenter: Option<&'a str>,
    pub(crate) peer: Option<&'a str>,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) partition: Option<&'a str>,
    /// A sameness group: its members are asked in order, first healthy one answering.
    pub(crate) group: Option<&'a str>,
}

impl<'a> Scope<'a> {
    /// The key of this scope, a peer's or a group's without its datacenter (they are read
    /// from the local one); `None` when a part could not be a Consul name (holds `;` or `=`).
    pub(crate) fn key(&self) -> Option<String> {
        let parts = [
            self.datacenter,
            self.peer,
            self.namespace,
            self.partition,
            self.group,
        ];
        if parts
            .iter()
            .flatten()
            .any(|part| part.contains([';', '=']) || part.is_empty())
        {
            return None;
        }
        let mut key = match (self.peer, self.group, self.datacenter) {
            (Some(peer), _, _) => format!("peer={peer}"),
            (None, Some(group), _) => format!("sg={group}"),
            (None, None, Some(dc)) => dc.to_owned(),
            (None, None, None) => String::new(),
        };
        for (label, value) in [("ns", self.namespace), ("ap", self.partition)] {
            if let Some(value) = value {
                key.push_str(&format!(";{label}={value}"));
            }
        }
        Some(key)
    }

    /// Reads a key made by [`Scope::key`]; an empty datacenter stays `None`.
    pub(crate) fn parse(key: &'a str) -> Self {
        let mut parts = key.split(';');
        let mut scope = Scope::default();
        match parts.next() {
            Some(first) => match (first.strip_prefix("peer="), first.strip_prefix("sg=")) {
                (Some(peer), _) => scope.peer = Some(peer),
                (None, Some(group)) => scope.group = Some(group),
                _ if first.is_empty() => {}
                _ => scope.datacenter = Some(first),
            },
            None => return scope,
        }
        for part in parts {
            match part.split_once('=') {
                Some(("ns", value)) => scope.namespace = Some(value),
                Some(("ap", value)) => scope.partition = Some(value),
                _ => {}
            }
        }
        scope
    }

    /// Consul's query parameters for this scope (`dc`, `peer`, `sg`, `ns`, `partition`).
    pub(crate) fn params(&self) -> Vec<(&'static str, String)> {
        let pairs = [
            ("dc", self.datacenter),
            ("peer", self.peer),
            ("sg", self.group),
            ("ns", self.namespace),
            ("partition", self.partition),
        ];
        pairs
            .into_iter()
            .filter_map(|(key, value)| value.map(|value| (key, value.to_owned())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_and_plain_datacenters_keep_their_names() {
        let dc = Scope {
            datacenter: Some("dc2"),
            ..Scope::default()
        };
        assert_eq!(dc.key().as_deref(), Some("dc2"));
        let enterprise = Scope {
            datacenter: Some("dc2"),
            namespace: Some("team"),
            partition: Some("ap1"),
            ..Scope::default()
        };
        assert_eq!(enterprise.key().as_deref(), Some("dc2;ns=team;ap=ap1"));
        assert_eq!(Scope::parse("dc2;ns=team;ap=ap1"), enterprise);
        let peer = Scope {
            peer: Some("p1"),
            ..Scope::default()
        };
        assert_eq!(peer.key().as_deref(), Some("peer=p1"));
        assert_eq!(Scope::parse("peer=p1"), peer);
        let group = Scope {
            group: Some("sg1"),
            partition: Some("ap1"),
            ..Scope::default()
        };
        assert_eq!(group.key().as_deref(), Some("sg=sg1;ap=ap1"));
        assert_eq!(Scope::parse("sg=sg1;ap=ap1"), group);
        assert_eq!(
            group.params(),
            [("sg", "sg1".to_owned()), ("partition", "ap1".to_owned())]
        );
        assert_eq!(
            Scope::parse("peer=p1").params(),
            [("peer", "p1".to_owned())]
        );
        assert_eq!(
            enterprise.params(),
            [
                ("dc", "dc2".to_owned()),
                ("ns", "team".to_owned()),
                ("partition", "ap1".to_owned())
            ]
        );
        let odd = Scope {
            datacenter: Some("a=b"),
            ..Scope::default()
        };
        assert_eq!(odd.key(), None);
    }
}
