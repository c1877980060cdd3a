//! Who a request comes from, for the login limit and the nodes page: the
//! peer's address, or, when the peer is one of the operator's reverse
//! proxies (`--trusted-proxy`), the address that proxy saw
//! (`X-Forwarded-For`, read from the right, skipping trusted proxies). A
//! header from anyone else is ignored: a client cannot choose its address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Network, String> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?}: not an address or ADDRESS/PREFIX"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix must be 0..={max}"))?,
            None => max,
        };
        Ok(Network {
            address: canonical(address),
            prefix,
        })
    }
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4
/// clients) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Entries of `X-Forwarded-For` looked at, from the right: a longer chain
/// is not one the operator's proxies made.
const MAX_FORWARDED: usize = 16;

/// The client's address: the peer, or what trusted proxies forwarded.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[Network],
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
        let trusted: Vec<Network> = vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
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
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("nonsense".parse::<Network>().is_err());
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
