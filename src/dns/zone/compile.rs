//! Compiling a validated snapshot spec into the zone table, once per
//! snapshot, and loading a snapshot file or body into one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use super::{
    Family, LabelServers, NO_ZONE, NameIndex, Node, Origin, ServerAddress, Zone, ZoneId, ZoneLinks,
    ZoneTable,
};
use crate::dns::select::ListsBuilder;
use crate::dns::wire::packed::{PackedRecordsBuilder, RdataPart, question_owned_header};
use crate::dns::wire::{class, rtype};
use crate::shared::dns_name;
use crate::shared::geo::Continent;
use crate::shared::snapshot::{self, SnapshotError, SnapshotSpec};

/// Read, validate and compile a snapshot file (`check-snapshot` and the
/// daemon's load and reload run this).
pub fn load_file(path: &Path) -> Result<ZoneTable, SnapshotError> {
    snapshot::read_file(path).map(|spec| ZoneTable::compile(&spec))
}

/// Validate and compile a snapshot held in memory (a pulled body).
/// `source` names it in errors.
pub fn load_bytes(bytes: &[u8], source: &str) -> Result<ZoneTable, SnapshotError> {
    snapshot::parse(bytes, source).map(|spec| ZoneTable::compile(&spec))
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
        let mut candidates = |list: &[usize], family: Family| {
            lists.push(
                list.iter()
                    .filter(|&&i| Family::of(&servers[i]) == family)
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
                    v4: candidates(list, Family::V4),
                    v6: candidates(list, Family::V6),
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

        // A zone has the numbered names of its parents even where it has
        // fewer lists of its own (a zone with no servers has none): such a
        // label answers from the parents, as the top-up does for a short
        // list, so every name a parent serves is served under it too.
        let numbered_names = |zone: ZoneId| {
            let mut count = 0;
            let mut current = Some(usize::from(zone));
            while let Some(i) = current {
                count = count.max(spec.zones[i].numbered.len());
                current = spec.zones[i].parent;
            }
            count
        };
        let mut names = NameIndex::default();
        let mut add_pool_names = |prefix: &str, zone: ZoneId, geo: bool| {
            let numbered = numbered_names(zone);
            let base = if prefix == "@" {
                String::new()
            } else {
                prefix.to_string()
            };
            names.insert(
                dns_name::relative_wire(&base),
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
                    dns_name::relative_wire(&name),
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
        names.insert(dns_name::relative_wire("_country"), Node::CountryDebug);
        names.insert(dns_name::relative_wire("_status"), Node::Status);

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
                let name = dns_name::to_wire(&origin.name);
                let mname = dns_name::to_wire(&origin.soa.mname);
                let rname = dns_name::to_wire(&origin.soa.rname);
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
                    let ns = dns_name::to_wire(ns);
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
            compiled_at: std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
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
}
