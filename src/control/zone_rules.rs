//! Building a snapshot document from a list of eligible servers: the pool's
//! zone rules (zones/README.md, "Zone building") without the database.
//!
//! A server is put in its country zone and every parent (continent, `@`).
//! Each zone's numbered labels 0..3 are dealt per address family: with
//! fewer than 16 servers every label gets all of them; else every server
//! goes to one label, the labels' counts differ by at most one and their
//! total weights are balanced, so that load follows netspeed over `0.` to
//! `3.` too (see [`deal_numbered`]).
//!
//! Architecture invariant: pure functions from servers to a snapshot
//! document; no database, no files, no sockets. The control plane's zone
//! builder reads the database and calls this; the benchmarks call it with
//! made-up servers.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use crate::shared::zones::Continent;

/// How many numbered labels every zone gets (`0.` to `3.`).
pub const NUMBERED_LABELS: usize = 4;

/// A server that is eligible for DNS.
#[derive(Clone, Debug)]
pub struct EligibleServer {
    pub id: u64,
    pub address: IpAddr,
    /// Netspeed in kbit/s, > 0.
    pub weight: u32,
    /// Its country zone (`de`, `uk`), or `None` to put it in its continent
    /// and `@` only.
    pub country: Option<String>,
    /// Its continent zone (`europe`); `None`: `@` only.
    pub continent: Option<String>,
}

/// `--score-ramp LOW:HIGH`: a server's weight grows linearly from 0 at
/// score LOW to its full netspeed at score HIGH, instead of the pool's
/// switch (full weight from score 10, nothing below). A server coming back
/// from trouble takes load gradually, and one sliding into trouble sheds
/// it. The fraction is taken in steps of 1/20, so a score that moves a
/// little does not make a new snapshot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreRamp {
    pub low: f64,
    pub high: f64,
}

/// Steps of a ramp's fraction.
const RAMP_STEPS: f64 = 20.0;

impl ScoreRamp {
    /// The weight of a server of `netspeed` at `score`; 0: not in DNS.
    pub fn weight(self, netspeed: u32, score: f64) -> u32 {
        if !score.is_finite() || score <= self.low {
            return 0;
        }
        let fraction = ((score - self.low) / (self.high - self.low)).min(1.0);
        let fraction = (fraction * RAMP_STEPS).floor() / RAMP_STEPS;
        (f64::from(netspeed) * fraction).round() as u32
    }
}

impl std::str::FromStr for ScoreRamp {
    type Err = String;

    fn from_str(text: &str) -> Result<ScoreRamp, String> {
        let parse = |part: &str| part.trim().parse::<f64>().ok().filter(|v| v.is_finite());
        let (low, high) = text
            .split_once(':')
            .and_then(|(low, high)| Some((parse(low)?, parse(high)?)))
            .ok_or_else(|| format!("{text:?}: give LOW:HIGH, two scores, e.g. 10:15"))?;
        if !(-100.0..=20.0).contains(&low) || !(-100.0..=20.0).contains(&high) || low >= high {
            return Err(format!(
                "{text:?}: LOW must be below HIGH, both within the scores' range -100..20"
            ));
        }
        Ok(ScoreRamp { low, high })
    }
}

/// Per-origin settings, as the snapshot carries them.
#[derive(Clone, Debug)]
pub struct OriginSettings {
    pub name: String,
    pub mname: String,
    pub rname: String,
    pub ns: Vec<String>,
    pub ns_ttl: u32,
    pub answer_ttl: u32,
    pub max_hosts: usize,
    pub ipv6_everywhere: bool,
}

impl OriginSettings {
    /// The pool's defaults for an origin: TTL 150, 4 hosts, NS TTL 86400.
    pub fn pool_defaults(name: &str, ns: Vec<String>) -> OriginSettings {
        OriginSettings {
            name: name.to_string(),
            mname: format!("ns1.{name}"),
            rname: format!("hostmaster.{name}"),
            ns,
            ns_ttl: 86400,
            answer_ttl: 150,
            max_hosts: 4,
            ipv6_everywhere: false,
        }
    }
}

/// Below `max_hosts` times the labels (16 for the pool's 4 addresses per
/// answer), a zone's every numbered label gets all of its servers of a
/// family: dealt, a label would have fewer than an answer's addresses, be
/// topped up from the parent zone, and put every one of its servers in
/// every answer of its name whatever their weights.
pub fn deal_from(max_hosts: usize) -> usize {
    max_hosts.max(1) * NUMBERED_LABELS
}

/// Deal the numbered labels of one zone's servers of one family, given as
/// (id, weight), for answers of `max_hosts` addresses. With fewer than
/// [`deal_from`] every label gets all of them; else each server goes to one label, the labels' server counts
/// differ by at most one, and their total weights are balanced (heaviest
/// server first, to the lightest label that has room): clients spread
/// evenly over `0.` to `3.`, so a server's share of the zone's load is its
/// weight over its label's total, and equal totals make that its share of
/// the zone's weight. Servers of equal weight go in a shuffled order.
pub fn deal_numbered<R: Rng + ?Sized>(
    servers: &[(u64, u32)],
    max_hosts: usize,
    rng: &mut R,
) -> Vec<Vec<u64>> {
    let n = servers.len();
    let ids = |list: &[(u64, u32)]| list.iter().map(|&(id, _)| id).collect::<Vec<u64>>();
    if n < deal_from(max_hosts) {
        return vec![ids(servers); NUMBERED_LABELS];
    }
    let mut order = servers.to_vec();
    order.shuffle(rng);
    // Stable: equal weights keep their shuffled order.
    order.sort_by_key(|&(_, weight)| std::cmp::Reverse(weight));
    // Sizes: `n mod 4` labels of ceil(n / 4), the others of floor(n / 4).
    let (small, larger) = (n / NUMBERED_LABELS, n % NUMBERED_LABELS);
    let mut labels: Vec<Vec<u64>> = vec![Vec::new(); NUMBERED_LABELS];
    let mut totals = [0u64; NUMBERED_LABELS];
    for (id, weight) in order {
        let full_larger = labels.iter().filter(|l| l.len() > small).count();
        let room = if full_larger >= larger {
            small
        } else {
            small + 1
        };
        let label = (0..NUMBERED_LABELS)
            .filter(|&label| labels[label].len() < room)
            .min_by_key(|&label| (totals[label], labels[label].len()))
            .unwrap_or(0);
        labels[label].push(id);
        totals[label] += u64::from(weight);
    }
    for label in &mut labels {
        label.sort_unstable();
    }
    labels
}

/// A zone's parent and its servers' ids by family, while building.
struct ZoneMembers {
    parent: Option<String>,
    v4: Vec<u64>,
    v6: Vec<u64>,
}

impl ZoneMembers {
    fn under(parent: Option<String>) -> Self {
        ZoneMembers {
            parent,
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

/// A zone the snapshot carries even with no servers, and its parent.
#[derive(Clone, Debug)]
pub struct AdvertisedZone {
    pub name: String,
    pub parent: String,
}

/// What a snapshot document is built from besides its servers.
pub struct DocumentSettings<'a> {
    pub serial: u32,
    pub generated: &'a str,
    pub origins: &'a [OriginSettings],
    /// Alias names -> zone names (`gb` -> `uk`, vendor zones -> `@`).
    pub aliases: &'a BTreeMap<String, String>,
    /// Zones the pool advertises (every country the web app lists): each
    /// is in the snapshot even with no servers, so its names answer (from
    /// its parents) instead of NXDOMAIN. `@` and the continents always are.
    pub advertised: &'a [AdvertisedZone],
}

/// Build a snapshot document (format v1). The caller validates it with
/// `shared::snapshot::parse` before publishing.
pub fn build_document<R: Rng + ?Sized>(
    settings: &DocumentSettings<'_>,
    servers: &[EligibleServer],
    rng: &mut R,
) -> Value {
    let DocumentSettings {
        serial,
        generated,
        origins,
        aliases,
        advertised,
    } = *settings;
    let mut zones: BTreeMap<String, ZoneMembers> = BTreeMap::new();
    zones.insert("@".into(), ZoneMembers::under(None));
    for continent in Continent::ALL.map(Continent::zone_name) {
        zones.insert(continent.into(), ZoneMembers::under(Some("@".into())));
    }
    for zone in advertised {
        zones
            .entry(zone.name.clone())
            .or_insert_with(|| ZoneMembers::under(Some(zone.parent.clone())));
    }
    for server in servers {
        let mut chain: Vec<(String, Option<String>)> = Vec::new();
        if let Some(country) = &server.country {
            chain.push((
                country.clone(),
                server.continent.clone().or(Some("@".into())),
            ));
        }
        if let Some(continent) = &server.continent {
            chain.push((continent.clone(), Some("@".into())));
        }
        chain.push(("@".into(), None));
        for (zone, parent) in chain {
            let entry = zones
                .entry(zone)
                .or_insert_with(|| ZoneMembers::under(parent));
            if server.address.is_ipv6() {
                entry.v6.push(server.id);
            } else {
                entry.v4.push(server.id);
            }
        }
    }
    let weights: BTreeMap<u64, u32> = servers.iter().map(|s| (s.id, s.weight)).collect();
    // Dealt for the largest answer of the origins (they share the zones).
    let max_hosts = origins.iter().map(|o| o.max_hosts).max().unwrap_or(4);
    let mut zone_documents = serde_json::Map::new();
    for (
        name,
        ZoneMembers {
            parent,
            mut v4,
            mut v6,
        },
    ) in zones
    {
        v4.sort_unstable();
        v6.sort_unstable();
        let weighed = |ids: &[u64]| -> Vec<(u64, u32)> {
            ids.iter()
                .map(|id| (*id, weights.get(id).copied().unwrap_or(1)))
                .collect()
        };
        let dealt4 = deal_numbered(&weighed(&v4), max_hosts, rng);
        let dealt6 = deal_numbered(&weighed(&v6), max_hosts, rng);
        let numbered: Vec<Vec<u64>> = dealt4
            .into_iter()
            .zip(dealt6)
            .map(|(mut a, b)| {
                a.extend(b);
                a
            })
            .collect();
        let mut all = v4;
        all.extend(v6);
        // A zone with no servers needs no numbered lists: its numbered
        // names answer from its parents' (zones/README.md, "Names").
        let mut zone = if all.is_empty() {
            json!({"servers": all})
        } else {
            json!({"servers": all, "numbered": numbered})
        };
        if let Some(parent) = parent {
            zone["parent"] = json!(parent);
        }
        zone_documents.insert(name, zone);
    }
    json!({
        "version": 1,
        "serial": serial,
        "generated": generated,
        "origins": origins.iter().map(|o| json!({
            "name": o.name,
            "soa": {"mname": o.mname, "rname": o.rname, "refresh": 5400, "retry": 5400,
                    "expire": 1209600, "minimum": 3600, "ttl": 3600},
            "ns": o.ns,
            "ns_ttl": o.ns_ttl,
            "answer_ttl": o.answer_ttl,
            "max_hosts": o.max_hosts,
            "ipv6_everywhere": o.ipv6_everywhere,
        })).collect::<Vec<_>>(),
        "servers": servers.iter().map(|s| json!({
            "id": s.id, "address": s.address.to_string(), "weight": s.weight,
        })).collect::<Vec<_>>(),
        "zones": zone_documents,
        "aliases": aliases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn a_score_ramp_scales_the_weight_in_steps() {
        let ramp: ScoreRamp = "10:15".parse().unwrap();
        let cases = [
            (9.0, 0),
            (10.0, 0),
            (10.2, 0),
            (10.25, 5_000),
            (12.5, 50_000),
            (12.6, 50_000),
            (14.99, 95_000),
            (15.0, 100_000),
            (20.0, 100_000),
            (f64::NAN, 0),
        ];
        for (score, weight) in cases {
            assert_eq!(ramp.weight(100_000, score), weight, "score {score}");
        }
        assert_eq!(ramp.weight(512, 11.0), 102);
        for bad in ["15:10", "10", "a:b", "10:10", "-200:10", "10:inf"] {
            assert!(bad.parse::<ScoreRamp>().is_err(), "{bad}");
        }
    }

    #[test]
    fn numbered_labels_are_dealt_by_weight() {
        let mut rng = SmallRng::seed_from_u64(1);
        for n in [0usize, 1, 5, 7, 15] {
            let servers: Vec<(u64, u32)> = (1..=n as u64).map(|id| (id, 1000)).collect();
            let all: Vec<u64> = servers.iter().map(|&(id, _)| id).collect();
            assert_eq!(
                deal_numbered(&servers, 4, &mut rng),
                vec![all; 4],
                "N = {n}"
            );
        }
        // Answers of 8 addresses: dealt from 32 servers.
        let thirty_one: Vec<(u64, u32)> = (1..=31).map(|id| (id, 1000)).collect();
        assert_eq!(deal_numbered(&thirty_one, 8, &mut rng)[0].len(), 31);
        let thirty_two: Vec<(u64, u32)> = (1..=32).map(|id| (id, 1000)).collect();
        assert_eq!(deal_numbered(&thirty_two, 8, &mut rng)[0].len(), 8);
        // The pool's netspeeds, skewed: many small, a few large.
        const NETSPEEDS: [u32; 9] = [
            512, 1500, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 3_000_000,
        ];
        for n in [16usize, 17, 23, 40, 101, 500] {
            let servers: Vec<(u64, u32)> = (1..=n as u64)
                .map(|id| (id, NETSPEEDS[rand::RngExt::random_range(&mut rng, 0..6)]))
                .collect();
            let labels = deal_numbered(&servers, 4, &mut rng);
            let mut all: Vec<u64> = labels.iter().flatten().copied().collect();
            all.sort_unstable();
            assert_eq!(
                all,
                (1..=n as u64).collect::<Vec<_>>(),
                "N = {n}: each once"
            );
            let sizes: Vec<usize> = labels.iter().map(Vec::len).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "N = {n}: sizes {sizes:?}");
            let weight_of: BTreeMap<u64, u32> = servers.iter().copied().collect();
            let totals: Vec<u64> = labels
                .iter()
                .map(|label| label.iter().map(|id| u64::from(weight_of[id])).sum())
                .collect();
            let heaviest = servers.iter().map(|&(_, w)| u64::from(w)).max().unwrap();
            let spread = totals.iter().max().unwrap() - totals.iter().min().unwrap();
            assert!(
                spread <= heaviest,
                "N = {n}: totals {totals:?}, heaviest {heaviest}"
            );
        }
    }

    #[test]
    fn servers_go_to_their_country_and_every_parent() {
        let servers = vec![
            EligibleServer {
                id: 1,
                address: "85.214.1.1".parse().unwrap(),
                weight: 1000,
                country: Some("de".into()),
                continent: Some("europe".into()),
            },
            EligibleServer {
                id: 2,
                address: "2a01:4f8::1".parse().unwrap(),
                weight: 2000,
                country: Some("de".into()),
                continent: Some("europe".into()),
            },
        ];
        let origins = [OriginSettings::pool_defaults(
            "pool.ntp.org",
            vec!["a.ntpns.org".into()],
        )];
        let aliases = BTreeMap::from([("gb".to_string(), "uk".to_string())]);
        let mut rng = SmallRng::seed_from_u64(1);
        let settings = DocumentSettings {
            serial: 7,
            generated: "test",
            origins: &origins,
            aliases: &aliases,
            // `uk` must exist for the alias to validate.
            advertised: &[AdvertisedZone {
                name: "uk".into(),
                parent: "europe".into(),
            }],
        };
        let document = build_document(&settings, &servers, &mut rng);
        for zone in ["de", "europe", "@"] {
            assert_eq!(document["zones"][zone]["servers"], json!([1, 2]), "{zone}");
        }
        assert_eq!(document["zones"]["de"]["parent"], json!("europe"));
        assert_eq!(
            document["zones"]["uk"],
            json!({"parent": "europe", "servers": []}),
            "an advertised zone without servers is there, without numbered lists"
        );
        let spec = crate::shared::snapshot::parse(&serde_json::to_vec(&document).unwrap(), "built")
            .expect("a valid snapshot");
        assert_eq!(spec.serial, 7);
    }
}
