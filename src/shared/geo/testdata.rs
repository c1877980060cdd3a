//! The project's deterministic GeoIP test database.
//!
//! [`TEST_NETWORKS`] is the one list of networks; [`write_test_database`]
//! turns it into `.mmdb` bytes, committed as `tests/data/geo-test.mmdb`
//! (a test checks that regenerating gives the same bytes).
//!
//! The networks are in public unicast space, because the DNS layer ignores
//! private, reserved and documentation ECS addresses. The locations are
//! made up for tests: they are NOT the real owners' locations.
//!
//! Coverage: EU (de, fr, gb, is), NA (us, ca), AS (jp), SA (br), AF (za),
//! OC (au, nz); prefix lengths /8 /11 /15 /16 /17 /20 /22 /24 /32 for IPv4
//! and /26 /29 /32 /48 /64 /128 for IPv6; adjacent networks of different
//! countries (85.214.0.0/16 de, 85.215.0.0/17 fr); one network with a
//! continent but no country; one with only a registered country. In the
//! lead's test snapshot, `is` has zero servers and `nz` fewer than 4.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Continent::{self, *};
use super::mmdb_writer::{CountryRecord, MmdbWriter};

/// One network of the test database.
#[derive(Clone, Copy, Debug)]
pub struct TestNetwork {
    pub network: IpAddr,
    pub prefix_len: u8,
    /// `country.iso_code`, lowercase.
    pub country: Option<[u8; 2]>,
    /// `registered_country.iso_code`, lowercase.
    pub registered_country: Option<[u8; 2]>,
    pub continent: Option<Continent>,
}

impl TestNetwork {
    /// The country a lookup reports: `country`, else `registered_country`.
    pub fn located_country(&self) -> Option<[u8; 2]> {
        self.country.or(self.registered_country)
    }
}

const fn v4(
    octets: [u8; 4],
    prefix_len: u8,
    country: &[u8; 2],
    continent: Continent,
) -> TestNetwork {
    TestNetwork {
        network: IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])),
        prefix_len,
        country: Some(*country),
        registered_country: None,
        continent: Some(continent),
    }
}

const fn v6(
    segments: [u16; 8],
    prefix_len: u8,
    country: &[u8; 2],
    continent: Continent,
) -> TestNetwork {
    TestNetwork {
        network: IpAddr::V6(Ipv6Addr::new(
            segments[0],
            segments[1],
            segments[2],
            segments[3],
            segments[4],
            segments[5],
            segments[6],
            segments[7],
        )),
        prefix_len,
        country: Some(*country),
        registered_country: None,
        continent: Some(continent),
    }
}

/// A network located on a continent only, as MaxMind does for networks
/// spread over a continent (`continent.code` "EU", no `country`).
const fn continent_only(network: TestNetwork) -> TestNetwork {
    TestNetwork {
        country: None,
        ..network
    }
}

/// A network with only `registered_country` (no `country`, no continent):
/// the lookup falls back to the registered country.
const fn registered_country_only(network: TestNetwork) -> TestNetwork {
    TestNetwork {
        country: None,
        registered_country: network.country,
        continent: None,
        ..network
    }
}

pub const TEST_NETWORKS: &[TestNetwork] = &[
    // IPv4
    v4([3, 0, 0, 0], 8, b"us", NorthAmerica),
    v4([8, 8, 8, 8], 32, b"us", NorthAmerica),
    v4([24, 114, 0, 0], 20, b"ca", NorthAmerica),
    v4([1, 128, 0, 0], 11, b"au", Oceania),
    v4([62, 128, 0, 0], 15, b"de", Europe),
    v4([81, 2, 69, 0], 24, b"gb", Europe),
    v4([82, 64, 0, 0], 16, b"fr", Europe),
    v4([85, 214, 0, 0], 16, b"de", Europe),
    v4([85, 215, 0, 0], 17, b"fr", Europe),
    v4([126, 0, 0, 0], 8, b"jp", Asia),
    v4([130, 208, 0, 0], 16, b"is", Europe),
    v4([130, 216, 0, 0], 16, b"nz", Oceania),
    v4([177, 0, 0, 0], 20, b"br", SouthAmerica),
    v4([196, 25, 0, 0], 16, b"za", Africa),
    // Continent only ("--": the placeholder country is dropped).
    continent_only(v4([194, 42, 0, 0], 20, b"--", Europe)),
    registered_country_only(v4([103, 0, 0, 0], 22, b"jp", Asia)),
    // IPv6
    v6([0x2001, 0x200, 0, 0, 0, 0, 0, 0], 32, b"jp", Asia),
    v6([0x2001, 0x4860, 0, 0, 0, 0, 0, 0], 32, b"us", NorthAmerica),
    v6([0x2400, 0x8800, 0, 0, 0, 0, 0, 0], 32, b"au", Oceania),
    v6([0x2404, 0x130, 0, 0, 0, 0, 0, 0], 32, b"nz", Oceania),
    v6(
        [0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1111],
        128,
        b"us",
        NorthAmerica,
    ),
    v6([0x2607, 0xf2c0, 0, 0, 0, 0, 0, 0], 32, b"ca", NorthAmerica),
    v6([0x2804, 0x14c, 0x1, 0, 0, 0, 0, 0], 48, b"br", SouthAmerica),
    v6([0x2a00, 0xc88, 0, 0, 0, 0, 0, 0], 32, b"is", Europe),
    v6([0x2a00, 0x1098, 0, 0, 0, 0, 0, 0], 32, b"gb", Europe),
    v6([0x2a01, 0x4f8, 0, 0, 0, 0, 0, 0], 32, b"de", Europe),
    v6([0x2a01, 0xe00, 0, 0, 0, 0, 0, 0], 26, b"fr", Europe),
    v6(
        [0x2a02, 0x2e0, 0x3fe, 0x1001, 0, 0, 0, 0],
        64,
        b"de",
        Europe,
    ),
    continent_only(v6([0x2a0a, 0x2000, 0, 0, 0, 0, 0, 0], 29, b"--", Europe)),
    v6([0x2c0f, 0xf7f8, 0, 0, 0, 0, 0, 0], 32, b"za", Africa),
];

/// 2024-01-01T00:00:00Z: a fixed build time keeps the file deterministic.
pub const TEST_DATABASE_BUILD_EPOCH: u64 = 1_704_067_200;

/// The test database as `.mmdb` bytes.
pub fn write_test_database() -> Vec<u8> {
    let mut writer = MmdbWriter::new(
        "timepool-Test-Country",
        "timepool test database: made-up locations on public networks",
        TEST_DATABASE_BUILD_EPOCH,
    );
    for network in TEST_NETWORKS {
        let record = CountryRecord {
            country: network.country,
            registered_country: network.registered_country,
            continent: network.continent,
        };
        // TEST_NETWORKS is a constant checked by the tests; failing here is
        // a bug in that list, not bad input.
        if let Err(error) = writer.insert(network.network, network.prefix_len, record) {
            panic!("TEST_NETWORKS: {error}");
        }
    }
    match writer.to_bytes() {
        Ok(bytes) => bytes,
        Err(error) => panic!("TEST_NETWORKS: {error}"),
    }
}
