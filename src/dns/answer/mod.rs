//! From a query packet to a response packet.
//!
//! [`respond`] parses the query, decides the answer from the zone table and
//! writes the response into the caller's buffer. It allocates nothing, takes
//! no lock and cannot panic on any input: the fuzz target and the malformed
//! packet tests hold it to that.
//!
//! `locate` finds where a client is and which zone serves it; `debug`
//! writes the CH TXT and `_country` answers.
//!
//! Architecture invariant: the answer path knows the wire format, the zone
//! table, the GeoIP table and the selection of servers. It knows nothing of sockets,
//! threads, files or the web layer; the server hands it bytes and a client
//! address and sends what it writes.

mod debug;
mod locate;

use std::net::IpAddr;

use rand::Rng;

use crate::dns::cookie::{CookieCheck, CookieSecrets};
use crate::dns::rrl::{RateLimiter, Verdict};
use crate::dns::select::{Candidates, Picked, Sample};
use crate::dns::wire::edns::{
    CookieReply, NsidOption, ReplyOptions, nsid_to_send, opt_record_len, write_opt,
};
use crate::dns::wire::query::header_only_id;
use crate::dns::wire::writer::Section;
use crate::dns::wire::{
    CLASSIC_UDP_SIZE, HEADER_LEN, MAX_NAME_LEN, MessageWriter, NoSpace, ParseError, Query, class,
    flags, rcode, rtype,
};
use crate::dns::zone::{Family, Lookup, Node, Origin, ZoneId, ZoneTable};
use crate::shared::geo::GeoTable;

pub use locate::{Location, locate, target_zone};

/// Settings of the daemon that shape answers but are not part of a zone
/// snapshot.
#[derive(Clone, Debug)]
pub struct AnswerConfig {
    /// Answer to CH TXT `id.server` and `hostname.bind`; the node's name
    /// in `_status`.
    pub identity: Option<Box<[u8]>>,
    /// Answer to CH TXT `version.server` and `version.bind`.
    pub version: Option<Box<[u8]>>,
    /// The NSID option (RFC 5001), sent when a client asks.
    pub nsid: Option<NsidOption>,
    /// A client's EDNS payload size is clamped to this range (RFC 6891
    /// says below 512 means 512; 1232 avoids IP fragmentation).
    pub edns_min_payload: u16,
    pub edns_max_payload: u16,
    /// Answer `_status` to every client, not only to loopback.
    pub public_debug: bool,
    /// When the daemon started (unix seconds), for `_status`.
    pub started_at: u64,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        AnswerConfig {
            identity: None,
            version: None,
            nsid: None,
            edns_min_payload: 512,
            edns_max_payload: 1232,
            public_debug: false,
            started_at: 0,
        }
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
/// of this batch, the cookie secrets, the time, and the daemon's settings.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub table: &'a ZoneTable,
    pub geo: &'a GeoTable,
    pub config: &'a AnswerConfig,
    pub cookies: &'a CookieSecrets,
    /// Unix seconds (the server cookies' timestamps, `_status`), read
    /// once per batch.
    pub now: u32,
}

/// A UDP worker's rate limiter and the time of this batch on its clock.
pub struct RateLimit<'a> {
    pub limiter: &'a mut RateLimiter,
    pub now_ms: u32,
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
    /// What the query's COOKIE option proved.
    pub cookie: CookieCheck,
    /// What response rate limiting did with it.
    pub limited: Limited,
    /// The servers handed out (indexes into the table's server list);
    /// empty when the response carries none (or was truncated).
    pub handed_out: Picked,
}

/// What response rate limiting did with a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    /// Not limited (within the rate, exempt, a valid cookie, TCP, or RRL
    /// off).
    No,
    /// Over the rate: answered truncated, or BADCOOKIE when it had a
    /// client cookie, so a real client can come back.
    Slipped,
    /// Over the rate: no response (the returned length is 0).
    Dropped,
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
            cookie: CookieCheck::None,
            limited: Limited::No,
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
    /// `_country` and `_status`, the debug names.
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
    respond_inner(ctx, packet, client, rng, out, None)
}

/// [`respond_with_outcome`] for a UDP query under response rate limiting:
/// a client whose prefix is over the rate gets a truncated response
/// (every `slip`-th) or none (length 0, [`Limited::Dropped`]), unless its
/// query carries a valid server cookie. The limit is checked before the
/// answer is worked out, so a flood costs a parse and a table probe.
pub fn respond_rate_limited<R: Rng + ?Sized>(
    ctx: &Context<'_>,
    packet: &[u8],
    client: Client,
    rng: &mut R,
    out: &mut [u8],
    limit: RateLimit<'_>,
) -> Option<(usize, Outcome)> {
    respond_inner(ctx, packet, client, rng, out, Some(limit))
}

fn respond_inner<R: Rng + ?Sized>(
    ctx: &Context<'_>,
    packet: &[u8],
    client: Client,
    rng: &mut R,
    out: &mut [u8],
    rate_limit: Option<RateLimit<'_>>,
) -> Option<(usize, Outcome)> {
    let query = match Query::parse(packet) {
        Ok(query) => query,
        Err(ParseError::NoHeader | ParseError::IsResponse) => return None,
        Err(error) => {
            let code = match error {
                ParseError::NotImplemented => rcode::NOTIMP,
                _ => rcode::FORMERR,
            };
            // Error replies count against the rate too (no cookie can be
            // trusted in a query that does not parse); over it, none.
            if let Some(RateLimit { limiter, now_ms }) = rate_limit
                && limiter.check(client.source, now_ms) != Verdict::Answer
            {
                let outcome = Outcome {
                    limited: Limited::Dropped,
                    ..Outcome::bare(code)
                };
                return Some((0, outcome));
            }
            return header_only(packet, code, out);
        }
    };
    let limit = match (client.transport, query.edns) {
        (Transport::Tcp, _) => out.len(),
        (Transport::Udp, None) => CLASSIC_UDP_SIZE,
        (Transport::Udp, Some(edns)) => usize::from(
            edns.udp_payload_size
                .clamp(ctx.config.edns_min_payload, ctx.config.edns_max_payload),
        ),
    };
    // RFC 7873 section 5.2: a query with a client cookie gets a fresh
    // server cookie back in every response, whatever it brought.
    let client_cookie = query.edns.and_then(|edns| edns.cookie);
    let cookie_check = match &client_cookie {
        Some(cookie) => (ctx.cookies).check(
            &cookie.client,
            query.server_cookie(),
            client.source,
            ctx.now,
        ),
        None => CookieCheck::None,
    };
    let cookie_reply = client_cookie.map(|cookie| {
        let server = (ctx.cookies).server_cookie(&cookie.client, client.source, ctx.now);
        CookieReply::new(&cookie.client, &server)
    });
    let mut outcome = Outcome {
        qtype: query.qtype,
        ecs_present: query.edns.is_some_and(|e| e.client_subnet.is_some()),
        cookie: cookie_check,
        ..Outcome::bare(rcode::NOERROR)
    };
    // A valid server cookie proves the source address is not spoofed: no
    // limit applies (RFC 7873 section 5.2.5).
    if let Some(RateLimit { limiter, now_ms }) = rate_limit
        && cookie_check != CookieCheck::Valid
    {
        match limiter.check(client.source, now_ms) {
            Verdict::Answer => {}
            Verdict::Drop => {
                outcome.limited = Limited::Dropped;
                return Some((0, outcome));
            }
            Verdict::Slip => {
                outcome.limited = Limited::Slipped;
                return slip(ctx, &query, limit, cookie_reply.as_ref(), outcome, out);
            }
        }
    }

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
        outcome.rcode = rcode::BADVERS;
        let options = ReplyOptions {
            nsid: nsid_to_send(ctx.config.nsid.as_ref(), &query, &writer, limit),
            cookie: cookie_reply.as_ref(),
        };
        write_opt(
            &mut writer,
            ctx.config.edns_max_payload,
            &query,
            options,
            rcode::BADVERS,
            0,
        )
        .ok()?;
        return Some((writer.finish(), outcome));
    }

    let options = ReplyOptions {
        nsid: nsid_to_send(ctx.config.nsid.as_ref(), &query, &writer, limit),
        cookie: cookie_reply.as_ref(),
    };
    let opt_len = opt_record_len(&query, options.nsid);
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
            ctx.config.edns_max_payload,
            &query,
            options,
            state.rcode,
            state.ecs_scope,
        )
        .ok()?;
    }
    outcome.rcode = state.rcode;
    outcome.truncated = truncated;
    outcome.name_kind = state.name_kind;
    outcome.ecs_used = state.ecs_used;
    outcome.handed_out = state.handed_out;
    Some((writer.finish(), outcome))
}

/// The response that slips out under rate limiting: no records, so it
/// cannot amplify. With a client cookie it is BADCOOKIE with a fresh server
/// cookie, with which the client's next query is not limited (RFC 7873
/// section 5.2.3 allows BADCOOKIE to a client without a valid server
/// cookie); else TC, so the client retries over TCP, which is never
/// limited.
fn slip(
    ctx: &Context<'_>,
    query: &Query<'_>,
    limit: usize,
    cookie: Option<&CookieReply>,
    mut outcome: Outcome,
    out: &mut [u8],
) -> Option<(usize, Outcome)> {
    let mut writer = MessageWriter::new(out, limit);
    let response_flags = flags::QR | (query.flags & (flags::RD | flags::CD));
    writer.header(query.id, response_flags).ok()?;
    writer.question(query.question_bytes()).ok()?;
    let code = if cookie.is_some() {
        rcode::BADCOOKIE
    } else {
        writer.set_truncated();
        outcome.truncated = true;
        rcode::NOERROR
    };
    writer.set_rcode(code);
    outcome.rcode = code;
    if query.edns.is_some() {
        let options = ReplyOptions { nsid: &[], cookie };
        write_opt(
            &mut writer,
            ctx.config.edns_max_payload,
            query,
            options,
            code,
            0,
        )
        .ok()?;
    }
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
        return debug::answer_chaos(ctx.config, query, name, writer, state);
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
            let pool = PoolName {
                table: ctx.table,
                origin,
                origin_at,
                zone,
                label,
                apex,
            };
            answer_pool(&pool, query.qtype, rng, writer, &mut state.handed_out)?
        }
        Node::Status => {
            state.name_kind = NameKind::Debug;
            // What a node runs and serves is for its operators: loopback
            // (a monitoring agent on the node) unless made public.
            if !(ctx.config.public_debug || client.source.is_loopback()) {
                state.rcode = rcode::REFUSED;
                state.authoritative = false;
                return Ok(());
            }
            if matches!(query.qtype, rtype::TXT | rtype::ANY) {
                debug::write_status(writer, ctx)?;
                true
            } else {
                false
            }
        }
        Node::CountryDebug => {
            state.name_kind = NameKind::Debug;
            if matches!(query.qtype, rtype::TXT | rtype::ANY) {
                let location = locate(ctx.geo, query, client);
                state.ecs_scope = location.ecs_scope();
                state.ecs_used = location.from_ecs;
                debug::write_country_debug(writer, ctx.table, &location)?;
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

/// A pool name being answered: the table, the origin it is under (and
/// where the origin's name sits in the response), the zone that serves it
/// (the client's, for a geo name) and the label.
struct PoolName<'t> {
    table: &'t ZoneTable,
    origin: &'t Origin,
    origin_at: u16,
    zone: ZoneId,
    /// 0 = the plain label, n + 1 = numbered label n.
    label: u8,
    /// The origin's apex (SOA and NS live here).
    apex: bool,
}

/// Answer a query at a pool label. Returns whether an answer was written.
fn answer_pool<R: Rng + ?Sized>(
    pool: &PoolName<'_>,
    qtype: u16,
    rng: &mut R,
    writer: &mut MessageWriter<'_>,
    handed_out: &mut Picked,
) -> Result<bool, NoSpace> {
    let origin = pool.origin;
    match qtype {
        rtype::A => write_addresses(writer, pool, Family::V4, rng, handed_out),
        rtype::AAAA if serves_aaaa(origin, pool.label) => {
            write_addresses(writer, pool, Family::V6, rng, handed_out)
        }
        rtype::SOA if pool.apex => {
            write_soa(writer, origin, pool.origin_at, Section::Answer)?;
            Ok(true)
        }
        rtype::NS if pool.apex => {
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
            if write_addresses(writer, pool, Family::V4, rng, handed_out)? {
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
/// each with probability proportional to its weight (`select`), topping up
/// from the parent zones without the servers already taken, and write
/// them in a random order. Returns whether any
/// record was written; `handed_out` is set to the servers written.
fn write_addresses<R: Rng + ?Sized>(
    writer: &mut MessageWriter<'_>,
    pool: &PoolName<'_>,
    family: Family,
    rng: &mut R,
    handed_out: &mut Picked,
) -> Result<bool, NoSpace> {
    let (table, origin, label) = (pool.table, pool.origin, pool.label);
    let mut sample = Sample::new();
    let max_hosts = origin.max_hosts;
    // The lists of the zone and its parents, found before any draw: the
    // reads of their places are independent loads the CPU overlaps, where
    // finding each list just before drawing from it would wait for one
    // cache miss after the other.
    let mut lists = [Candidates::default(); LISTS_READ_AHEAD];
    let mut current = Some(pool.zone);
    while current.is_some() && sample.len() < max_hosts {
        let mut depth = 0;
        while let Some(id) = current {
            if depth == LISTS_READ_AHEAD {
                break;
            }
            if let Some(servers) = table.candidates(id, label, family) {
                lists[depth] = servers;
                depth += 1;
            }
            current = table.parent(id);
        }
        for servers in &lists[..depth] {
            if sample.len() >= max_hosts {
                break;
            }
            servers.draw_into(rng, max_hosts - sample.len(), &mut sample);
        }
    }
    // The draws leave the servers heaviest first; many clients use only
    // the first address.
    sample.shuffle(rng);
    let picked = *sample.picked();
    // Every record has the same owner (a pointer to the question), type,
    // class, TTL and length: the origin's header, encoded at load.
    let header = match family {
        Family::V4 => &origin.a_header,
        Family::V6 => &origin.aaaa_header,
    };
    for &server in picked.as_slice() {
        if let Some(rdata) = table.rdata(server, family) {
            writer.push_record(Section::Answer, header, rdata)?;
        }
    }
    *handed_out = picked;
    Ok(!picked.is_empty())
}

pub(super) fn write_soa(
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
