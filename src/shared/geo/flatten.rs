//! Reads a MaxMind database with the `maxminddb` crate and flattens its
//! search tree into a [`GeoTable`].
//!
//! The tree of an IPv6 database holds the IPv4 space at ::/96, and MaxMind's
//! writers point other IPv6 ranges at that same subtree (aliases):
//! ::ffff:0:0/96 (IPv4-mapped), 2001::/32 (Teredo), 2002::/16 (6to4).
//! `Reader::networks` with default options walks ::/96 once and skips the
//! aliases, so every IPv4 network lands once, in the IPv4 table. Each alias
//! range found in the file becomes one marker entry in the IPv6 table, so
//! `lookup_v6` redirects it to the IPv4 table as `maxminddb::Reader::lookup`
//! does.

use std::collections::HashMap;
use std::net::IpAddr;

use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;

use super::{Continent, CountryCode, GeoError, GeoTable, Location, TableBuilder};

/// The fields we read from a Country or City record; everything else is
/// skipped by the decoder without being materialised.
#[derive(Deserialize)]
struct GeoRecord<'a> {
    #[serde(borrow, default)]
    country: Option<CountryRecord<'a>>,
    /// The country the network is registered in; used when `country` (where
    /// the users are) is missing, as for some anycast and satellite networks.
    #[serde(borrow, default)]
    registered_country: Option<CountryRecord<'a>>,
    #[serde(borrow, default)]
    continent: Option<ContinentRecord<'a>>,
}

#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct ContinentRecord<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

/// IPv6 ranges that MaxMind's writers alias to the IPv4 subtree: the text
/// form (for `Reader::within`), first address and prefix length.
const ALIAS_CANDIDATES: [(&str, u128, u8); 3] = [
    ("::ffff:0:0/96", 0xffff_0000_0000, 96),
    ("2001::/32", 0x2001 << 112, 32),
    ("2002::/16", 0x2002 << 112, 16),
];

/// ::/96, where an IPv6 database keeps the IPv4 space.
const IPV4_SUBTREE: (u128, u8) = (0, 96);

/// ::ffff:0:0/96 is looked up as IPv4 whether or not the file aliases it.
const IPV4_MAPPED: (u128, u8) = (0xffff_0000_0000, 96);

pub(super) fn flatten(bytes: Vec<u8>, source_name: &str) -> Result<GeoTable, GeoError> {
    let invalid = |detail: String| GeoError::invalid(source_name, detail);

    let reader = Reader::from_source(bytes.as_slice())
        .map_err(|error| invalid(format!("not a MaxMind DB file: {error}")))?;
    let metadata = reader.metadata();
    let is_ipv6_database = metadata.ip_version == 6;
    check_search_tree(&bytes, metadata)
        .map_err(|detail| invalid(format!("search tree: {detail}")))?;
    // A binary tree of N internal nodes has at most N + 1 leaves. A corrupt
    // tree whose records point back up could otherwise yield (nearly) 2^128
    // networks; stop early instead.
    let max_networks = metadata.node_count as usize + 1;

    let mut builder = TableBuilder::new();
    // Many networks share one record (City has ~3M networks, far fewer
    // records): decode each record once, keyed by its data offset.
    let mut location_by_offset: HashMap<usize, u16> = HashMap::new();
    let mut networks_seen = 0usize;

    let networks = reader
        .networks(WithinOptions::default())
        .map_err(|error| invalid(format!("cannot walk the search tree: {error}")))?;
    for item in networks {
        let item = item.map_err(|error| invalid(format!("search tree: {error}")))?;
        networks_seen += 1;
        if networks_seen > max_networks {
            return Err(invalid(format!(
                "search tree yields more than {max_networks} networks for {} nodes \
                 (a cycle or corrupt records)",
                metadata.node_count
            )));
        }
        let network = item
            .network()
            .map_err(|error| invalid(format!("search tree: {error}")))?;
        let Some(offset) = item.offset() else {
            continue;
        };
        let location_id = match location_by_offset.get(&offset) {
            Some(&id) => id,
            None => {
                let record: GeoRecord = item
                    .decode()
                    .map_err(|error| invalid(format!("record of {network}: {error}")))?
                    .ok_or_else(|| invalid(format!("record of {network} is missing")))?;
                let location = location_of(&record)
                    .map_err(|detail| invalid(format!("record of {network}: {detail}")))?;
                let id = builder.location_id(location).map_err(invalid)?;
                location_by_offset.insert(offset, id);
                id
            }
        };
        match network.ip() {
            IpAddr::V4(start) => builder.push_v4(u32::from(start), network.prefix(), location_id),
            IpAddr::V6(start) => builder.push_v6(u128::from(start), network.prefix(), location_id),
        }
    }

    let mut aliases = Vec::new();
    if builder.has_v4() {
        if is_ipv6_database {
            aliases.push(IPV4_SUBTREE);
            for (text, start, prefix_len) in ALIAS_CANDIDATES {
                if is_ipv4_alias(&reader, text, source_name)? {
                    aliases.push((start, prefix_len));
                }
            }
        }
        if !aliases.contains(&IPV4_MAPPED) {
            aliases.push(IPV4_MAPPED);
        }
    }

    let database_type = metadata.database_type.clone();
    let build_date = date_of_epoch(metadata.build_epoch);
    builder
        .build(&aliases, |v4_count, v6_count| {
            format!(
                "{database_type} built {build_date}, {} networks ({v4_count} IPv4, {v6_count} IPv6)",
                millions(v4_count + v6_count)
            )
        })
        .map_err(invalid)
}

/// True when the IPv6 range `text` leads to the IPv4 subtree: the default
/// walk (aliases skipped) finds nothing there, the walk with aliases does.
fn is_ipv4_alias(reader: &Reader<&[u8]>, text: &str, source_name: &str) -> Result<bool, GeoError> {
    let walk_error = |error: maxminddb::MaxMindDbError| {
        GeoError::invalid(source_name, format!("{text}: {error}"))
    };
    let range = text
        .parse()
        .map_err(|error| GeoError::invalid(source_name, format!("internal: {text}: {error}")))?;
    let mut without_aliases = reader
        .within(range, WithinOptions::default())
        .map_err(walk_error)?;
    if without_aliases.next().is_some() {
        return Ok(false);
    }
    let with_aliases = WithinOptions::default().include_aliased_networks();
    let mut aliased = reader.within(range, with_aliases).map_err(walk_error)?;
    Ok(aliased.next().is_some())
}

/// Walks the search tree once, counting node visits, before `maxminddb`
/// walks it: its walk has no work limit, and a corrupt tree whose records
/// point at shared nodes holds up to 2^128 paths (it would run "forever").
/// A valid tree is visited in at most 4 * node_count steps: every node
/// once, plus the IPv4 subtree again under each of the 3 aliases.
fn check_search_tree(bytes: &[u8], metadata: &maxminddb::Metadata) -> Result<(), String> {
    let node_count = metadata.node_count as usize;
    let node_bytes = usize::from(metadata.record_size) / 4;
    let tree = node_count
        .checked_mul(node_bytes)
        .and_then(|tree_bytes| bytes.get(..tree_bytes))
        .ok_or("the tree extends past the end of the file")?;
    let record_size = metadata.record_size;
    let read_record = |node: usize, side: usize| -> Result<usize, String> {
        let offset = node * node_bytes;
        let node = tree
            .get(offset..offset + node_bytes)
            .ok_or_else(|| format!("node {node} is past the tree"))?;
        let value = match (record_size, side) {
            (24, 0) => u32::from_be_bytes([0, node[0], node[1], node[2]]),
            (24, _) => u32::from_be_bytes([0, node[3], node[4], node[5]]),
            // 28 bits: [left low 24][left high 4 | right high 4][right low 24]
            (28, 0) => u32::from_be_bytes([node[3] >> 4, node[0], node[1], node[2]]),
            (28, _) => u32::from_be_bytes([node[3] & 0x0F, node[4], node[5], node[6]]),
            (32, 0) => u32::from_be_bytes([node[0], node[1], node[2], node[3]]),
            (32, _) => u32::from_be_bytes([node[4], node[5], node[6], node[7]]),
            _ => return Err(format!("record size {record_size} is not 24, 28 or 32")),
        };
        Ok(value as usize)
    };
    let address_bits = if metadata.ip_version == 6 { 128 } else { 32 };
    let visit_budget = node_count.saturating_mul(4).saturating_add(256);
    let mut visits = 0usize;
    // (node, depth): depth bits of the address are decided above `node`.
    let mut stack: Vec<(usize, u32)> = vec![(0, 0)];
    while let Some((node, depth)) = stack.pop() {
        visits += 1;
        if visits > visit_budget {
            return Err(format!(
                "more than {visit_budget} node visits for {node_count} nodes \
                 (records point at shared nodes: corrupt)"
            ));
        }
        if depth >= address_bits {
            return Err(format!(
                "node {node} lies deeper than {address_bits} bits (a cycle)"
            ));
        }
        for side in 0..2 {
            let child = read_record(node, side)?;
            if child < node_count {
                stack.push((child, depth + 1));
            }
        }
    }
    Ok(())
}

fn location_of(record: &GeoRecord) -> Result<Location, String> {
    let iso_code = record
        .country
        .as_ref()
        .and_then(|country| country.iso_code)
        .or_else(|| {
            record
                .registered_country
                .as_ref()
                .and_then(|country| country.iso_code)
        });
    let country = match iso_code {
        None => None,
        Some(code) => Some(
            CountryCode::from_iso_code(code.as_bytes())
                .ok_or_else(|| format!("country iso_code {code:?} is not two letters"))?,
        ),
    };
    let continent = match record.continent.as_ref().and_then(|c| c.code) {
        None => None,
        Some(code) => Some(
            Continent::from_code(code.as_bytes())
                .ok_or_else(|| format!("unknown continent code {code:?}"))?,
        ),
    };
    Ok(Location { country, continent })
}

/// "3.1M" for 3_141_592; small counts as they are.
fn millions(count: usize) -> String {
    if count >= 100_000 {
        format!("{:.1}M", count as f64 / 1e6)
    } else {
        count.to_string()
    }
}

/// The UTC date (YYYY-MM-DD) of a Unix time, by Howard Hinnant's
/// days-to-civil algorithm (no date crate needed for one log line).
pub(crate) fn date_of_epoch(epoch_seconds: u64) -> String {
    let days = (epoch_seconds / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
