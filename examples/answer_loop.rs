//! Answers a mix of queries in a loop, for profiling the answer path:
//!
//!   cargo build --release --example answer_loop
//!   valgrind --tool=callgrind target/release/examples/answer_loop 200000
//!   callgrind_annotate callgrind.out.* | head -40
//!
//! Uses the real GeoLite2 database when scripts/geoip.sh has put it in
//! place, else the test database, and zones/example.json.

use rand::SeedableRng;
use rand::rngs::SmallRng;
use timepool::dns::answer::{AnswerConfig, Client, Context, Transport, respond};
use timepool::dns::cookie::CookieSecrets;

fn query(name: &str, qtype: u16, ecs: Option<([u8; 3], u8)>) -> Vec<u8> {
    let mut packet = vec![
        0x12,
        0x34,
        0x01,
        0x00,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(ecs.is_some()),
    ];
    for label in name.split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, qtype as u8, 0, 1]);
    if let Some((address, prefix)) = ecs {
        packet.extend_from_slice(&[
            0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, prefix, 0,
        ]);
        packet.extend_from_slice(&address);
    }
    packet
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = timepool::dns::zone::load_file(&root.join("zones/example.json")).expect("snapshot");
    let real = root.join("data/geoip/GeoLite2-City.mmdb");
    let geo_path = if real.exists() {
        real
    } else {
        root.join("tests/data/geo-test.mmdb")
    };
    let geo = timepool::shared::geo::GeoTable::open(&geo_path).expect("GeoIP");
    let config = AnswerConfig::default();
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
    let mix = [
        query("pool.ntp.org", 1, Some(([85, 214, 1], 24))),
        query("2.pool.ntp.org", 28, Some(([8, 8, 8], 24))),
        query("de.pool.ntp.org", 1, None),
        query("1.pool.ntp.org", 1, Some(([126, 0, 0], 24))),
    ];
    let mut rng = SmallRng::seed_from_u64(1);
    let mut out = vec![0u8; 1232];
    let mut bytes = 0usize;
    for _ in 0..rounds {
        for packet in &mix {
            bytes += respond(&ctx, packet, client, &mut rng, &mut out).unwrap_or(0);
        }
    }
    println!("{} answers, {bytes} bytes", rounds * mix.len());
}
