//! What an operator may add: public unicast addresses, typed directly or as
//! a hostname whose A and AAAA records are taken.

use super::i18n::{tr, trf};
use std::net::IpAddr;

/// The country zone of an address from GeoIP (the same .mmdb as the DNS
/// daemon): GeoIP's `GB` is the pool's `uk`. `None` when the database does
/// not know the address (or there is none); the operator then chooses.
pub fn zone_for_address(geo: &crate::shared::geo::GeoTable, addr: IpAddr) -> Option<String> {
    let country = geo.lookup(addr).country?;
    let zone = crate::shared::zones::country_zone_label(country.as_str());
    crate::control::zone_tree::is_country(zone).then(|| zone.to_string())
}

/// Why an address cannot serve the public, or Ok for a public unicast one.
/// One classifier decides this for the web app and the DNS daemon
/// (`crate::shared::netaddr`); loopback is allowed here only for tests and demos.
pub fn check_public(addr: IpAddr, allow_loopback: bool) -> Result<(), &'static str> {
    if addr.is_loopback() && allow_loopback {
        return Ok(());
    }
    match crate::shared::netaddr::non_public_reason(addr) {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

/// The outcome of resolving what the operator typed.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    pub hostname: Option<String>,
    pub addresses: Vec<IpAddr>,
}

/// A hostname as DNS allows it: letters, digits and hyphens, dots between,
/// and a last label that is not all digits (RFC 3696 2: no top-level
/// domain is). So `127.000.000.041` or `999.1.1.1` is a bad address, never
/// a name for the resolver, which would read leading zeros as octal.
fn is_hostname(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let numeric_tld = name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()));
    !name.is_empty()
        && !numeric_tld
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
        return Err(tr("Enter an IPv4 or IPv6 address or a hostname.").into());
    }
    let bare = input.trim_start_matches('[').trim_end_matches(']');
    if let Ok(addr) = bare.parse::<IpAddr>() {
        return Ok(Resolved {
            hostname: None,
            addresses: vec![addr],
        });
    }
    if !is_hostname(input) {
        return Err(trf(
            "\"{input}\" is neither an IP address nor a valid hostname.",
            &[("input", input.to_string())],
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
        Ok(Err(_)) => {
            return Err(trf(
                "The hostname \"{host}\" could not be resolved.",
                &[("host", host)],
            ));
        }
        Err(_) => {
            return Err(trf("Looking up \"{host}\" timed out.", &[("host", host)]));
        }
    };
    addresses.sort();
    addresses.dedup();
    if addresses.is_empty() {
        return Err(trf(
            "The hostname \"{host}\" has no A or AAAA records.",
            &[("host", host)],
        ));
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
        // What looks like an address but is not one is not a name either.
        for numeric in [
            "127.000.000.041",
            "999.1.1.1",
            "1.2.3",
            "0x7f.1",
            "10",
            "1.2.3.4.",
        ] {
            assert!(!is_hostname(numeric), "{numeric}");
        }
        assert!(is_hostname("123.example"));
        assert!(is_hostname("ntp.1a"));
    }

    #[tokio::test]
    async fn address_lookalikes_are_refused_without_a_lookup() {
        for input in ["127.000.000.041", "999.1.1.1", "[::1::2]"] {
            let error = resolve(input).await.expect_err(input);
            assert!(
                error.contains("neither an IP address nor a valid hostname"),
                "{input}: {error}"
            );
        }
    }
}
