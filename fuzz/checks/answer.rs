//! The property the fuzz target checks, shared with `cargo test` (which
//! replays the corpus through it): any bytes in, and either no response or
//! a response that fits its size limit, keeps the query's ID, and parses
//! completely with the `domain` crate. Some inputs go through the rate
//! limited path (a limiter of one response per second, slip 2), so slipped
//! (TC or BADCOOKIE) and dropped responses are covered too.

use std::cell::RefCell;
use std::sync::OnceLock;

use domain::base::{Message, ParsedName};
use domain::rdata::AllRecordData;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use timepool::dns::answer::{
    AnswerConfig, Client, Context, RateLimit, Transport, respond_rate_limited, respond_with_outcome,
};
use timepool::dns::cookie::CookieSecrets;
use timepool::dns::rrl::{RateLimiter, RrlSettings};
use timepool::dns::wire::edns::NsidOption;
use timepool::dns::zone::ZoneTable;
use timepool::shared::geo::GeoTable;

fn table() -> &'static ZoneTable {
    static TABLE: OnceLock<ZoneTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let snapshot = include_bytes!("../zones/example.json");
        timepool::dns::zone::load_bytes(snapshot, "zones/example.json")
            .expect("the example snapshot is valid")
    })
}

fn geo() -> &'static GeoTable {
    static GEO: OnceLock<GeoTable> = OnceLock::new();
    GEO.get_or_init(|| {
        let database = include_bytes!("../tests/data/geo-test.mmdb");
        GeoTable::from_bytes(database.to_vec(), "tests/data/geo-test.mmdb")
            .expect("the test GeoIP database is valid")
    })
}

fn config() -> &'static AnswerConfig {
    static CONFIG: OnceLock<AnswerConfig> = OnceLock::new();
    CONFIG.get_or_init(|| AnswerConfig {
        identity: Some(b"fuzz".to_vec().into()),
        version: Some(b"fuzz-version".to_vec().into()),
        nsid: Some(NsidOption::new(b"fuzz-node").expect("a valid NSID")),
        ..AnswerConfig::default()
    })
}

thread_local! {
    static LIMITER: RefCell<RateLimiter> = RefCell::new(RateLimiter::new(
        &RrlSettings {
            slip: 2,
            table_size: 64,
            exempt: Vec::new(),
            ..RrlSettings::at_rate(1)
        },
        1,
    ));
}

/// The first byte picks the transport, the client's address and whether
/// UDP is rate limited; the rest is the packet.
pub fn check(data: &[u8]) {
    let Some((&selector, packet)) = data.split_first() else {
        return;
    };
    let transport = if selector & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let source = if selector & 2 == 0 {
        std::net::IpAddr::from([198, 51, 100, selector])
    } else {
        std::net::IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(selector)])
    };
    let cookies = CookieSecrets::single([7; 16]);
    let ctx = Context {
        table: table(),
        geo: geo(),
        config: config(),
        cookies: &cookies,
        now: 1_700_000_000,
    };
    let client = Client { source, transport };
    let mut rng = SmallRng::seed_from_u64(u64::from(selector));
    let mut out = [0u8; 16 * 1024];
    let answered = if transport == Transport::Udp && selector & 4 != 0 {
        LIMITER.with_borrow_mut(|limiter| {
            let limit = RateLimit {
                limiter,
                now_ms: u32::from(selector) * 100,
            };
            respond_rate_limited(&ctx, packet, client, &mut rng, &mut out, limit)
        })
    } else {
        respond_with_outcome(&ctx, packet, client, &mut rng, &mut out)
    };
    let Some((length, _)) = answered else {
        return;
    };
    if length == 0 {
        // Dropped by the rate limiter.
        return;
    }
    let limit = match transport {
        Transport::Udp => usize::from(config().edns_max_payload),
        Transport::Tcp => out.len(),
    };
    assert!(
        length <= limit,
        "response of {length} bytes over the limit {limit}"
    );
    assert!(length >= 12, "a response has a header");
    assert_eq!(&out[..2], &packet[..2], "the ID is echoed");
    let message = Message::from_octets(out[..length].to_vec()).expect("domain parses the header");
    let mut section = message.question();
    for question in &mut section {
        question.expect("domain parses the question");
    }
    let mut records = section.answer().expect("answer section");
    loop {
        for record in &mut records {
            let record = record.expect("domain parses the record");
            record
                .to_any_record::<AllRecordData<&[u8], ParsedName<&[u8]>>>()
                .expect("domain parses the record data");
        }
        match records.next_section() {
            Ok(Some(next)) => records = next,
            Ok(None) => break,
            Err(error) => panic!("domain cannot reach the next section: {error}"),
        }
    }
}
