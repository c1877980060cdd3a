//! What an operator may add: public unicast addresses, typed directly or as
//! a hostname whose A and AAAA records are taken.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The country zone of an address from GeoIP (the same .mmdb as the DNS
/// daemon): GeoIP's `GB` is the pool's `uk`. `None` when the database does
/// not know the address (or there is none); the operator then chooses.
pub fn zone_for_address(geo: &crate::geo::GeoTable, addr: IpAddr) -> Option<String> {
    let country = geo.lookup(addr).country?;
    let zone = match country.as_str() {
        "gb" => "uk",
        other => other,
    };
    crate::db::zone_tree::is_country(zone).then(|| zone.to_string())
}

/// Why an address cannot serve the public, or Ok for a public unicast one.
pub fn check_public(addr: IpAddr, allow_loopback: bool) -> Result<(), &'static str> {
    if addr.is_loopback() {
        return if allow_loopback {
            Ok(())
        } else {
            Err("is a loopback address")
        };
    }
    match addr {
        IpAddr::V4(v4) => check_v4(v4),
        IpAddr::V6(v6) => check_v6(v6),
    }
}

fn in_v4(addr: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(addr) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn check_v4(a: Ipv4Addr) -> Result<(), &'static str> {
    // Order matters only for the message; the ranges are IANA's special-purpose registry.
    const RULES: &[([u8; 4], u32, &str)] = &[
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
    match RULES
        .iter()
        .find(|(net, prefix, _)| in_v4(a, *net, *prefix))
    {
        Some((_, _, reason)) => Err(reason),
        None => Ok(()),
    }
}

fn check_v6(a: Ipv6Addr) -> Result<(), &'static str> {
    let s = a.segments();
    if a.is_unspecified() {
        return Err("is the unspecified address (::)");
    }
    if a.to_ipv4_mapped().is_some() {
        return Err("is an IPv4-mapped address; add the IPv4 address instead");
    }
    if s[0] & 0xff00 == 0xff00 {
        return Err("is a multicast address (ff00::/8)");
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Err("is a link-local address (fe80::/10)");
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Err("is a unique local (private) address (fc00::/7)");
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 || s[0] & 0xfff0 == 0x3ff0 {
        return Err("is reserved for documentation (2001:db8::/32, 3fff::/20)");
    }
    if s[0] == 0x2001 && s[1] < 0x0200 {
        return Err("is reserved for IETF protocol assignments (2001::/23)");
    }
    if s[0] == 0x2002 {
        return Err("is a 6to4 address (2002::/16)");
    }
    // Everything outside 2000::/3 is not global unicast.
    if s[0] & 0xe000 != 0x2000 {
        return Err("is reserved (not in global unicast 2000::/3)");
    }
    Ok(())
}

/// The outcome of resolving what the operator typed.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    pub hostname: Option<String>,
    pub addresses: Vec<IpAddr>,
}

/// A hostname as DNS allows it: letters, digits and hyphens, dots between.
fn is_hostname(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// An address, or a hostname looked up for its A and AAAA records.
/// The error is a message for the form field.
pub async fn resolve(input: &str) -> Result<Resolved, String> {
    let input = input.trim();
    if input.is_empty() {
        return Err("Enter an IPv4 or IPv6 address or a hostname.".into());
    }
    let bare = input.trim_start_matches('[').trim_end_matches(']');
    if let Ok(addr) = bare.parse::<IpAddr>() {
        return Ok(Resolved {
            hostname: None,
            addresses: vec![addr],
        });
    }
    if !is_hostname(input) {
        return Err(format!(
            "\"{input}\" is neither an IP address nor a valid hostname."
        ));
    }
    let host = input.trim_end_matches('.').to_ascii_lowercase();
    let lookup = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::lookup_host((host.clone(), 123)),
    )
    .await;
    let mut addresses: Vec<IpAddr> = match lookup {
        Ok(Ok(iter)) => iter.map(|sa| sa.ip()).collect(),
        Ok(Err(_)) => return Err(format!("The hostname \"{host}\" could not be resolved.")),
        Err(_) => return Err(format!("Looking up \"{host}\" timed out.")),
    };
    addresses.sort();
    addresses.dedup();
    if addresses.is_empty() {
        return Err(format!("The hostname \"{host}\" has no A or AAAA records."));
    }
    Ok(Resolved {
        hostname: Some(host),
        addresses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(addr: &str, loopback: bool) -> Result<(), &'static str> {
        check_public(addr.parse().expect("test address"), loopback)
    }

    #[test]
    fn public_and_refused() {
        for ok in ["8.8.8.8", "193.0.0.1", "2a01:4f8::1", "2600::1"] {
            assert_eq!(check(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:8.8.8.8",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "2002::1",
        ] {
            assert!(check(bad, false).is_err(), "{bad}");
        }
        assert_eq!(check("127.0.0.1", true), Ok(()));
        assert_eq!(check("::1", true), Ok(()));
    }

    #[test]
    fn hostnames() {
        assert!(is_hostname("ntp.example.org"));
        assert!(is_hostname("ntp1.example.org."));
        assert!(!is_hostname("-bad.example"));
        assert!(!is_hostname("a..b"));
        assert!(!is_hostname("x y"));
    }
}
