//! The compiled zone table: what the answer path reads, built once per
//! snapshot and never changed (a reload builds a new one and swaps it).
//!
//! Everything an answer needs that does not depend on the query is worked
//! out here: names in lowercase wire format, a hash index from the name
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

use crate::geo::{Continent, CountryCode};
use crate::select::{CandidateLists, Candidates, ListId, ListsBuilder};
use crate::snapshot::SnapshotSpec;
use crate::wire::packed::{PackedRecords, PackedRecordsBuilder, RdataPart, question_owned_header};
use crate::wire::{class, rtype};

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
    pub fn family(&self, v6: bool) -> ListId {
        if v6 { self.v6 } else { self.v4 }
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
    /// Compile a validated snapshot. Validation guarantees every index and
    /// name is good, so this cannot fail.
    pub fn compile(spec: &SnapshotSpec) -> ZoneTable {
        let servers: Box<[ServerAddress]> = spec
            .servers
            .iter()
            .map(|server| match server.address {
                IpAddr::V4(v4) => {
                    let mut octets = [0u8; 16];
                    octets[..4].copy_from_slice(&v4.octets());
                    ServerAddress {
                        octets,
                        is_v6: false,
                    }
                }
                IpAddr::V6(v6) => ServerAddress {
                    octets: v6.octets(),
                    is_v6: true,
                },
            })
            .collect();

        let mut lists = ListsBuilder::new();
        let mut label_servers: Vec<LabelServers> = Vec::new();
        let mut links: Vec<ZoneLinks> = Vec::with_capacity(spec.zones.len());
        let mut candidates = |list: &[usize], v6: bool| {
            lists.push(
                list.iter()
                    .filter(|&&i| servers[i].is_v6 == v6)
                    .map(|&i| (i as u32, spec.servers[i].weight))
                    .collect(),
            )
        };
        for zone in &spec.zones {
            links.push(ZoneLinks {
                parent: zone.parent.map_or(NO_ZONE, |p| p as ZoneId),
                label_count: (1 + zone.numbered.len()) as u16,
                first_label: label_servers.len() as u32,
            });
            for list in std::iter::once(&zone.servers).chain(&zone.numbered) {
                label_servers.push(LabelServers {
                    v4: candidates(list, false),
                    v6: candidates(list, true),
                });
            }
        }
        let zones: Box<[Zone]> = spec
            .zones
            .iter()
            .map(|zone| Zone {
                name: zone.name.as_str().into(),
            })
            .collect();
        let zone_ids: HashMap<Box<str>, ZoneId> = zones
            .iter()
            .enumerate()
            .map(|(i, zone)| (zone.name.clone(), i as ZoneId))
            .collect();
        let global = zone_ids.get("@").copied().unwrap_or(0);

        let mut names = NameIndex::default();
        let mut add_pool_names = |prefix: &str, zone: ZoneId, geo: bool| {
            let numbered = spec.zones[usize::from(zone)].numbered.len();
            let base = if prefix == "@" {
                String::new()
            } else {
                prefix.to_string()
            };
            names.insert(
                relative_key(&base),
                Node::Pool {
                    zone,
                    label: 0,
                    geo,
                    apex: base.is_empty(),
                },
            );
            for n in 0..numbered {
                let name = if base.is_empty() {
                    n.to_string()
                } else {
                    format!("{n}.{base}")
                };
                names.insert(
                    relative_key(&name),
                    Node::Pool {
                        zone,
                        label: n as u8 + 1,
                        geo,
                        apex: false,
                    },
                );
            }
        };
        for (i, zone) in zones.iter().enumerate() {
            add_pool_names(&zone.name, i as ZoneId, i as ZoneId == global);
        }
        for alias in &spec.aliases {
            let target = alias.target as ZoneId;
            add_pool_names(&alias.name, target, target == global);
        }
        names.insert(relative_key("_country"), Node::CountryDebug);

        let origins = spec
            .origins
            .iter()
            .map(|origin| {
                let mut soa_numbers = [0u8; 20];
                for (i, value) in [
                    spec.serial,
                    origin.soa.refresh,
                    origin.soa.retry,
                    origin.soa.expire,
                    origin.soa.minimum,
                ]
                .iter()
                .enumerate()
                {
                    soa_numbers[4 * i..4 * i + 4].copy_from_slice(&value.to_be_bytes());
                }
                let name = name_to_wire(&origin.name);
                let mname = name_to_wire(&origin.soa.mname);
                let rname = name_to_wire(&origin.soa.rname);
                let soa = |ttl: u32| {
                    let mut records = PackedRecordsBuilder::new(&name);
                    records.record(
                        rtype::SOA,
                        class::IN,
                        ttl,
                        &[
                            RdataPart::Name(&mname),
                            RdataPart::Name(&rname),
                            RdataPart::Bytes(&soa_numbers),
                        ],
                    );
                    records.finish()
                };
                let mut ns_records = PackedRecordsBuilder::new(&name);
                for ns in &origin.ns {
                    let ns = name_to_wire(ns);
                    ns_records.record(rtype::NS, class::IN, origin.ns_ttl, &[RdataPart::Name(&ns)]);
                }
                Origin {
                    soa_answer: soa(origin.soa.ttl),
                    soa_negative: soa(origin.soa.ttl.min(origin.soa.minimum)),
                    soa_ttl: origin.soa.ttl,
                    ns_records: ns_records.finish(),
                    name,
                    display: origin.name.as_str().into(),
                    answer_ttl: origin.answer_ttl,
                    a_header: question_owned_header(rtype::A, class::IN, origin.answer_ttl, 4),
                    aaaa_header: question_owned_header(
                        rtype::AAAA,
                        class::IN,
                        origin.answer_ttl,
                        16,
                    ),
                    max_hosts: origin.max_hosts,
                    ipv6_everywhere: origin.ipv6_everywhere,
                }
            })
            .collect();

        let ipv4_rdata = servers
            .iter()
            .map(|server| {
                let mut rdata = [0u8; 4];
                if !server.is_v6 {
                    rdata.copy_from_slice(&server.octets[..4]);
                }
                rdata
            })
            .collect();
        let mut table = ZoneTable {
            serial: spec.serial,
            origins,
            servers,
            ipv4_rdata,
            zones,
            global,
            links: links.into(),
            label_servers: label_servers.into(),
            lists: lists.finish(),
            names,
            zone_ids,
            country_zones: vec![NO_ZONE; 26 * 26].into(),
            continent_zones: [NO_ZONE; 7],
        };
        let mut country_zones = vec![NO_ZONE; 26 * 26];
        for (slot, zone) in country_zones.iter_mut().enumerate() {
            let code = [b'a' + (slot / 26) as u8, b'a' + (slot % 26) as u8];
            let name = std::str::from_utf8(&code).unwrap_or_default();
            if let Some(id) = table.resolve_zone_name(name) {
                // A vendor alias of the global zone is not a country.
                if id != table.global {
                    *zone = id;
                }
            }
        }
        table.country_zones = country_zones.into();
        for (i, continent) in Continent::ALL.iter().enumerate() {
            table.continent_zones[i] = table.zone_id(continent.zone_name()).unwrap_or(NO_ZONE);
        }
        table
    }

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

    /// A server's address as A (`v6` false) or AAAA record data; the
    /// family must be the server's.
    #[inline]
    pub fn rdata(&self, server: u32, v6: bool) -> Option<&[u8]> {
        let server = server as usize;
        if v6 {
            self.servers.get(server).map(|address| &address.octets[..])
        } else {
            self.ipv4_rdata.get(server).map(|octets| &octets[..])
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
    pub fn candidates(&self, id: ZoneId, label: u8, v6: bool) -> Option<Candidates<'_>> {
        let links = self.links.get(usize::from(id))?;
        if u16::from(label) >= links.label_count {
            return None;
        }
        let servers = self
            .label_servers
            .get(links.first_label as usize + usize::from(label))?;
        Some(self.lists.get(servers.family(v6)))
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
        match self.names.get(relative_key(name).as_ref()) {
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

/// The index key of a name relative to its origin: its labels in wire
/// format without the root label ("" for the apex).
fn relative_key(dotted: &str) -> Box<[u8]> {
    let mut key = Vec::with_capacity(dotted.len() + 1);
    if !dotted.is_empty() {
        for label in dotted.split('.') {
            key.push(label.len() as u8);
            key.extend_from_slice(label.as_bytes());
        }
    }
    key.into()
}

/// A dotted name (validated, lowercase, no trailing dot) in wire format.
pub fn name_to_wire(dotted: &str) -> Box<[u8]> {
    let mut wire = relative_key(dotted).into_vec();
    wire.push(0);
    wire.into()
}
