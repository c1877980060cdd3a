//! The GeoIP table against an independent model of the test networks and
//! against `maxminddb::Reader::lookup` itself (differential), plus corrupt
//! files. The real-database tests run when `scripts/geoip.sh` has put
//! `data/geoip/GeoLite2-City.mmdb` in place, and say so when it is absent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Instant;

use maxminddb::{Reader, geoip2};
use timepool::shared::geo::mmdb_writer::{CountryRecord, MmdbWriter, RecordSize};
use timepool::shared::geo::testdata::{TEST_NETWORKS, write_test_database};
use timepool::shared::geo::{Continent, CountryCode, GeoError, GeoMatch, GeoTable};

const TEST_DATABASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/geo-test.mmdb");
const REAL_DATABASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/geoip/GeoLite2-City.mmdb");

/// Deterministic pseudo-random numbers (splitmix64), fixed seed per test.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }
}

fn test_table() -> GeoTable {
    GeoTable::from_bytes(write_test_database(), "test database").unwrap()
}

// ---------------------------------------------------------------------------
// An independent model of the test database: what a lookup must answer,
// computed from TEST_NETWORKS by brute force.

/// An inclusive address range in one family, with its answer.
#[derive(Clone, Copy)]
struct ModelRange {
    first: u128,
    last: u128,
    prefix_len: u8,
    answer: ModelAnswer,
}

#[derive(Clone, Copy)]
enum ModelAnswer {
    Location(Option<CountryCode>, Option<Continent>),
    /// The 32 bits after the prefix are an IPv4 address to look up.
    AliasToIpv4,
}

struct Model {
    v4: Vec<ModelRange>,
    v6: Vec<ModelRange>,
}

fn range(first: u128, prefix_len: u8, bits: u8, answer: ModelAnswer) -> ModelRange {
    let host_bits = u32::from(bits - prefix_len);
    let size_minus_one = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    ModelRange {
        first,
        last: first + size_minus_one,
        prefix_len,
        answer,
    }
}

fn test_model() -> Model {
    let mut model = Model {
        v4: Vec::new(),
        v6: Vec::new(),
    };
    for network in TEST_NETWORKS {
        let answer = ModelAnswer::Location(
            network.located_country().map(CountryCode),
            network.continent,
        );
        match network.network {
            IpAddr::V4(v4) => model.v4.push(range(
                u128::from(u32::from(v4)),
                network.prefix_len,
                32,
                answer,
            )),
            IpAddr::V6(v6) => model
                .v6
                .push(range(u128::from(v6), network.prefix_len, 128, answer)),
        }
    }
    for (first, prefix_len) in [
        (0u128, 96u8),
        (0xffff_0000_0000, 96),
        (0x2001 << 112, 32),
        (0x2002 << 112, 16),
    ] {
        model
            .v6
            .push(range(first, prefix_len, 128, ModelAnswer::AliasToIpv4));
    }
    model
}

fn model_lookup(ranges: &[ModelRange], addr: u128, bits: u8) -> Result<ModelRange, u8> {
    if let Some(found) = ranges.iter().find(|r| r.first <= addr && addr <= r.last) {
        return Ok(*found);
    }
    // The shortest prefix whose aligned block around addr touches no range.
    for prefix_len in 0..=bits {
        let block = range(
            addr & !(range(0, prefix_len, bits, ModelAnswer::AliasToIpv4).last),
            prefix_len,
            bits,
            ModelAnswer::AliasToIpv4,
        );
        if ranges
            .iter()
            .all(|r| r.last < block.first || block.last < r.first)
        {
            return Err(prefix_len);
        }
    }
    unreachable!("a /{bits} block around an address outside every range is empty")
}

impl Model {
    fn lookup(&self, addr: IpAddr) -> GeoMatch {
        match addr {
            IpAddr::V4(v4) => self.lookup_v4(u32::from(v4)),
            IpAddr::V6(v6) => {
                let addr = u128::from(v6);
                match model_lookup(&self.v6, addr, 128) {
                    Err(prefix_len) => GeoMatch::nowhere(prefix_len),
                    Ok(found) => match found.answer {
                        ModelAnswer::Location(country, continent) => GeoMatch {
                            country,
                            continent,
                            prefix_len: found.prefix_len,
                        },
                        ModelAnswer::AliasToIpv4 => {
                            let ipv4 = (addr >> (96 - found.prefix_len)) as u32;
                            let inner = self.lookup_v4(ipv4);
                            GeoMatch {
                                prefix_len: found.prefix_len + inner.prefix_len,
                                ..inner
                            }
                        }
                    },
                }
            }
        }
    }

    fn lookup_v4(&self, addr: u32) -> GeoMatch {
        match model_lookup(&self.v4, u128::from(addr), 32) {
            Err(prefix_len) => GeoMatch::nowhere(prefix_len),
            Ok(ModelRange {
                prefix_len,
                answer: ModelAnswer::Location(country, continent),
                ..
            }) => GeoMatch {
                country,
                continent,
                prefix_len,
            },
            Ok(_) => unreachable!("no alias in the IPv4 model"),
        }
    }
}

// ---------------------------------------------------------------------------
// maxminddb's own answer, decoded with its own geoip2::Country schema.

fn maxminddb_answer(reader: &Reader<Vec<u8>>, addr: IpAddr) -> GeoMatch {
    let result = reader.lookup(addr).unwrap();
    let prefix_len = result.network().unwrap().prefix();
    match result.decode::<geoip2::Country>().unwrap() {
        None => GeoMatch::nowhere(prefix_len),
        Some(record) => GeoMatch {
            country: record
                .country
                .iso_code
                .or(record.registered_country.iso_code)
                .and_then(|code| CountryCode::from_iso_code(code.as_bytes())),
            continent: record
                .continent
                .code
                .and_then(|code| Continent::from_code(code.as_bytes())),
            prefix_len,
        },
    }
}

/// Addresses that exercise the test networks: their edges and neighbours.
fn edge_addresses() -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    for network in TEST_NETWORKS {
        match network.network {
            IpAddr::V4(v4) => {
                let first = u32::from(v4);
                let last = first
                    | u32::MAX
                        .checked_shr(u32::from(network.prefix_len))
                        .unwrap_or(0);
                let middle = first + (last - first) / 2;
                for addr in [
                    Some(first),
                    Some(middle),
                    Some(last),
                    first.checked_sub(1),
                    last.checked_add(1),
                ]
                .into_iter()
                .flatten()
                {
                    addresses.push(IpAddr::V4(addr.into()));
                    // The same address IPv4-mapped, as 6to4 and as Teredo server.
                    let addr = u128::from(addr);
                    addresses.push(IpAddr::V6((0xffff_0000_0000 | addr).into()));
                    addresses.push(IpAddr::V6(((0x2002 << 112) | (addr << 80)).into()));
                    addresses.push(IpAddr::V6(((0x2001 << 112) | (addr << 64)).into()));
                    addresses.push(IpAddr::V6(addr.into()));
                }
            }
            IpAddr::V6(v6) => {
                let first = u128::from(v6);
                let last = first
                    | u128::MAX
                        .checked_shr(u32::from(network.prefix_len))
                        .unwrap_or(0);
                let middle = first + (last - first) / 2;
                for addr in [
                    Some(first),
                    Some(middle),
                    Some(last),
                    first.checked_sub(1),
                    last.checked_add(1),
                ]
                .into_iter()
                .flatten()
                {
                    addresses.push(IpAddr::V6(addr.into()));
                }
            }
        }
    }
    addresses
}

/// Pseudo-random addresses: uniform IPv4, IPv6 in 2000::/3, near the test
/// networks, and in the ranges aliased to IPv4.
fn random_addresses(seed: u64, count: usize) -> Vec<IpAddr> {
    let mut rng = SplitMix64(seed);
    let edges = edge_addresses();
    (0..count)
        .map(|_| {
            let choice = rng.next_u64() % 8;
            let random = rng.next_u128();
            match choice {
                0..=2 => IpAddr::V4(Ipv4Addr::from(random as u32)),
                3 => IpAddr::V6(Ipv6Addr::from((random >> 3) | (1 << 125))),
                4 => IpAddr::V6(Ipv6Addr::from(random)),
                5 => {
                    let ipv4 = u128::from(random as u32);
                    let aliased = [
                        0xffff_0000_0000 | ipv4,
                        (0x2002 << 112) | (ipv4 << 80) | (random >> 64 & 0xffff),
                        (0x2001 << 112) | (ipv4 << 64) | (random >> 64 & 0xffff_ffff),
                        ipv4,
                    ];
                    IpAddr::V6(Ipv6Addr::from(aliased[(random >> 100) as usize % 4]))
                }
                _ => {
                    // Near an edge: flip some low bits of an edge address.
                    let edge = edges[(random >> 64) as usize % edges.len()];
                    let low_bits = (random >> 32) as u32 % 24;
                    let noise = random & ((1u128 << low_bits) - 1);
                    match edge {
                        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) ^ noise as u32)),
                        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) ^ noise)),
                    }
                }
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------

#[test]
fn committed_test_database_is_regenerated_identically() {
    let generated = write_test_database();
    if std::env::var_os("TIMEPOOL_WRITE_GEO_TEST_DB").is_some() {
        std::fs::write(TEST_DATABASE, &generated).unwrap();
    }
    let committed = std::fs::read(TEST_DATABASE).unwrap();
    assert!(
        committed == generated,
        "tests/data/geo-test.mmdb differs from write_test_database(); \
         regenerate with TIMEPOOL_WRITE_GEO_TEST_DB=1 cargo test --test geo"
    );
    assert_eq!(write_test_database(), generated, "two runs differ");
}

#[test]
fn test_database_passes_maxminddb_verify() {
    let reader = Reader::from_source(write_test_database()).unwrap();
    reader.verify().unwrap();
    assert_eq!(reader.metadata().database_type, "timepool-Test-Country");
}

#[test]
fn every_test_network_edge_and_neighbour() {
    let table = test_table();
    let model = test_model();
    let reader = Reader::from_source(write_test_database()).unwrap();
    for addr in edge_addresses() {
        let expected = model.lookup(addr);
        assert_eq!(table.lookup(addr), expected, "table, {addr}");
        assert_eq!(
            maxminddb_answer(&reader, addr),
            expected,
            "maxminddb, {addr}"
        );
    }
    assert_eq!(table.network_count(), TEST_NETWORKS.len());
    assert_eq!(
        table.description(),
        format!(
            "timepool-Test-Country built 2024-01-01, {} networks (16 IPv4, 14 IPv6)",
            TEST_NETWORKS.len()
        )
    );
}

fn check(
    table: &GeoTable,
    addr: &str,
    country: Option<&str>,
    continent: Option<Continent>,
    prefix_len: u8,
) {
    let parsed: IpAddr = addr.parse().unwrap();
    let found = table.lookup(parsed);
    assert_eq!(
        (
            found.country.as_ref().map(CountryCode::as_str),
            found.continent,
            found.prefix_len
        ),
        (country, continent, prefix_len),
        "{addr}"
    );
}

#[test]
fn named_cases() {
    use Continent::*;
    let table = test_table();
    check(&table, "81.2.69.160", Some("gb"), Some(Europe), 24);
    check(&table, "85.214.132.117", Some("de"), Some(Europe), 16);
    check(&table, "85.215.0.1", Some("fr"), Some(Europe), 17);
    // 85.215.128.0/17 is empty, its /16 holds 85.215.0.0/17.
    check(&table, "85.215.200.1", None, None, 17);
    check(&table, "8.8.8.8", Some("us"), Some(NorthAmerica), 32);
    check(&table, "8.8.8.9", None, None, 32);
    check(&table, "130.208.1.1", Some("is"), Some(Europe), 16);
    check(&table, "130.216.1.1", Some("nz"), Some(Oceania), 16);
    // A continent and no country; a registered country and no continent.
    check(&table, "194.42.1.1", None, Some(Europe), 20);
    check(&table, "103.0.1.1", Some("jp"), None, 22);
    check(&table, "2a01:4f8:c17:b8f::2", Some("de"), Some(Europe), 32);
    check(
        &table,
        "2804:14c:1:ffff::1",
        Some("br"),
        Some(SouthAmerica),
        48,
    );
    check(&table, "2804:14c:2::1", None, None, 47);
    check(
        &table,
        "2606:4700:4700::1111",
        Some("us"),
        Some(NorthAmerica),
        128,
    );
    check(&table, "2606:4700:4700::1112", None, None, 127);
    check(
        &table,
        "2a02:2e0:3fe:1001:7777::1",
        Some("de"),
        Some(Europe),
        64,
    );
    check(&table, "2a0a:2003::1", None, Some(Europe), 29);
    // IPv4 through IPv6: mapped (::ffff:0:0/96), 6to4 (2002::/16), Teredo
    // server (2001::/32) and the IPv4 subtree (::/96); prefix in IPv6 bits.
    check(
        &table,
        "::ffff:81.2.69.160",
        Some("gb"),
        Some(Europe),
        96 + 24,
    );
    check(
        &table,
        "2002:5102:45a0::1",
        Some("gb"),
        Some(Europe),
        16 + 24,
    );
    check(
        &table,
        "2001:0:5102:45a0::1",
        Some("gb"),
        Some(Europe),
        32 + 24,
    );
    check(&table, "::81.2.69.160", Some("gb"), Some(Europe), 96 + 24);
    check(&table, "::ffff:8.8.8.9", None, None, 96 + 32);
    // Outside every network and alias.
    check(&table, "4000::1", None, None, 2);
    check(&table, "fe80::1", None, None, 1);
    assert_eq!(
        table.lookup_v4(0x5102_45a0),
        table.lookup("81.2.69.160".parse().unwrap())
    );
}

/// Write with each record size, read back with maxminddb and with our
/// table, and compare both with the model on 100 000 addresses.
#[test]
fn differential_on_test_database_all_record_sizes() {
    let model = test_model();
    let addresses = random_addresses(0x7131_e9ab_0000_0001, 100_000);
    for record_size in [RecordSize::Bits24, RecordSize::Bits28, RecordSize::Bits32] {
        let mut writer = MmdbWriter::new("timepool-Test-Country", "record size test", 0)
            .with_record_size(record_size);
        for network in TEST_NETWORKS {
            let record = CountryRecord {
                country: network.country,
                registered_country: network.registered_country,
                continent: network.continent,
            };
            writer
                .insert(network.network, network.prefix_len, record)
                .unwrap();
        }
        let bytes = writer.to_bytes().unwrap();
        let reader = Reader::from_source(bytes.clone()).unwrap();
        reader.verify().unwrap();
        assert_eq!(
            u32::from(reader.metadata().record_size),
            match record_size {
                RecordSize::Bits24 => 24,
                RecordSize::Bits28 => 28,
                RecordSize::Bits32 => 32,
            }
        );
        let table = GeoTable::from_bytes(bytes, "record size test").unwrap();
        for &addr in &addresses {
            let expected = model.lookup(addr);
            assert_eq!(
                maxminddb_answer(&reader, addr),
                expected,
                "maxminddb {record_size:?} {addr}"
            );
            assert_eq!(table.lookup(addr), expected, "table {record_size:?} {addr}");
        }
    }
}

/// Some third-party databases are IPv4-only (`ip_version` 4): no ::/96,
/// no aliases. IPv4-mapped addresses are still looked up as IPv4.
#[test]
fn ipv4_only_database() {
    let mut writer = MmdbWriter::new("timepool-Test-IPv4", "IPv4-only test", 0).ipv4_only();
    for network in TEST_NETWORKS.iter().filter(|n| n.network.is_ipv4()) {
        let record = CountryRecord {
            country: network.country,
            registered_country: network.registered_country,
            continent: network.continent,
        };
        writer
            .insert(network.network, network.prefix_len, record)
            .unwrap();
    }
    assert!(
        writer
            .insert(
                "2a01:4f8::".parse().unwrap(),
                32,
                CountryRecord {
                    country: None,
                    registered_country: None,
                    continent: None
                }
            )
            .is_err()
    );
    let bytes = writer.to_bytes().unwrap();
    let reader = Reader::from_source(bytes.clone()).unwrap();
    reader.verify().unwrap();
    assert_eq!(reader.metadata().ip_version, 4);
    let table = GeoTable::from_bytes(bytes, "IPv4-only test").unwrap();
    let model = test_model();
    for addr in edge_addresses().into_iter().filter(IpAddr::is_ipv4) {
        let expected = model.lookup(addr);
        assert_eq!(
            maxminddb_answer(&reader, addr),
            expected,
            "maxminddb {addr}"
        );
        assert_eq!(table.lookup(addr), expected, "table {addr}");
        let IpAddr::V4(v4) = addr else { unreachable!() };
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        let expected_mapped = GeoMatch {
            prefix_len: 96 + expected.prefix_len,
            ..expected
        };
        assert_eq!(table.lookup(mapped), expected_mapped, "table {mapped}");
    }
    assert_eq!(table.network_count(), 16);
    // No IPv6 networks: only the mapped range is "occupied".
    check(&table, "2a01:4f8::1", None, None, 3);
    check(&table, "::81.2.69.160", None, None, 81);
    check(&table, "2002:5102:45a0::1", None, None, 3);
}

#[test]
fn differential_on_real_database() {
    let path = Path::new(REAL_DATABASE);
    if !path.exists() {
        println!(
            "note: {REAL_DATABASE} is absent (run scripts/geoip.sh); real-database differential test skipped"
        );
        return;
    }
    let started = Instant::now();
    let table = GeoTable::open(path).unwrap();
    println!(
        "{}: loaded in {:?}, {} networks, table heap {:.1} MiB",
        table.description(),
        started.elapsed(),
        table.network_count(),
        table.heap_bytes() as f64 / (1 << 20) as f64
    );
    let reader = Reader::open_readfile(path).unwrap();
    let mut rng = SplitMix64(0x2018_0703);
    let mut located = 0;
    let mut shorter_empty_blocks = 0;
    for index in 0..100_000 {
        let random = rng.next_u128();
        let addr = match index % 4 {
            0 | 1 => IpAddr::V4(Ipv4Addr::from(random as u32)),
            // In the busy RIR blocks (2001::/16, 2400::/12, 2600::/12,
            // 2800::/12, 2a00::/12) or anywhere in 2000::/3.
            2 => {
                let blocks: [(u128, u32); 5] = [
                    (0x2001, 16),
                    (0x2400, 12),
                    (0x2600, 12),
                    (0x2800, 12),
                    (0x2a00, 12),
                ];
                let (top, prefix_len) = blocks[(random >> 120) as usize % blocks.len()];
                IpAddr::V6(Ipv6Addr::from((top << 112) | (random >> prefix_len)))
            }
            _ => IpAddr::V6(Ipv6Addr::from((random >> 3) | (1 << 125))),
        };
        let expected = maxminddb_answer(&reader, addr);
        let found = table.lookup(addr);
        located += usize::from(expected.country.is_some() || expected.continent.is_some());
        if found == expected {
            continue;
        }
        // MaxMind's tree is not always minimal: it may split an empty block
        // (e.g. 224.0.0.0/3 into two empty /4s), so its "no data" prefix can
        // be longer than ours. Ours must then be shorter and truly empty.
        let no_data = GeoMatch::nowhere(found.prefix_len);
        assert!(
            found == no_data
                && expected == GeoMatch::nowhere(expected.prefix_len)
                && found.prefix_len < expected.prefix_len,
            "{addr}: table {found:?}, maxminddb {expected:?}"
        );
        let block = format!("{addr}/{}", found.prefix_len).parse().unwrap();
        let block: maxminddb::Within<'_, _> = reader.within(block, Default::default()).unwrap();
        let inside: Vec<_> = block
            .take(1)
            .map(|item| item.unwrap().network().unwrap())
            .collect();
        assert!(
            inside.is_empty(),
            "{addr}/{}: holds {inside:?}",
            found.prefix_len
        );
        shorter_empty_blocks += 1;
    }
    println!("{located} of 100000 addresses located");
    println!(
        "{shorter_empty_blocks} \"no data\" answers with a shorter (still empty) block than maxminddb's"
    );
    assert!(
        located > 30_000,
        "suspiciously few located addresses: {located}"
    );
}

// ---------------------------------------------------------------------------
// Corrupt input: an error, never a panic.

fn assert_error(bytes: Vec<u8>, what: &str) -> String {
    match GeoTable::from_bytes(bytes, what) {
        Ok(_) => panic!("{what}: loaded without error"),
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains(what), "{message}");
            message
        }
    }
}

/// Loading must not panic; when it succeeds, lookups must not panic either.
fn load_without_panic(bytes: Vec<u8>, what: &str) {
    if let Ok(table) = GeoTable::from_bytes(bytes, what) {
        for addr in edge_addresses().into_iter().step_by(7) {
            let _ = table.lookup(addr);
        }
    }
}

#[test]
fn every_truncation_and_byte_flip_of_the_test_database() {
    let bytes = write_test_database();
    for length in 0..bytes.len() {
        assert_error(
            bytes[..length].to_vec(),
            &format!("test db cut at {length}"),
        );
    }
    for offset in 0..bytes.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut flipped = bytes.clone();
            flipped[offset] ^= mask;
            load_without_panic(flipped, &format!("test db byte {offset} ^ {mask:#x}"));
        }
    }
}

#[test]
fn truncated_and_flipped_real_database() {
    let path = Path::new(REAL_DATABASE);
    if !path.exists() {
        println!(
            "note: {REAL_DATABASE} is absent (run scripts/geoip.sh); real-database corruption test skipped"
        );
        return;
    }
    let bytes = std::fs::read(path).unwrap();
    let length = bytes.len();
    for cut in [
        0,
        1,
        100,
        length / 3,
        length / 2,
        length - 2_000,
        length - 100,
        length - 1,
    ] {
        let message = assert_error(bytes[..cut].to_vec(), &format!("real db cut at {cut}"));
        println!("{message}");
    }
    let mut rng = SplitMix64(0xbad_f11e);
    // Flips in the search tree (the first ~20 MB), the data section and the
    // metadata at the end.
    let mut offsets: Vec<usize> = (0..4)
        .map(|_| rng.next_u64() as usize % (length / 3))
        .collect();
    offsets.extend((0..2).map(|_| length / 3 + rng.next_u64() as usize % (length / 2)));
    offsets.extend([length - 40, length - 200]);
    for offset in offsets {
        let mut flipped = bytes.clone();
        flipped[offset] ^= 0xff;
        load_without_panic(flipped, &format!("real db byte {offset} ^ 0xff"));
    }
}

/// A chain of 40 nodes, each pointing twice at the next, holds 2^40 paths
/// of depth 40; the walk must stop with an error instead of running on.
#[test]
fn exploding_search_tree_is_rejected() {
    let mut writer = MmdbWriter::new("t", "t", 0).with_record_size(RecordSize::Bits32);
    for network in TEST_NETWORKS {
        let record = CountryRecord {
            country: network.country,
            registered_country: None,
            continent: network.continent,
        };
        writer
            .insert(network.network, network.prefix_len, record)
            .unwrap();
    }
    let mut bytes = writer.to_bytes().unwrap();
    let node_count = Reader::from_source(bytes.clone())
        .unwrap()
        .metadata()
        .node_count;
    assert!(node_count > 40);
    for node in 0..=40u32 {
        // The last node of the chain points at the first data record.
        let child = if node < 40 { node + 1 } else { node_count + 16 };
        let offset = node as usize * 8;
        bytes[offset..offset + 4].copy_from_slice(&child.to_be_bytes());
        bytes[offset + 4..offset + 8].copy_from_slice(&child.to_be_bytes());
    }
    let message = assert_error(bytes, "exploding tree");
    assert!(message.contains("more than"), "{message}");
}

#[test]
fn not_a_database_and_missing_file() {
    let message = assert_error(Vec::new(), "empty file");
    assert!(message.contains("not a MaxMind DB file"), "{message}");
    assert_error(b"hello, world".repeat(100), "text file");

    let missing = Path::new("/nonexistent/GeoLite2-Country.mmdb");
    match GeoTable::open(missing) {
        Err(error @ GeoError::Read { .. }) => {
            assert!(
                error
                    .to_string()
                    .contains("/nonexistent/GeoLite2-Country.mmdb"),
                "{error}"
            )
        }
        other => panic!("expected a read error, got {other:?}"),
    }
}
