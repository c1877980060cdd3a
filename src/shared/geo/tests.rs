use std::net::IpAddr;

use super::*;

fn table(v4: &[(&str, u8, Location)], v6: &[(&str, u8, Location)]) -> GeoTable {
    let mut builder = TableBuilder::new();
    for &(text, prefix_len, location) in v4 {
        let id = builder.location_id(location).unwrap();
        let start: std::net::Ipv4Addr = text.parse().unwrap();
        builder.push_v4(u32::from(start), prefix_len, id);
    }
    for &(text, prefix_len, location) in v6 {
        let id = builder.location_id(location).unwrap();
        let start: std::net::Ipv6Addr = text.parse().unwrap();
        builder.push_v6(u128::from(start), prefix_len, id);
    }
    let aliases = [(0xffff_0000_0000, 96)];
    builder.build(&aliases, |_, _| "test".to_owned()).unwrap()
}

const DE: Location = Location {
    country: Some(CountryCode(*b"de")),
    continent: Some(Continent::Europe),
};
const US: Location = Location {
    country: Some(CountryCode(*b"us")),
    continent: Some(Continent::NorthAmerica),
};

fn check(table: &GeoTable, addr: &str, country: Option<&str>, prefix_len: u8) {
    let addr: IpAddr = addr.parse().unwrap();
    let found = table.lookup(addr);
    assert_eq!(
        (
            found.country.as_ref().map(CountryCode::as_str),
            found.prefix_len
        ),
        (country, prefix_len),
        "{addr}"
    );
}

#[test]
fn lookups_in_networks_and_gaps() {
    let table = table(
        &[
            ("10.0.0.0", 8, DE),
            ("11.0.0.0", 16, US),
            ("11.1.2.3", 32, DE),
        ],
        &[("2a01:4f8::", 32, DE), ("2a01:4f9::", 32, US)],
    );
    check(&table, "10.0.0.0", Some("de"), 8);
    check(&table, "10.255.255.255", Some("de"), 8);
    check(&table, "11.0.255.255", Some("us"), 16);
    check(&table, "11.1.2.3", Some("de"), 32);
    // 11.1.2.2: the /31 block 11.1.2.2-3 holds 11.1.2.3, the /32 is empty.
    check(&table, "11.1.2.2", None, 32);
    // 11.1.0.0: 11.1.0.0/23 is empty, 11.1.0.0/22 holds 11.1.2.3.
    check(&table, "11.1.0.0", None, 23);
    // 12.0.0.0: 12.0.0.0/6 is empty (8.0.0.0/6 holds 10/8 and 11/16).
    check(&table, "12.0.0.0", None, 6);
    check(&table, "0.0.0.1", None, 5);
    check(&table, "255.255.255.255", None, 1);
    check(&table, "2a01:4f8:ffff::1", Some("de"), 32);
    check(&table, "2a01:4f9::", Some("us"), 32);
    check(&table, "2a01:4fa::", None, 31);
    // 2a01:4f0::/28 reaches 2a01:4f8::, 2a01:4f0::/29 (4f0..4f7) holds nothing.
    check(&table, "2a01:4f7:ffff:ffff:ffff:ffff:ffff:ffff", None, 29);
    check(&table, "8000::", None, 1);
    // IPv4-mapped: looked up as IPv4, prefix in IPv6 bits.
    check(&table, "::ffff:10.1.2.3", Some("de"), 96 + 8);
    check(&table, "::ffff:12.0.0.0", None, 96 + 6);
}

#[test]
fn empty_table_is_nowhere_with_prefix_zero() {
    let table = GeoTable::empty();
    for addr in ["1.2.3.4", "::ffff:1.2.3.4", "2a01::1", "::"] {
        check(&table, addr, None, 0);
    }
    assert_eq!(table.network_count(), 0);
}

#[test]
fn builder_rejects_overlaps_and_misaligned_networks() {
    let mut builder = TableBuilder::new();
    builder.push_v4(0x0a00_0000, 8, 0);
    builder.push_v4(0x0a01_0000, 16, 0);
    let error = builder.build(&[], |_, _| String::new()).unwrap_err();
    assert!(error.contains("10.1.0.0/16 overlaps"), "{error}");

    let mut builder = TableBuilder::new();
    builder.push_v4(0x0a00_0001, 8, 0);
    let error = builder.build(&[], |_, _| String::new()).unwrap_err();
    assert!(error.contains("not aligned"), "{error}");
}

#[test]
fn country_codes() {
    assert_eq!(CountryCode::from_iso_code(b"GB"), Some(CountryCode(*b"gb")));
    assert_eq!(CountryCode::from_iso_code(b"G1"), None);
    assert_eq!(CountryCode::from_iso_code(b"GBR"), None);
    assert_eq!(CountryCode(*b"de").as_str(), "de");
}

#[test]
fn entries_are_8_and_24_bytes() {
    assert_eq!(size_of::<NetworkInfo>(), 4);
    assert_eq!(size_of::<Entry<u32>>(), 8);
    assert_eq!(size_of::<Entry<u128>>(), 24);
}

#[test]
fn dates_of_unix_times() {
    assert_eq!(flatten::date_of_epoch(0), "1970-01-01");
    assert_eq!(flatten::date_of_epoch(1_530_576_000), "2018-07-03");
    assert_eq!(flatten::date_of_epoch(951_782_400), "2000-02-29");
}
