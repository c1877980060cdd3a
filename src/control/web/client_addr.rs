//! Who a request comes from, for the login limit and the nodes page: the
//! peer's address, or, when the peer is one of the operator's reverse
//! proxies (`--trusted-proxy`), the address that proxy saw
//! (`X-Forwarded-For`, read from the right, skipping trusted proxies). A
//! header from anyone else is ignored: a client cannot choose its address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;

use crate::shared::netaddr::{Prefix, canonical};

/// Entries of `X-Forwarded-For` looked at, from the right: a longer chain
/// is not one the operator's proxies made.
const MAX_FORWARDED: usize = 16;

/// The client's address: the peer, or what trusted proxies forwarded.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[Prefix],
) -> Option<IpAddr> {
    let peer = canonical(peer?.ip());
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for entry in forwarded.iter().rev().take(MAX_FORWARDED) {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            // Garbage: whatever stands left of it cannot be trusted.
            break;
        };
        client = canonical(ip);
        if !is_trusted(client) {
            break;
        }
    }
    Some(client)
}

/// The network a client is counted in by the login limit: its /24
/// (IPv4) or /56 (IPv6, a typical customer's allocation), so rotating
/// addresses within one's own block does not escape the limit.
pub fn client_network(ip: Option<IpAddr>) -> String {
    match ip.map(canonical) {
        Some(IpAddr::V4(v4)) => {
            let masked = Ipv4Addr::from(u32::from(v4) & 0xffff_ff00);
            format!("{masked}/24")
        }
        Some(IpAddr::V6(v6)) => {
            let masked = Ipv6Addr::from(u128::from(v6) & !((1u128 << 72) - 1));
            format!("{masked}/56")
        }
        None => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", forwarded.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<Prefix> = vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        let peer = |ip: &str| Some(SocketAddr::new(ip.parse().unwrap(), 40000));
        // A stranger's header is ignored.
        assert_eq!(
            client_ip(peer("198.51.100.7"), &headers("192.0.2.1"), &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        // The proxy's is read from the right, past other trusted proxies.
        assert_eq!(
            client_ip(
                peer("10.1.1.1"),
                &headers("6.6.6.6, 192.0.2.1, 10.2.2.2"),
                &trusted
            ),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            client_ip(peer("::1"), &headers("2001:db8::5"), &trusted),
            Some("2001:db8::5".parse().unwrap())
        );
        // No header: the proxy itself. Garbage: stop there.
        assert_eq!(
            client_ip(peer("10.1.1.1"), &HeaderMap::new(), &trusted),
            Some("10.1.1.1".parse().unwrap())
        );
        assert_eq!(
            client_ip(peer("10.1.1.1"), &headers("192.0.2.9, junk"), &trusted),
            Some("10.1.1.1".parse().unwrap())
        );
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("nonsense".parse::<Prefix>().is_err());
    }

    #[test]
    fn networks_of_the_login_limit() {
        assert_eq!(
            client_network(Some("192.0.2.77".parse().unwrap())),
            "192.0.2.0/24"
        );
        assert_eq!(
            client_network(Some("::ffff:192.0.2.77".parse().unwrap())),
            "192.0.2.0/24"
        );
        assert_eq!(
            client_network(Some("2001:db8:1:2ff:1::1".parse().unwrap())),
            "2001:db8:1:200::/56"
        );
        assert_eq!(client_network(None), "unknown");
    }
}
