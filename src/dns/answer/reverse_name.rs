//! Reverse-lookup names (`d.c.b.a.in-addr.arpa.`, the 32 nibbles of `ip6.arpa.`) and the
//! address each stands for.

use hickory_proto::rr::Name;

/// Whether `name` is in `in-addr.arpa.` or `ip6.arpa.` (cheap: no allocation).
pub(crate) fn is_reverse(name: &Name) -> bool {
    let mut labels = name.iter().rev();
    let (Some(arpa), Some(zone)) = (labels.next(), labels.next()) else {
        return false;
    };
    arpa.eq_ignore_ascii_case(b"arpa")
        && (zone.eq_ignore_ascii_case(b"in-addr") || zone.eq_ignore_ascii_case(b"ip6"))
}

/// The address a reverse-lookup name stands for: `d.c.b.a.in-addr.arpa.` or the 32 nibbles of
/// `ip6.arpa.`; `None` for any other name (including partial ones).
pub(crate) fn reverse_address(name: &Name) -> Option<std::net::IpAddr> {
    if !is_reverse(name) {
        return None;
    }
    let labels: Vec<String> = name
        .iter()
        .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
        .collect();
    match labels.as_slice() {
        [d, c, b, a, in_addr, arpa] if in_addr == "in-addr" && arpa == "arpa" => {
            let octet = |text: &String| text.parse::<u8>().ok();
            Some(std::net::IpAddr::from([
                octet(a)?,
                octet(b)?,
                octet(c)?,
                octet(d)?,
            ]))
        }
        [nibbles @ .., ip6, arpa] if nibbles.len() == 32 && ip6 == "ip6" && arpa == "arpa" => {
            let mut bytes = [0u8; 16];
            for (i, nibble) in nibbles.iter().rev().enumerate() {
                let value = u8::from_str_radix(nibble, 16)
                    .ok()
                    .filter(|_| nibble.len() == 1)?;
                bytes[i / 2] |= if i % 2 == 0 { value << 4 } else { value };
            }
            Some(std::net::IpAddr::from(bytes))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        let reverse = |text: &str| reverse_address(&Name::from_ascii(text).unwrap());
        assert_eq!(
            reverse("1.0.2.10.in-addr.arpa."),
            Some("10.2.0.1".parse().unwrap())
        );
        assert_eq!(
            reverse("3.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."),
            Some("fd00::23".parse().unwrap())
        );
        assert_eq!(reverse("0.2.10.in-addr.arpa."), None);
        assert_eq!(reverse("256.0.2.10.in-addr.arpa."), None);
    }
}
