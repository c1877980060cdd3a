//! Criterion benchmarks of the DNS answer path:
//! - parse a query;
//! - answer a pool name with ECS, 4 of 1 000 (and of 3 000) weighted servers;
//! - the whole packet in -> packet out for a mix of queries;
//! - the edge's per-query checks: the rate limiter's check (the table in
//!   cache, many prefixes) and a DNS cookie's check plus a fresh one.
//!
//! `cargo bench --bench dns`; the README's Performance section has figures.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::json;
use timepool::dns::answer::{AnswerConfig, Client, Context, Transport, respond};
use timepool::dns::cookie::CookieSecrets;
use timepool::dns::rrl::{RateLimiter, RrlSettings};
use timepool::dns::wire::Query;
use timepool::dns::zone::ZoneTable;

const NETSPEEDS: [u32; 8] = [1500, 3000, 12000, 25000, 100000, 250000, 1000000, 3000000];

/// A snapshot with `servers` servers (a quarter IPv6) in the global zone,
/// europe and de, numbered labels dealt round-robin.
fn pool_table(servers: usize) -> ZoneTable {
    let list: Vec<serde_json::Value> = (0..servers)
        .map(|i| {
            let address = if i % 4 == 3 {
                format!("2a00:1000::{:x}", i + 1)
            } else {
                format!("11.{}.{}.1", i / 256, i % 256)
            };
            json!({"id": i + 1, "address": address, "weight": NETSPEEDS[i % NETSPEEDS.len()]})
        })
        .collect();
    let ids: Vec<usize> = (1..=servers).collect();
    let numbered: Vec<Vec<usize>> = (0..4)
        .map(|n| ids.iter().copied().filter(|id| id % 4 == n).collect())
        .collect();
    let zone = |parent: Option<&str>| {
        let mut z = json!({"servers": ids, "numbered": numbered});
        if let Some(parent) = parent {
            z["parent"] = json!(parent);
        }
        z
    };
    let document = json!({
        "version": 1,
        "serial": 1,
        "origins": [{
            "name": "pool.ntp.org",
            "soa": {"mname": "ns1.pool.ntp.org", "rname": "hostmaster.pool.ntp.org",
                    "refresh": 5400, "retry": 5400, "expire": 1209600, "minimum": 3600, "ttl": 3600},
            "ns": ["a.ntpns.org", "b.ntpns.org"],
            "ns_ttl": 86400, "answer_ttl": 150, "max_hosts": 4, "ipv6_everywhere": true
        }],
        "servers": list,
        "zones": {"@": zone(None), "europe": zone(Some("@")), "de": zone(Some("europe"))},
        "aliases": {"debian": "@"}
    });
    timepool::dns::zone::load_bytes(&serde_json::to_vec(&document).unwrap(), "bench").unwrap()
}

/// A query in wire format, built by hand (no dependency on a client crate).
fn query(name: &str, qtype: u16, ecs: Option<([u8; 3], u8)>) -> Vec<u8> {
    let arcount = u16::from(ecs.is_some());
    let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
    packet.extend_from_slice(&arcount.to_be_bytes());
    for label in name.split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&qtype.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    if let Some((address, prefix)) = ecs {
        packet.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0]);
        packet.extend_from_slice(&11u16.to_be_bytes());
        packet.extend_from_slice(&[0, 8, 0, 7, 0, 1, prefix, 0]);
        packet.extend_from_slice(&address);
    }
    packet
}

/// The real 2018 GeoLite2-City when scripts/geoip.sh has put it in place,
/// else the project's small test database.
fn geo_table() -> timepool::shared::geo::GeoTable {
    let real =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/geoip/GeoLite2-City.mmdb");
    let path = if real.exists() {
        real
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo-test.mmdb")
    };
    eprintln!("GeoIP database: {}", path.display());
    timepool::shared::geo::GeoTable::open(&path).expect("GeoIP database")
}

fn benchmarks(c: &mut Criterion) {
    let table = pool_table(1000);
    let config = AnswerConfig::default();
    let geo = geo_table();
    let cookies = CookieSecrets::single([7; 16]);
    let ctx = Context {
        table: &table,
        geo: &geo,
        config: &config,
        cookies: &cookies,
        now: 1_700_000_000,
    };
    let client = Client {
        source: "85.10.1.7".parse().unwrap(),
        transport: Transport::Udp,
    };
    let mut rng = SmallRng::seed_from_u64(1);
    let mut out = vec![0u8; 1232];
    let with_ecs = query("pool.ntp.org", 1, Some(([85, 10, 1], 24)));

    let mut group = c.benchmark_group("dns");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse query with ECS", |b| {
        b.iter(|| Query::parse(black_box(&with_ecs)).map(|q| q.qtype))
    });
    group.bench_function("answer pool.ntp.org A with ECS, 4 of 1000 weighted", |b| {
        b.iter(|| respond(&ctx, black_box(&with_ecs), client, &mut rng, &mut out))
    });
    // The same over 3 000 servers (issue: GeoDNS speed, "3 000 servers").
    let big_table = pool_table(3000);
    let big_ctx = Context {
        table: &big_table,
        geo: &geo,
        config: &config,
        cookies: &cookies,
        now: 1_700_000_000,
    };
    let from_germany = query("pool.ntp.org", 1, Some(([85, 214, 132], 24)));
    group.bench_function("answer pool.ntp.org A with ECS, 4 of 3000 weighted", |b| {
        b.iter(|| {
            respond(
                &big_ctx,
                black_box(&from_germany),
                client,
                &mut rng,
                &mut out,
            )
        })
    });
    let mix = [
        query("pool.ntp.org", 1, Some(([85, 10, 1], 24))),
        query("2.pool.ntp.org", 28, Some(([85, 10, 1], 24))),
        query("de.pool.ntp.org", 1, None),
        query("3.de.pool.ntp.org", 1, None),
        query("1.debian.pool.ntp.org", 1, None),
        query("nope.pool.ntp.org", 1, None),
        query("pool.ntp.org", 28, None),
        query("0.europe.pool.ntp.org", 28, Some(([85, 10, 1], 24))),
    ];
    group.throughput(Throughput::Elements(mix.len() as u64));
    group.bench_function("packet in -> packet out, mix of 8 queries", |b| {
        b.iter(|| {
            for packet in &mix {
                black_box(respond(&ctx, black_box(packet), client, &mut rng, &mut out));
            }
        })
    });
    group.finish();
    edge_checks(c);
}

/// The rate limiter's check and the cookie check, each alone: the costs
/// RRL and cookies add to a query.
fn edge_checks(c: &mut Criterion) {
    let mut group = c.benchmark_group("dns edge");
    group.throughput(Throughput::Elements(1));
    // 4 096 clients in 4 096 /24s, one after the other, against the
    // default table (65 536 entries, 1 MiB): the entries stay in cache
    // the way a busy worker's hot part does.
    let settings = RrlSettings {
        slip: 2,
        table_size: 65_536,
        exempt: Vec::new(),
        ..RrlSettings::at_rate(1_000_000)
    };
    let mut limiter = RateLimiter::new(&settings, 1);
    let clients: Vec<IpAddr> = (0..4096u32)
        .map(|i| IpAddr::from((0x0b00_0000 + (i << 8)).to_be_bytes()))
        .collect();
    let mut next = 0usize;
    let mut now_ms = 0u32;
    group.bench_function("rrl check, 4096 prefixes", |b| {
        b.iter(|| {
            next = (next + 1) % clients.len();
            now_ms = now_ms.wrapping_add(1);
            limiter.check(black_box(clients[next]), now_ms)
        })
    });
    let cookies = CookieSecrets::single([7; 16]);
    let client: IpAddr = "2001:db8:220:1:59de:d0f4:8769:82b8".parse().unwrap();
    let client_cookie = *b"benchcli";
    let now = 1_700_000_000;
    let server_cookie = cookies.server_cookie(&client_cookie, client, now);
    group.bench_function("cookie check (IPv6 client)", |b| {
        b.iter(|| {
            cookies.check(
                black_box(&client_cookie),
                black_box(&server_cookie),
                client,
                now,
            )
        })
    });
    group.bench_function(
        "cookie check and a fresh server cookie (IPv6 client)",
        |b| {
            b.iter(|| {
                let check = cookies.check(
                    black_box(&client_cookie),
                    black_box(&server_cookie),
                    client,
                    now,
                );
                (check, cookies.server_cookie(&client_cookie, client, now))
            })
        },
    );
    group.finish();
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
