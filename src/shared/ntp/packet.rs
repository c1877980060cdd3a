//! The NTP packet header (RFC 5905 section 7.3), as SNTP uses it: 48 bytes,
//! no extension fields, no MAC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of the header; anything after it (extensions, MAC) is ignored.
pub const HEADER_LEN: usize = 48;

/// Seconds from the NTP era 0 epoch (1900-01-01) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

pub const MODE_CLIENT: u8 = 3;
pub const MODE_SERVER: u8 = 4;

/// A 64-bit NTP timestamp: seconds since 1900 in the high 32 bits, the
/// fraction in the low 32 bits. Era 0 only (good until 2036; the monitor
/// compares timestamps taken seconds apart, where wrapping would be visible
/// as a huge offset, not silently wrong).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    pub fn from_system_time(time: SystemTime) -> NtpTimestamp {
        let since_unix = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let seconds = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET) & 0xffff_ffff;
        let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTimestamp((seconds << 32) | fraction)
    }

    /// Now, shifted by `offset` seconds (the test responder's wrong clock).
    pub fn now_shifted(offset: f64) -> NtpTimestamp {
        let now = SystemTime::now();
        let shifted = if offset >= 0.0 {
            now + Duration::from_secs_f64(offset)
        } else {
            now - Duration::from_secs_f64(-offset)
        };
        NtpTimestamp::from_system_time(shifted)
    }

    /// Seconds since 1900 as a float, for offset arithmetic.
    pub fn as_secs_f64(self) -> f64 {
        (self.0 >> 32) as f64 + (self.0 & 0xffff_ffff) as f64 / 4_294_967_296.0
    }
}

/// A Kiss-o'-Death code the monitor acts on (RFC 5905 section 7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KissCode {
    /// The client polls too often.
    Rate,
    /// Access denied by the server's policy.
    Deny,
    /// Access restricted.
    Rstr,
}

impl KissCode {
    pub fn as_str(self) -> &'static str {
        match self {
            KissCode::Rate => "RATE",
            KissCode::Deny => "DENY",
            KissCode::Rstr => "RSTR",
        }
    }

    pub fn refid(self) -> [u8; 4] {
        let mut id = [0u8; 4];
        id.copy_from_slice(self.as_str().as_bytes());
        id
    }

    fn from_refid(refid: [u8; 4]) -> Option<KissCode> {
        match &refid {
            b"RATE" => Some(KissCode::Rate),
            b"DENY" => Some(KissCode::Deny),
            b"RSTR" => Some(KissCode::Rstr),
            _ => None,
        }
    }
}

/// The header fields, in wire order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Packet {
    /// Leap indicator: 0 none, 1 +1 s, 2 -1 s, 3 unsynchronised.
    pub leap: u8,
    pub version: u8,
    pub mode: u8,
    /// 0 = unspecified or KoD, 1 primary, 2..=15 secondary, 16 unsynchronised.
    pub stratum: u8,
    pub poll: i8,
    pub precision: i8,
    pub root_delay: u32,
    pub root_dispersion: u32,
    /// Reference id: an IPv4 address, a clock name, or a KoD code.
    pub refid: [u8; 4],
    pub reference: NtpTimestamp,
    /// Client: zero. Server: the client's transmit timestamp, echoed.
    pub origin: NtpTimestamp,
    pub receive: NtpTimestamp,
    pub transmit: NtpTimestamp,
}

/// Why bytes are not an NTP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    TooShort(usize),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooShort(n) => {
                write!(f, "NTP packet of {n} bytes, want at least {HEADER_LEN}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

impl Packet {
    /// A client request (version 4) whose transmit timestamp is `transmit`.
    pub fn client_request(transmit: NtpTimestamp) -> Packet {
        Packet {
            version: 4,
            mode: MODE_CLIENT,
            transmit,
            ..Packet::default()
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = (self.leap & 3) << 6 | (self.version & 7) << 3 | (self.mode & 7);
        out[1] = self.stratum;
        out[2] = self.poll as u8;
        out[3] = self.precision as u8;
        out[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        out[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        out[12..16].copy_from_slice(&self.refid);
        out[16..24].copy_from_slice(&self.reference.0.to_be_bytes());
        out[24..32].copy_from_slice(&self.origin.0.to_be_bytes());
        out[32..40].copy_from_slice(&self.receive.0.to_be_bytes());
        out[40..48].copy_from_slice(&self.transmit.0.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
        let Some(header) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(DecodeError::TooShort(bytes.len()));
        };
        let u32_at =
            |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        Ok(Packet {
            leap: header[0] >> 6,
            version: (header[0] >> 3) & 7,
            mode: header[0] & 7,
            stratum: header[1],
            poll: header[2] as i8,
            precision: header[3] as i8,
            root_delay: u32_at(4),
            root_dispersion: u32_at(8),
            refid: [header[12], header[13], header[14], header[15]],
            reference: NtpTimestamp(u64_at(16)),
            origin: NtpTimestamp(u64_at(24)),
            receive: NtpTimestamp(u64_at(32)),
            transmit: NtpTimestamp(u64_at(40)),
        })
    }

    /// The KoD code when this is a Kiss-o'-Death packet (stratum 0) with a
    /// code the monitor acts on. Other stratum-0 codes are not errors.
    pub fn kiss_code(&self) -> Option<KissCode> {
        if self.stratum == 0 {
            KissCode::from_refid(self.refid)
        } else {
            None
        }
    }

    /// The reference id as text: ASCII for stratum 0 and 1 (a KoD code or a
    /// clock name), an IPv4 address (or IPv6 hash) above.
    pub fn refid_text(&self) -> String {
        if self.stratum <= 1 {
            self.refid
                .iter()
                .take_while(|b| **b != 0)
                .map(|b| {
                    if b.is_ascii_graphic() {
                        *b as char
                    } else {
                        '?'
                    }
                })
                .collect()
        } else {
            std::net::Ipv4Addr::from(self.refid).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_is_identity() {
        let packet = Packet {
            leap: 3,
            version: 4,
            mode: MODE_SERVER,
            stratum: 2,
            poll: -6,
            precision: -20,
            root_delay: 0x0001_0203,
            root_dispersion: 0x0405_0607,
            refid: [192, 0, 2, 1],
            reference: NtpTimestamp(1),
            origin: NtpTimestamp(u64::MAX),
            receive: NtpTimestamp(0x1234_5678_9abc_def0),
            transmit: NtpTimestamp(42),
        };
        let bytes = packet.encode();
        assert_eq!(bytes[0], 0b11_100_100);
        assert_eq!(Packet::decode(&bytes), Ok(packet));
        assert_eq!(packet.refid_text(), "192.0.2.1");
    }

    #[test]
    fn short_packets_are_refused() {
        assert_eq!(Packet::decode(&[0u8; 47]), Err(DecodeError::TooShort(47)));
        assert!(
            Packet::decode(&[0u8; 68]).is_ok(),
            "a MAC after the header is ignored"
        );
    }

    #[test]
    fn kiss_codes_need_stratum_zero() {
        for code in [KissCode::Rate, KissCode::Deny, KissCode::Rstr] {
            let kod = Packet {
                stratum: 0,
                refid: code.refid(),
                ..Packet::default()
            };
            assert_eq!(kod.kiss_code(), Some(code));
            assert_eq!(kod.refid_text(), code.as_str());
            let not_kod = Packet { stratum: 2, ..kod };
            assert_eq!(not_kod.kiss_code(), None);
        }
        let other = Packet {
            stratum: 0,
            refid: *b"INIT",
            ..Packet::default()
        };
        assert_eq!(other.kiss_code(), None);
    }

    #[test]
    fn timestamps_count_from_1900() {
        let t = NtpTimestamp::from_system_time(UNIX_EPOCH + Duration::from_millis(1500));
        assert_eq!(t.0 >> 32, NTP_UNIX_OFFSET + 1);
        assert!((t.as_secs_f64() - (NTP_UNIX_OFFSET as f64 + 1.5)).abs() < 1e-9);
    }
}
