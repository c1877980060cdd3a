//! Which addresses are public unicast.
//!
//! The DNS daemon ignores an ECS address that is not (RFC 7871 section
//! 7.1.2: private and reserved addresses say nothing about where a client
//! is), and the control plane refuses such an address for a pool server.
//! One function decides both, with the reason for a refusal. And address
//! blocks as operators write them (`--rrl-exempt`, `--trusted-proxy`).
//!
//! Architecture invariant: pure functions of an address; no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
/// IPv4-mapped IPv6 addresses (a dual-stack socket's view of IPv4
/// clients) count as IPv4, in the block and in what is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    network: IpAddr,
    len: u8,
}

impl Prefix {
    /// Whether `address` is in this block.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical(address)) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;

    /// `ADDRESS/LEN`, or an address alone (a single host).
    fn from_str(text: &str) -> Result<Prefix, String> {
        let trimmed = text.trim();
        let (address, len) = match trimmed.split_once('/') {
            Some((address, len)) => (address, Some(len)),
            None => (trimmed, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?}: {address:?} is not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(len) => len
                .parse::<u8>()
                .ok()
                .filter(|&len| len <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
            None => max,
        };
        let network = match canonical(network) {
            // A mapped IPv4 block: its length counted within the IPv4 part.
            IpAddr::V4(v4) if network.is_ipv6() => {
                return Ok(Prefix {
                    network: IpAddr::V4(v4),
                    len: len.saturating_sub(96),
                });
            }
            network => network,
        };
        Ok(Prefix { network, len })
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// `None` for a public unicast address, else why it is not one.
pub fn non_public_reason(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

pub fn is_public_unicast(address: IpAddr) -> bool {
    non_public_reason(address).is_none()
}

fn in_v4(address: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(address) & mask == u32::from(Ipv4Addr::from(network)) & mask
}

/// IANA's special-purpose IPv4 registry; the order matters only for the text.
const V4_RANGES: &[([u8; 4], u32, &str)] = &[
    (
        [0, 0, 0, 0],
        8,
        "is unspecified (0.0.0.0/8, \"this network\")",
    ),
    ([10, 0, 0, 0], 8, "is a private address (10.0.0.0/8)"),
    (
        [100, 64, 0, 0],
        10,
        "is shared address space for carrier-grade NAT (100.64.0.0/10)",
    ),
    ([127, 0, 0, 0], 8, "is a loopback address (127.0.0.0/8)"),
    (
        [169, 254, 0, 0],
        16,
        "is a link-local address (169.254.0.0/16)",
    ),
    ([172, 16, 0, 0], 12, "is a private address (172.16.0.0/12)"),
    (
        [192, 0, 0, 0],
        24,
        "is reserved for IETF protocol assignments (192.0.0.0/24)",
    ),
    (
        [192, 0, 2, 0],
        24,
        "is reserved for documentation (192.0.2.0/24)",
    ),
    (
        [192, 88, 99, 0],
        24,
        "is reserved (192.88.99.0/24, the former 6to4 relay anycast)",
    ),
    (
        [192, 168, 0, 0],
        16,
        "is a private address (192.168.0.0/16)",
    ),
    (
        [198, 18, 0, 0],
        15,
        "is reserved for benchmarking (198.18.0.0/15)",
    ),
    (
        [198, 51, 100, 0],
        24,
        "is reserved for documentation (198.51.100.0/24)",
    ),
    (
        [203, 0, 113, 0],
        24,
        "is reserved for documentation (203.0.113.0/24)",
    ),
    ([224, 0, 0, 0], 4, "is a multicast address (224.0.0.0/4)"),
    ([255, 255, 255, 255], 32, "is the broadcast address"),
    ([240, 0, 0, 0], 4, "is reserved (240.0.0.0/4)"),
];

fn v4_reason(address: Ipv4Addr) -> Option<&'static str> {
    V4_RANGES
        .iter()
        .find(|(network, prefix, _)| in_v4(address, *network, *prefix))
        .map(|&(_, _, reason)| reason)
}

/// IANA's special-purpose IPv6 registry, and what is outside 2000::/3.
const V6_RANGES: &[(u128, u32, &str)] = &[
    (0, 128, "is the unspecified address (::)"),
    (1, 128, "is a loopback address (::1)"),
    (
        0xffff << 32,
        96,
        "is an IPv4-mapped address; use the IPv4 address instead",
    ),
    (0xff00 << 112, 8, "is a multicast address (ff00::/8)"),
    (0xfe80 << 112, 10, "is a link-local address (fe80::/10)"),
    (
        0xfc00 << 112,
        7,
        "is a unique local (private) address (fc00::/7)",
    ),
    (
        0x2001_0db8 << 96,
        32,
        "is reserved for documentation (2001:db8::/32)",
    ),
    (
        0x3fff << 112,
        20,
        "is reserved for documentation (3fff::/20)",
    ),
    (
        0x0064_ff9b_0001 << 80,
        48,
        "is for local NAT64 (64:ff9b:1::/48)",
    ),
    (0x0100 << 112, 64, "is a discard prefix (100::/64)"),
    (
        0x2001 << 112,
        23,
        "is reserved for IETF protocol assignments (2001::/23)",
    ),
    (0x2002 << 112, 16, "is a 6to4 address (2002::/16)"),
];
const OUTSIDE_GLOBAL_UNICAST: &str = "is outside global unicast space (2000::/3)";

/// Every reason `non_public_reason` can give (the web app translates them).
pub fn all_reasons() -> impl Iterator<Item = &'static str> {
    V4_RANGES
        .iter()
        .map(|r| r.2)
        .chain(V6_RANGES.iter().map(|r| r.2))
        .chain([OUTSIDE_GLOBAL_UNICAST])
}

fn v6_reason(address: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(address);
    let within = |network: u128, prefix: u32| {
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - prefix)
        };
        bits & mask == network & mask
    };
    if let Some(&(_, _, reason)) = V6_RANGES
        .iter()
        .find(|(network, prefix, _)| within(*network, *prefix))
    {
        return Some(reason);
    }
    if !within(0x2000 << 112, 3) {
        return Some(OUTSIDE_GLOBAL_UNICAST);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_count_mapped_ipv4_as_ipv4() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let mapped: Prefix = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, "10.0.0.0/8".parse().unwrap());
        assert!(mapped.contains(ip("10.1.2.3")) && mapped.contains(ip("::ffff:10.1.2.3")));
        let block: Prefix = " 192.0.2.0/24 ".parse().unwrap();
        assert!(block.contains(ip("::ffff:192.0.2.9")) && !block.contains(ip("192.0.3.1")));
        for bad in ["10.0.0.0/33", "::/129", "nonsense", "10.0.0.0/x"] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn classifies_addresses() {
        let cases = [
            ("85.10.1.7", None),
            ("8.8.8.8", None),
            ("2a01:4f8::1", None),
            ("10.1.2.3", Some("private address (10.0.0.0/8)")),
            ("172.31.0.1", Some("private")),
            ("192.168.1.1", Some("private")),
            ("127.0.0.1", Some("loopback")),
            ("169.254.1.1", Some("link-local")),
            ("100.64.1.1", Some("shared")),
            ("0.1.2.3", Some("unspecified")),
            ("192.0.2.1", Some("documentation")),
            ("224.0.0.1", Some("multicast")),
            ("255.255.255.255", Some("broadcast")),
            ("240.1.2.3", Some("reserved")),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fe80::1", Some("link-local")),
            ("fd00::1", Some("unique local")),
            ("2001:db8::1", Some("documentation")),
            ("ff02::1", Some("multicast")),
            ("::ffff:10.0.0.1", Some("IPv4-mapped")),
            ("::ffff:8.8.8.8", Some("IPv4-mapped")),
            ("2002::1", Some("6to4")),
            ("2001:200::1", None),
        ];
        for (text, expected) in cases {
            let reason = non_public_reason(text.parse().unwrap());
            match expected {
                None => assert_eq!(reason, None, "{text}"),
                Some(word) => assert!(
                    reason.is_some_and(|r| r.contains(word)),
                    "{text}: {reason:?}"
                ),
            }
        }
    }
}
