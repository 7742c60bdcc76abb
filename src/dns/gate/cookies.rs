//! DNS cookies (RFC 7873) with the server cookie of RFC 9018: a client that returns a server
//! cookie we made for its address has proved that address, so rate limiting lets it through;
//! one that does not is treated as any client without cookies.
//!
//! The secret rotates without anyone doing anything: the key a cookie is made with is derived
//! from the configured secret (`--cookie-secret`, the same on every bridge of a fleet; random
//! at start without it) and the day of the cookie's own timestamp. Every bridge with the same
//! secret makes and accepts the same cookies and moves to the next key at the same moment, and
//! a cookie made just before midnight is checked with the key it was made with, as long as it
//! is valid at all (an hour, RFC 9018 section 4.3).

use std::{
    cell::Cell,
    hash::Hasher,
    net::IpAddr,
    time::{SystemTime, UNIX_EPOCH},
};

use siphasher::sip::SipHasher24;

/// The length of a client cookie.
const CLIENT_COOKIE_LEN: usize = 8;
/// The length of our server cookies: version, reserved, timestamp, hash (RFC 9018 section 4).
const SERVER_COOKIE_LEN: usize = 16;
/// A COOKIE option in our answers: the client's cookie, then ours.
pub(crate) const ANSWER_COOKIE_LEN: usize = CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN;
const VERSION: u8 = 1;
/// How long one derived key is used to make cookies.
const KEY_LIFETIME_SECS: u32 = 86_400;
/// A server cookie older than this is no longer valid (RFC 9018 section 4.3)...
const MAX_AGE_SECS: i64 = 3_600;
/// ... nor one from further in the future (clocks of a fleet differ a little).
const MAX_AHEAD_SECS: i64 = 300;

/// A SipHash key: 128 bits, the size of the configured secret.
type Key = [u8; 16];

/// What a query's COOKIE option proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieCheck {
    /// No COOKIE option: nothing.
    Absent,
    /// A client cookie without a valid server cookie of ours (none yet, another server's, or
    /// expired): nothing yet, but the client takes cookies.
    ClientOnly,
    /// A server cookie we made for this address within the hour: the client has it.
    Valid,
}

/// Whether an option of `len` bytes is a COOKIE at all (RFC 7873 section 5.2.2): a client
/// cookie alone, or with a server cookie of 8 to 32 bytes. Anything else is FORMERR.
pub(crate) fn well_formed(len: usize) -> bool {
    len == CLIENT_COOKIE_LEN || (16..=40).contains(&len)
}

/// Makes and checks server cookies.
pub(crate) struct Cookies {
    secret: Key,
}

impl std::fmt::Debug for Cookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookies(<secret>)")
    }
}

impl Cookies {
    pub(crate) fn new(secret: [u8; 16]) -> Self {
        Self { secret }
    }

    /// What `option` (a COOKIE option's data, well formed) proves for `client`.
    pub(crate) fn check(&self, client: IpAddr, option: &[u8]) -> CookieCheck {
        self.check_at(client, option, unix_now())
    }

    fn check_at(&self, client: IpAddr, option: &[u8], now: u32) -> CookieCheck {
        let Some((client_cookie, server)) = split(option) else {
            return CookieCheck::Absent;
        };
        // The reserved bytes are hashed as sent, whatever they are (RFC 9018 appendix A.3).
        if server.len() != SERVER_COOKIE_LEN || server[0] != VERSION {
            return CookieCheck::ClientOnly;
        }
        let (head, mac) = server.split_at(8);
        let made = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        // Serial number arithmetic (RFC 1982), as RFC 9018 asks: the clock may wrap.
        let age = i64::from(now.wrapping_sub(made) as i32);
        if !(-MAX_AHEAD_SECS..=MAX_AGE_SECS).contains(&age) {
            return CookieCheck::ClientOnly;
        }
        let expected = hash(&key_for(&self.secret, made), client_cookie, head, client);
        match constant_time_eq(mac, &expected) {
            true => CookieCheck::Valid,
            false => CookieCheck::ClientOnly,
        }
    }

    /// The COOKIE option of our answer to `option` (the client's cookie and a fresh server
    /// cookie for `client`); `None` without a client cookie.
    pub(crate) fn answer(&self, client: IpAddr, option: &[u8]) -> Option<[u8; ANSWER_COOKIE_LEN]> {
        self.answer_at(client, option, unix_now())
    }

    fn answer_at(
        &self,
        client: IpAddr,
        option: &[u8],
        now: u32,
    ) -> Option<[u8; ANSWER_COOKIE_LEN]> {
        let (client_cookie, _) = split(option)?;
        let key = key_for(&self.secret, now);
        let mut out = [0u8; ANSWER_COOKIE_LEN];
        out[..CLIENT_COOKIE_LEN].copy_from_slice(client_cookie);
        out[CLIENT_COOKIE_LEN] = VERSION;
        out[12..16].copy_from_slice(&now.to_be_bytes());
        let mac = hash(&key, client_cookie, &out[8..16], client);
        out[16..].copy_from_slice(&mac);
        Some(out)
    }
}

/// The client cookie and the rest of a COOKIE option.
fn split(option: &[u8]) -> Option<(&[u8], &[u8])> {
    (option.len() >= CLIENT_COOKIE_LEN).then(|| option.split_at(CLIENT_COOKIE_LEN))
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// RFC 9018 section 4.4: SipHash-2-4 over the client cookie, the server cookie's head
/// (version, reserved bytes, timestamp) and the client address, keyed with the server secret.
fn hash(key: &Key, client_cookie: &[u8], head: &[u8], client: IpAddr) -> [u8; 8] {
    let mut hasher = SipHasher24::new_with_key(key);
    hasher.write(client_cookie);
    hasher.write(head);
    // A client on a dual-stack socket appears as ::ffff:a.b.c.d: it is the IPv4 client.
    match client {
        IpAddr::V4(v4) => hasher.write(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hasher.write(&v4.octets()),
            None => hasher.write(&v6.octets()),
        },
    }
    hasher.finish().to_le_bytes()
}

thread_local! {
    /// The last key derived on this thread, with what it was derived from: a key lives a day,
    /// so each answering thread derives it about once a day.
    static DERIVED: Cell<Option<(Key, u32, Key)>> = const { Cell::new(None) };
}

/// The key of the day `at` falls in, derived from `secret`.
fn key_for(secret: &Key, at: u32) -> Key {
    let day = at / KEY_LIFETIME_SECS;
    if let Some((from, derived_day, key)) = DERIVED.get()
        && from == *secret
        && derived_day == day
    {
        return key;
    }
    let key = derive(secret, day);
    DERIVED.set(Some((*secret, day, key)));
    key
}

/// Two SipHash-2-4 outputs keyed with the secret, over the day and which half: a
/// pseudo-random key per day that only holders of the secret can compute.
fn derive(secret: &Key, day: u32) -> Key {
    let mut key = [0u8; 16];
    for (half, out) in key.chunks_exact_mut(8).enumerate() {
        let mut hasher = SipHasher24::new_with_key(secret);
        hasher.write(b"dns cookie key");
        hasher.write(&day.to_be_bytes());
        hasher.write_u8(half as u8);
        out.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    key
}

/// Equal, in a time that does not depend on where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    fn secret(text: &str) -> Key {
        hex(text).try_into().unwrap_or_else(|_| panic!("16 bytes"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    /// RFC 9018 appendix A: the hash with the secret used as the key directly (the
    /// third cookie was sent with reserved bytes set; they are hashed as sent).
    #[test]
    fn the_hash_is_rfc_9018s() {
        let cases = [
            (
                "e5e973e5a6b2a43f48e7dc849e37bfcf",
                "2464c4abcf10c957",
                "198.51.100.100",
                "010000005cf79f11",
                "1f8130c3eee29480",
            ),
            (
                "e5e973e5a6b2a43f48e7dc849e37bfcf",
                "fc93fc62807ddb86",
                "203.0.113.203",
                "010000005cf7a9ac",
                "f73a7810aca2381e",
            ),
            (
                "e5e973e5a6b2a43f48e7dc849e37bfcf",
                "fc93fc62807ddb86",
                "203.0.113.203",
                "01abcdef5cf78f71",
                "a314227b6679ebf5",
            ),
            (
                "445536bcd2513298075a5d379663c962",
                "22681ab97d52c298",
                "2001:db8:220:1:59de:d0f4:8769:82b8",
                "010000005cf7c609",
                "a6bb79d16625507a",
            ),
        ];
        for (key, client_cookie, client, head, want) in cases {
            let got = hash(&secret(key), &hex(client_cookie), &hex(head), ip(client));
            assert_eq!(got.to_vec(), hex(want), "{client} {head}");
        }
    }

    #[test]
    fn our_cookie_is_valid_for_its_client_for_an_hour_and_on_every_bridge_sharing_the_secret() {
        let bridge = Cookies::new(secret("e5e973e5a6b2a43f48e7dc849e37bfcf"));
        let other_bridge = Cookies::new(secret("e5e973e5a6b2a43f48e7dc849e37bfcf"));
        let stranger = Cookies::new(secret("445536bcd2513298075a5d379663c962"));
        let client = ip("198.51.100.100");
        let at = 1_559_731_985;
        let first = hex("2464c4abcf10c957");
        let answer = bridge
            .answer_at(client, &first, at)
            .unwrap_or_else(|| panic!("a client cookie gets an answer cookie"));
        assert_eq!(answer[..8], first[..], "the client cookie is echoed");
        assert_eq!(
            answer[8..16],
            hex("010000005cf79f11")[..],
            "version, timestamp"
        );
        assert_eq!(bridge.check_at(client, &first, at), CookieCheck::ClientOnly);
        assert_eq!(bridge.check_at(client, &answer, at), CookieCheck::Valid);
        assert_eq!(
            other_bridge.check_at(client, &answer, at + 3_000),
            CookieCheck::Valid
        );
        // Across the day's key change, the key it was made with still checks it.
        let before_midnight = (at / KEY_LIFETIME_SECS + 1) * KEY_LIFETIME_SECS - 10;
        let late = bridge
            .answer_at(client, &first, before_midnight)
            .unwrap_or_else(|| panic!("answered"));
        assert_eq!(
            bridge.check_at(client, &late, before_midnight + 600),
            CookieCheck::Valid
        );
        let expired = bridge.check_at(client, &answer, at + 3_601);
        let from_the_future = bridge.check_at(client, &answer, at - 301);
        let elsewhere = bridge.check_at(ip("198.51.100.101"), &answer, at);
        let not_ours = stranger.check_at(client, &answer, at);
        let mut altered = answer;
        altered[23] ^= 1;
        let altered = bridge.check_at(client, &altered, at);
        for check in [expired, from_the_future, elsewhere, not_ours, altered] {
            assert_eq!(check, CookieCheck::ClientOnly);
        }
        assert_eq!(bridge.check_at(client, &[], at), CookieCheck::Absent);
    }

    #[test]
    fn lengths_rfc_7873_calls_malformed_are_not_cookies() {
        let formed: Vec<usize> = (0..48).filter(|len| well_formed(*len)).collect();
        let mut expected = vec![8];
        expected.extend(16..=40);
        assert_eq!(formed, expected);
    }
}
