//! The answers that say something about the server rather than the pool:
//! CH TXT `id.server` and `version.server` (RFC 4892), the debug name
//! `_country.<origin>`, which tells a client how it was located, and
//! `_status.<origin>`, a node's health at a glance. Written on the stack
//! like every other answer: no allocation.

use std::fmt::Write as _;

use crate::dns::wire::writer::Section;
use crate::dns::wire::{HEADER_LEN, MessageWriter, NoSpace, Query, class, rcode, rtype};
use crate::dns::zone::{Family, ZoneTable};

use super::{Answer, AnswerConfig, Context, Location, target_zone};

/// CH TXT `id.server`, `hostname.bind`, `version.server`, `version.bind`
/// (RFC 4892). Anything else in class CH is refused.
pub(super) fn answer_chaos(
    config: &AnswerConfig,
    query: &Query<'_>,
    name: &[u8],
    writer: &mut MessageWriter<'_>,
    state: &mut Answer,
) -> Result<(), NoSpace> {
    let text = match name {
        b"\x02id\x06server\x00" | b"\x08hostname\x04bind\x00" => config.identity.as_deref(),
        b"\x07version\x06server\x00" | b"\x07version\x04bind\x00" => config.version.as_deref(),
        _ => None,
    };
    let Some(text) = text else {
        state.rcode = rcode::REFUSED;
        return Ok(());
    };
    state.authoritative = true;
    if !matches!(query.qtype, rtype::TXT | rtype::ANY) {
        return Ok(());
    }
    writer.push_pointer(HEADER_LEN as u16)?;
    let rdlength_at = writer.begin_record(rtype::TXT, class::CH, 0)?;
    write_character_strings(writer, text)?;
    writer.end_record(Section::Answer, rdlength_at);
    Ok(())
}

/// TXT RDATA: the text cut into strings of at most 255 bytes.
fn write_character_strings(writer: &mut MessageWriter<'_>, text: &[u8]) -> Result<(), NoSpace> {
    if text.is_empty() {
        return writer.push_u8(0);
    }
    for chunk in text.chunks(255) {
        writer.push_u8(chunk.len() as u8)?;
        writer.push_bytes(chunk)?;
    }
    Ok(())
}

/// `_country.<origin>` TXT (TTL 1): how this client was located: the
/// address used and where it came from, the GeoIP network's prefix, the
/// country and continent, the zones tried in order, and the zone that
/// answers A queries (the first of them with IPv4 servers).
pub(super) fn write_country_debug(
    writer: &mut MessageWriter<'_>,
    table: &ZoneTable,
    location: &Location,
) -> Result<(), NoSpace> {
    writer.push_pointer(HEADER_LEN as u16)?;
    let rdlength_at = writer.begin_record(rtype::TXT, class::IN, 1)?;
    let mut text = StackText::new();
    let origin = if location.from_ecs { "ecs" } else { "source" };
    let _ = write!(
        text,
        "address {} from {origin}/{}",
        location.address, location.source_prefix
    );
    write_character_strings(writer, text.as_bytes())?;
    text.clear();
    let _ = write!(text, "network /{}", location.geo.prefix_len);
    write_character_strings(writer, text.as_bytes())?;
    text.clear();
    match location.geo.country {
        Some(country) => {
            let _ = write!(text, "country {}", country.as_str());
        }
        None => {
            let _ = write!(text, "country none");
        }
    }
    match location.geo.continent {
        Some(continent) => {
            let _ = write!(text, ", continent {}", continent.zone_name());
        }
        None => {
            let _ = write!(text, ", continent none");
        }
    }
    write_character_strings(writer, text.as_bytes())?;
    text.clear();
    let _ = write!(text, "targets");
    let mut answering = None;
    let mut current = Some(target_zone(table, location));
    while let Some(id) = current {
        let zone = table.zone(id);
        let _ = write!(text, " {}", zone.name);
        if answering.is_none()
            && table
                .candidates(id, 0, Family::V4)
                .is_some_and(|l| !l.is_empty())
        {
            answering = Some(id);
        }
        current = table.parent(id);
    }
    write_character_strings(writer, text.as_bytes())?;
    text.clear();
    match answering {
        Some(id) => {
            let _ = write!(text, "zone {}", table.zone(id).name);
        }
        None => {
            let _ = write!(text, "zone none (no IPv4 servers)");
        }
    }
    write_character_strings(writer, text.as_bytes())?;
    writer.end_record(Section::Answer, rdlength_at);
    Ok(())
}

/// `_status.<origin>` TXT (TTL 0, never cached): what runs here and what
/// it serves: the version, the node's name (`--identity`, else the NSID),
/// the snapshot's serial and how long ago it was loaded, the uptime.
pub(super) fn write_status(
    writer: &mut MessageWriter<'_>,
    ctx: &Context<'_>,
) -> Result<(), NoSpace> {
    writer.push_pointer(HEADER_LEN as u16)?;
    let rdlength_at = writer.begin_record(rtype::TXT, class::IN, 0)?;
    let now = u64::from(ctx.now);
    let mut text = StackText::new();
    let _ = write!(text, "version timepool {}", env!("CARGO_PKG_VERSION"));
    write_character_strings(writer, text.as_bytes())?;
    text.clear();
    let config = ctx.config;
    let name = (config.identity.as_deref())
        .or(config.nsid.as_ref().map(|nsid| nsid.value()))
        .unwrap_or(b"unnamed");
    let _ = text.write_str("node ");
    text.push_bytes(name);
    write_character_strings(writer, text.as_bytes())?;
    text.clear();
    let _ = write!(
        text,
        "snapshot serial {} loaded {}s ago",
        ctx.table.serial,
        now.saturating_sub(ctx.table.compiled_at)
    );
    write_character_strings(writer, text.as_bytes())?;
    text.clear();
    let _ = write!(text, "uptime {}s", now.saturating_sub(config.started_at));
    write_character_strings(writer, text.as_bytes())?;
    writer.end_record(Section::Answer, rdlength_at);
    Ok(())
}

/// A short text formatted on the stack (the debug answers are built
/// without touching the heap like every other answer).
struct StackText {
    bytes: [u8; 255],
    len: usize,
}

impl StackText {
    fn new() -> Self {
        StackText {
            bytes: [0; 255],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// Append raw bytes (a name given on the command line), cut at the
    /// room left.
    fn push_bytes(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + take].copy_from_slice(&bytes[..take]);
        self.len += take;
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let room = self.bytes.len() - self.len;
        let take = text.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&text.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}
