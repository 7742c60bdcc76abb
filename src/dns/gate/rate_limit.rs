//! Response rate limiting, as BIND, NSD and Knot do it: UDP answers per second to one client
//! network (/24 for IPv4, /56 for IPv6) for one answer, so that a spoofed flood cannot turn the
//! server into a reflector, while a client in another network, or asking another name, is not
//! touched.
//!
//! An answer is keyed by the client's network and what it says: the question (name and type)
//! for data and NODATA; all NXDOMAINs together (random names are the usual flood); each error
//! code together. Past the limit, answers are dropped, except every `slip`-th one, sent as an
//! empty answer with TC set: a real client retries over TCP (never limited) and gets its data,
//! a spoofed victim gets a packet no larger than the question. Exempt networks are never
//! limited: by default loopback and private ones, where the forwarders that ask one TTL-0 name
//! thousands of times a second from one address live, and whose addresses a spoofer outside
//! cannot use to reach a victim.
//!
//! The table is a fixed array of atomic slots (no lock, no allocation): each holds a tag of the
//! key, the second it counts for, and the count. Two keys sharing a slot reset each other's
//! count, which can only let more answers through, never fewer.

use std::{
    hash::{BuildHasher, Hasher, RandomState},
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use hickory_proto::op::ResponseCode;

use crate::{cidr::masked, config::RateLimitOptions};

/// Slots in the table (a power of two): 512 KiB.
const SLOTS: usize = 1 << 16;

/// What to do with one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Send,
    /// Send an empty answer with TC set instead.
    Slip,
    Drop,
}

pub(crate) struct RateLimiter {
    options: RateLimitOptions,
    slots: Box<[AtomicU64]>,
    hasher: RandomState,
    epoch: Instant,
    dropped: AtomicU64,
    slipped: AtomicU64,
    /// Turns for the slip of answers whose count saturated (65,535 in one second): a count
    /// that no longer moves cannot say which of them is the n-th.
    saturated_turns: AtomicU64,
}

/// What an answer says, for keying it.
pub(crate) struct AnswerKey<'a> {
    /// The question name's labels in wire form, any case.
    pub(crate) name_wire: &'a [u8],
    pub(crate) qtype: u16,
    pub(crate) rcode: ResponseCode,
}

impl RateLimiter {
    pub(crate) fn new(options: RateLimitOptions) -> Self {
        Self {
            options,
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
            dropped: AtomicU64::new(0),
            slipped: AtomicU64::new(0),
            saturated_turns: AtomicU64::new(0),
        }
    }

    /// Whether answers to `client` are never limited.
    pub(crate) fn exempts(&self, client: IpAddr) -> bool {
        self.options.responses_per_second == 0
            || self.options.exempt.iter().any(|net| net.contains(client))
    }

    /// Counts one UDP answer to `client` and says whether it may go out.
    pub(crate) fn check(&self, client: IpAddr, answer: &AnswerKey<'_>) -> Verdict {
        if self.exempts(client) {
            return Verdict::Send;
        }
        let hash = self.key_hash(client, answer);
        let slot = &self.slots[(hash as usize) & (SLOTS - 1)];
        let tag = (hash >> 32) as u32;
        // The second, wrapping at 16 bits: a slot untouched for 18 hours reads as fresh anyway.
        let second = (self.epoch.elapsed().as_secs() & 0xFFFF) as u16;
        let mut current = slot.load(Ordering::Relaxed);
        let count = loop {
            let (old_tag, old_second, old_count) = unpack(current);
            let count = match old_tag == tag && old_second == second {
                true => old_count.saturating_add(1),
                false => 1,
            };
            match slot.compare_exchange_weak(
                current,
                pack(tag, second, count),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break u32::from(count),
                Err(now) => current = now,
            }
        };
        let limit = self.options.responses_per_second;
        if count <= limit {
            return Verdict::Send;
        }
        let over = match count == u32::from(u16::MAX) {
            true => self.saturated_turns.fetch_add(1, Ordering::Relaxed),
            false => u64::from(count - limit),
        };
        if self.options.slip > 0 && over.is_multiple_of(u64::from(self.options.slip)) {
            self.slipped.fetch_add(1, Ordering::Relaxed);
            Verdict::Slip
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Verdict::Drop
        }
    }

    /// Answers dropped and answers slipped (sent truncated) since start.
    pub(crate) fn limited(&self) -> (u64, u64) {
        (
            self.dropped.load(Ordering::Relaxed),
            self.slipped.load(Ordering::Relaxed),
        )
    }

    fn key_hash(&self, client: IpAddr, answer: &AnswerKey<'_>) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        let network = masked(
            client,
            self.options.ipv4_prefix_length,
            self.options.ipv6_prefix_length,
        );
        match network {
            IpAddr::V4(v4) => hasher.write(&v4.octets()),
            IpAddr::V6(v6) => hasher.write(&v6.octets()),
        }
        hasher.write_u16(u16::from(answer.rcode));
        if matches!(answer.rcode, ResponseCode::NoError) {
            hasher.write_u16(answer.qtype);
            // Names in any case are one key: lower-case a copy (a name is at most 255 bytes).
            let mut lower = [0u8; 255];
            let len = answer.name_wire.len().min(lower.len());
            for (to, from) in lower.iter_mut().zip(&answer.name_wire[..len]) {
                *to = from.to_ascii_lowercase();
            }
            hasher.write(&lower[..len]);
        }
        hasher.finish()
    }
}

fn pack(tag: u32, second: u16, count: u16) -> u64 {
    (u64::from(tag) << 32) | (u64::from(second) << 16) | u64::from(count)
}

fn unpack(slot: u64) -> (u32, u16, u16) {
    ((slot >> 32) as u32, (slot >> 16) as u16, slot as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, slip: u32, exempt: &[&str]) -> RateLimiter {
        RateLimiter::new(RateLimitOptions {
            responses_per_second: per_second,
            slip,
            ipv4_prefix_length: 24,
            ipv6_prefix_length: 56,
            exempt: exempt
                .iter()
                .map(|c| c.parse().unwrap_or_else(|e| panic!("{e}")))
                .collect(),
        })
    }

    fn key(name: &'static [u8], rcode: ResponseCode) -> AnswerKey<'static> {
        AnswerKey {
            name_wire: name,
            qtype: 1,
            rcode,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn past_the_limit_answers_are_dropped_and_every_slip_th_is_truncated() {
        let limiter = limiter(10, 2, &[]);
        let web = key(b"\x03web\x07service\x06consul\x00", ResponseCode::NoError);
        let verdicts: Vec<Verdict> = (0..20)
            .map(|_| limiter.check(ip("192.0.2.7"), &web))
            .collect();
        assert!(verdicts[..10].iter().all(|v| *v == Verdict::Send));
        let slipped = verdicts[10..]
            .iter()
            .filter(|v| **v == Verdict::Slip)
            .count();
        let dropped = verdicts[10..]
            .iter()
            .filter(|v| **v == Verdict::Drop)
            .count();
        assert_eq!((slipped, dropped), (5, 5));
        assert_eq!(limiter.limited(), (5, 5));
        // The same network in another case is the same key; another network is not.
        let upper = key(b"\x03WEB\x07service\x06consul\x00", ResponseCode::NoError);
        assert_ne!(limiter.check(ip("192.0.2.200"), &upper), Verdict::Send);
        assert_eq!(limiter.check(ip("192.0.3.1"), &web), Verdict::Send);
        // Another name from the limited network has its own count.
        let db = key(b"\x02db\x07service\x06consul\x00", ResponseCode::NoError);
        assert_eq!(limiter.check(ip("192.0.2.7"), &db), Verdict::Send);
    }

    #[test]
    fn a_saturated_count_still_slips_every_slip_th_answer() {
        let limiter = limiter(5, 2, &[]);
        let web = key(b"\x03web\x07service\x06consul\x00", ResponseCode::NoError);
        let mut last = Vec::new();
        // Well past the 65,535 a slot counts to, within one second.
        for n in 0..70_000 {
            let verdict = limiter.check(ip("192.0.2.7"), &web);
            if n >= 69_000 {
                last.push(verdict);
            }
        }
        let slipped = last.iter().filter(|v| **v == Verdict::Slip).count();
        let dropped = last.iter().filter(|v| **v == Verdict::Drop).count();
        assert_eq!((slipped, dropped), (500, 500), "every other one slips");
    }

    #[test]
    fn nxdomains_share_one_count_and_exempt_networks_have_none() {
        let shared = limiter(5, 0, &["127.0.0.0/8"]);
        let names: [&'static [u8]; 3] = [b"\x01a\x00", b"\x01b\x00", b"\x01c\x00"];
        let sent = (0..30)
            .filter(|i| {
                let nx = key(names[i % 3], ResponseCode::NXDomain);
                shared.check(ip("198.51.100.1"), &nx) == Verdict::Send
            })
            .count();
        assert_eq!(sent, 5);
        let nx = key(names[0], ResponseCode::NXDomain);
        assert!((0..1000).all(|_| shared.check(ip("127.0.0.1"), &nx) == Verdict::Send));
        assert!(
            limiter(0, 2, &[]).exempts(ip("192.0.2.1")),
            "0 turns it off"
        );
    }
}
