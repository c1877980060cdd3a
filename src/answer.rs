//! From a query packet to a response packet.
//!
//! [`respond`] parses the query, decides the answer from the zone table and
//! writes the response into the caller's buffer. It allocates nothing, takes
//! no lock and cannot panic on any input: the fuzz target and the malformed
//! packet tests hold it to that.
//!
//! Architecture invariant: the answer path knows the wire format, the zone
//! table and the selection of servers. It knows nothing of sockets,
//! threads, files or the web layer; the server hands it bytes and a client
//! address and sends what it writes.

use std::fmt::Write as _;
use std::net::IpAddr;

use rand::Rng;

use crate::geo::{GeoMatch, GeoTable};
use crate::netaddr::is_public_unicast;
use crate::select::{Candidates, Picked};
use crate::wire::query::{ClientSubnet, header_only_id};
use crate::wire::writer::Section;
use crate::wire::{
    CLASSIC_UDP_SIZE, HEADER_LEN, MAX_NAME_LEN, MessageWriter, NoSpace, ParseError, Query, class,
    flags, option, rcode, rtype,
};
use crate::zone::{Lookup, Node, Origin, ZoneId, ZoneTable};

/// Settings of the daemon that shape answers but are not part of a zone
/// snapshot.
#[derive(Clone, Debug)]
pub struct AnswerConfig {
    /// Answer to CH TXT `id.server` and `hostname.bind`.
    pub identity: Option<Box<[u8]>>,
    /// Answer to CH TXT `version.server` and `version.bind`.
    pub version: Option<Box<[u8]>>,
    /// The NSID option (RFC 5001), sent when a client asks.
    pub nsid: Option<NsidOption>,
    /// A client's EDNS payload size is clamped to this range (RFC 6891
    /// says below 512 means 512; 1232 avoids IP fragmentation).
    pub edns_min_payload: u16,
    pub edns_max_payload: u16,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        AnswerConfig {
            identity: None,
            version: None,
            nsid: None,
            edns_min_payload: 512,
            edns_max_payload: 1232,
        }
    }
}

/// The NSID option of a response, encoded once: option code, length and
/// the server's identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsidOption {
    encoded: Box<[u8]>,
}

impl NsidOption {
    /// Longest identifier taken: an NSID names a server, and a long one
    /// would crowd the answers out of a small response.
    pub const MAX_LEN: usize = 255;

    pub fn new(value: &[u8]) -> Result<NsidOption, String> {
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(format!(
                "an NSID is 1 to {} bytes, not {}",
                Self::MAX_LEN,
                value.len()
            ));
        }
        let mut encoded = Vec::with_capacity(4 + value.len());
        encoded.extend_from_slice(&option::NSID.to_be_bytes());
        encoded.extend_from_slice(&(value.len() as u16).to_be_bytes());
        encoded.extend_from_slice(value);
        Ok(NsidOption {
            encoded: encoded.into(),
        })
    }

    /// The identifier.
    pub fn value(&self) -> &[u8] {
        &self.encoded[4..]
    }

    fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

/// How the query arrived: the size limit of a UDP response depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Who asked, as the server saw it.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    pub source: IpAddr,
    pub transport: Transport,
}

/// What an answer needs besides the query: the zone table and GeoIP table
/// of this batch, and the daemon's settings.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub table: &'a ZoneTable,
    pub geo: &'a GeoTable,
    pub config: &'a AnswerConfig,
}

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

/// The outcome of one query, for counters and logs. Plain values, no
/// allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub rcode: u16,
    pub truncated: bool,
    /// The question's type; 0 when the query had no readable question.
    pub qtype: u16,
    pub name_kind: NameKind,
    /// The query carried an EDNS Client Subnet option.
    pub ecs_present: bool,
    /// The answer was located from the ECS address (public, prefix > 0).
    pub ecs_used: bool,
    /// The servers handed out (indexes into the table's server list);
    /// empty when the response carries none (or was truncated).
    pub handed_out: Picked,
}

impl Outcome {
    fn bare(rcode: u16) -> Outcome {
        Outcome {
            rcode,
            truncated: false,
            qtype: 0,
            name_kind: NameKind::None,
            ecs_present: false,
            ecs_used: false,
            handed_out: Picked::new(),
        }
    }
}

/// What kind of name a query asked for, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// No name looked up (a broken query, BADVERS, another class).
    None,
    /// A geo-targeted name: the apex, `N.<origin>`, a vendor alias of `@`.
    Geo,
    /// An explicit zone: `de`, `europe`, `N.de`, `gb`.
    Zone,
    /// `_country`, the debug name.
    Debug,
    /// A name under an origin that does not exist (NXDOMAIN).
    Unknown,
    /// Outside every origin (REFUSED).
    Outside,
}

impl NameKind {
    pub const ALL: [NameKind; 6] = [
        NameKind::None,
        NameKind::Geo,
        NameKind::Zone,
        NameKind::Debug,
        NameKind::Unknown,
        NameKind::Outside,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            NameKind::None => "none",
            NameKind::Geo => "geo",
            NameKind::Zone => "zone",
            NameKind::Debug => "debug",
            NameKind::Unknown => "nxdomain",
            NameKind::Outside => "outside",
        }
    }
}

/// Answer `packet` into `out`. Returns the response length, or `None` when
/// the packet gets no response at all (no header, or it is a response).
pub fn respond<R: Rng + ?Sized>(
    ctx: &Context<'_>,
    packet: &[u8],
    client: Client,
    rng: &mut R,
    out: &mut [u8],
) -> Option<usize> {
    respond_with_outcome(ctx, packet, client, rng, out).map(|(len, _)| len)
}

/// [`respond`], also saying what the answer was.
pub fn respond_with_outcome<R: Rng + ?Sized>(
    ctx: &Context<'_>,
    packet: &[u8],
    client: Client,
    rng: &mut R,
    out: &mut [u8],
) -> Option<(usize, Outcome)> {
    let query = match Query::parse(packet) {
        Ok(query) => query,
        Err(ParseError::NoHeader | ParseError::IsResponse) => return None,
        Err(ParseError::NotImplemented) => return header_only(packet, rcode::NOTIMP, out),
        Err(ParseError::Malformed(_)) => return header_only(packet, rcode::FORMERR, out),
    };
    let limit = match (client.transport, query.edns) {
        (Transport::Tcp, _) => out.len(),
        (Transport::Udp, None) => CLASSIC_UDP_SIZE,
        (Transport::Udp, Some(edns)) => usize::from(
            edns.udp_payload_size
                .clamp(ctx.config.edns_min_payload, ctx.config.edns_max_payload),
        ),
    };
    let mut writer = MessageWriter::new(out, limit);
    let response_flags = flags::QR | (query.flags & (flags::RD | flags::CD));
    // A buffer too small for the header and question is a caller bug; the
    // query is dropped rather than answered wrongly.
    writer.header(query.id, response_flags).ok()?;
    writer.question(query.question_bytes()).ok()?;
    let after_question = writer.mark();

    if let Some(edns) = query.edns
        && edns.version != 0
    {
        let outcome = Outcome {
            qtype: query.qtype,
            ..Outcome::bare(rcode::BADVERS)
        };
        let nsid = nsid_to_send(ctx.config, &query, &writer, limit);
        write_opt(&mut writer, ctx.config, &query, nsid, rcode::BADVERS, 0).ok()?;
        return Some((writer.finish(), outcome));
    }

    let nsid = nsid_to_send(ctx.config, &query, &writer, limit);
    let opt_len = opt_record_len(&query, nsid);
    let full_limit = writer.reserve_tail(opt_len);
    let mut state = Answer {
        rcode: rcode::NOERROR,
        authoritative: false,
        ecs_scope: 0,
        name_kind: NameKind::None,
        ecs_used: false,
        handed_out: Picked::new(),
    };
    let result = answer_question(ctx, &query, client, rng, &mut writer, &mut state);
    let truncated = result.is_err();
    if truncated {
        writer.rollback(after_question);
        writer.set_truncated();
        state.handed_out.clear();
    }
    writer.restore_limit(full_limit);
    let mut header_flags = writer.flags();
    if state.authoritative {
        header_flags |= flags::AA;
    }
    writer.set_flags(header_flags);
    writer.set_rcode(state.rcode);
    if query.edns.is_some() {
        write_opt(
            &mut writer,
            ctx.config,
            &query,
            nsid,
            state.rcode,
            state.ecs_scope,
        )
        .ok()?;
    }
    let outcome = Outcome {
        rcode: state.rcode,
        truncated,
        qtype: query.qtype,
        name_kind: state.name_kind,
        ecs_present: query.edns.is_some_and(|e| e.client_subnet.is_some()),
        ecs_used: state.ecs_used,
        handed_out: state.handed_out,
    };
    Some((writer.finish(), outcome))
}

/// What the answer logic decided besides the records.
struct Answer {
    rcode: u16,
    authoritative: bool,
    /// The ECS scope prefix to return (0 when the answer does not depend
    /// on the client's address).
    ecs_scope: u8,
    name_kind: NameKind,
    ecs_used: bool,
    /// The servers written into the answer section.
    handed_out: Picked,
}

/// A response with only the header: for queries too broken to echo.
fn header_only(packet: &[u8], code: u16, out: &mut [u8]) -> Option<(usize, Outcome)> {
    let (id, query_flags) = header_only_id(packet)?;
    let mut writer = MessageWriter::new(out, HEADER_LEN);
    let response_flags = flags::QR | (query_flags & (flags::OPCODE_MASK | flags::RD)) | code;
    writer.header(id, response_flags).ok()?;
    Some((writer.finish(), Outcome::bare(code)))
}

fn answer_question<R: Rng + ?Sized>(
    ctx: &Context<'_>,
    query: &Query<'_>,
    client: Client,
    rng: &mut R,
    writer: &mut MessageWriter<'_>,
    state: &mut Answer,
) -> Result<(), NoSpace> {
    let mut lowercase = [0u8; MAX_NAME_LEN];
    let name = &mut lowercase[..query.qname.len()];
    name.copy_from_slice(query.qname);
    name.make_ascii_lowercase();
    let name: &[u8] = name;

    if query.qclass == class::CH {
        return answer_chaos(ctx.config, query, name, writer, state);
    }
    if query.qclass != class::IN {
        state.rcode = rcode::REFUSED;
        return Ok(());
    }
    if query.qtype == rtype::OPT {
        state.rcode = rcode::FORMERR;
        return Ok(());
    }
    let (origin, origin_offset, node) = match ctx.table.lookup(name, query.label_starts()) {
        Lookup::Outside => {
            state.rcode = rcode::REFUSED;
            state.name_kind = NameKind::Outside;
            return Ok(());
        }
        Lookup::Inside {
            origin,
            origin_offset,
            node,
        } => (origin, origin_offset, node),
    };
    state.authoritative = true;
    // Where the origin's name is in the response (within its question).
    let origin_at = (HEADER_LEN + origin_offset) as u16;
    if matches!(query.qtype, rtype::AXFR | rtype::IXFR) {
        state.rcode = rcode::REFUSED;
        state.authoritative = false;
        return Ok(());
    }
    let Some(node) = node else {
        state.rcode = rcode::NXDOMAIN;
        state.name_kind = NameKind::Unknown;
        return write_soa(writer, origin, origin_at, Section::Authority);
    };
    let wrote_answer = match node {
        Node::Pool {
            zone,
            label,
            geo,
            apex,
        } => {
            state.name_kind = if geo { NameKind::Geo } else { NameKind::Zone };
            let zone = if geo && matches!(query.qtype, rtype::A | rtype::AAAA | rtype::ANY) {
                let location = locate(ctx.geo, query, client);
                state.ecs_scope = location.ecs_scope();
                state.ecs_used = location.from_ecs;
                target_zone(ctx.table, &location)
            } else {
                zone
            };
            answer_pool(
                ctx.table,
                origin,
                origin_at,
                zone,
                label,
                apex,
                query.qtype,
                rng,
                writer,
                &mut state.handed_out,
            )?
        }
        Node::CountryDebug => {
            state.name_kind = NameKind::Debug;
            if matches!(query.qtype, rtype::TXT | rtype::ANY) {
                let location = locate(ctx.geo, query, client);
                state.ecs_scope = location.ecs_scope();
                state.ecs_used = location.from_ecs;
                write_country_debug(writer, ctx.table, &location)?;
                true
            } else {
                false
            }
        }
    };
    if !wrote_answer {
        // NODATA: the name exists, the type does not (RFC 2308 section 2.2).
        write_soa(writer, origin, origin_at, Section::Authority)?;
    }
    Ok(())
}

/// Answer a query at a pool label. Returns whether an answer was written.
#[allow(clippy::too_many_arguments)]
fn answer_pool<R: Rng + ?Sized>(
    table: &ZoneTable,
    origin: &Origin,
    origin_at: u16,
    zone: ZoneId,
    label: u8,
    apex: bool,
    qtype: u16,
    rng: &mut R,
    writer: &mut MessageWriter<'_>,
    handed_out: &mut Picked,
) -> Result<bool, NoSpace> {
    match qtype {
        rtype::A => write_addresses(writer, table, origin, zone, label, false, rng, handed_out),
        rtype::AAAA if serves_aaaa(origin, label) => {
            write_addresses(writer, table, origin, zone, label, true, rng, handed_out)
        }
        rtype::SOA if apex => {
            write_soa(writer, origin, origin_at, Section::Answer)?;
            Ok(true)
        }
        rtype::NS if apex => {
            // At the apex the question's name is the origin's.
            writer.push_packed(Section::Answer, &origin.ns_records, HEADER_LEN as u16)?;
            Ok(true)
        }
        rtype::MX => {
            // A null MX (RFC 7505): pool names receive no mail.
            writer.push_pointer(HEADER_LEN as u16)?;
            let rdlength_at = writer.begin_record(rtype::MX, class::IN, origin.soa_ttl)?;
            writer.push_bytes(&[0, 0, 0])?;
            writer.end_record(Section::Answer, rdlength_at);
            Ok(true)
        }
        rtype::ANY => {
            // RFC 8482: a minimal answer, not the whole node. The A records
            // are what a client of a pool name wants; with none, a HINFO.
            if write_addresses(writer, table, origin, zone, label, false, rng, handed_out)? {
                return Ok(true);
            }
            writer.push_pointer(HEADER_LEN as u16)?;
            let rdlength_at = writer.begin_record(rtype::HINFO, class::IN, origin.answer_ttl)?;
            writer.push_bytes(b"\x07RFC8482\x00")?;
            writer.end_record(Section::Answer, rdlength_at);
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// AAAA is served in every name of an origin that says so, else only in
/// the `2.` names, as the pool does today.
fn serves_aaaa(origin: &Origin, label: u8) -> bool {
    origin.ipv6_everywhere || label == 3
}

/// How many zones' lists (the zone, its parent, ...) are read before
/// drawing: country, continent and global in the pool's hierarchy.
const LISTS_READ_AHEAD: usize = 4;

/// Draw up to `max_hosts` servers of the family from the zone's label,
/// topping up from the parent zones, and write them. Returns whether any
/// record was written; `handed_out` is set to the servers written.
#[allow(clippy::too_many_arguments)]
fn write_addresses<R: Rng + ?Sized>(
    writer: &mut MessageWriter<'_>,
    table: &ZoneTable,
    origin: &Origin,
    zone: ZoneId,
    label: u8,
    v6: bool,
    rng: &mut R,
    handed_out: &mut Picked,
) -> Result<bool, NoSpace> {
    let mut picked = Picked::new();
    let max_hosts = origin.max_hosts;
    // The lists of the zone and its parents, found before any draw: the
    // reads of their places are independent loads the CPU overlaps, where
    // finding each list just before drawing from it would wait for one
    // cache miss after the other.
    let mut lists = [Candidates::default(); LISTS_READ_AHEAD];
    let mut current = Some(zone);
    while current.is_some() && picked.len() < max_hosts {
        let mut depth = 0;
        while let Some(id) = current {
            if depth == LISTS_READ_AHEAD {
                break;
            }
            if let Some(servers) = table.candidates(id, label, v6) {
                lists[depth] = servers;
                depth += 1;
            }
            current = table.parent(id);
        }
        for servers in &lists[..depth] {
            if picked.len() >= max_hosts {
                break;
            }
            servers.draw_into(rng, max_hosts - picked.len(), &mut picked);
        }
    }
    // Every record has the same owner (a pointer to the question), type,
    // class, TTL and length: the origin's header, encoded at load.
    let header = if v6 {
        &origin.aaaa_header
    } else {
        &origin.a_header
    };
    for &server in picked.as_slice() {
        if let Some(rdata) = table.rdata(server, v6) {
            writer.push_record(Section::Answer, header, rdata)?;
        }
    }
    *handed_out = picked;
    Ok(!picked.is_empty())
}

fn write_soa(
    writer: &mut MessageWriter<'_>,
    origin: &Origin,
    origin_at: u16,
    section: Section,
) -> Result<(), NoSpace> {
    let records = if section == Section::Answer {
        &origin.soa_answer
    } else {
        &origin.soa_negative
    };
    writer.push_packed(section, records, origin_at)
}

/// CH TXT `id.server`, `hostname.bind`, `version.server`, `version.bind`
/// (RFC 4892). Anything else in class CH is refused.
fn answer_chaos(
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
fn write_country_debug(
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
                .candidates(id, 0, false)
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

/// An OPT record's bytes before its options: root owner, type, payload
/// size (class), extended rcode, version and flags (TTL), RDLENGTH.
const OPT_FIXED_LEN: usize = 11;

/// The encoded NSID option this response carries: when the client asks
/// and one is configured, unless the OPT record with it would not fit
/// after the question (a long NSID, a long name and a small payload size):
/// then the OPT goes without it rather than the response being dropped.
fn nsid_to_send<'c>(
    config: &'c AnswerConfig,
    query: &Query<'_>,
    writer: &MessageWriter<'_>,
    limit: usize,
) -> &'c [u8] {
    let Some(edns) = query.edns else {
        return &[];
    };
    let Some(nsid) = &config.nsid else {
        return &[];
    };
    if !edns.nsid_requested || writer.len() + opt_record_len(query, nsid.encoded()) > limit {
        return &[];
    }
    nsid.encoded()
}

/// Size of the OPT record this response will carry, with `nsid` (the
/// encoded option, or empty).
fn opt_record_len(query: &Query<'_>, nsid: &[u8]) -> usize {
    let Some(edns) = query.edns else {
        return 0;
    };
    let mut len = OPT_FIXED_LEN + nsid.len();
    if let Some(subnet) = edns.client_subnet {
        len += 8 + subnet.address_len();
    }
    len
}

/// The OPT record of a response: our payload size, the extended rcode,
/// `nsid` (the encoded option from [`nsid_to_send`], or empty), ECS echoed
/// with its scope. Written with one bounds check when there is no NSID,
/// two with one.
fn write_opt(
    writer: &mut MessageWriter<'_>,
    config: &AnswerConfig,
    query: &Query<'_>,
    nsid: &[u8],
    response_rcode: u16,
    ecs_scope: u8,
) -> Result<(), NoSpace> {
    let Some(edns) = query.edns else {
        return Ok(());
    };
    let ecs = edns
        .client_subnet
        .map(|subnet| EcsOption::new(&subnet, ecs_scope));
    let ecs = ecs.as_ref().map_or(&[][..], EcsOption::as_bytes);
    let mut fixed = [0u8; OPT_FIXED_LEN];
    fixed[1..3].copy_from_slice(&rtype::OPT.to_be_bytes());
    fixed[3..5].copy_from_slice(&config.edns_max_payload.to_be_bytes());
    fixed[5] = (response_rcode >> 4) as u8;
    fixed[9..11].copy_from_slice(&((nsid.len() + ecs.len()) as u16).to_be_bytes());
    if nsid.is_empty() {
        writer.push_record(Section::Additional, &fixed, ecs)
    } else {
        writer.push_record(Section::Additional, &fixed, nsid)?;
        writer.push_bytes(ecs)
    }
}

/// The ECS option of a response: the client's, with our scope (never
/// longer than the source prefix).
struct EcsOption {
    /// Code, length, family, two prefixes, up to 16 address bytes.
    bytes: [u8; 8 + 16],
    len: usize,
}

impl EcsOption {
    fn new(subnet: &ClientSubnet, ecs_scope: u8) -> EcsOption {
        let address_len = subnet.address_len().min(16);
        let mut bytes = [0u8; 8 + 16];
        bytes[0..2].copy_from_slice(&option::CLIENT_SUBNET.to_be_bytes());
        bytes[2..4].copy_from_slice(&(4 + address_len as u16).to_be_bytes());
        bytes[4..6].copy_from_slice(&subnet.family.to_be_bytes());
        bytes[6] = subnet.source_prefix;
        bytes[7] = ecs_scope.min(subnet.source_prefix);
        bytes[8..8 + address_len].copy_from_slice(&subnet.address[..address_len]);
        EcsOption {
            bytes,
            len: 8 + address_len,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_nsid_is_encoded_once_and_its_length_checked() {
        let nsid = NsidOption::new(b"ns-fra-1").unwrap();
        assert_eq!(nsid.value(), b"ns-fra-1");
        assert_eq!(nsid.encoded(), b"\x00\x03\x00\x08ns-fra-1");
        assert!(NsidOption::new(&[b'x'; NsidOption::MAX_LEN]).is_ok());
        let too_long = NsidOption::new(&[b'x'; NsidOption::MAX_LEN + 1]).unwrap_err();
        assert!(too_long.contains("1 to 255 bytes, not 256"), "{too_long}");
        assert!(NsidOption::new(b"").is_err());
    }
}
