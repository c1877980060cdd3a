//! A small MaxMind DB (`.mmdb`) writer for Country-style records, so the
//! project can make its own deterministic test databases.
//!
//! Format (MaxMind DB spec 2.0): a binary search tree over the address bits
//! (`node_count` nodes, two records each of 24, 28 or 32 bits), 16 zero
//! bytes, the data section (one map per distinct record), then the marker
//! `\xAB\xCD\xEFMaxMind.com` and the metadata map. The tree is always IPv6;
//! IPv4 networks live at ::/96, and ::ffff:0:0/96, 2001::/32 and 2002::/16
//! point at that subtree, as MaxMind's own writers do.
//!
//! A record value below `node_count` is a node number, `node_count` itself
//! means "no data", and `node_count + 16 + offset` points at the data
//! section `offset`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use super::Continent;

/// The data written for one network: MaxMind's Country schema, trimmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryRecord {
    /// `country.iso_code`, any case (written in uppercase as MaxMind does).
    pub country: Option<[u8; 2]>,
    /// `registered_country.iso_code`.
    pub registered_country: Option<[u8; 2]>,
    /// `continent.code`.
    pub continent: Option<Continent>,
}

/// Search tree record width in bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordSize {
    Bits24,
    Bits28,
    Bits32,
}

impl RecordSize {
    fn bits(self) -> u32 {
        match self {
            RecordSize::Bits24 => 24,
            RecordSize::Bits28 => 28,
            RecordSize::Bits32 => 32,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmdbWriteError(pub String);

impl fmt::Display for MmdbWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mmdb writer: {}", self.0)
    }
}

impl std::error::Error for MmdbWriteError {}

/// IPv6 ranges pointed at the IPv4 subtree: (first address, prefix length).
const IPV4_ALIASES: [(u128, u8); 3] = [
    (0xffff_0000_0000, 96), // ::ffff:0:0/96, IPv4-mapped
    (0x2001 << 112, 32),    // 2001::/32, Teredo
    (0x2002 << 112, 16),    // 2002::/16, 6to4
];

/// A child slot of a tree node while building.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Empty,
    Node(u32),
    /// Index into the distinct records.
    Data(u32),
}

pub struct MmdbWriter {
    database_type: String,
    description: String,
    build_epoch: u64,
    record_size: Option<RecordSize>,
    /// An IPv4-only file (`ip_version` 4, a 32-bit tree) instead of IPv6.
    ipv4_only: bool,
    /// (first address in the IPv6 tree, prefix length in the IPv6 tree).
    /// In an IPv4-only file, IPv4 networks are kept the same way and moved
    /// to the top of the 128 bits when the tree is built.
    networks: Vec<(u128, u8, CountryRecord)>,
}

impl MmdbWriter {
    /// `build_epoch` is fixed by the caller so the output is deterministic.
    pub fn new(database_type: &str, description: &str, build_epoch: u64) -> MmdbWriter {
        MmdbWriter {
            database_type: database_type.to_owned(),
            description: description.to_owned(),
            build_epoch,
            record_size: None,
            ipv4_only: false,
            networks: Vec::new(),
        }
    }

    /// Writes an IPv4-only file (`ip_version` 4), as some third-party
    /// databases are; IPv6 networks are then refused.
    pub fn ipv4_only(mut self) -> MmdbWriter {
        self.ipv4_only = true;
        self
    }

    /// Forces a record size; by default the smallest that fits is used.
    pub fn with_record_size(mut self, record_size: RecordSize) -> MmdbWriter {
        self.record_size = Some(record_size);
        self
    }

    /// Adds a network; it must be aligned on its prefix and, for IPv6, stay
    /// out of ::/96 (the IPv4 space) and the alias ranges.
    pub fn insert(
        &mut self,
        network: IpAddr,
        prefix_len: u8,
        record: CountryRecord,
    ) -> Result<(), MmdbWriteError> {
        let (start, tree_prefix_len) = match network {
            IpAddr::V4(v4) => {
                if prefix_len > 32 {
                    return Err(MmdbWriteError(format!(
                        "{network}/{prefix_len}: prefix > 32"
                    )));
                }
                (u128::from(u32::from(v4)), 96 + prefix_len)
            }
            IpAddr::V6(_) if self.ipv4_only => {
                return Err(MmdbWriteError(format!(
                    "{network}/{prefix_len}: IPv6 network in an IPv4-only file"
                )));
            }
            IpAddr::V6(v6) => {
                let start = u128::from(v6);
                if prefix_len == 0 || prefix_len > 128 {
                    return Err(MmdbWriteError(format!(
                        "{network}/{prefix_len}: IPv6 prefix must be 1..=128"
                    )));
                }
                let reserved = std::iter::once((0u128, 96u8)).chain(IPV4_ALIASES);
                for (reserved_start, reserved_len) in reserved {
                    let shared = prefix_len.min(reserved_len);
                    if prefix_bits(start, shared) == prefix_bits(reserved_start, shared) {
                        return Err(MmdbWriteError(format!(
                            "{network}/{prefix_len}: overlaps the IPv4 space or an alias of it"
                        )));
                    }
                }
                (start, prefix_len)
            }
        };
        if prefix_bits(start, tree_prefix_len) != start {
            return Err(MmdbWriteError(format!(
                "{network}/{prefix_len}: bits set past the prefix"
            )));
        }
        self.networks.push((start, tree_prefix_len, record));
        Ok(())
    }

    /// The whole file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, MmdbWriteError> {
        // Distinct records, in a fixed order, each written once.
        let records: BTreeMap<CountryRecord, u32> = self
            .networks
            .iter()
            .map(|&(_, _, record)| (record, 0))
            .collect();
        let record_index: BTreeMap<CountryRecord, u32> = records
            .keys()
            .enumerate()
            .map(|(index, &record)| (record, index as u32))
            .collect();

        let mut data_section = Vec::new();
        let mut data_offsets = Vec::with_capacity(record_index.len());
        for record in record_index.keys() {
            data_offsets.push(data_section.len());
            encode_record(&mut data_section, record);
        }

        // Nodes are numbered in creation order, the root is node 0; sorting
        // the networks first makes the numbering independent of insert order.
        let mut sorted = self.networks.clone();
        sorted.sort_unstable();
        let mut nodes: Vec<[Slot; 2]> = vec![[Slot::Empty; 2]];
        for &(start, prefix_len, record) in &sorted {
            let data = Slot::Data(record_index[&record]);
            let network = format!("{}/{prefix_len} (IPv6 tree)", IpAddr::V6(start.into()));
            let (start, prefix_len) = if self.ipv4_only {
                // The 32-bit tree walks the IPv4 bits from the top.
                (start << 96, prefix_len - 96)
            } else {
                (start, prefix_len)
            };
            if prefix_len == 0 {
                return Err(MmdbWriteError(format!(
                    "{network}: the tree root must be a node"
                )));
            }
            set_slot(&mut nodes, start, prefix_len, data, &network)?;
        }
        // Aliases: point the alias ranges at the ::/96 slot (the IPv4 root).
        if self.ipv4_only {
            // No IPv6 space, no aliases.
        } else if let Some(ipv4_root) = slot_at(&nodes, 0, 96).filter(|&slot| slot != Slot::Empty) {
            for (alias_start, alias_prefix_len) in IPV4_ALIASES {
                let network = format!(
                    "alias {}/{alias_prefix_len}",
                    IpAddr::V6(alias_start.into())
                );
                set_slot(
                    &mut nodes,
                    alias_start,
                    alias_prefix_len,
                    ipv4_root,
                    &network,
                )?;
            }
        }

        let node_count = nodes.len() as u64;
        let largest_record = node_count + 16 + data_section.len() as u64;
        let record_size = match self.record_size {
            Some(size) => size,
            None if largest_record < 1 << 24 => RecordSize::Bits24,
            None if largest_record < 1 << 28 => RecordSize::Bits28,
            None => RecordSize::Bits32,
        };
        if largest_record >= 1u64 << record_size.bits() {
            return Err(MmdbWriteError(format!(
                "record value {largest_record} does not fit in {} bits",
                record_size.bits()
            )));
        }

        let node_bytes = record_size.bits() as usize / 4;
        let mut out = Vec::with_capacity(nodes.len() * node_bytes + 16 + data_section.len() + 512);
        for node in &nodes {
            let [left, right] = node.map(|slot| match slot {
                Slot::Empty => node_count as u32,
                Slot::Node(number) => number,
                Slot::Data(index) => {
                    (node_count as usize + 16 + data_offsets[index as usize]) as u32
                }
            });
            write_node(&mut out, record_size, left, right);
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&data_section);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        self.encode_metadata(&mut out, node_count as u32, record_size);
        Ok(out)
    }

    fn encode_metadata(&self, out: &mut Vec<u8>, node_count: u32, record_size: RecordSize) {
        write_control(out, TYPE_MAP, 9);
        write_string(out, "binary_format_major_version");
        write_uint(out, TYPE_UINT16, 2);
        write_string(out, "binary_format_minor_version");
        write_uint(out, TYPE_UINT16, 0);
        write_string(out, "build_epoch");
        write_uint(out, TYPE_UINT64, self.build_epoch);
        write_string(out, "database_type");
        write_string(out, &self.database_type);
        write_string(out, "description");
        write_control(out, TYPE_MAP, 1);
        write_string(out, "en");
        write_string(out, &self.description);
        write_string(out, "ip_version");
        write_uint(out, TYPE_UINT16, if self.ipv4_only { 4 } else { 6 });
        write_string(out, "languages");
        write_control(out, TYPE_ARRAY, 1);
        write_string(out, "en");
        write_string(out, "node_count");
        write_uint(out, TYPE_UINT32, u64::from(node_count));
        write_string(out, "record_size");
        write_uint(out, TYPE_UINT16, u64::from(record_size.bits()));
    }
}

/// `value` with every bit past `prefix_len` cleared.
fn prefix_bits(value: u128, prefix_len: u8) -> u128 {
    match u128::MAX.checked_shl(128 - u32::from(prefix_len)) {
        Some(mask) => value & mask,
        None => 0,
    }
}

fn bit(value: u128, depth: u8) -> usize {
    ((value >> (127 - u32::from(depth))) & 1) as usize
}

/// The slot reached by the first `prefix_len` bits of `start`, if the path
/// exists (`prefix_len` >= 1).
fn slot_at(nodes: &[[Slot; 2]], start: u128, prefix_len: u8) -> Option<Slot> {
    let mut node = 0usize;
    for depth in 0..prefix_len - 1 {
        match nodes[node][bit(start, depth)] {
            Slot::Node(next) => node = next as usize,
            _ => return None,
        }
    }
    Some(nodes[node][bit(start, prefix_len - 1)])
}

/// Sets the slot of network `start/prefix_len` (`prefix_len` >= 1),
/// creating nodes on the way; refuses to nest networks.
fn set_slot(
    nodes: &mut Vec<[Slot; 2]>,
    start: u128,
    prefix_len: u8,
    value: Slot,
    network: &str,
) -> Result<(), MmdbWriteError> {
    let mut node = 0usize;
    for depth in 0..prefix_len - 1 {
        let direction = bit(start, depth);
        node = match nodes[node][direction] {
            Slot::Node(next) => next as usize,
            Slot::Empty => {
                let next = nodes.len();
                nodes.push([Slot::Empty; 2]);
                nodes[node][direction] = Slot::Node(next as u32);
                next
            }
            Slot::Data(_) => {
                return Err(MmdbWriteError(format!(
                    "{network} lies inside a network inserted before"
                )));
            }
        };
    }
    let direction = bit(start, prefix_len - 1);
    if nodes[node][direction] != Slot::Empty {
        return Err(MmdbWriteError(format!(
            "{network} overlaps a network inserted before"
        )));
    }
    nodes[node][direction] = value;
    Ok(())
}

fn write_node(out: &mut Vec<u8>, record_size: RecordSize, left: u32, right: u32) {
    match record_size {
        RecordSize::Bits24 => {
            out.extend_from_slice(&left.to_be_bytes()[1..]);
            out.extend_from_slice(&right.to_be_bytes()[1..]);
        }
        RecordSize::Bits28 => {
            // [left low 24 bits][left high 4 | right high 4][right low 24 bits]
            out.extend_from_slice(&left.to_be_bytes()[1..]);
            out.push((((left >> 24) & 0x0F) << 4) as u8 | ((right >> 24) & 0x0F) as u8);
            out.extend_from_slice(&right.to_be_bytes()[1..]);
        }
        RecordSize::Bits32 => {
            out.extend_from_slice(&left.to_be_bytes());
            out.extend_from_slice(&right.to_be_bytes());
        }
    }
}

// Data section type numbers (spec section "Output Data Types").
const TYPE_STRING: u8 = 2;
const TYPE_UINT16: u8 = 5;
const TYPE_UINT32: u8 = 6;
const TYPE_MAP: u8 = 7;
const TYPE_UINT64: u8 = 9;
const TYPE_ARRAY: u8 = 11;

/// Control byte: type in the top 3 bits (0 = extended: the type minus 7
/// follows in the next byte), size in the low 5 bits, with 1 to 3 more size
/// bytes for sizes of 29 and up.
fn write_control(out: &mut Vec<u8>, type_number: u8, size: usize) {
    let (size_code, extra) = match size {
        0..29 => (size as u8, Vec::new()),
        29..285 => (29, vec![(size - 29) as u8]),
        285..65_821 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if type_number <= 7 {
        out.push(type_number << 5 | size_code);
    } else {
        out.push(size_code);
        out.push(type_number - 7);
    }
    out.extend_from_slice(&extra);
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    write_control(out, TYPE_STRING, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// Unsigned integers are big-endian without leading zero bytes.
fn write_uint(out: &mut Vec<u8>, type_number: u8, value: u64) {
    let bytes = value.to_be_bytes();
    let first_used = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    write_control(out, type_number, bytes.len() - first_used);
    out.extend_from_slice(&bytes[first_used..]);
}

fn write_iso_code(out: &mut Vec<u8>, code: [u8; 2]) {
    let upper = [code[0].to_ascii_uppercase(), code[1].to_ascii_uppercase()];
    write_string(out, std::str::from_utf8(&upper).unwrap_or("??"));
}

/// {continent: {code}, country: {iso_code}, registered_country: {iso_code}},
/// absent fields left out.
fn encode_record(out: &mut Vec<u8>, record: &CountryRecord) {
    let field_count = usize::from(record.continent.is_some())
        + usize::from(record.country.is_some())
        + usize::from(record.registered_country.is_some());
    write_control(out, TYPE_MAP, field_count);
    if let Some(continent) = record.continent {
        write_string(out, "continent");
        write_control(out, TYPE_MAP, 1);
        write_string(out, "code");
        write_string(out, continent.code());
    }
    if let Some(country) = record.country {
        write_string(out, "country");
        write_control(out, TYPE_MAP, 1);
        write_string(out, "iso_code");
        write_iso_code(out, country);
    }
    if let Some(country) = record.registered_country {
        write_string(out, "registered_country");
        write_control(out, TYPE_MAP, 1);
        write_string(out, "iso_code");
        write_iso_code(out, country);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_follow_the_spec() {
        let check = |type_number: u8, size: usize, expected: &[u8]| {
            let mut out = Vec::new();
            write_control(&mut out, type_number, size);
            assert_eq!(out, expected, "type {type_number} size {size}");
        };
        check(TYPE_STRING, 2, &[0x42]);
        check(TYPE_MAP, 3, &[0xE3]);
        check(TYPE_STRING, 29, &[0x5D, 0x00]);
        check(TYPE_STRING, 300, &[0x5E, 0x00, 0x0F]);
        check(TYPE_STRING, 65_821, &[0x5F, 0x00, 0x00, 0x00]);
        check(TYPE_UINT64, 8, &[0x08, 0x02]);
        check(TYPE_ARRAY, 1, &[0x01, 0x04]);
    }

    #[test]
    fn uints_drop_leading_zero_bytes() {
        let mut out = Vec::new();
        write_uint(&mut out, TYPE_UINT32, 0x0001_0203);
        assert_eq!(out, [0xC3, 0x01, 0x02, 0x03]);
        out.clear();
        write_uint(&mut out, TYPE_UINT16, 0);
        assert_eq!(out, [0xA0]);
    }

    #[test]
    fn packed_28_bit_nodes() {
        let mut out = Vec::new();
        write_node(&mut out, RecordSize::Bits28, 0x0123_4567, 0x089A_BCDE);
        assert_eq!(out, [0x23, 0x45, 0x67, 0x18, 0x9A, 0xBC, 0xDE]);
    }

    #[test]
    fn refuses_nested_and_reserved_networks() {
        let record = CountryRecord {
            country: Some(*b"de"),
            registered_country: None,
            continent: Some(Continent::Europe),
        };
        let mut writer = MmdbWriter::new("t", "t", 0);
        writer
            .insert("10.0.0.0".parse().unwrap(), 8, record)
            .unwrap();
        writer
            .insert("10.1.0.0".parse().unwrap(), 16, record)
            .unwrap();
        assert!(writer.to_bytes().is_err());

        let mut writer = MmdbWriter::new("t", "t", 0);
        assert!(
            writer
                .insert("2002:a00::".parse().unwrap(), 24, record)
                .is_err()
        );
        assert!(writer.insert("::1".parse().unwrap(), 128, record).is_err());
        assert!(
            writer
                .insert("10.0.0.1".parse().unwrap(), 8, record)
                .is_err()
        );
    }
}
