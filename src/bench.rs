//! `timepool bench-snapshot`: the pool-sized snapshot of scripts/bench-dns.sh.
//!
//! Servers are made up (addresses in 11.0.0.0/8 and 2a00:1000::/32, only
//! ever handed out, never contacted) and spread over the countries of a
//! real GeoIP database the way the pool's are: a few large countries and a
//! long tail. Each country's largest networks are written out so that the
//! benchmark's queries can carry ECS addresses from every country.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use timepool::control::zone_rules::{
    DocumentSettings, EligibleServer, OriginSettings, build_document,
};
use timepool::shared::geo::GeoTable;
use timepool::shared::zones;

const NETSPEEDS: [u32; 14] = [
    512, 1500, 3000, 6000, 12000, 25000, 50000, 100000, 250000, 500000, 1000000, 1500000, 2000000,
    3000000,
];

pub fn write_snapshot(
    geoip: &Path,
    server_count: usize,
    country_count: usize,
    seed: u64,
    out: &Path,
    clients: &Path,
) -> Result<String, String> {
    let geo = GeoTable::open(geoip).map_err(|e| e.to_string())?;
    let mut countries: Vec<_> = geo
        .country_networks()
        .into_iter()
        .filter(|c| c.continent.is_some() && c.v4.is_some())
        .collect();
    countries.truncate(country_count);
    if countries.is_empty() {
        return Err(format!("{}: no country with a continent", geoip.display()));
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    // Zipf-like shares: country i gets a share ~ 1 / (i + 1)^0.9, in a
    // shuffled order so that large countries are not all "a..".
    let mut order: Vec<usize> = (0..countries.len()).collect();
    rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
    let shares: Vec<f64> = (0..countries.len())
        .map(|i| 1.0 / ((i + 1) as f64).powf(0.9))
        .collect();
    let total: f64 = shares.iter().sum();
    let mut servers = Vec::with_capacity(server_count);
    let mut next_v4: u32 = u32::from(Ipv4Addr::new(11, 0, 0, 1));
    let mut next_v6: u128 = u128::from(
        "2a00:1000::1"
            .parse::<Ipv6Addr>()
            .unwrap_or(Ipv6Addr::LOCALHOST),
    );
    let mut counts: Vec<usize> = shares
        .iter()
        .map(|share| ((server_count as f64 * share / total).round() as usize).max(1))
        .collect();
    // Rounding leaves a few servers over: the largest country takes them.
    let assigned: usize = counts.iter().sum();
    if let Some(largest) = counts.first_mut() {
        *largest += server_count.saturating_sub(assigned);
    }
    for (rank, &index) in order.iter().enumerate() {
        let country = &countries[index];
        for i in 0..counts[rank] {
            if servers.len() >= server_count {
                break;
            }
            let address = if i % 4 == 3 {
                next_v6 += 0x1_0000;
                IpAddr::V6(Ipv6Addr::from(next_v6))
            } else {
                next_v4 += 256;
                IpAddr::V4(Ipv4Addr::from(next_v4))
            };
            let zone = zones::country_zone_label(country.country.as_str()).to_string();
            servers.push(EligibleServer {
                id: servers.len() as u64 + 1,
                address,
                weight: NETSPEEDS[rand::RngExt::random_range(&mut rng, 0..NETSPEEDS.len())],
                country: Some(zone),
                continent: country.continent.map(|c| c.zone_name().to_string()),
            });
        }
    }
    let mut origin = OriginSettings::pool_defaults(
        "pool.ntp.org",
        (b'a'..=b'd')
            .map(|c| format!("{}.ntpns.org", c as char))
            .collect(),
    );
    origin.ipv6_everywhere = true;
    let aliases: BTreeMap<String, String> = [("debian", "@"), ("ubuntu", "@"), ("android", "@")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .chain(
            zones::country_aliases(
                servers
                    .iter()
                    .any(|s| s.country.as_deref() == Some(zones::GREAT_BRITAIN_ZONE)),
            )
            .map(|(alias, zone)| (alias.to_string(), zone.to_string())),
        )
        .collect();
    // Only the zones with servers, as the benchmark pool has always been
    // (the zone builder adds every advertised country; empty ones change
    // no answer).
    let settings = DocumentSettings {
        serial: 1,
        generated: "timepool bench-snapshot",
        origins: &[origin],
        aliases: &aliases,
        advertised: &[],
    };
    let document = build_document(&settings, &servers, &mut rng);
    let bytes = serde_json::to_vec(&document).map_err(|e| e.to_string())?;
    let spec =
        timepool::shared::snapshot::parse(&bytes, "bench snapshot").map_err(|e| e.to_string())?;
    std::fs::write(out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut lines = String::new();
    for country in &countries {
        let network =
            |n: Option<(IpAddr, u8)>| n.map_or("-".to_string(), |(a, p)| format!("{a}/{p}"));
        let _ = writeln!(
            lines,
            "{} {} {}",
            country.country.as_str(),
            network(country.v4),
            network(country.v6)
        );
    }
    std::fs::write(clients, lines).map_err(|e| format!("{}: {e}", clients.display()))?;
    Ok(format!(
        "{}: {} servers ({} IPv6) in {} zones; {} countries in {}",
        out.display(),
        spec.servers.len(),
        spec.servers.iter().filter(|s| s.address.is_ipv6()).count(),
        spec.zones.len(),
        countries.len(),
        clients.display()
    ))
}
