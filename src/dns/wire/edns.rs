//! The OPT record of a response (RFC 6891): its fixed part with the DO
//! bit copied from the query (RFC 3225), the NSID option (RFC 5001,
//! encoded once at start), the Client Subnet option echoed with our scope
//! (RFC 7871) and the COOKIE option (RFC 7873). Written with one bounds
//! check when there is neither NSID nor cookie.
//!
//! Architecture invariant: wire format only, like the rest of `wire`.

use super::query::ClientSubnet;
use super::writer::Section;
use super::{MessageWriter, NoSpace, Query, option, rtype};

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

    /// Code, length and identifier, as a response carries them.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

/// An OPT record's bytes before its options: root owner, type, payload
/// size (class), extended rcode, version and flags (TTL), RDLENGTH.
pub const OPT_FIXED_LEN: usize = 11;

/// The encoded NSID option this response carries: when the client asks
/// and one is configured, unless the OPT record with it would not fit
/// after the question (a long NSID, a long name and a small payload size):
/// then the OPT goes without it rather than the response being dropped.
pub fn nsid_to_send<'c>(
    nsid: Option<&'c NsidOption>,
    query: &Query<'_>,
    writer: &MessageWriter<'_>,
    limit: usize,
) -> &'c [u8] {
    let Some(edns) = query.edns else {
        return &[];
    };
    let Some(nsid) = nsid else {
        return &[];
    };
    if !edns.nsid_requested || writer.len() + opt_record_len(query, nsid.encoded()) > limit {
        return &[];
    }
    nsid.encoded()
}

/// The COOKIE option of a response: code, length, the client's cookie
/// and our server cookie (RFC 7873 section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieReply {
    bytes: [u8; COOKIE_REPLY_LEN],
}

/// Length of a response's COOKIE option with a 16-byte server cookie.
pub const COOKIE_REPLY_LEN: usize = 4 + 8 + 16;

impl CookieReply {
    pub fn new(client: &[u8; 8], server: &[u8; 16]) -> CookieReply {
        let mut bytes = [0u8; COOKIE_REPLY_LEN];
        bytes[0..2].copy_from_slice(&option::COOKIE.to_be_bytes());
        bytes[2..4].copy_from_slice(&24u16.to_be_bytes());
        bytes[4..12].copy_from_slice(client);
        bytes[12..].copy_from_slice(server);
        CookieReply { bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Size of the OPT record this response will carry, with `nsid` (the
/// encoded option, or empty), and a COOKIE option when the query had one.
pub fn opt_record_len(query: &Query<'_>, nsid: &[u8]) -> usize {
    let Some(edns) = query.edns else {
        return 0;
    };
    let mut len = OPT_FIXED_LEN + nsid.len();
    if let Some(subnet) = edns.client_subnet {
        len += 8 + subnet.address_len();
    }
    if edns.cookie.is_some() {
        len += COOKIE_REPLY_LEN;
    }
    len
}

/// The options of a response's OPT record besides ECS: the encoded NSID
/// option (from [`nsid_to_send`], or empty) and the COOKIE option (there
/// whenever the query had one).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplyOptions<'a> {
    pub nsid: &'a [u8],
    pub cookie: Option<&'a CookieReply>,
}

/// The OPT record of a response: our payload size (`payload_size`), the
/// extended rcode, the DO bit as the query had it, the NSID and COOKIE
/// options of `options`, ECS echoed with its scope. Written with one
/// bounds check when there is neither NSID nor cookie.
pub fn write_opt(
    writer: &mut MessageWriter<'_>,
    payload_size: u16,
    query: &Query<'_>,
    options: ReplyOptions<'_>,
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
    let nsid = options.nsid;
    let cookie = options.cookie.map_or(&[][..], CookieReply::as_bytes);
    let mut fixed = [0u8; OPT_FIXED_LEN];
    fixed[1..3].copy_from_slice(&rtype::OPT.to_be_bytes());
    fixed[3..5].copy_from_slice(&payload_size.to_be_bytes());
    fixed[5] = (response_rcode >> 4) as u8;
    if edns.dnssec_ok {
        // RFC 3225 section 3: the DO bit is copied into the response.
        fixed[7] = 0x80;
    }
    fixed[9..11].copy_from_slice(&((nsid.len() + ecs.len() + cookie.len()) as u16).to_be_bytes());
    if nsid.is_empty() {
        writer.push_record(Section::Additional, &fixed, ecs)?;
    } else {
        writer.push_record(Section::Additional, &fixed, nsid)?;
        writer.push_bytes(ecs)?;
    }
    if !cookie.is_empty() {
        writer.push_bytes(cookie)?;
    }
    Ok(())
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
