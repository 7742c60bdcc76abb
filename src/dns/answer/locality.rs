//! The locality of a Consul name: the labels right of its kind (`web.service.<here>.consul`),
//! read as current Consul reads them (`parseLocality` in `agent/dns_ce.go`, with Enterprise's
//! keys): at most one datacenter, and which features beyond it the name uses.

use crate::catalog::NameFeature;

/// What the labels right of a name's kind say (its locality): at most one datacenter, plus
/// what names since Consul 1.8 add.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Locality {
    pub(crate) datacenter: Option<String>,
    /// Features beyond a datacenter the name uses (`.peer`, `.ns`, `.ap`, `.sg`, `.port`).
    pub(crate) needs: Vec<NameFeature>,
}

/// As current Consul parses the labels right of the kind (`parseLocality`, CE and Enterprise
/// keys): none; one unlabelled label (a datacenter, for `.virtual` a peer); or 2, 4 or 6
/// labels as `<value>.<key>` pairs, `dc`, `peer`, `port`, `ns`, `ap` or `sg`, a later pair of
/// a key replacing an earlier one; `dc` with `peer`, or `sg` with either, is no name. `None`:
/// not a locality (the name does not exist).
pub(crate) fn locality(suffixes: &[String], kind: &str) -> Option<Locality> {
    let mut found = Locality::default();
    match suffixes {
        [] => return Some(found),
        [_peer] if kind == "virtual" => {
            found.needs.push(NameFeature::Peering);
            return Some(found);
        }
        [one] => {
            found.datacenter = Some(one.clone());
            return Some(found);
        }
        _ if suffixes.len() % 2 == 1 || suffixes.len() > 6 => return None,
        _ => {}
    }
    let (mut peer, mut group) = (false, false);
    for pair in suffixes.chunks(2) {
        let [value, key] = pair else {
            return None;
        };
        let feature = match key.as_str() {
            "dc" => {
                found.datacenter = Some(value.clone());
                continue;
            }
            "peer" => {
                peer = true;
                NameFeature::Peering
            }
            "ns" | "ap" => NameFeature::Namespaces,
            "sg" => {
                group = true;
                NameFeature::SamenessGroups
            }
            "port" => NameFeature::NamedPorts,
            _ => return None,
        };
        if !found.needs.contains(&feature) {
            found.needs.push(feature);
        }
    }
    let datacenter = found.datacenter.is_some();
    if (datacenter && peer) || (group && (datacenter || peer)) {
        return None;
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> Vec<String> {
        text.split('.')
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn pairs_unlabelled_datacenters_and_what_is_no_locality() {
        let read = |text: &str, kind: &str| locality(&labels(text), kind);
        let dc = |name: &str| Locality {
            datacenter: Some(name.into()),
            needs: vec![],
        };
        assert_eq!(read("", "service"), Some(Locality::default()));
        assert_eq!(read("dc2", "service"), Some(dc("dc2")));
        assert_eq!(read("dc2.dc", "node"), Some(dc("dc2")));
        assert_eq!(read("dc1.dc.dc2.dc", "service"), Some(dc("dc2")));
        let needs = |needs: &[NameFeature]| Locality {
            datacenter: None,
            needs: needs.to_vec(),
        };
        assert_eq!(read("p1", "virtual"), Some(needs(&[NameFeature::Peering])));
        assert_eq!(
            read("team.ns.ap1.ap", "service"),
            Some(needs(&[NameFeature::Namespaces]))
        );
        for bad in [
            "a.b.c",
            "x.cluster",
            "dc2.dc.p1.peer",
            "sg1.sg.p1.peer",
            "a.dc.b.dc.c.dc.d.dc",
        ] {
            assert_eq!(read(bad, "service"), None, "{bad}");
        }
    }
}
