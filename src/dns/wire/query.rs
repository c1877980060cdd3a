//! Parsing a query. Nothing here allocates: the parsed [`Query`] borrows the
//! packet and keeps offsets into it.

use super::{HEADER_LEN, MAX_LABELS, MAX_NAME_LEN, OPCODE_QUERY, flags, option, read_u16, rtype};

/// Why a packet could not be parsed as a query. The caller decides from it
/// whether to answer FORMERR or drop the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than a header: there is no ID to answer to. Drop.
    NoHeader,
    /// The QR bit is set: a response, never answered (it would loop). Drop.
    IsResponse,
    /// The opcode is not QUERY: answer NOTIMP.
    NotImplemented,
    /// Anything else malformed: answer FORMERR.
    Malformed(Malformed),
}

/// The kinds of malformed query, for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    QuestionCount,
    TruncatedName,
    NameTooLong,
    CompressedQuestion,
    BadLabelType,
    /// A compression pointer in a record's name that does not point
    /// strictly backward.
    BadPointer,
    TruncatedQuestion,
    TruncatedRecord,
    OptNotRoot,
    DuplicateOpt,
    TruncatedOption,
    BadClientSubnet,
    BadCookie,
    TrailingBytes,
}

impl From<Malformed> for ParseError {
    fn from(kind: Malformed) -> Self {
        ParseError::Malformed(kind)
    }
}

/// The EDNS Client Subnet option of a query (RFC 7871), validated: the
/// address is truncated to its source prefix and the bits past it are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSubnet {
    /// 1 = IPv4, 2 = IPv6.
    pub family: u16,
    pub source_prefix: u8,
    pub scope_prefix: u8,
    /// The address, left-aligned; bytes past the prefix are zero.
    pub address: [u8; 16],
}

impl ClientSubnet {
    /// The address as an `IpAddr` (bits past the prefix are zero).
    pub fn ip(&self) -> std::net::IpAddr {
        if self.family == 1 {
            let mut v4 = [0u8; 4];
            v4.copy_from_slice(&self.address[..4]);
            std::net::IpAddr::from(v4)
        } else {
            std::net::IpAddr::from(self.address)
        }
    }

    /// How many address bytes the option carries on the wire.
    pub fn address_len(&self) -> usize {
        usize::from(self.source_prefix).div_ceil(8)
    }
}

/// The COOKIE option of a query (RFC 7873): the client cookie, and where
/// the server cookie is in the packet (empty when the client has none
/// yet). Its length was checked: a server cookie is 8 to 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieOption {
    pub client: [u8; 8],
    server_at: u16,
    server_len: u8,
}

/// The OPT record of a query (RFC 6891).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    pub udp_payload_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    /// The client sent an (empty) NSID option.
    pub nsid_requested: bool,
    pub client_subnet: Option<ClientSubnet>,
    pub cookie: Option<CookieOption>,
}

/// A parsed query. Offsets point into `packet`.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    pub packet: &'a [u8],
    pub id: u16,
    /// The header's flag word as sent.
    pub flags: u16,
    /// The question name in wire format, with the client's letter case.
    pub qname: &'a [u8],
    /// Offsets of the labels in `qname` (each points at a length byte); the
    /// root label is not included.
    label_starts: [u8; MAX_LABELS],
    label_count: u8,
    pub qtype: u16,
    pub qclass: u16,
    /// End of the question section in `packet`.
    pub question_end: usize,
    pub edns: Option<Edns>,
}

impl<'a> Query<'a> {
    /// Parse a query packet.
    ///
    /// On `Err(NotImplemented)` and `Err(Malformed)` the caller answers with
    /// [`header_only_id`] and the flags of the packet.
    pub fn parse(packet: &'a [u8]) -> Result<Query<'a>, ParseError> {
        if packet.len() < HEADER_LEN {
            return Err(ParseError::NoHeader);
        }
        let id = read_u16(packet, 0).ok_or(ParseError::NoHeader)?;
        let header_flags = read_u16(packet, 2).ok_or(ParseError::NoHeader)?;
        if header_flags & flags::QR != 0 {
            return Err(ParseError::IsResponse);
        }
        let opcode = ((header_flags & flags::OPCODE_MASK) >> flags::OPCODE_SHIFT) as u8;
        if opcode != OPCODE_QUERY {
            return Err(ParseError::NotImplemented);
        }
        let count = |at| read_u16(packet, at).unwrap_or(0);
        let (qdcount, ancount, nscount, arcount) = (count(4), count(6), count(8), count(10));
        if qdcount != 1 {
            return Err(Malformed::QuestionCount.into());
        }

        let mut label_starts = [0u8; MAX_LABELS];
        let mut label_count = 0usize;
        let name_start = HEADER_LEN;
        let mut at = name_start;
        loop {
            let len = *packet.get(at).ok_or(Malformed::TruncatedName)?;
            match len & 0xC0 {
                0x00 => {}
                0xC0 => return Err(Malformed::CompressedQuestion.into()),
                _ => return Err(Malformed::BadLabelType.into()),
            }
            if len == 0 {
                at += 1;
                break;
            }
            // The top two bits are clear, so len <= 63 (MAX_LABEL_LEN).
            let len = usize::from(len);
            if at - name_start + 1 + len + 1 > MAX_NAME_LEN {
                return Err(Malformed::NameTooLong.into());
            }
            if at + 1 + len > packet.len() {
                return Err(Malformed::TruncatedName.into());
            }
            // The length checks above bound a name to 127 labels.
            label_starts[label_count] = (at - name_start) as u8;
            label_count += 1;
            at += 1 + len;
        }
        let qname = &packet[name_start..at];
        let qtype = read_u16(packet, at).ok_or(Malformed::TruncatedQuestion)?;
        let qclass = read_u16(packet, at + 2).ok_or(Malformed::TruncatedQuestion)?;
        let question_end = at + 4;

        // Answer and authority records have no business in a query; skip
        // them so that the additional section can be read.
        let mut at = question_end;
        for _ in 0..(usize::from(ancount) + usize::from(nscount)) {
            at = skip_record(packet, at)?.end;
        }
        let mut edns = None;
        for _ in 0..arcount {
            let record = skip_record(packet, at)?;
            if record.rtype == rtype::OPT {
                if edns.is_some() {
                    return Err(Malformed::DuplicateOpt.into());
                }
                if record.owner_len != 1 {
                    return Err(Malformed::OptNotRoot.into());
                }
                edns = Some(parse_opt(packet, &record)?);
            }
            at = record.end;
        }
        if at != packet.len() {
            return Err(Malformed::TrailingBytes.into());
        }

        Ok(Query {
            packet,
            id,
            flags: header_flags,
            qname,
            label_starts,
            label_count: label_count as u8,
            qtype,
            qclass,
            question_end,
            edns,
        })
    }

    /// The raw question (name, type, class) as the client sent it.
    pub fn question_bytes(&self) -> &'a [u8] {
        &self.packet[HEADER_LEN..self.question_end]
    }

    /// Number of labels in the question name, the root not counted.
    pub fn label_count(&self) -> usize {
        usize::from(self.label_count)
    }

    /// Offsets in `qname` where each label's length byte is.
    pub fn label_starts(&self) -> &[u8] {
        &self.label_starts[..self.label_count()]
    }

    /// The recursion desired bit.
    pub fn recursion_desired(&self) -> bool {
        self.flags & flags::RD != 0
    }

    /// The server cookie the client sent back (empty: none, or no COOKIE
    /// option at all).
    pub fn server_cookie(&self) -> &'a [u8] {
        match self.edns.and_then(|edns| edns.cookie) {
            Some(cookie) => {
                let at = usize::from(cookie.server_at);
                self.packet
                    .get(at..at + usize::from(cookie.server_len))
                    .unwrap_or(&[])
            }
            None => &[],
        }
    }
}

/// Where a record in the packet ends, and what the caller needs of it.
struct RecordSpan {
    owner_len: usize,
    rtype: u16,
    /// The class field: for OPT, the requester's UDP payload size.
    class: u16,
    ttl: u32,
    rdata_start: usize,
    end: usize,
}

/// Skip one resource record at `at`. Its owner may be compressed; a pointer
/// ends the name, so no pointer is followed and no loop is possible.
fn skip_record(packet: &[u8], at: usize) -> Result<RecordSpan, Malformed> {
    let start = at;
    let at = skip_name(packet, start)?;
    let owner_len = at - start;
    let fixed = packet.get(at..at + 10).ok_or(Malformed::TruncatedRecord)?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let class = u16::from_be_bytes([fixed[2], fixed[3]]);
    let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let rdlength = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let rdata_start = at + 10;
    let end = rdata_start + rdlength;
    if end > packet.len() {
        return Err(Malformed::TruncatedRecord);
    }
    Ok(RecordSpan {
        owner_len,
        rtype,
        class,
        ttl,
        rdata_start,
        end,
    })
}

/// Skips a record's owner name at `start`: the offset past it in place. A
/// compressed name is followed to its end so that it is checked whole, as
/// RFC 1035 section 4.1.4 has it and other parsers (the `domain` crate)
/// read it: each pointer points strictly backward (so there is no loop,
/// and at most one hop per two bytes of packet), and the name is at most
/// 255 bytes with its root label. A query with another name is malformed;
/// reading it otherwise would take its OPT record where others see none.
fn skip_name(packet: &[u8], start: usize) -> Result<usize, Malformed> {
    let mut at = start;
    // The name's length so far, without the root label.
    let mut name_len = 0usize;
    // Where the name ends in place: past its first pointer, if any.
    let mut end = None;
    loop {
        let len = *packet.get(at).ok_or(Malformed::TruncatedRecord)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Ok(end.unwrap_or(at + 1)),
            0x00 => {
                name_len += 1 + usize::from(len);
                if name_len + 1 > MAX_NAME_LEN {
                    return Err(Malformed::NameTooLong);
                }
                at += 1 + usize::from(len);
            }
            0xC0 => {
                let low = *packet.get(at + 1).ok_or(Malformed::TruncatedRecord)?;
                let target = (usize::from(len & 0x3F) << 8) | usize::from(low);
                if target >= at {
                    return Err(Malformed::BadPointer);
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            _ => return Err(Malformed::BadLabelType),
        }
    }
}

fn parse_opt(packet: &[u8], record: &RecordSpan) -> Result<Edns, Malformed> {
    let mut edns = Edns {
        udp_payload_size: record.class,
        version: (record.ttl >> 16) as u8,
        dnssec_ok: record.ttl & 0x8000 != 0,
        nsid_requested: false,
        client_subnet: None,
        cookie: None,
    };
    let mut at = record.rdata_start;
    while at < record.end {
        let code = read_u16(packet, at).ok_or(Malformed::TruncatedOption)?;
        let len = usize::from(read_u16(packet, at + 2).ok_or(Malformed::TruncatedOption)?);
        let data_start = at + 4;
        let data_end = data_start + len;
        if data_end > record.end {
            return Err(Malformed::TruncatedOption);
        }
        let data = &packet[data_start..data_end];
        match code {
            option::NSID => edns.nsid_requested = true,
            option::CLIENT_SUBNET => {
                if edns.client_subnet.is_some() {
                    return Err(Malformed::BadClientSubnet);
                }
                edns.client_subnet = Some(parse_client_subnet(data)?);
            }
            option::COOKIE => {
                if edns.cookie.is_some() {
                    return Err(Malformed::BadCookie);
                }
                edns.cookie = Some(parse_cookie(data, data_start)?);
            }
            _ => {}
        }
        at = data_end;
    }
    Ok(edns)
}

/// RFC 7873 section 5.2.2: an 8-byte client cookie, then nothing or a
/// server cookie of 8 to 32 bytes; any other length is FORMERR. `at` is
/// where `data` starts in the packet.
fn parse_cookie(data: &[u8], at: usize) -> Result<CookieOption, Malformed> {
    if !(data.len() == 8 || (16..=40).contains(&data.len())) {
        return Err(Malformed::BadCookie);
    }
    let mut client = [0u8; 8];
    client.copy_from_slice(&data[..8]);
    Ok(CookieOption {
        client,
        // A packet is at most 64 KiB and the option at most 40 bytes.
        server_at: (at + 8) as u16,
        server_len: (data.len() - 8) as u8,
    })
}

/// RFC 7871 section 6: FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH,
/// then exactly ceil(source / 8) address bytes with the bits past the
/// prefix zero. Anything else is FORMERR.
fn parse_client_subnet(data: &[u8]) -> Result<ClientSubnet, Malformed> {
    if data.len() < 4 {
        return Err(Malformed::BadClientSubnet);
    }
    let family = u16::from_be_bytes([data[0], data[1]]);
    let source_prefix = data[2];
    let scope_prefix = data[3];
    let max_prefix = match family {
        1 => 32,
        2 => 128,
        _ => return Err(Malformed::BadClientSubnet),
    };
    if source_prefix > max_prefix || scope_prefix > max_prefix {
        return Err(Malformed::BadClientSubnet);
    }
    let address_bytes = &data[4..];
    if address_bytes.len() != usize::from(source_prefix).div_ceil(8) {
        return Err(Malformed::BadClientSubnet);
    }
    if let Some(&last) = address_bytes.last() {
        let used_bits = source_prefix % 8;
        if used_bits != 0 && last & (0xFFu8 >> used_bits) != 0 {
            return Err(Malformed::BadClientSubnet);
        }
    }
    let mut address = [0u8; 16];
    address[..address_bytes.len()].copy_from_slice(address_bytes);
    Ok(ClientSubnet {
        family,
        source_prefix,
        scope_prefix,
        address,
    })
}

/// The ID and flags of a packet that failed to parse, for a header-only
/// error response. `None` when there is no header to answer.
pub fn header_only_id(packet: &[u8]) -> Option<(u16, u16)> {
    Some((read_u16(packet, 0)?, read_u16(packet, 2)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_bytes(name: &[&str], qtype: u16, extra: &[u8], arcount: u16) -> Vec<u8> {
        let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        packet.extend_from_slice(&arcount.to_be_bytes());
        for label in name {
            packet.push(label.len() as u8);
            packet.extend_from_slice(label.as_bytes());
        }
        packet.push(0);
        packet.extend_from_slice(&qtype.to_be_bytes());
        packet.extend_from_slice(&1u16.to_be_bytes());
        packet.extend_from_slice(extra);
        packet
    }

    fn opt(options: &[u8], version: u8) -> Vec<u8> {
        let mut record = vec![0, 0, 41, 0x04, 0xD0, 0, version, 0, 0];
        record.extend_from_slice(&(options.len() as u16).to_be_bytes());
        record.extend_from_slice(options);
        record
    }

    #[test]
    fn parses_a_plain_query() {
        let packet = query_bytes(&["Pool", "ntp", "org"], 1, &[], 0);
        let query = Query::parse(&packet).expect("parses");
        assert_eq!(query.id, 0x1234);
        assert_eq!(query.qname, b"\x04Pool\x03ntp\x03org\x00");
        assert_eq!(query.label_starts(), &[0, 5, 9]);
        assert_eq!((query.qtype, query.qclass), (1, 1));
        assert!(query.recursion_desired());
        assert!(query.edns.is_none());
    }

    #[test]
    fn parses_edns_with_client_subnet_and_nsid() {
        let options = [0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2, 0, 3, 0, 0];
        let packet = query_bytes(&["pool", "ntp", "org"], 1, &opt(&options, 0), 1);
        let edns = Query::parse(&packet).expect("parses").edns.expect("edns");
        assert_eq!(edns.udp_payload_size, 1232);
        assert!(edns.nsid_requested);
        let subnet = edns.client_subnet.expect("ecs");
        assert_eq!((subnet.family, subnet.source_prefix), (1, 24));
        assert_eq!(
            subnet.ip(),
            "192.0.2.0".parse::<std::net::IpAddr>().unwrap()
        );
    }

    #[test]
    fn parses_cookies_and_rejects_bad_lengths() {
        let client = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let packet = query_bytes(&["pool"], 1, &opt(&client, 0), 1);
        let query = Query::parse(&packet).expect("parses");
        let cookie = query.edns.and_then(|e| e.cookie).expect("cookie");
        assert_eq!(cookie.client, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(query.server_cookie(), b"");
        let mut both = vec![0, 10, 0, 24, 1, 2, 3, 4, 5, 6, 7, 8];
        both.extend(100..116u8);
        let packet = query_bytes(&["pool"], 1, &opt(&both, 0), 1);
        let query = Query::parse(&packet).expect("parses");
        assert_eq!(query.server_cookie(), (100..116u8).collect::<Vec<_>>());
        for len in [0usize, 7, 9, 15, 41] {
            let mut option = vec![0, 10, 0, len as u8];
            option.extend(std::iter::repeat_n(7u8, len));
            let packet = query_bytes(&["pool"], 1, &opt(&option, 0), 1);
            assert_eq!(
                Query::parse(&packet).map(|q| q.qtype),
                Err(Malformed::BadCookie.into()),
                "cookie option of {len} bytes"
            );
        }
        let twice = [client, client].concat();
        let packet = query_bytes(&["pool"], 1, &opt(&twice, 0), 1);
        assert_eq!(
            Query::parse(&packet).map(|q| q.qtype),
            Err(Malformed::BadCookie.into())
        );
    }

    #[test]
    fn rejects_malformed_queries() {
        let bad_ecs_bits = [0, 8, 0, 7, 0, 1, 23, 0, 192, 0, 3];
        let bad_ecs_family = [0, 8, 0, 4, 0, 3, 0, 0];
        let long_ecs_prefix = [0, 8, 0, 5, 0, 1, 33, 0, 1];
        let cases: Vec<(Vec<u8>, ParseError)> = vec![
            (vec![0; 5], ParseError::NoHeader),
            (
                query_bytes(&["a"], 1, &[], 0)
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| if i == 2 { b | 0x80 } else { b })
                    .collect(),
                ParseError::IsResponse,
            ),
            (
                query_bytes(&["a"], 1, &[], 0)
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| if i == 2 { b | 0x28 } else { b })
                    .collect(),
                ParseError::NotImplemented,
            ),
            (
                vec![0x12, 0x34, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                Malformed::QuestionCount.into(),
            ),
            (
                query_bytes(&["a"], 1, &[], 0)
                    .into_iter()
                    .enumerate()
                    .map(|(i, b)| if i == 5 { 2 } else { b })
                    .collect(),
                Malformed::QuestionCount.into(),
            ),
            (
                query_bytes(&["pool", "ntp"], 1, &[], 0)[..16].to_vec(),
                Malformed::TruncatedName.into(),
            ),
            (
                query_bytes(&[&*"x".repeat(64)], 1, &[], 0),
                // 64 = 0b01000000: the obsolete extended label type.
                Malformed::BadLabelType.into(),
            ),
            (
                query_bytes(&[&*"x".repeat(63); 5], 1, &[], 0),
                Malformed::NameTooLong.into(),
            ),
            (
                query_bytes(&["pool"], 1, &[1, 2, 3], 0),
                Malformed::TrailingBytes.into(),
            ),
            (
                query_bytes(&["pool"], 1, &opt(&bad_ecs_bits, 0), 1),
                Malformed::BadClientSubnet.into(),
            ),
            (
                query_bytes(&["pool"], 1, &opt(&bad_ecs_family, 0), 1),
                Malformed::BadClientSubnet.into(),
            ),
            (
                query_bytes(&["pool"], 1, &opt(&long_ecs_prefix, 0), 1),
                Malformed::BadClientSubnet.into(),
            ),
            (
                query_bytes(&["pool"], 1, &opt(&[0, 3, 0, 9], 0), 1),
                Malformed::TruncatedOption.into(),
            ),
            (
                query_bytes(&["pool"], 1, &[opt(&[], 0), opt(&[], 0)].concat(), 2),
                Malformed::DuplicateOpt.into(),
            ),
        ];
        for (packet, expected) in cases {
            assert_eq!(
                Query::parse(&packet).map(|q| q.qtype),
                Err(expected),
                "{packet:?}"
            );
        }
    }

    #[test]
    fn a_compressed_record_name_must_point_back_to_a_whole_name() {
        // An A record in the additional section, owned by a pointer, then
        // an OPT record (found by the query_diff fuzz target: a pointer
        // into the header was taken on trust while `domain` refused it).
        let record = |pointer: [u8; 2]| {
            let mut extra = pointer.to_vec();
            extra.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 192, 0, 2, 1]);
            extra.extend_from_slice(&opt(&[], 0));
            query_bytes(&["pool", "ntp", "org"], 1, &extra, 2)
        };
        // Back to the question's name: fine.
        let packet = record([0xC0, 12]);
        assert!(Query::parse(&packet).is_ok_and(|q| q.edns.is_some()));
        // To itself, or forward: a loop or worse.
        let at = 12 + 14 + 4;
        let packet = record([0xC0, at as u8]);
        assert_eq!(
            Query::parse(&packet).map(|q| q.qtype),
            Err(Malformed::BadPointer.into())
        );
        let packet = record([0xC0, at as u8 + 2]);
        assert_eq!(
            Query::parse(&packet).map(|q| q.qtype),
            Err(Malformed::BadPointer.into())
        );
    }

    #[test]
    fn rejects_a_compressed_question() {
        let mut packet = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        packet.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert_eq!(
            Query::parse(&packet).map(|q| q.qtype),
            Err(Malformed::CompressedQuestion.into())
        );
    }
}
