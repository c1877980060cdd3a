//! GeoDNS: the client located by ECS or source address in the project's
//! own test database (src/geo/testdata.rs), answered from its country,
//! continent or the global zone, topped up from the parents.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::json;
use support::{Ask, Reply, parse_reply, query};
use timepool::dns::answer::{AnswerConfig, Client, Context, Transport, respond};
use timepool::dns::cookie::CookieSecrets;
use timepool::dns::zone::ZoneTable;
use timepool::shared::geo::GeoTable;

const A: u16 = 1;
const AAAA: u16 = 28;
const TXT: u16 = 16;

/// (zone, continent, IPv4 servers, IPv6 servers). `is` has no server at
/// all, `nz` fewer than max_hosts, `ca` no zone (its continent answers).
const COUNTRIES: &[(&str, &str, usize, usize)] = &[
    ("de", "europe", 6, 3),
    ("fr", "europe", 4, 1),
    ("uk", "europe", 4, 0),
    ("is", "europe", 0, 0),
    ("us", "north-america", 6, 2),
    ("jp", "asia", 5, 2),
    ("br", "south-america", 4, 0),
    ("za", "africa", 4, 0),
    ("au", "oceania", 4, 1),
    ("nz", "oceania", 1, 0),
];
const NETSPEEDS: [u64; 6] = [1500, 12000, 25000, 100000, 250000, 1000000];

struct World {
    table: ZoneTable,
    geo: GeoTable,
    /// Address -> the country zone of its server.
    zone_of: HashMap<IpAddr, &'static str>,
    /// Server id -> weight, address.
    servers: Vec<(IpAddr, u64, &'static str)>,
}

fn world(ipv6_everywhere: bool) -> World {
    let mut servers = Vec::new();
    let mut members: HashMap<&str, Vec<usize>> = HashMap::new();
    for (c, &(zone, continent, v4, v6)) in COUNTRIES.iter().enumerate() {
        for i in 0..v4 + v6 {
            let id = servers.len() + 1;
            let address: IpAddr = if i < v4 {
                format!("11.{c}.0.{}", i + 1).parse().unwrap()
            } else {
                format!("2a00:1000:{c}::{}", i + 1).parse().unwrap()
            };
            servers.push((address, NETSPEEDS[id % NETSPEEDS.len()], zone));
            for z in [zone, continent, "@"] {
                members.entry(z).or_default().push(id);
            }
        }
    }
    let mut zones = serde_json::Map::new();
    let continents = [
        "africa",
        "antarctica",
        "asia",
        "europe",
        "north-america",
        "oceania",
        "south-america",
    ];
    let mut zone_entry = |name: &str, parent: Option<&str>| {
        let ids = members.get(name).cloned().unwrap_or_default();
        let mut entry = json!({"servers": ids, "numbered": [ids, ids, ids, ids]});
        if let Some(parent) = parent {
            entry["parent"] = json!(parent);
        }
        zones.insert(name.to_string(), entry);
    };
    zone_entry("@", None);
    for continent in continents {
        zone_entry(continent, Some("@"));
    }
    for &(zone, continent, _, _) in COUNTRIES {
        zone_entry(zone, Some(continent));
    }
    let document = json!({
        "version": 1,
        "serial": 1,
        "origins": [{
            "name": "pool.ntp.org",
            "soa": {"mname": "ns1.pool.ntp.org", "rname": "hostmaster.pool.ntp.org",
                    "refresh": 5400, "retry": 5400, "expire": 1209600, "minimum": 3600, "ttl": 3600},
            "ns": ["a.ntpns.org"], "ns_ttl": 86400, "answer_ttl": 150, "max_hosts": 4,
            "ipv6_everywhere": ipv6_everywhere
        }],
        "servers": servers.iter().enumerate().map(|(i, (address, weight, _))| {
            json!({"id": i + 1, "address": address.to_string(), "weight": weight})
        }).collect::<Vec<_>>(),
        "zones": zones,
        "aliases": {"gb": "uk", "debian": "@"}
    });
    let table =
        timepool::dns::zone::load_bytes(&serde_json::to_vec(&document).unwrap(), "geo test")
            .unwrap();
    let geo = GeoTable::from_bytes(
        timepool::shared::geo::testdata::write_test_database(),
        "test database",
    )
    .unwrap();
    World {
        table,
        geo,
        zone_of: servers
            .iter()
            .map(|&(address, _, zone)| (address, zone))
            .collect(),
        servers,
    }
}

const EUROPE: &[&str] = &["de", "fr", "uk", "is"];

fn ask(
    world: &World,
    name: &str,
    qtype: u16,
    ask: &Ask,
    source: &str,
    rng: &mut SmallRng,
) -> Reply {
    let config = AnswerConfig::default();
    let cookies = CookieSecrets::single([7; 16]);
    let ctx = Context {
        table: &world.table,
        geo: &world.geo,
        config: &config,
        cookies: &cookies,
        now: 1_700_000_000,
    };
    let client = Client {
        source: source.parse().unwrap(),
        transport: Transport::Udp,
    };
    let mut out = vec![0u8; 4096];
    let length = respond(&ctx, &query(name, qtype, ask), client, rng, &mut out).expect("answered");
    parse_reply(&out[..length])
}

fn ecs(subnet: &str) -> Ask {
    let (address, prefix) = subnet.split_once('/').unwrap();
    Ask {
        subnet: Some((prefix.parse().unwrap(), address.parse().unwrap())),
        ..Ask::edns(1232)
    }
}

fn zones_answered(world: &World, reply: &Reply) -> Vec<&'static str> {
    reply
        .answer_data()
        .iter()
        .map(|data| world.zone_of[&data.parse::<IpAddr>().unwrap()])
        .collect()
}

fn scope(reply: &Reply) -> Option<u8> {
    reply
        .edns
        .as_ref()
        .and_then(|e| e.subnet)
        .map(|(_, scope, _)| scope)
}

/// One case: a query from somewhere, the zones its answers may come from,
/// how many addresses, and the ECS scope.
struct Case {
    what: &'static str,
    name: &'static str,
    qtype: u16,
    ecs: Option<&'static str>,
    source: &'static str,
    zones: &'static [&'static str],
    count: usize,
    scope: Option<u8>,
}

fn check(world: &World, cases: &[Case]) {
    let mut rng = SmallRng::seed_from_u64(5);
    for case in cases {
        for _ in 0..50 {
            let request = case.ecs.map(ecs).unwrap_or_else(|| Ask::edns(1232));
            let reply = ask(
                world,
                case.name,
                case.qtype,
                &request,
                case.source,
                &mut rng,
            );
            let zones = zones_answered(world, &reply);
            assert_eq!(reply.rcode, "NOERROR", "{}", case.what);
            assert_eq!(zones.len(), case.count, "{}: {reply:#?}", case.what);
            assert!(
                zones.iter().all(|z| case.zones.contains(z)),
                "{}: answered from {zones:?}",
                case.what
            );
            let distinct: HashSet<_> = reply.answer_data().into_iter().collect();
            assert_eq!(distinct.len(), zones.len(), "{}: duplicate", case.what);
            assert_eq!(scope(&reply), case.scope, "{}: ECS scope", case.what);
        }
    }
}

#[test]
fn clients_get_their_country_continent_or_the_world() {
    let world = world(false);
    let anywhere: &[&str] = &["de", "fr", "uk", "us", "jp", "br", "za", "au", "nz"];
    let case = |what, name, qtype, ecs, zones, count, scope| Case {
        what,
        name,
        qtype,
        ecs,
        source: "192.0.2.1",
        zones,
        count,
        scope,
    };
    check(
        &world,
        &[
            case(
                "Germany by ECS /24 in a /16 network",
                "pool.ntp.org",
                A,
                Some("85.214.1.0/24"),
                &["de"],
                4,
                Some(16),
            ),
            case(
                "ECS prefix shorter than the network: capped",
                "pool.ntp.org",
                A,
                Some("126.0.0.0/7"),
                &["jp"],
                4,
                Some(7),
            ),
            case(
                "United States",
                "0.pool.ntp.org",
                A,
                Some("3.1.2.0/24"),
                &["us"],
                4,
                Some(8),
            ),
            case(
                "Japan",
                "1.pool.ntp.org",
                A,
                Some("126.10.0.0/16"),
                &["jp"],
                4,
                Some(8),
            ),
            case(
                "Brazil",
                "pool.ntp.org",
                A,
                Some("177.0.1.0/24"),
                &["br"],
                4,
                Some(20),
            ),
            case(
                "South Africa",
                "3.pool.ntp.org",
                A,
                Some("196.25.1.0/24"),
                &["za"],
                4,
                Some(16),
            ),
            case(
                "gb is the pool's uk",
                "pool.ntp.org",
                A,
                Some("81.2.69.0/24"),
                &["uk"],
                4,
                Some(24),
            ),
            case(
                "Canada has no zone: its continent",
                "pool.ntp.org",
                A,
                Some("24.114.0.0/24"),
                &["us"],
                4,
                Some(20),
            ),
            case(
                "Iceland's zone is empty: topped up from europe",
                "pool.ntp.org",
                A,
                Some("130.208.0.0/24"),
                EUROPE,
                4,
                Some(16),
            ),
            case(
                "New Zealand has 1 server: topped up to 4",
                "pool.ntp.org",
                A,
                Some("130.216.5.0/24"),
                &["nz", "au"],
                4,
                Some(16),
            ),
            case(
                "a network with a continent only",
                "pool.ntp.org",
                A,
                Some("194.42.1.0/24"),
                EUROPE,
                4,
                Some(20),
            ),
            case(
                "IPv6 ECS, de's 3 topped up from europe",
                "2.pool.ntp.org",
                AAAA,
                Some("2a01:4f8:1::/48"),
                &["de", "fr"],
                4,
                Some(32),
            ),
            case(
                "IPv6 ECS topped up",
                "2.pool.ntp.org",
                AAAA,
                Some("2a00:1098:5::/48"),
                &["de", "fr"],
                4,
                Some(32),
            ),
            case(
                "a vendor zone is geo-targeted",
                "1.debian.pool.ntp.org",
                A,
                Some("126.1.0.0/16"),
                &["jp"],
                4,
                Some(8),
            ),
            case(
                "private ECS is ignored: the source decides",
                "pool.ntp.org",
                A,
                Some("10.1.2.0/24"),
                anywhere,
                4,
                Some(0),
            ),
            case(
                "ECS source prefix 0 is ignored",
                "pool.ntp.org",
                A,
                Some("0.0.0.0/0"),
                anywhere,
                4,
                Some(0),
            ),
            case(
                "explicit zones are not geo-targeted",
                "de.pool.ntp.org",
                A,
                Some("3.1.2.0/24"),
                &["de"],
                4,
                Some(0),
            ),
            case(
                "explicit zones are topped up",
                "nz.pool.ntp.org",
                A,
                Some("3.1.2.0/24"),
                &["nz", "au"],
                4,
                Some(0),
            ),
            case(
                "explicit empty zone: its continent",
                "2.is.pool.ntp.org",
                A,
                None,
                EUROPE,
                4,
                None,
            ),
        ],
    );
    // The packet's source address when there is no ECS; no ECS option back.
    check(
        &world,
        &[
            Case {
                what: "source address in Germany",
                name: "pool.ntp.org",
                qtype: A,
                ecs: None,
                source: "85.214.9.9",
                zones: &["de"],
                count: 4,
                scope: None,
            },
            Case {
                what: "source address in Japan over IPv6",
                name: "pool.ntp.org",
                qtype: A,
                ecs: None,
                source: "2001:200::1",
                zones: &["jp"],
                count: 4,
                scope: None,
            },
            Case {
                what: "source address nowhere",
                name: "pool.ntp.org",
                qtype: A,
                ecs: None,
                source: "192.0.2.1",
                zones: anywhere,
                count: 4,
                scope: None,
            },
        ],
    );
}

#[test]
fn nz_always_includes_its_own_server() {
    let world = world(false);
    let mut rng = SmallRng::seed_from_u64(8);
    for _ in 0..200 {
        let reply = ask(
            &world,
            "pool.ntp.org",
            A,
            &ecs("130.216.5.0/24"),
            "192.0.2.1",
            &mut rng,
        );
        assert!(zones_answered(&world, &reply).contains(&"nz"));
    }
}

#[test]
fn aaaa_everywhere_or_only_in_2_names() {
    // de has 3 IPv6 servers; answers are topped up to 4 from europe.
    for (everywhere, expected) in [(false, 0), (true, 4)] {
        let world = world(everywhere);
        let mut rng = SmallRng::seed_from_u64(1);
        let reply = ask(
            &world,
            "pool.ntp.org",
            AAAA,
            &ecs("85.214.1.0/24"),
            "192.0.2.1",
            &mut rng,
        );
        assert_eq!(reply.answer.len(), expected, "ipv6_everywhere={everywhere}");
        let reply = ask(
            &world,
            "de.pool.ntp.org",
            AAAA,
            &Ask::default(),
            "192.0.2.1",
            &mut rng,
        );
        assert_eq!(reply.answer.len(), expected, "ipv6_everywhere={everywhere}");
        // 2.* names always serve AAAA.
        let reply = ask(
            &world,
            "2.de.pool.ntp.org",
            AAAA,
            &Ask::default(),
            "192.0.2.1",
            &mut rng,
        );
        assert_eq!(reply.answer.len(), 4);
        if expected == 0 {
            assert_eq!(reply.rcode, "NOERROR");
        }
    }
}

#[test]
fn malformed_ecs_is_formerr() {
    let world = world(false);
    let config = AnswerConfig::default();
    let cookies = CookieSecrets::single([7; 16]);
    let ctx = Context {
        table: &world.table,
        geo: &world.geo,
        config: &config,
        cookies: &cookies,
        now: 1_700_000_000,
    };
    let client = Client {
        source: "192.0.2.1".parse().unwrap(),
        transport: Transport::Udp,
    };
    let mut rng = SmallRng::seed_from_u64(1);
    let base = query("pool.ntp.org", A, &Ask::default());
    let with_option = |option: &[u8]| {
        let mut packet = base.clone();
        packet[11] = 1;
        packet.extend_from_slice(&[0, 0, 41, 4, 0xD0, 0, 0, 0, 0]);
        packet.extend_from_slice(&((option.len() + 4) as u16).to_be_bytes());
        packet.extend_from_slice(&[0, 8]);
        packet.extend_from_slice(&(option.len() as u16).to_be_bytes());
        packet.extend_from_slice(option);
        packet
    };
    for (what, option) in [
        ("family 3", vec![0, 3, 8, 0, 1]),
        ("IPv4 prefix 33", vec![0, 1, 33, 0, 1, 2, 3, 4, 5]),
        ("IPv6 prefix 129", vec![0, 2, 129, 0, 1]),
        ("bits past the prefix", vec![0, 1, 23, 0, 85, 214, 1]),
        ("address longer than the prefix", vec![0, 1, 8, 0, 85, 214]),
    ] {
        let mut out = vec![0u8; 512];
        let length =
            respond(&ctx, &with_option(&option), client, &mut rng, &mut out).expect("answered");
        assert_eq!(out[3] & 0x0F, 1, "{what}: FORMERR");
        assert!(length >= 12);
    }
}

#[test]
fn country_debug_name_tells_how_the_client_was_located() {
    let world = world(false);
    let mut rng = SmallRng::seed_from_u64(1);
    let reply = ask(
        &world,
        "_country.pool.ntp.org",
        TXT,
        &ecs("85.214.1.0/24"),
        "192.0.2.1",
        &mut rng,
    );
    assert_eq!(reply.answer.len(), 1);
    assert_eq!(reply.answer[0].ttl, 1);
    let text = &reply.answer[0].data;
    for expected in [
        "address 85.214.1.0 from ecs/24",
        "network /16",
        "country de, continent europe",
        "targets de europe @",
        "zone de",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    let reply = ask(
        &world,
        "_country.pool.ntp.org",
        TXT,
        &ecs("130.208.0.0/24"),
        "192.0.2.1",
        &mut rng,
    );
    let text = &reply.answer[0].data;
    assert!(
        text.contains("targets is europe @") && text.contains("zone europe"),
        "{text}"
    );
    let reply = ask(
        &world,
        "_country.pool.ntp.org",
        TXT,
        &Ask::default(),
        "198.51.100.9",
        &mut rng,
    );
    let text = &reply.answer[0].data;
    assert!(
        text.contains("from source/32") && text.contains("country none") && text.contains("zone @"),
        "{text}"
    );
}

#[test]
fn without_a_database_everyone_gets_the_global_zone() {
    let mut world = world(false);
    world.geo = GeoTable::empty();
    let mut rng = SmallRng::seed_from_u64(1);
    let reply = ask(
        &world,
        "_country.pool.ntp.org",
        TXT,
        &ecs("85.214.1.0/24"),
        "192.0.2.1",
        &mut rng,
    );
    assert!(
        reply.answer[0].data.contains("targets @"),
        "{}",
        reply.answer[0].data
    );
    assert_eq!(
        scope(&reply),
        Some(0),
        "the whole space is one unknown network"
    );
}

/// The first address of an answer is drawn proportional to the weights
/// (the first step of successive sampling), so its frequencies over 20 000
/// answers must fit the netspeeds: chi-square below the 99.9% quantile of
/// the chi-square distribution with n - 1 degrees of freedom (Wilson and
/// Hilferty's approximation). With the fixed seed the test is
/// deterministic; the threshold says it is not a lucky seed. No answer may
/// repeat an address.
#[test]
fn weights_are_honoured() {
    let world = world(false);
    let mut rng = SmallRng::seed_from_u64(2026);
    let europe_v4: Vec<(IpAddr, u64)> = world
        .servers
        .iter()
        .filter(|(address, _, zone)| address.is_ipv4() && EUROPE.contains(zone))
        .map(|&(address, weight, _)| (address, weight))
        .collect();
    let mut first = HashMap::new();
    let draws = 20_000;
    for _ in 0..draws {
        let reply = ask(
            &world,
            "europe.pool.ntp.org",
            A,
            &Ask::default(),
            "192.0.2.1",
            &mut rng,
        );
        let data = reply.answer_data();
        assert_eq!(
            data.iter().collect::<HashSet<_>>().len(),
            4,
            "no repeat: {data:?}"
        );
        *first
            .entry(data[0].parse::<IpAddr>().unwrap())
            .or_insert(0u64) += 1;
    }
    let total: u64 = europe_v4.iter().map(|(_, w)| w).sum();
    let chi_square: f64 = europe_v4
        .iter()
        .map(|(address, weight)| {
            let expected = draws as f64 * *weight as f64 / total as f64;
            let observed = *first.get(address).unwrap_or(&0) as f64;
            (observed - expected).powi(2) / expected
        })
        .sum();
    let df = (europe_v4.len() - 1) as f64;
    let z = 3.090; // the standard normal's 99.9% quantile
    let threshold = df * (1.0 - 2.0 / (9.0 * df) + z * (2.0 / (9.0 * df)).sqrt()).powi(3);
    assert!(
        chi_square < threshold,
        "chi-square {chi_square:.2} >= {threshold:.2} ({df} df)"
    );
}

/// What πps sampling owes each server: min(1, k·w/W), the capped ones at
/// 1 and the rest weighed again without them.
fn due_inclusion(weights: &[(IpAddr, u64)], k: usize) -> HashMap<IpAddr, f64> {
    let mut due: HashMap<IpAddr, f64> = HashMap::new();
    loop {
        let left = k.min(weights.len()) - due.len();
        let rest: u64 = (weights.iter())
            .filter(|(a, _)| !due.contains_key(a))
            .map(|(_, w)| w)
            .sum();
        let capped: Vec<IpAddr> = (weights.iter())
            .filter(|(a, w)| !due.contains_key(a) && left as u64 * w >= rest)
            .map(|&(a, _)| a)
            .collect();
        if capped.is_empty() || left == 0 {
            for &(address, weight) in weights {
                due.entry(address)
                    .or_insert(left as f64 * weight as f64 / rest as f64);
            }
            return due;
        }
        for address in capped {
            due.insert(address, 1.0);
        }
    }
}

/// How often each address is in the answers to `draws` queries.
fn address_counts(world: &World, name: &str, draws: usize) -> HashMap<IpAddr, u64> {
    let mut rng = SmallRng::seed_from_u64(2027);
    let mut counts = HashMap::new();
    for _ in 0..draws {
        let reply = ask(world, name, A, &Ask::default(), "192.0.2.1", &mut rng);
        assert_eq!(reply.answer.len(), 4, "{name}");
        for data in reply.answer_data() {
            *counts.entry(data.parse::<IpAddr>().unwrap()).or_insert(0) += 1;
        }
    }
    counts
}

/// Every position counts (clients use all four addresses): each server's
/// share of all addresses handed out is its due share within 1 point, its
/// weight share where no server is capped; a label short of servers puts
/// all of its own in every answer and tops up from its parent by weight,
/// without them.
#[test]
fn every_address_follows_the_weights_and_top_ups_take_the_rest() {
    let world = world(false);
    let v4_of = |zones: &[&str]| -> Vec<(IpAddr, u64)> {
        (world.servers.iter())
            .filter(|(address, _, zone)| address.is_ipv4() && zones.contains(zone))
            .map(|&(address, weight, _)| (address, weight))
            .collect()
    };
    // Europe (14 servers, its three of 1 Gbit/s capped) and the world (38,
    // none capped: every share is the weight share). Within 1 point, and
    // for shares of 1% or more within 5% of the due share (100 000
    // answers: a standard error of about 1% of it). Successive weighted
    // draws, which this replaced, gave a 100 Mbit/s server of Europe 3.8%
    // of all addresses where 2.5% is due.
    let draws = 100_000;
    let everywhere: Vec<&str> = COUNTRIES.iter().map(|c| c.0).collect();
    for (name, zones) in [
        ("europe.pool.ntp.org", EUROPE),
        ("0.pool.ntp.org", &everywhere[..]),
    ] {
        let servers = v4_of(zones);
        let due = due_inclusion(&servers, 4);
        let counts = address_counts(&world, name, draws);
        for (address, weight) in &servers {
            let share = *counts.get(address).unwrap_or(&0) as f64 / (4 * draws) as f64;
            let due_share = due[address] / 4.0;
            assert!(
                (share - due_share).abs() < 0.01,
                "{name}: {address} (weight {weight}): {share:.4} of all addresses, due {due_share:.4}"
            );
            if due_share >= 0.01 {
                assert!(
                    (share / due_share - 1.0).abs() < 0.05,
                    "{name}: {address} (weight {weight}): {share:.4} of all addresses, due {due_share:.4}"
                );
            }
        }
    }
    // nz has one server: in every answer; the other three from oceania
    // without it (au's four), each by its weight among them.
    let nz = v4_of(&["nz"]);
    let au = v4_of(&["au"]);
    let draws = 20_000;
    let counts = address_counts(&world, "nz.pool.ntp.org", draws);
    assert_eq!(
        counts[&nz[0].0], draws as u64,
        "nz's own server in every answer"
    );
    let due = due_inclusion(&au, 3);
    for (address, _) in &au {
        let share = *counts.get(address).unwrap_or(&0) as f64 / (4 * draws) as f64;
        let due_share = due[address] / 4.0;
        assert!(
            (share - due_share).abs() < 0.01,
            "topped up {address}: {share:.4}, due {due_share:.4}"
        );
    }
}
