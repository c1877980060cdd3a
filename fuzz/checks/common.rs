//! What the checks share: the example snapshot's table, the test GeoIP
//! database, an answer configuration, a query builder, and the check that
//! a response is well formed.

use std::sync::OnceLock;

use domain::base::{Message, ParsedName};
use domain::rdata::AllRecordData;
use timepool::dns::answer::{AnswerConfig, Context};
use timepool::dns::cookie::CookieSecrets;
use timepool::dns::wire::edns::NsidOption;
use timepool::dns::zone::ZoneTable;
use timepool::shared::geo::GeoTable;

pub fn table() -> &'static ZoneTable {
    static TABLE: OnceLock<ZoneTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let snapshot = include_bytes!("../../zones/example.json");
        timepool::dns::zone::load_bytes(snapshot, "zones/example.json")
            .expect("the example snapshot is valid")
    })
}

pub fn geo() -> &'static GeoTable {
    static GEO: OnceLock<GeoTable> = OnceLock::new();
    GEO.get_or_init(|| {
        let database = include_bytes!("../../tests/data/geo-test.mmdb");
        GeoTable::from_bytes(database.to_vec(), "tests/data/geo-test.mmdb")
            .expect("the test GeoIP database is valid")
    })
}

pub fn config() -> &'static AnswerConfig {
    static CONFIG: OnceLock<AnswerConfig> = OnceLock::new();
    CONFIG.get_or_init(|| AnswerConfig {
        identity: Some(b"fuzz".to_vec().into()),
        version: Some(b"fuzz-version".to_vec().into()),
        nsid: Some(NsidOption::new(b"fuzz-node").expect("a valid NSID")),
        ..AnswerConfig::default()
    })
}

/// The answer path's context over `table`, with the test GeoIP database,
/// [`config`] and a fixed clock.
pub fn context<'a>(table: &'a ZoneTable, cookies: &'a CookieSecrets) -> Context<'a> {
    Context {
        table,
        geo: geo(),
        config: config(),
        cookies,
        now: 1_700_000_000,
    }
}

/// A query for `name` (dotted, no trailing dot) and `qtype`, recursion
/// desired, with an OPT record (1232 bytes) carrying an ECS option for
/// `subnet` (an IPv4 /24) when given.
pub fn query(id: u16, name: &str, qtype: u16, subnet: Option<[u8; 3]>) -> Vec<u8> {
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let label = &label.as_bytes()[..label.len().min(63)];
        packet.push(label.len() as u8);
        packet.extend_from_slice(label);
    }
    packet.push(0);
    packet.extend_from_slice(&qtype.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    // OPT: root owner, type 41, payload size, rcode/version/flags, options.
    packet.push(0);
    packet.extend_from_slice(&41u16.to_be_bytes());
    packet.extend_from_slice(&1232u16.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 0]);
    match subnet {
        None => packet.extend_from_slice(&0u16.to_be_bytes()),
        Some(address) => {
            packet.extend_from_slice(&11u16.to_be_bytes());
            packet.extend_from_slice(&8u16.to_be_bytes());
            packet.extend_from_slice(&7u16.to_be_bytes());
            packet.extend_from_slice(&[0, 1, 24, 0]);
            packet.extend_from_slice(&address);
        }
    }
    packet
}

/// A response to `query`: within `limit`, with a header, the query's ID,
/// and every section and record parsed by the `domain` crate.
pub fn verify_response(query: &[u8], response: &[u8], limit: usize) {
    let length = response.len();
    assert!(
        length <= limit,
        "response of {length} bytes over the limit {limit}"
    );
    assert!(length >= 12, "a response has a header");
    assert_eq!(&response[..2], &query[..2], "the ID is echoed");
    let message = Message::from_octets(response.to_vec()).expect("domain parses the header");
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
