//! GeoIP table lookups: over the real 2018 GeoLite2-City database when
//! `scripts/geoip.sh` has put it in data/geoip/, else over the test database.
//!
//! cargo bench --bench geo -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use timepool::shared::geo::GeoTable;
use timepool::shared::geo::testdata::write_test_database;

const REAL_DATABASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/geoip/GeoLite2-City.mmdb");

/// Addresses per batch: more than the caches hold in table paths, so the
/// figure includes cache misses as real traffic has them.
const BATCH: usize = 65_536;

/// splitmix64, fixed seed: the same addresses every run.
fn random_u64s(seed: u64, count: usize) -> Vec<u64> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
        .collect()
}

fn load_table() -> GeoTable {
    let path = Path::new(REAL_DATABASE);
    let table = if path.exists() {
        GeoTable::open(path)
    } else {
        eprintln!(
            "note: {REAL_DATABASE} absent (scripts/geoip.sh), benchmarking the test database"
        );
        GeoTable::from_bytes(write_test_database(), "test database")
    };
    match table {
        Ok(table) => {
            eprintln!(
                "{} ({:.1} MiB)",
                table.description(),
                table.heap_bytes() as f64 / 1048576.0
            );
            table
        }
        Err(error) => panic!("{error}"),
    }
}

fn lookups(c: &mut Criterion) {
    let table = load_table();
    let randoms = random_u64s(0x6e0_1ee7, 2 * BATCH);

    let v4: Vec<IpAddr> = randoms[..BATCH]
        .iter()
        .map(|&r| IpAddr::V4((r as u32).into()))
        .collect();
    // Global unicast (2000::/3), where the IPv6 networks are.
    let v6_global: Vec<IpAddr> = randoms
        .chunks(2)
        .take(BATCH)
        .map(|pair| {
            let random = (u128::from(pair[0]) << 64) | u128::from(pair[1]);
            IpAddr::V6(((random >> 3) | (1 << 125)).into())
        })
        .collect();
    // The busiest blocks (RIPE 2a00::/12, APNIC 2400::/12, ARIN 2600::/12):
    // most lookups land in a network after a long search.
    let v6_busy: Vec<IpAddr> = randoms
        .chunks(2)
        .take(BATCH)
        .map(|pair| {
            let top: u128 = [0x2a00, 0x2400, 0x2600][(pair[0] >> 62) as usize % 3];
            let random = (u128::from(pair[0]) << 64) | u128::from(pair[1]);
            IpAddr::V6(((top << 112) | (random >> 12)).into())
        })
        .collect();

    let mut group = c.benchmark_group("geo_lookup");
    for (name, addresses) in [
        ("ipv4_random", &v4),
        ("ipv6_2000::/3", &v6_global),
        ("ipv6_busy_blocks", &v6_busy),
    ] {
        group.bench_function(name, |b| {
            let mut index = 0usize;
            b.iter(|| {
                index = (index + 1) % BATCH;
                black_box(table.lookup(black_box(addresses[index])))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
