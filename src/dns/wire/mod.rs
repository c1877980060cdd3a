//! The DNS wire format, hand-written for the hot path.
//!
//! `query` parses what a client sends (header, one question, the EDNS OPT
//! record and its options) without allocating; `writer` builds a response
//! into a buffer the caller owns (it compresses nothing at run time);
//! `packed` holds records encoded once at load, their names compressed
//! then, and copied into responses; `edns` encodes a response's OPT record
//! (the DO bit copied, the NSID option encoded once, the echoed Client
//! Subnet, the COOKIE option).
//!
//! Architecture invariant: this module knows the wire format only. It knows
//! nothing of zones, snapshots, servers or the web layer.

pub mod edns;
pub mod packed;
pub mod query;
pub mod writer;

pub use query::{ClientSubnet, CookieOption, Edns, ParseError, Query};
pub use writer::{MessageWriter, NoSpace};

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
pub use crate::shared::dns_name::{MAX_LABEL_LEN, MAX_NAME_LEN};
/// Most labels a name of 255 bytes can have (each label takes at least 2).
pub const MAX_LABELS: usize = 128;
/// What a client without EDNS may receive over UDP (RFC 1035 4.2.1).
pub const CLASSIC_UDP_SIZE: usize = 512;

/// Resource record types this server reads or writes.
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const SOA: u16 = 6;
    pub const HINFO: u16 = 13;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const ANY: u16 = 255;
}

/// Classes.
pub mod class {
    pub const IN: u16 = 1;
    pub const CH: u16 = 3;
}

/// Response codes. Values above 15 need EDNS (the upper bits go into OPT).
pub mod rcode {
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const SERVFAIL: u16 = 2;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    pub const BADVERS: u16 = 16;
    pub const BADCOOKIE: u16 = 23;
}

/// EDNS option codes.
pub mod option {
    pub const NSID: u16 = 3;
    pub const CLIENT_SUBNET: u16 = 8;
    pub const COOKIE: u16 = 10;
}

/// Header flag bits (second 16-bit word of the header).
pub mod flags {
    pub const QR: u16 = 0x8000;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
    pub const OPCODE_MASK: u16 = 0x7800;
    pub const OPCODE_SHIFT: u16 = 11;
}

/// Opcode QUERY, the only one this server implements.
pub const OPCODE_QUERY: u8 = 0;

#[inline]
pub(crate) fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}
