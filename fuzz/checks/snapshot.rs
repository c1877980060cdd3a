//! `snapshot`: the DNS node's snapshot loader (parse, validate, compile)
//! on any bytes gives a table or a list of problems, never a panic; a
//! table it gives answers every query about its names (each origin, each
//! zone and numbered label, the debug names; A, AAAA, NS, SOA, TXT, ANY;
//! with and without ECS) with a response that is well formed.

use rand::SeedableRng;
use rand::rngs::SmallRng;
use timepool::dns::answer::{Client, Transport, respond_with_outcome};
use timepool::dns::cookie::CookieSecrets;

use super::common::{context, query, verify_response};

/// Origins and zones asked about, at most (a snapshot may list many; the
/// answer path is the same for each).
const MAX_ORIGINS: usize = 4;
const MAX_ZONES: usize = 24;

pub fn check(data: &[u8]) {
    let Ok(table) = timepool::dns::zone::load_bytes(data, "fuzz input") else {
        return;
    };
    let cookies = CookieSecrets::single([7; 16]);
    let ctx = context(&table, &cookies);
    let mut rng = SmallRng::seed_from_u64(1);
    let mut out = [0u8; 4096];
    let mut names = Vec::new();
    for origin in table.origins.iter().take(MAX_ORIGINS) {
        let origin = origin.display.trim_end_matches('.');
        names.push(origin.to_string());
        names.push(format!("_status.{origin}"));
        names.push(format!("_country.{origin}"));
        names.push(format!("nonexistent.{origin}"));
        for zone in table.zones.iter().take(MAX_ZONES) {
            let zone = if &*zone.name == "@" {
                origin.to_string()
            } else {
                format!("{}.{origin}", zone.name)
            };
            names.push(format!("0.{zone}"));
            names.push(format!("3.{zone}"));
            names.push(zone);
        }
    }
    for (i, name) in names.iter().enumerate() {
        for qtype in [1u16, 28, 2, 6, 16, 255] {
            for (subnet, transport) in [
                (None, Transport::Udp),
                (Some([192, 0, 2]), Transport::Udp),
                (None, Transport::Tcp),
            ] {
                let packet = query(i as u16, name, qtype, subnet);
                let client = Client {
                    source: std::net::IpAddr::from([198, 51, 100, 7]),
                    transport,
                };
                let Some((length, _)) =
                    respond_with_outcome(&ctx, &packet, client, &mut rng, &mut out)
                else {
                    panic!("no response to a query for {name} type {qtype}");
                };
                let limit = match transport {
                    Transport::Udp => 1232,
                    Transport::Tcp => out.len(),
                };
                verify_response(&packet, &out[..length], limit);
            }
        }
    }
}
