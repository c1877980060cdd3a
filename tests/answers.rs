//! The answer logic as a table of cases through one `check` helper: each
//! case is a query (built by `domain`), the response is parsed by `domain`
//! and compared with what the case expects.

mod support;

use std::collections::HashSet;
use std::net::IpAddr;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use domain::base::opt::cookie::{ClientCookie, Cookie as DomainCookie, ServerCookie};
use support::{Ask, Reply, parse_reply, query};
use timepool::dns::answer::{
    AnswerConfig, Client, Context, Limited, RateLimit, Transport, respond, respond_rate_limited,
    respond_with_outcome,
};
use timepool::dns::cookie::CookieSecrets;
use timepool::dns::rrl::{RateLimiter, RrlSettings};
use timepool::dns::wire::edns::NsidOption;
use timepool::dns::zone::ZoneTable;

fn table() -> ZoneTable {
    timepool::dns::zone::load_file(&support::example_snapshot()).expect("example snapshot loads")
}

fn config() -> AnswerConfig {
    AnswerConfig {
        identity: Some(b"ns1.test".to_vec().into()),
        version: Some(b"timepool-test".to_vec().into()),
        nsid: Some(NsidOption::new(b"node-a").unwrap()),
        ..AnswerConfig::default()
    }
}

/// What a case expects of the response. `None` fields are not checked.
#[derive(Default)]
struct Expect {
    rcode: &'static str,
    aa: Option<bool>,
    tc: Option<bool>,
    /// (record type, how many) of the answer section.
    answer: Option<(&'static str, usize)>,
    /// The answer's record data, exactly.
    answer_data: Option<Vec<&'static str>>,
    /// A SOA in authority (negative answers).
    soa_in_authority: Option<bool>,
    opt: Option<bool>,
}

struct Case {
    name: &'static str,
    qtype: u16,
    ask: Ask,
    expect: Expect,
}

fn run(
    table: &ZoneTable,
    config: &AnswerConfig,
    name: &str,
    qtype: u16,
    ask: &Ask,
    transport: Transport,
    rng: &mut SmallRng,
) -> Reply {
    let packet = query(name, qtype, ask);
    let geo = timepool::shared::geo::GeoTable::empty();
    let cookies = CookieSecrets::single([7; 16]);
    let ctx = Context {
        table,
        geo: &geo,
        config,
        cookies: &cookies,
        now: 1_700_000_000,
    };
    let client = Client {
        source: "198.51.100.7".parse().unwrap(),
        transport,
    };
    let mut out = vec![0u8; 65535];
    let length = respond(&ctx, &packet, client, rng, &mut out).expect("a response");
    let reply = parse_reply(&out[..length]);
    assert_eq!(reply.id, ask.id, "{name}: id echoed");
    reply
}

/// [`run`] over UDP.
fn udp(
    table: &ZoneTable,
    config: &AnswerConfig,
    name: &str,
    qtype: u16,
    ask: &Ask,
    rng: &mut SmallRng,
) -> Reply {
    run(table, config, name, qtype, ask, Transport::Udp, rng)
}

fn check(cases: &[Case]) {
    let table = table();
    let config = config();
    let mut rng = SmallRng::seed_from_u64(42);
    for case in cases {
        let reply = udp(&table, &config, case.name, case.qtype, &case.ask, &mut rng);
        let what = format!("{} type {}: {reply:#?}", case.name, case.qtype);
        let expect = &case.expect;
        assert_eq!(reply.rcode, expect.rcode, "rcode of {what}");
        assert!(!reply.ra, "RA never set: {what}");
        assert!(reply.rd, "RD copied: {what}");
        if let Some(aa) = expect.aa {
            assert_eq!(reply.aa, aa, "AA of {what}");
        }
        if let Some(tc) = expect.tc {
            assert_eq!(reply.tc, tc, "TC of {what}");
        }
        if let Some((rtype, count)) = expect.answer {
            assert_eq!(reply.answer.len(), count, "answer count of {what}");
            assert!(
                reply.answer.iter().all(|rr| rr.rtype == rtype),
                "answer types of {what}"
            );
            let distinct: HashSet<_> = reply.answer.iter().map(|rr| &rr.data).collect();
            assert_eq!(distinct.len(), count, "no duplicate in {what}");
        }
        if let Some(data) = &expect.answer_data {
            assert_eq!(&reply.answer_data(), data, "answer data of {what}");
        }
        if let Some(soa) = expect.soa_in_authority {
            let has_soa = reply.authority.iter().any(|rr| rr.rtype == "SOA");
            assert_eq!(has_soa, soa, "SOA in authority of {what}");
        }
        if let Some(opt) = expect.opt {
            assert_eq!(reply.edns.is_some(), opt, "OPT of {what}");
        }
        if let Some((question, _)) = &reply.question {
            assert_eq!(
                question.trim_end_matches('.'),
                case.name.trim_end_matches('.'),
                "question echoed with the client's case: {what}"
            );
        }
    }
}

const A: u16 = 1;
const NS: u16 = 2;
const SOA: u16 = 6;
const MX: u16 = 15;
const TXT: u16 = 16;
const AAAA: u16 = 28;
const AXFR: u16 = 252;
const ANY: u16 = 255;

fn answer(rtype: &'static str, count: usize) -> Expect {
    Expect {
        rcode: "NOERROR",
        aa: Some(true),
        tc: Some(false),
        answer: Some((rtype, count)),
        soa_in_authority: Some(false),
        ..Expect::default()
    }
}

fn nodata() -> Expect {
    Expect {
        rcode: "NOERROR",
        aa: Some(true),
        answer: Some(("SOA", 0)),
        soa_in_authority: Some(true),
        ..Expect::default()
    }
}

fn nxdomain() -> Expect {
    Expect {
        rcode: "NXDOMAIN",
        aa: Some(true),
        answer: Some(("SOA", 0)),
        soa_in_authority: Some(true),
        ..Expect::default()
    }
}

fn refused() -> Expect {
    Expect {
        rcode: "REFUSED",
        aa: Some(false),
        answer: Some(("A", 0)),
        soa_in_authority: Some(false),
        ..Expect::default()
    }
}

fn case(name: &'static str, qtype: u16, expect: Expect) -> Case {
    Case {
        name,
        qtype,
        ask: Ask::default(),
        expect,
    }
}

#[test]
fn answers_follow_the_rules() {
    check(&[
        case("pool.ntp.org", A, answer("A", 4)),
        case("PoOl.NtP.oRg", A, answer("A", 4)),
        case("0.pool.ntp.org", A, answer("A", 4)),
        case("3.pool.ntp.org.", A, answer("A", 4)),
        case("de.pool.ntp.org", A, answer("A", 4)),
        case("1.DE.pool.ntp.org", A, answer("A", 4)),
        case("europe.pool.ntp.org", A, answer("A", 4)),
        case("2.north-america.pool.ntp.org", A, answer("A", 4)),
        // gb is an alias of uk, debian of the global zone.
        case("gb.pool.ntp.org", A, answer("A", 4)),
        case("2.debian.pool.ntp.org", A, answer("A", 4)),
        case("debian.pool.ntp.org", A, answer("A", 4)),
        // nz has one server: topped up from oceania and then the world.
        case("nz.pool.ntp.org", A, answer("A", 4)),
        // AAAA only in 2.* names unless the origin says ipv6_everywhere.
        case("2.pool.ntp.org", AAAA, answer("AAAA", 4)),
        case("2.de.pool.ntp.org", AAAA, answer("AAAA", 4)),
        case("pool.ntp.org", AAAA, nodata()),
        case("1.de.pool.ntp.org", AAAA, nodata()),
        case(
            "pool.ntp.org",
            SOA,
            Expect {
                answer_data: Some(vec![
                    "ns1.pool.ntp.org. hostmaster.pool.ntp.org. 1 5400 5400 1209600 3600",
                ]),
                ..answer("SOA", 1)
            },
        ),
        case(
            "pool.ntp.org",
            NS,
            Expect {
                answer_data: Some(vec![
                    "a.ntpns.org.",
                    "b.ntpns.org.",
                    "c.ntpns.org.",
                    "d.ntpns.org.",
                ]),
                ..answer("NS", 4)
            },
        ),
        case("de.pool.ntp.org", NS, nodata()),
        case("de.pool.ntp.org", SOA, nodata()),
        case("de.pool.ntp.org", TXT, nodata()),
        case(
            "de.pool.ntp.org",
            MX,
            Expect {
                answer_data: Some(vec!["0 ."]),
                ..answer("MX", 1)
            },
        ),
        // RFC 8482: ANY gets the A records, not the whole node.
        case("pool.ntp.org", ANY, answer("A", 4)),
        case("nope.pool.ntp.org", A, nxdomain()),
        case("x.de.pool.ntp.org", A, nxdomain()),
        case("4.pool.ntp.org", A, nxdomain()),
        case("a.b.c.pool.ntp.org", AAAA, nxdomain()),
        case("example.com", A, refused()),
        case("ntp.org", A, refused()),
        case("pool.ntp.org.example", A, refused()),
        case("pool.ntp.org", AXFR, refused()),
        // The node's status is for loopback only by default.
        case("_status.pool.ntp.org", TXT, refused()),
    ]);
}

#[test]
fn chaos_class_and_other_classes() {
    let ch = |name: &'static str, expect: Expect| Case {
        name,
        qtype: TXT,
        ask: Ask {
            class: Some(3),
            ..Ask::default()
        },
        expect,
    };
    check(&[
        ch(
            "id.server",
            Expect {
                answer_data: Some(vec!["\"ns1.test\""]),
                ..answer("TXT", 1)
            },
        ),
        ch(
            "hostname.bind",
            Expect {
                answer_data: Some(vec!["\"ns1.test\""]),
                ..answer("TXT", 1)
            },
        ),
        ch(
            "version.server",
            Expect {
                answer_data: Some(vec!["\"timepool-test\""]),
                ..answer("TXT", 1)
            },
        ),
        ch("pool.ntp.org", refused()),
        Case {
            name: "pool.ntp.org",
            qtype: A,
            ask: Ask {
                class: Some(4),
                ..Ask::default()
            },
            expect: refused(),
        },
    ]);
    // Without a configured identity, id.server is refused.
    let table = table();
    let config = AnswerConfig::default();
    let mut rng = SmallRng::seed_from_u64(1);
    let ask = Ask {
        class: Some(3),
        ..Ask::default()
    };
    let reply = udp(&table, &config, "id.server", TXT, &ask, &mut rng);
    assert_eq!(reply.rcode, "REFUSED");
}

#[test]
fn edns_is_honoured() {
    let table = table();
    let config = config();
    let mut rng = SmallRng::seed_from_u64(7);
    // OPT echoed, our own payload size announced.
    let reply = udp(
        &table,
        &config,
        "pool.ntp.org",
        A,
        &Ask::edns(4096),
        &mut rng,
    );
    let edns = reply.edns.expect("OPT echoed");
    assert_eq!((edns.udp_size, edns.version), (1232, 0));
    assert!(edns.nsid.is_none(), "NSID only when asked");
    // No OPT in the query, none in the response.
    let reply = udp(
        &table,
        &config,
        "pool.ntp.org",
        A,
        &Ask::default(),
        &mut rng,
    );
    assert!(reply.edns.is_none());
    // Version 1: BADVERS, with OPT, no answer.
    let ask = Ask {
        edns_version: 1,
        ..Ask::edns(1232)
    };
    let reply = udp(&table, &config, "pool.ntp.org", A, &ask, &mut rng);
    assert_eq!(reply.rcode, "BADVERS");
    assert!(reply.answer.is_empty());
    assert_eq!(reply.edns.expect("OPT with BADVERS").version, 0);
    // NSID when asked.
    let ask = Ask {
        nsid: true,
        ..Ask::edns(1232)
    };
    let reply = udp(&table, &config, "pool.ntp.org", A, &ask, &mut rng);
    assert_eq!(
        reply.edns.expect("OPT").nsid.as_deref(),
        Some(&b"node-a"[..])
    );
    // ECS echoed with family, prefix and address.
    let ask = Ask {
        subnet: Some((24, "198.51.100.0".parse().unwrap())),
        ..Ask::edns(1232)
    };
    let reply = udp(&table, &config, "de.pool.ntp.org", A, &ask, &mut rng);
    let (source, scope, address) = reply.edns.expect("OPT").subnet.expect("ECS echoed");
    assert_eq!((source, scope), (24, 0), "explicit zone: scope 0");
    assert_eq!(address, "198.51.100.0".parse::<IpAddr>().unwrap());
    // NSID and ECS in one OPT record (the NSID path writes it piece by
    // piece, the usual one in one go); an IPv6 subnet.
    let ask = Ask {
        nsid: true,
        subnet: Some((56, "2001:db8:1:2300::".parse().unwrap())),
        ..Ask::edns(1232)
    };
    let reply = udp(&table, &config, "de.pool.ntp.org", A, &ask, &mut rng);
    let edns = reply.edns.expect("OPT");
    assert_eq!(edns.nsid.as_deref(), Some(&b"node-a"[..]));
    let (source, scope, address) = edns.subnet.expect("ECS echoed");
    assert_eq!((source, scope), (56, 0));
    assert_eq!(address, "2001:db8:1:2300::".parse::<IpAddr>().unwrap());
    // RFC 3225: the DO bit is copied, in answers and in errors alike.
    for (name, version, rcode) in [
        ("pool.ntp.org", 0, "NOERROR"),
        ("nope.pool.ntp.org", 0, "NXDOMAIN"),
        ("pool.ntp.org", 1, "BADVERS"),
    ] {
        for dnssec_ok in [true, false] {
            let ask = Ask {
                dnssec_ok,
                edns_version: version,
                nsid: true,
                ..Ask::edns(1232)
            };
            let reply = udp(&table, &config, name, A, &ask, &mut rng);
            assert_eq!(reply.rcode, rcode);
            assert_eq!(
                reply.edns.expect("OPT").dnssec_ok,
                dnssec_ok,
                "{name} {rcode}"
            );
        }
    }
}

/// A UDP query from `source` through the rate-limited path.
fn udp_limited(
    ctx: &Context<'_>,
    limiter: &mut RateLimiter,
    source: &str,
    ask: &Ask,
    rng: &mut SmallRng,
) -> Option<Reply> {
    let client = Client {
        source: source.parse().unwrap(),
        transport: Transport::Udp,
    };
    let mut out = vec![0u8; 1232];
    let limit = RateLimit {
        limiter,
        now_ms: 5_000,
    };
    let packet = query("pool.ntp.org", A, ask);
    let (length, outcome) =
        respond_rate_limited(ctx, &packet, client, rng, &mut out, limit).expect("an outcome");
    if length == 0 {
        assert_eq!(outcome.limited, Limited::Dropped);
        return None;
    }
    Some(parse_reply(&out[..length]))
}

#[test]
fn cookies_are_made_and_checked_and_a_valid_one_passes_the_rate_limit() {
    let table = table();
    let config = config();
    let geo = timepool::shared::geo::GeoTable::empty();
    let secret = [0x5a; 16];
    let cookies = CookieSecrets::single(secret);
    let now = 1_700_000_000;
    let ctx = Context {
        table: &table,
        geo: &geo,
        config: &config,
        cookies: &cookies,
        now,
    };
    let mut rng = SmallRng::seed_from_u64(11);
    let source = "198.51.100.7";
    // Rate 1, every limited response slips.
    let mut limiter = RateLimiter::new(
        &RrlSettings {
            slip: 1,
            table_size: 64,
            exempt: Vec::new(),
            ..RrlSettings::at_rate(1)
        },
        1,
    );
    let client_cookie = *b"clientck";
    let first = Ask {
        cookie: Some((client_cookie, Vec::new())),
        ..Ask::edns(1232)
    };
    // A first query: answered, with a server cookie that `domain` (another
    // implementation of RFC 9018) accepts for this client and secret.
    let reply = udp_limited(&ctx, &mut limiter, source, &first, &mut rng).expect("answered");
    assert_eq!((reply.rcode.as_str(), reply.answer.len()), ("NOERROR", 4));
    let (echoed, server) = reply.edns.expect("OPT").cookie.expect("a cookie back");
    assert_eq!(echoed, client_cookie);
    assert_eq!(server.len(), 16);
    let parsed = DomainCookie::new(
        ClientCookie::from(client_cookie),
        Some(ServerCookie::from_octets(&server)),
    );
    assert!(parsed.check_server_hash(source.parse().unwrap(), &secret, |_| true));
    // Over the rate now: without a cookie, TC and nothing else.
    let plain = udp_limited(&ctx, &mut limiter, source, &Ask::edns(1232), &mut rng).expect("slip");
    assert!(
        plain.tc && plain.answer.is_empty() && plain.rcode == "NOERROR",
        "{plain:#?}"
    );
    // With a client cookie alone, or a bad server cookie: BADCOOKIE with a
    // fresh server cookie, so the client can come back with it.
    let mut bad = server.clone();
    bad[15] ^= 1;
    for ask in [
        first.clone(),
        Ask {
            cookie: Some((client_cookie, bad)),
            ..Ask::edns(1232)
        },
    ] {
        let reply = udp_limited(&ctx, &mut limiter, source, &ask, &mut rng).expect("slip");
        assert_eq!(reply.rcode, "BADCOOKIE");
        assert!(reply.answer.is_empty() && !reply.tc);
        assert_eq!(reply.edns.expect("OPT").cookie.expect("cookie").1, server);
    }
    // With the server cookie it was given: answered in full, every time.
    let good = Ask {
        cookie: Some((client_cookie, server.clone())),
        ..Ask::edns(1232)
    };
    for _ in 0..20 {
        let reply = udp_limited(&ctx, &mut limiter, source, &good, &mut rng).expect("answered");
        assert_eq!((reply.rcode.as_str(), reply.answer.len()), ("NOERROR", 4));
    }
    // Its cookie is good for this client only.
    let elsewhere = udp_limited(&ctx, &mut limiter, "198.51.100.99", &good, &mut rng);
    assert_eq!(elsewhere.expect("slip").rcode, "BADCOOKIE");
    // A bad server cookie under the rate is answered normally (RFC 7873
    // section 5.2.4: treated as a client cookie alone).
    let reply = udp(
        &table,
        &config,
        "pool.ntp.org",
        A,
        &Ask {
            cookie: Some((client_cookie, vec![1; 16])),
            ..Ask::edns(1232)
        },
        &mut rng,
    );
    assert_eq!((reply.rcode.as_str(), reply.answer.len()), ("NOERROR", 4));
    // With slip 0 a limited query gets nothing at all.
    let mut silent = RateLimiter::new(
        &RrlSettings {
            slip: 0,
            table_size: 64,
            exempt: Vec::new(),
            ..RrlSettings::at_rate(1)
        },
        1,
    );
    assert!(udp_limited(&ctx, &mut silent, source, &Ask::default(), &mut rng).is_some());
    assert!(udp_limited(&ctx, &mut silent, source, &Ask::default(), &mut rng).is_none());
    // Error replies count too: a malformed query (a 9-byte cookie) from
    // the limited prefix gets no FORMERR.
    let mut malformed = query("pool.ntp.org", A, &Ask::edns(1232));
    let opt_rdlength = malformed.len() - 2;
    malformed[opt_rdlength + 1] = 13;
    malformed.extend_from_slice(&[0, 10, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let client = Client {
        source: source.parse().unwrap(),
        transport: Transport::Udp,
    };
    let mut out = vec![0u8; 512];
    let limit = RateLimit {
        limiter: &mut silent,
        now_ms: 5_000,
    };
    let (length, outcome) =
        respond_rate_limited(&ctx, &malformed, client, &mut rng, &mut out, limit).expect("outcome");
    assert_eq!((length, outcome.limited), (0, Limited::Dropped));
    let (length, outcome) =
        respond_with_outcome(&ctx, &malformed, client, &mut rng, &mut out).expect("FORMERR");
    assert_eq!((outcome.rcode, length), (1, 12), "unlimited, it is FORMERR");
}

#[test]
fn status_is_answered_to_loopback_or_when_made_public() {
    let table = table();
    let geo = timepool::shared::geo::GeoTable::empty();
    let cookies = CookieSecrets::single([7; 16]);
    let mut rng = SmallRng::seed_from_u64(5);
    let ask = |config: &AnswerConfig, source: &str| {
        let ctx = Context {
            table: &table,
            geo: &geo,
            config,
            cookies: &cookies,
            now: u32::try_from(table.compiled_at + 42).unwrap(),
        };
        let client = Client {
            source: source.parse().unwrap(),
            transport: Transport::Udp,
        };
        let mut out = vec![0u8; 1232];
        let packet = query("_status.pool.ntp.org", TXT, &Ask::default());
        let length = respond(
            &ctx,
            &packet,
            client,
            &mut SmallRng::seed_from_u64(1),
            &mut out,
        )
        .expect("a response");
        parse_reply(&out[..length])
    };
    let config = AnswerConfig {
        started_at: table.compiled_at - 100,
        ..config()
    };
    for source in ["127.0.0.1", "::1"] {
        let reply = ask(&config, source);
        assert_eq!(reply.rcode, "NOERROR");
        assert_eq!(
            reply.answer_data(),
            vec![format!(
                "\"version timepool {}\" \"node ns1.test\" \"snapshot serial 1 loaded 42s ago\" \"uptime 142s\"",
                env!("CARGO_PKG_VERSION")
            )]
        );
        assert_eq!(reply.answer[0].ttl, 0);
    }
    assert_eq!(ask(&config, "198.51.100.7").rcode, "REFUSED");
    let public = AnswerConfig {
        public_debug: true,
        ..config.clone()
    };
    assert_eq!(ask(&public, "198.51.100.7").rcode, "NOERROR");
    let _ = &mut rng;
}

#[test]
fn a_zone_without_servers_answers_every_name_from_its_parents() {
    // `aq` with no servers and no numbered lists, under `antarctica`
    // (whose lists are empty too): every name answers from `@`.
    let mut document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(support::example_snapshot()).unwrap()).unwrap();
    document["zones"]["aq"] = serde_json::json!({"parent": "antarctica", "servers": []});
    document["zones"]["antarctica"] = serde_json::json!({"parent": "@", "servers": []});
    let bytes = serde_json::to_vec(&document).unwrap();
    let table = timepool::dns::zone::load_bytes(&bytes, "test").expect("valid");
    let config = config();
    let mut rng = SmallRng::seed_from_u64(8);
    for name in [
        "aq.pool.ntp.org",
        "0.aq.pool.ntp.org",
        "3.aq.pool.ntp.org",
        "antarctica.pool.ntp.org",
        "1.antarctica.pool.ntp.org",
    ] {
        let reply = udp(&table, &config, name, A, &Ask::default(), &mut rng);
        assert_eq!(
            (reply.rcode.as_str(), reply.answer.len()),
            ("NOERROR", 4),
            "{name}"
        );
    }
    let reply = udp(
        &table,
        &config,
        "2.aq.pool.ntp.org",
        AAAA,
        &Ask::default(),
        &mut rng,
    );
    assert_eq!((reply.rcode.as_str(), reply.answer.len()), ("NOERROR", 4));
    // Labels past the parents' stay unknown.
    let reply = udp(
        &table,
        &config,
        "4.aq.pool.ntp.org",
        A,
        &Ask::default(),
        &mut rng,
    );
    assert_eq!(reply.rcode, "NXDOMAIN");
}

#[test]
fn a_response_that_does_not_fit_is_truncated() {
    let table = table();
    // Every pool answer fits 512 bytes; a lowered floor shows TC.
    let config = AnswerConfig {
        edns_min_payload: 64,
        ..config()
    };
    let mut rng = SmallRng::seed_from_u64(9);
    let ask = Ask::edns(80);
    let reply = udp(&table, &config, "2.pool.ntp.org", AAAA, &ask, &mut rng);
    assert!(reply.tc, "TC set: {reply:#?}");
    assert!(reply.answer.is_empty());
    assert!(
        reply.question.is_some(),
        "the question stays so the client can retry"
    );
    assert!(reply.edns.is_some(), "OPT stays");
    assert!(reply.size <= 80);
    // The same over TCP: the full answer.
    let reply = run(
        &table,
        &config,
        "2.pool.ntp.org",
        AAAA,
        &ask,
        Transport::Tcp,
        &mut rng,
    );
    assert!(!reply.tc);
    assert_eq!(reply.answer.len(), 4);
}

/// Over many queries of every pool name: never more than max_hosts, never
/// a duplicate, and every address belongs to the zone or a parent.
#[test]
fn never_more_than_max_hosts_never_a_duplicate() {
    let table = table();
    let config = config();
    let mut rng = SmallRng::seed_from_u64(11);
    // Each name with its zone and the zone's parents (the top-up may
    // reach them), read from the snapshot the table was loaded from.
    let names: [(&str, &[&str]); 8] = [
        ("pool.ntp.org", &["@"]),
        ("0.pool.ntp.org", &["@"]),
        ("2.pool.ntp.org", &["@"]),
        ("de.pool.ntp.org", &["de", "europe", "@"]),
        ("3.de.pool.ntp.org", &["de", "europe", "@"]),
        ("nz.pool.ntp.org", &["nz", "oceania", "@"]),
        ("2.za.pool.ntp.org", &["za", "africa", "@"]),
        ("oceania.pool.ntp.org", &["oceania", "@"]),
    ];
    let snapshot: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::example_snapshot()).expect("snapshot"),
    )
    .expect("snapshot JSON");
    let address_of: std::collections::HashMap<i64, String> = snapshot["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| {
            (
                s["id"].as_i64().expect("id"),
                s["address"].as_str().expect("address").to_string(),
            )
        })
        .collect();
    for (name, zones) in names {
        let allowed: HashSet<String> = zones
            .iter()
            .flat_map(|zone| {
                snapshot["zones"][*zone]["servers"]
                    .as_array()
                    .unwrap_or_else(|| panic!("zone {zone} in the snapshot"))
                    .iter()
                    .map(|id| address_of[&id.as_i64().expect("server id")].clone())
            })
            .collect();
        for qtype in [A, AAAA] {
            let mut answered = 0;
            for _ in 0..500 {
                let reply = udp(&table, &config, name, qtype, &Ask::default(), &mut rng);
                assert!(reply.answer.len() <= 4);
                let distinct: HashSet<_> = reply.answer_data().into_iter().collect();
                assert_eq!(distinct.len(), reply.answer.len(), "duplicate in {name}");
                for address in &distinct {
                    // The wire text of an address is the snapshot's form
                    // (parsed, so 2001:db8::1 and 2001:0db8::1 agree).
                    let ip: std::net::IpAddr = address.parse().expect("an address");
                    assert!(
                        allowed
                            .iter()
                            .any(|a| a.parse::<std::net::IpAddr>().ok() == Some(ip)),
                        "{name} {qtype}: {address} is in none of {zones:?}"
                    );
                }
                answered += reply.answer.len();
            }
            if qtype == A {
                assert!(answered > 0, "{name}: no address at all");
            }
        }
    }
}

/// The SOA of a negative answer: owned by the origin (whatever the depth
/// of the name asked), the negative TTL (the lesser of the SOA's TTL and
/// MINIMUM, RFC 2308; the SOA as an answer keeps its own), the same data
/// as the apex SOA, names compressed against the question (header,
/// question and a SOA of 51 bytes: "ns1" and "hostmaster" each followed
/// by a pointer).
#[test]
fn negative_answers_carry_the_origins_soa_compressed() {
    let snapshot = std::fs::read_to_string(support::example_snapshot()).unwrap();
    assert!(snapshot.contains("\"minimum\": 3600"));
    let snapshot = snapshot.replace("\"minimum\": 3600", "\"minimum\": 300");
    let table = timepool::dns::zone::load_bytes(snapshot.as_bytes(), "minimum 300").unwrap();
    let config = AnswerConfig::default();
    let mut rng = SmallRng::seed_from_u64(7);
    for (name, qtype, rcode, owner, ttl, size) in [
        ("a.b.c.PooL.ntp.org", A, "NXDOMAIN", "PooL.ntp.org", 300, 87),
        (
            "nope.pool.ntp.org",
            AAAA,
            "NXDOMAIN",
            "pool.ntp.org",
            300,
            86,
        ),
        ("de.pool.ntp.org", TXT, "NOERROR", "pool.ntp.org", 300, 84),
        ("pool.ntp.org", SOA, "NOERROR", "pool.ntp.org", 3600, 81),
    ] {
        let reply = udp(&table, &config, name, qtype, &Ask::default(), &mut rng);
        assert_eq!(reply.rcode, rcode, "{name}");
        let soa = reply
            .answer
            .iter()
            .chain(reply.authority.iter())
            .find(|rr| rr.rtype == "SOA")
            .unwrap_or_else(|| panic!("{name}: a SOA in {reply:#?}"));
        assert_eq!(soa.owner, owner, "{name}");
        assert_eq!(soa.ttl, ttl, "{name}");
        // The names point into the question, so they have its case.
        assert_eq!(
            soa.data.to_lowercase(),
            "ns1.pool.ntp.org. hostmaster.pool.ntp.org. 1 5400 5400 1209600 300",
            "{name}"
        );
        assert_eq!(reply.size, size, "{name}: size of the response");
    }
}

/// A long NSID that would not fit beside a long question in a 512-byte
/// response is left out of the OPT record; the response is still sent,
/// with ECS. A short name gets it.
#[test]
fn an_nsid_that_does_not_fit_is_left_out_not_the_response() {
    let table = table();
    let config = AnswerConfig {
        nsid: Some(NsidOption::new(&[b'n'; NsidOption::MAX_LEN]).unwrap()),
        ..AnswerConfig::default()
    };
    let mut rng = SmallRng::seed_from_u64(3);
    let ask = Ask {
        nsid: true,
        subnet: Some((56, "2001:db8:1:2300::".parse().unwrap())),
        ..Ask::edns(512)
    };
    let long = format!(
        "{}.{}.{}.{}.pool.ntp.org",
        "a".repeat(60),
        "b".repeat(60),
        "c".repeat(60),
        "d".repeat(50)
    );
    let reply = udp(&table, &config, &long, A, &ask, &mut rng);
    assert_eq!(reply.rcode, "NXDOMAIN");
    assert!(reply.size <= 512, "{}", reply.size);
    let edns = reply.edns.expect("OPT");
    assert_eq!(edns.nsid, None, "no room for the NSID");
    assert!(edns.subnet.is_some(), "ECS echoed");
    let reply = udp(&table, &config, "de.pool.ntp.org", A, &ask, &mut rng);
    assert_eq!(reply.edns.expect("OPT").nsid.map(|n| n.len()), Some(255));
}
