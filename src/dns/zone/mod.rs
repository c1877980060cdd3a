//! The compiled zone table: what the answer path reads, built once per
//! snapshot and never changed (a reload builds a new one and swaps it).
//!
//! `compile.rs` builds it from a validated snapshot spec (and loads a
//! snapshot file or body into one). Everything an answer needs that does
//! not depend on the query is worked out there: names in lowercase wire format, a hash index from the name
//! relative to its origin to what lives there, per (zone, label, family)
//! candidate lists with alias tables, SOA and NS records encoded (a
//! response only fills in their compression pointers).
//!
//! Architecture invariant: the zone table knows the snapshot spec and the
//! wire format of names, and the geo module's country and continent types
//! (to map them to zones once, at load). It knows nothing of sockets,
//! clients or GeoIP databases, and nothing of the web layer.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

mod compile;

use crate::dns::select::{CandidateLists, Candidates, ListId};
use crate::dns::wire::packed::PackedRecords;
use crate::shared::dns_name;
use crate::shared::geo::{Continent, CountryCode};

pub use compile::{load_bytes, load_file};

/// An index of a zone in [`ZoneTable::zones`].
pub type ZoneId = u16;

/// What a name relative to an origin is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// A pool label: `@`, `de`, `2.europe`, an alias like `3.debian`.
    Pool {
        zone: ZoneId,
        /// 0 = the plain label, n + 1 = numbered label n.
        label: u8,
        /// Geo-targeted: the client's location picks the zone (only names
        /// of the global zone and its aliases).
        geo: bool,
        /// The origin's apex (SOA and NS live here).
        apex: bool,
    },
    /// `_country`: the debug name that tells a client how it was located.
    CountryDebug,
    /// `_status`: the node's version, name, snapshot and uptime.
    Status,
}

/// An origin with its SOA and NS records encoded.
#[derive(Debug)]
pub struct Origin {
    /// The origin in lowercase wire format, root label included.
    pub name: Box<[u8]>,
    /// Its dotted form, for logs and debug answers.
    pub display: Box<str>,
    /// The SOA record as an answer (its own TTL).
    pub soa_answer: PackedRecords,
    /// The SOA record of a negative answer (RFC 2308: TTL the lesser of
    /// the SOA's TTL and MINIMUM).
    pub soa_negative: PackedRecords,
    pub soa_ttl: u32,
    /// The NS records, in the snapshot's order.
    pub ns_records: PackedRecords,
    pub answer_ttl: u32,
    /// Owner, type, class, TTL and RDLENGTH of the A and AAAA records of
    /// an answer (owned by the question's name, `answer_ttl`).
    pub a_header: [u8; 12],
    pub aaaa_header: [u8; 12],
    pub max_hosts: usize,
    pub ipv6_everywhere: bool,
}

/// A server's address, ready to copy into A or AAAA RDATA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerAddress {
    pub octets: [u8; 16],
    pub is_v6: bool,
}

impl ServerAddress {
    pub fn ip(&self) -> IpAddr {
        if self.is_v6 {
            IpAddr::from(self.octets)
        } else {
            IpAddr::from([
                self.octets[0],
                self.octets[1],
                self.octets[2],
                self.octets[3],
            ])
        }
    }
}

/// The servers of one label of one zone, per address family: lists in
/// the table's [`CandidateLists`].
#[derive(Clone, Copy, Debug)]
pub struct LabelServers {
    pub v4: ListId,
    pub v6: ListId,
}

impl LabelServers {
    pub fn family(&self, family: Family) -> ListId {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }
}

/// The address family of an answer's records: A or AAAA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(address: &ServerAddress) -> Family {
        if address.is_v6 {
            Family::V6
        } else {
            Family::V4
        }
    }
}

/// A zone's name; its parent and labels are in [`ZoneTable`]'s links.
#[derive(Debug)]
pub struct Zone {
    pub name: Box<str>,
}

/// What the answer path reads of a zone, 8 bytes: its parent and where
/// its labels' lists are. All zones' links sit in one small array that
/// stays in the cache, apart from the names.
#[derive(Clone, Copy, Debug)]
struct ZoneLinks {
    /// [`NO_ZONE`] for the global zone.
    parent: ZoneId,
    label_count: u16,
    /// Index of label 0 in [`ZoneTable::label_servers`].
    first_label: u32,
}

/// A small, fast hasher for the short keys of the name index (FxHash's
/// multiply-rotate). The keys come from the snapshot and the lookups from
/// clients; a client cannot insert keys, so flooding is not a concern.
#[derive(Default, Clone, Copy)]
pub struct NameHasher(u64);

impl Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(K);
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type NameIndex = HashMap<Box<[u8]>, Node, BuildHasherDefault<NameHasher>>;

/// The result of looking a name up.
#[derive(Clone, Copy, Debug)]
pub enum Lookup<'t> {
    /// Under none of the origins: REFUSED.
    Outside,
    /// Under `origin`, which starts at `origin_offset` in the question name;
    /// `node` is `None` when nothing lives at the name (NXDOMAIN).
    Inside {
        origin: &'t Origin,
        origin_offset: usize,
        node: Option<Node>,
    },
}

#[derive(Debug)]
pub struct ZoneTable {
    pub serial: u32,
    /// When this table was compiled, that is loaded (unix seconds).
    pub compiled_at: u64,
    pub origins: Box<[Origin]>,
    pub servers: Box<[ServerAddress]>,
    /// The IPv4 servers' addresses by server index, 4 bytes each (zero for
    /// IPv6 servers): what A answers copy (see [`ZoneTable::rdata`]), in an
    /// array a quarter the size of `servers`, so more of it stays in the
    /// cache.
    ipv4_rdata: Box<[[u8; 4]]>,
    pub zones: Box<[Zone]>,
    pub global: ZoneId,
    /// Per zone, in the order of `zones`: parent and labels.
    links: Box<[ZoneLinks]>,
    /// The labels of every zone, zone after zone.
    label_servers: Box<[LabelServers]>,
    /// Every candidate list of the table.
    lists: CandidateLists,
    names: NameIndex,
    zone_ids: HashMap<Box<str>, ZoneId>,
    /// Zone of each two-letter country code (`aa`..`zz`), aliases followed
    /// (so GeoIP's `gb` is the pool's `uk`); [`NO_ZONE`] when none.
    country_zones: Box<[ZoneId]>,
    /// Zone of each continent, in the order of [`Continent::ALL`].
    continent_zones: [ZoneId; 7],
}

/// Marks "no such zone" in the precomputed maps.
const NO_ZONE: ZoneId = ZoneId::MAX;

fn country_slot(code: [u8; 2]) -> Option<usize> {
    let (a, b) = (code[0].to_ascii_lowercase(), code[1].to_ascii_lowercase());
    if !a.is_ascii_lowercase() || !b.is_ascii_lowercase() {
        return None;
    }
    Some(usize::from(a - b'a') * 26 + usize::from(b - b'a'))
}

impl ZoneTable {
    /// The zone of a country (GeoIP's code; `gb` gives the pool's `uk`).
    #[inline]
    pub fn country_zone(&self, country: CountryCode) -> Option<ZoneId> {
        let zone = *self.country_zones.get(country_slot(country.0)?)?;
        (zone != NO_ZONE).then_some(zone)
    }

    /// The zone of a continent.
    #[inline]
    pub fn continent_zone(&self, continent: Continent) -> Option<ZoneId> {
        let index = Continent::ALL.iter().position(|&c| c == continent)?;
        let zone = self.continent_zones[index];
        (zone != NO_ZONE).then_some(zone)
    }

    /// The zone with this name (`@`, `europe`, `de`), aliases not followed.
    pub fn zone_id(&self, name: &str) -> Option<ZoneId> {
        self.zone_ids.get(name).copied()
    }

    pub fn zone(&self, id: ZoneId) -> &Zone {
        &self.zones[usize::from(id)]
    }

    /// A server's address as A or AAAA record data; the family must be
    /// the server's.
    #[inline]
    pub fn rdata(&self, server: u32, family: Family) -> Option<&[u8]> {
        let server = server as usize;
        match family {
            Family::V6 => self.servers.get(server).map(|address| &address.octets[..]),
            Family::V4 => self.ipv4_rdata.get(server).map(|octets| &octets[..]),
        }
    }

    /// The parent of a zone (none for the global zone).
    #[inline]
    pub fn parent(&self, id: ZoneId) -> Option<ZoneId> {
        let parent = self.links.get(usize::from(id))?.parent;
        (parent != NO_ZONE).then_some(parent)
    }

    /// The servers of one family at a label of a zone; `None` when the
    /// zone has no such label.
    #[inline]
    pub fn candidates(&self, id: ZoneId, label: u8, family: Family) -> Option<Candidates<'_>> {
        let links = self.links.get(usize::from(id))?;
        if u16::from(label) >= links.label_count {
            return None;
        }
        let servers = self
            .label_servers
            .get(links.first_label as usize + usize::from(label))?;
        Some(self.lists.get(servers.family(family)))
    }

    /// Heap memory of the candidate lists, in bytes.
    pub fn lists_heap_bytes(&self) -> usize {
        self.lists.heap_bytes()
    }

    /// What a pool label name resolves to: an alias like `gb` gives the
    /// zone it stands for.
    pub fn resolve_zone_name(&self, name: &str) -> Option<ZoneId> {
        if name == "@" {
            return Some(self.global);
        }
        match self.names.get(dns_name::relative_wire(name).as_ref()) {
            Some(Node::Pool { zone, label: 0, .. }) => Some(*zone),
            _ => None,
        }
    }

    /// Look up a question name given in lowercase wire format, with the
    /// offsets of its labels. Does not allocate.
    pub fn lookup(&self, lowercase_name: &[u8], label_starts: &[u8]) -> Lookup<'_> {
        // Origins are few; the longest match is the one starting earliest.
        let starts = label_starts
            .iter()
            .map(|&s| usize::from(s))
            .chain(std::iter::once(lowercase_name.len().saturating_sub(1)));
        for start in starts {
            let suffix = &lowercase_name[start..];
            if let Some(origin) = self.origins.iter().find(|o| *o.name == *suffix) {
                let relative = &lowercase_name[..start];
                return Lookup::Inside {
                    origin,
                    origin_offset: start,
                    node: self.names.get(relative).copied(),
                };
            }
        }
        Lookup::Outside
    }
}
