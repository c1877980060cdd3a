//! Response rate limiting (RRL) for UDP: a token bucket per client prefix,
//! so that the daemon cannot be used to flood a spoofed victim.
//!
//! Each UDP worker owns a [`RateLimiter`]: a table of a fixed size
//! allocated at start, four entries to a 64-byte bucket, checked with no
//! lock and no allocation. An entry is a prefix (`/24` and `/56` by
//! default), when it was last seen and its tokens; a response spends one
//! token, tokens come back at the configured rate up to one second's worth.
//! A prefix not in the table takes the place of the bucket's least recently
//! seen entry and starts full. Over the limit, every `slip`-th response
//! goes out truncated (so a real client retries over TCP, which is never
//! limited) and the others are dropped; a slip of 0 drops them all.
//!
//! The rate is per prefix for the whole daemon: SO_REUSEPORT spreads a
//! resolver's queries over the workers by source port, and resolvers
//! choose a random port per query, so each of the `W` workers that serve
//! the prefix's address family (over every listen address) allows exactly
//! `rate / W` a second: tokens are counted in fractions, a response costs
//! `1000 W` units and `rate` units come back each millisecond. A client
//! that always uses one port meets one worker and gets that share only;
//! it is also the shape of a flood.
//!
//! Knot's `mod-rrl`, NSD's `rrl.c` and BIND's rate-limit were read for
//! this; like Knot's newer KRU, the key is the prefix alone (not the
//! answer), since nearly every answer of a pool is to the same few names.
//!
//! Architecture invariant: knows addresses, prefixes and time; nothing of
//! DNS messages, zones or sockets.

use std::net::IpAddr;

/// Entries per bucket: four 16-byte entries fill one cache line.
const WAYS: usize = 4;
/// Token units per response and worker: with a response costing
/// `UNITS * W`, a rate per second is also the refill per millisecond.
const UNITS: u64 = 1000;
/// The key no client prefix has (an unused entry).
const EMPTY: u64 = u64::MAX;
/// Highest rate accepted, per second (keeps a second's tokens in a u32).
pub const MAX_RATE: u32 = 1_000_000;

/// A client block of `--rrl-exempt`.
pub use crate::shared::netaddr::Prefix;

/// The rate limiter's settings (`--rrl-*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrlSettings {
    /// Responses per second per client prefix, for the whole daemon.
    pub rate: u32,
    /// Every `slip`-th limited response is sent truncated; 0: none.
    pub slip: u32,
    /// Prefix lengths that make one client: 1..=32 and 1..=64.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Entries per worker's table (rounded up to a power of two, at least
    /// one bucket).
    pub table_size: usize,
    /// Clients never limited (the site's own monitoring, known resolvers).
    pub exempt: Vec<Prefix>,
}

impl RrlSettings {
    /// The defaults of `timepool dns` at `rate` responses per second: slip
    /// 2, /24 and /56, 65 536 entries, no exemption.
    pub fn at_rate(rate: u32) -> RrlSettings {
        RrlSettings {
            rate,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            table_size: 65_536,
            exempt: Vec::new(),
        }
    }

    /// Check the settings; the error names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.rate == 0 || self.rate > MAX_RATE {
            return Err(format!(
                "--rrl-rate must be 1 to {MAX_RATE}, not {}",
                self.rate
            ));
        }
        if !(1..=32).contains(&self.ipv4_prefix) {
            return Err(format!(
                "--rrl-ipv4-prefix must be 1 to 32, not {}",
                self.ipv4_prefix
            ));
        }
        if !(1..=64).contains(&self.ipv6_prefix) {
            return Err(format!(
                "--rrl-ipv6-prefix must be 1 to 64, not {}",
                self.ipv6_prefix
            ));
        }
        if self.table_size == 0 || self.table_size > 1 << 26 {
            return Err(format!(
                "--rrl-table-size must be 1 to {}, not {}",
                1 << 26,
                self.table_size
            ));
        }
        Ok(())
    }
}

/// What to do with a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate (or exempt): answer.
    Answer,
    /// Over the rate, this one goes out truncated (TC, no answers).
    Slip,
    /// Over the rate: no response.
    Drop,
}

/// One prefix's bucket of tokens: 16 bytes.
#[derive(Clone, Copy, Debug)]
struct Entry {
    key: u64,
    /// Milliseconds on the limiter's clock when last refilled.
    seen: u32,
    /// Tokens, in units of 1 / (UNITS * W) of a response.
    tokens: u32,
}

/// Four entries on one cache line (a check reads one line).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Bucket([Entry; WAYS]);

/// One worker's rate limiter (see the module documentation).
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Box<[Bucket]>,
    /// Buckets - 1 (a power of two minus one).
    bucket_mask: u64,
    /// Random keys of the bucket hash, so that no one can aim prefixes at
    /// one bucket.
    hash_keys: [u64; 2],
    /// Units that come back per millisecond: the whole rate per second.
    refill: u64,
    /// Units a response costs: UNITS times the workers sharing the rate.
    cost: u64,
    /// At most a second's worth (and at least one response).
    capacity: u64,
    ipv4_mask: u32,
    ipv6_mask: u64,
    slip: u32,
    /// Limited responses since the last slip.
    since_slip: u32,
    exempt: Box<[Prefix]>,
}

impl RateLimiter {
    /// A limiter for one of `workers` workers sharing the rate; the
    /// settings must have passed [`RrlSettings::validate`].
    pub fn new(settings: &RrlSettings, workers: usize) -> RateLimiter {
        let workers = workers.clamp(1, 1 << 20) as u64;
        let refill = u64::from(settings.rate.clamp(1, MAX_RATE));
        let cost = UNITS * workers;
        let buckets = settings
            .table_size
            .div_ceil(WAYS)
            .max(1)
            .next_power_of_two();
        let empty = Entry {
            key: EMPTY,
            seen: 0,
            tokens: 0,
        };
        RateLimiter {
            buckets: vec![Bucket([empty; WAYS]); buckets].into_boxed_slice(),
            bucket_mask: buckets as u64 - 1,
            hash_keys: [rand::random::<u64>(), rand::random::<u64>() | 1],
            refill,
            cost,
            capacity: (refill * UNITS).max(cost),
            ipv4_mask: u32::MAX << (32 - u32::from(settings.ipv4_prefix.clamp(1, 32))),
            ipv6_mask: u64::MAX << (64 - u32::from(settings.ipv6_prefix.clamp(1, 64))),
            slip: settings.slip,
            since_slip: 0,
            exempt: settings.exempt.clone().into_boxed_slice(),
        }
    }

    /// This worker's share of the rate, responses per second.
    pub fn rate(&self) -> f64 {
        (self.refill * UNITS) as f64 / self.cost as f64
    }

    /// Entries in the table.
    pub fn table_size(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// Count a response to `client` at `now_ms` (milliseconds on a clock
    /// of the caller's, the same for every call; it may wrap) and say
    /// whether it may go out.
    pub fn check(&mut self, client: IpAddr, now_ms: u32) -> Verdict {
        if !self.exempt.is_empty() && self.exempt.iter().any(|p| p.contains(client)) {
            return Verdict::Answer;
        }
        let key = self.key(client);
        let (refill, cost, capacity) = (self.refill, self.cost, self.capacity);
        let entry = self.entry(key, now_ms);
        let elapsed = u64::from(now_ms.wrapping_sub(entry.seen));
        let tokens = (u64::from(entry.tokens) + elapsed * refill).min(capacity);
        entry.seen = now_ms;
        if tokens >= cost {
            entry.tokens = (tokens - cost) as u32;
            return Verdict::Answer;
        }
        entry.tokens = tokens as u32;
        if self.slip == 0 {
            return Verdict::Drop;
        }
        self.since_slip += 1;
        if self.since_slip >= self.slip {
            self.since_slip = 0;
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// The client's prefix as a key. IPv4 prefixes sit under a top half
    /// of all ones, which no IPv6 unicast source has (ff00::/8 is
    /// multicast).
    fn key(&self, client: IpAddr) -> u64 {
        match client {
            IpAddr::V4(v4) => 0xffff_ffff_0000_0000 | u64::from(u32::from(v4) & self.ipv4_mask),
            IpAddr::V6(v6) => {
                let high = (u128::from(v6) >> 64) as u64;
                // A mapped IPv4 address (a dual-stack socket) is its IPv4.
                match v6.to_ipv4_mapped() {
                    Some(v4) => 0xffff_ffff_0000_0000 | u64::from(u32::from(v4) & self.ipv4_mask),
                    None => high & self.ipv6_mask,
                }
            }
        }
    }

    /// The entry of `key`: found in its bucket, or made in place of the
    /// bucket's least recently seen entry, full of tokens.
    fn entry(&mut self, key: u64, now_ms: u32) -> &mut Entry {
        let bucket = (self.bucket_hash(key) & self.bucket_mask) as usize;
        let capacity = self.capacity as u32;
        let ways = &mut self.buckets[bucket].0;
        let mut oldest = 0;
        let mut oldest_age = 0;
        for (i, entry) in ways.iter().enumerate() {
            if entry.key == key {
                return &mut ways[i];
            }
            let age = if entry.key == EMPTY {
                u32::MAX
            } else {
                now_ms.wrapping_sub(entry.seen)
            };
            if age >= oldest_age {
                oldest = i;
                oldest_age = age;
            }
        }
        let entry = &mut ways[oldest];
        *entry = Entry {
            key,
            seen: now_ms,
            tokens: capacity,
        };
        entry
    }

    /// A keyed folded-multiply hash (as in foldhash): cheap, and without
    /// the keys nobody can tell which prefixes share a bucket.
    fn bucket_hash(&self, key: u64) -> u64 {
        let folded = |a: u64, b: u64| {
            let product = u128::from(a) * u128::from(b);
            (product as u64) ^ ((product >> 64) as u64)
        };
        folded(key ^ self.hash_keys[0], self.hash_keys[1])
            ^ folded(key.rotate_left(32), self.hash_keys[0] | 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: u32, slip: u32) -> RrlSettings {
        RrlSettings {
            slip,
            table_size: 1024,
            ..RrlSettings::at_rate(rate)
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// `count` responses to `client` at `now_ms`, counted by verdict.
    fn burst(limiter: &mut RateLimiter, client: &str, now_ms: u32, count: usize) -> [usize; 3] {
        let mut verdicts = [0; 3];
        for _ in 0..count {
            let index = match limiter.check(ip(client), now_ms) {
                Verdict::Answer => 0,
                Verdict::Slip => 1,
                Verdict::Drop => 2,
            };
            verdicts[index] += 1;
        }
        verdicts
    }

    #[test]
    fn a_prefix_gets_its_rate_then_every_slip_th_response_slips() {
        let mut limiter = RateLimiter::new(&settings(10, 2), 1);
        // A second's worth at once, then half slipped, half dropped.
        assert_eq!(burst(&mut limiter, "192.0.2.1", 1000, 30), [10, 10, 10]);
        // The same /24 shares the bucket; another /24 has its own.
        assert_eq!(burst(&mut limiter, "192.0.2.200", 1000, 2), [0, 1, 1]);
        assert_eq!(burst(&mut limiter, "192.0.3.1", 1000, 10), [10, 0, 0]);
        // Tokens come back at the rate: 100 ms = one response.
        assert_eq!(burst(&mut limiter, "192.0.2.1", 1100, 2)[0], 1);
        assert_eq!(burst(&mut limiter, "192.0.2.1", 1600, 10)[0], 5);
        // And never more than a second's worth.
        assert_eq!(burst(&mut limiter, "192.0.2.1", 60_000, 30)[0], 10);
    }

    #[test]
    fn slip_zero_drops_and_slip_one_truncates_everything() {
        let mut drop_all = RateLimiter::new(&settings(5, 0), 1);
        assert_eq!(burst(&mut drop_all, "2001:db8::1", 0, 20), [5, 0, 15]);
        let mut slip_all = RateLimiter::new(&settings(5, 1), 1);
        assert_eq!(burst(&mut slip_all, "2001:db8::1", 0, 20), [5, 15, 0]);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_56() {
        let mut limiter = RateLimiter::new(&settings(4, 0), 1);
        assert_eq!(burst(&mut limiter, "2001:db8:0:ff::1", 0, 4)[0], 4);
        assert_eq!(
            burst(&mut limiter, "2001:db8:0:aa::9", 0, 4)[0],
            0,
            "same /56"
        );
        assert_eq!(
            burst(&mut limiter, "2001:db8:0:100::1", 0, 4)[0],
            4,
            "next /56"
        );
        // An IPv4-mapped address is its IPv4 client.
        assert_eq!(burst(&mut limiter, "192.0.2.1", 0, 4)[0], 4);
        assert_eq!(burst(&mut limiter, "::ffff:192.0.2.9", 0, 4)[0], 0);
    }

    #[test]
    fn the_rate_is_shared_by_the_workers_and_exempt_prefixes_are_never_limited() {
        // 10 per second over 4 workers: 2.5 each, exactly.
        let mut quarter = RateLimiter::new(&settings(10, 0), 4);
        assert_eq!(quarter.rate(), 2.5);
        assert_eq!(burst(&mut quarter, "192.0.2.1", 0, 10)[0], 2);
        assert_eq!(burst(&mut quarter, "192.0.2.1", 200, 10)[0], 1);
        assert_eq!(burst(&mut quarter, "192.0.2.1", 1000, 10)[0], 2);
        assert_eq!(
            burst(&mut quarter, "192.0.2.1", 11_000, 100)[0],
            2,
            "a second's worth"
        );
        // 1 per second over 64 workers: one response every 64 s.
        let mut sparse = RateLimiter::new(&settings(1, 0), 64);
        assert_eq!(burst(&mut sparse, "192.0.2.1", 0, 10)[0], 1);
        assert_eq!(burst(&mut sparse, "192.0.2.1", 63_000, 10)[0], 0);
        assert_eq!(burst(&mut sparse, "192.0.2.1", 64_000, 10)[0], 1);
        let mut exempting = RateLimiter::new(
            &RrlSettings {
                exempt: vec![
                    "192.0.2.0/25".parse().unwrap(),
                    "2001:db8::/32".parse().unwrap(),
                ],
                ..settings(1, 0)
            },
            1,
        );
        assert_eq!(burst(&mut exempting, "192.0.2.127", 0, 100)[0], 100);
        assert_eq!(burst(&mut exempting, "2001:db8:ffff::1", 0, 100)[0], 100);
        assert_eq!(burst(&mut exempting, "192.0.2.128", 0, 100)[0], 1);
    }

    #[test]
    fn a_busy_prefix_keeps_its_entry_while_others_churn_the_table() {
        // One bucket (4 entries): a flooding prefix is seen more recently
        // than the one-off prefixes around it, so it is never the one
        // evicted, and cannot reset its tokens by making others churn.
        let mut limiter = RateLimiter::new(
            &RrlSettings {
                table_size: 4,
                ..settings(5, 0)
            },
            1,
        );
        assert_eq!(limiter.table_size(), 4);
        let mut answered = 0;
        for i in 0..1000u32 {
            let other = format!("10.{}.{}.1", i / 256, i % 256);
            limiter.check(ip(&other), i);
            answered += burst(&mut limiter, "192.0.2.1", i, 1)[0];
        }
        // 5 at once, then 5 per second for one second.
        assert!(answered <= 10, "{answered}");
    }

    #[test]
    fn prefixes_and_settings_are_checked() {
        let prefix: Prefix = "198.51.100.7".parse().unwrap();
        assert!(prefix.contains(ip("198.51.100.7")) && !prefix.contains(ip("198.51.100.8")));
        let all: Prefix = "::/0".parse().unwrap();
        assert!(all.contains(ip("2001:db8::1")) && !all.contains(ip("192.0.2.1")));
        for bad in ["192.0.2.0/33", "nope/8", "2001:db8::/129", "192.0.2.0/x"] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
        assert!(settings(10, 2).validate().is_ok());
        for (bad, flag) in [
            (settings(0, 2), "--rrl-rate"),
            (settings(MAX_RATE + 1, 2), "--rrl-rate"),
            (
                RrlSettings {
                    ipv6_prefix: 65,
                    ..settings(1, 2)
                },
                "--rrl-ipv6-prefix",
            ),
            (
                RrlSettings {
                    ipv4_prefix: 0,
                    ..settings(1, 2)
                },
                "--rrl-ipv4-prefix",
            ),
            (
                RrlSettings {
                    table_size: 0,
                    ..settings(1, 2)
                },
                "--rrl-table-size",
            ),
        ] {
            let error = bad.validate().unwrap_err();
            assert!(error.contains(flag), "{error}");
        }
    }
}
