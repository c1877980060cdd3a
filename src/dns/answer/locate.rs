//! Where a client is (RFC 7871 section 7.1: its ECS address when usable,
//! else the packet's source) and which zone serves it: its country's, else
//! its continent's, else the global zone.

use crate::dns::wire::Query;
use crate::dns::zone::{ZoneId, ZoneTable};
use crate::shared::geo::{GeoMatch, GeoTable};
use crate::shared::netaddr::is_public_unicast;

use super::Client;
use std::net::IpAddr;

/// Where a client is, and which address said so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The ECS address (truncated to its prefix) or the packet's source.
    pub address: IpAddr,
    pub from_ecs: bool,
    /// The ECS source prefix, or the full address length for a source
    /// address.
    pub source_prefix: u8,
    pub geo: GeoMatch,
}

impl Location {
    /// The ECS scope prefix of an answer that depends on this location:
    /// the GeoIP network's prefix, never more than the source prefix; 0
    /// when the location did not come from ECS.
    pub fn ecs_scope(&self) -> u8 {
        if self.from_ecs {
            self.geo.prefix_len.min(self.source_prefix)
        } else {
            0
        }
    }
}

/// Locate a client (RFC 7871 section 7.1): the ECS address when present,
/// public unicast and with a source prefix above 0, else the source address
/// of the packet.
pub fn locate(geo: &GeoTable, query: &Query<'_>, client: Client) -> Location {
    if let Some(subnet) = query.edns.and_then(|edns| edns.client_subnet) {
        let address = subnet.ip();
        if subnet.source_prefix > 0 && is_public_unicast(address) {
            return Location {
                address,
                from_ecs: true,
                source_prefix: subnet.source_prefix,
                geo: geo.lookup(address),
            };
        }
    }
    let full_length = if client.source.is_ipv4() { 32 } else { 128 };
    Location {
        address: client.source,
        from_ecs: false,
        source_prefix: full_length,
        geo: geo.lookup(client.source),
    }
}

/// The zone that serves a located client: its country's, else its
/// continent's, else the global zone. Top-up walks the parents from there.
pub fn target_zone(table: &ZoneTable, location: &Location) -> ZoneId {
    location
        .geo
        .country
        .and_then(|country| table.country_zone(country))
        .or_else(|| {
            location
                .geo
                .continent
                .and_then(|continent| table.continent_zone(continent))
        })
        .unwrap_or(table.global)
}
