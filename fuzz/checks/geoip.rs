//! `geoip`: the GeoIP database reader and its flattening into the lookup
//! table on any bytes (seeded with the test database, which the fuzzer
//! truncates and flips) gives an error or a table, never a panic or an
//! allocation past libFuzzer's limit; a table it gives answers lookups.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use timepool::shared::geo::GeoTable;

pub fn check(data: &[u8]) {
    let Ok(table) = GeoTable::from_bytes(data.to_vec(), "fuzz input") else {
        return;
    };
    let mut addresses = vec![
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::BROADCAST),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::from(u128::MAX)),
    ];
    // And addresses made of the input's own bytes.
    for chunk in data.chunks_exact(16).take(8) {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(chunk);
        addresses.push(IpAddr::V6(Ipv6Addr::from(octets)));
        addresses.push(IpAddr::V4(Ipv4Addr::new(
            octets[0], octets[1], octets[2], octets[3],
        )));
    }
    for address in addresses {
        let _ = table.lookup(address);
    }
    // One entry per country code at most.
    assert!(table.country_networks().len() <= 26 * 26);
    let _ = table.heap_bytes();
}
