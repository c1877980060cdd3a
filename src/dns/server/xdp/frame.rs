//! The frames of the XDP path: what a received Ethernet frame holds (a
//! UDP datagram over IPv4 or IPv6, or a reason to drop it), and the reply's
//! headers written around an answer already in place.
//!
//! The XDP program passes to the kernel everything that is not a UDP
//! datagram to one of our addresses and ports; what reaches this module is
//! still checked whole, as bytes from the network: a frame shorter than
//! its headers say, a UDP length that disagrees with the IP length, or a
//! payload too short for a DNS header is dropped and counted, never read
//! past. Received UDP checksums are not verified: a sender on the same
//! host (veth) leaves only the pseudo-header's partial sum in them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

const ETHERNET_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;
const PROTOCOL_UDP: u8 = 17;
/// The shortest payload worth answering: a DNS header.
const DNS_HEADER: usize = 12;
/// The replies' hop limit, as the kernel's default.
const REPLY_TTL: u8 = 64;

/// Why a frame that reached the XDP socket is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than the headers it announces.
    Truncated,
    /// Not IPv4 or IPv6 over Ethernet, not UDP, IPv4 options, IPv6
    /// extension headers or a fragment: the program should have passed it.
    Unexpected,
    /// The UDP length disagrees with the IP length.
    Length,
    /// A payload shorter than a DNS header.
    TooShort,
    /// Sent to a group (multicast or broadcast) MAC, or from a source no
    /// reply may go to (unspecified, loopback, multicast, broadcast, port
    /// 0): the kernel would not answer it either.
    Source,
}

/// A received UDP datagram: its addresses and where its payload lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    /// The DNS message within the frame.
    pub payload: (usize, usize),
    source_mac: [u8; 6],
    destination_mac: [u8; 6],
}

impl Datagram {
    pub fn payload(&self) -> Range<usize> {
        self.payload.0..self.payload.1
    }

    /// The bytes before a reply's payload: Ethernet, IP and UDP headers.
    pub fn reply_header_len(&self) -> usize {
        ETHERNET_HEADER
            + UDP_HEADER
            + match self.source {
                SocketAddr::V4(_) => IPV4_HEADER,
                SocketAddr::V6(_) => IPV6_HEADER,
            }
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// Read a received frame. Ethernet padding after the IP packet (short
/// frames are padded to 60 bytes) is ignored: the IP length decides.
pub fn parse(frame: &[u8]) -> Result<Datagram, Malformed> {
    let ethertype = u16_at(frame, 12).ok_or(Malformed::Truncated)?;
    let mut destination_mac = [0u8; 6];
    let mut source_mac = [0u8; 6];
    destination_mac.copy_from_slice(&frame[0..6]);
    source_mac.copy_from_slice(&frame[6..12]);
    // The group bit: a frame to every host, which no host answers alone,
    // or one claiming to come from a group, where no reply may go.
    if destination_mac[0] & 1 != 0 || source_mac[0] & 1 != 0 {
        return Err(Malformed::Source);
    }
    let ip = &frame[ETHERNET_HEADER..];
    let (source, destination, udp_start, ip_end) = match ethertype {
        ETHERTYPE_IPV4 => {
            let header = ip.get(..IPV4_HEADER).ok_or(Malformed::Truncated)?;
            // Version 4 and no options; no fragment (MF clear, offset 0;
            // DF may be set).
            let fragment = u16::from_be_bytes([header[6], header[7]]) & 0x3fff;
            if header[0] != 0x45 || header[9] != PROTOCOL_UDP || fragment != 0 {
                return Err(Malformed::Unexpected);
            }
            let total = usize::from(u16_at(header, 2).ok_or(Malformed::Truncated)?);
            if total < IPV4_HEADER + UDP_HEADER {
                return Err(Malformed::Length);
            }
            if total > ip.len() {
                return Err(Malformed::Truncated);
            }
            let source = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
            let destination = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
            (
                IpAddr::V4(source),
                IpAddr::V4(destination),
                IPV4_HEADER,
                total,
            )
        }
        ETHERTYPE_IPV6 => {
            let header = ip.get(..IPV6_HEADER).ok_or(Malformed::Truncated)?;
            if header[0] >> 4 != 6 || header[6] != PROTOCOL_UDP {
                return Err(Malformed::Unexpected);
            }
            let payload = usize::from(u16_at(header, 4).ok_or(Malformed::Truncated)?);
            if payload < UDP_HEADER {
                return Err(Malformed::Length);
            }
            if IPV6_HEADER + payload > ip.len() {
                return Err(Malformed::Truncated);
            }
            let mut source = [0u8; 16];
            let mut destination = [0u8; 16];
            source.copy_from_slice(&header[8..24]);
            destination.copy_from_slice(&header[24..40]);
            (
                IpAddr::V6(Ipv6Addr::from(source)),
                IpAddr::V6(Ipv6Addr::from(destination)),
                IPV6_HEADER,
                IPV6_HEADER + payload,
            )
        }
        _ => return Err(Malformed::Unexpected),
    };
    let udp = &ip[udp_start..ip_end];
    let source_port = u16_at(udp, 0).ok_or(Malformed::Truncated)?;
    let destination_port = u16_at(udp, 2).ok_or(Malformed::Truncated)?;
    let udp_length = usize::from(u16_at(udp, 4).ok_or(Malformed::Truncated)?);
    if udp_length != udp.len() {
        return Err(Malformed::Length);
    }
    if udp_length < UDP_HEADER + DNS_HEADER {
        return Err(Malformed::TooShort);
    }
    // The reply goes from the query's destination to its source: neither
    // may be an address no datagram is sent from or to.
    if source_port == 0 || destination_port == 0 || !answerable(source) || !answerable(destination)
    {
        return Err(Malformed::Source);
    }
    let payload_start = ETHERNET_HEADER + udp_start + UDP_HEADER;
    Ok(Datagram {
        source: SocketAddr::new(source, source_port),
        destination: SocketAddr::new(destination, destination_port),
        payload: (payload_start, ETHERNET_HEADER + ip_end),
        source_mac,
        destination_mac,
    })
}

/// Whether a reply may be sent to `source`: not unspecified, loopback,
/// multicast or the IPv4 broadcast address (a martian on the wire).
fn answerable(source: IpAddr) -> bool {
    match source {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified() || v4.is_loopback() || v4.is_multicast() || v4.is_broadcast())
        }
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_loopback() || v6.is_multicast()),
    }
}

/// The ones' complement sum of `bytes` as 16-bit big-endian words (an odd
/// last byte padded with zero), added to `sum`, not yet folded.
fn add_words(mut sum: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

/// Fold a sum to 16 bits and complement it: the Internet checksum.
fn finish(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Write the reply's Ethernet, IP and UDP headers into `frame` in front of
/// the `payload_len` bytes of answer already at `query.reply_header_len()`:
/// the query's addresses, ports and MACs swapped, checksums computed.
/// Returns the frame's length. `frame` must hold the headers and payload
/// (the caller sized the answer to fit).
pub fn write_reply(query: &Datagram, frame: &mut [u8], payload_len: usize) -> usize {
    let header_len = query.reply_header_len();
    let total = header_len + payload_len;
    let udp_length = (UDP_HEADER + payload_len) as u16;
    frame[0..6].copy_from_slice(&query.source_mac);
    frame[6..12].copy_from_slice(&query.destination_mac);
    let (udp_start, pseudo_sum) = match (query.destination.ip(), query.source.ip()) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let ip = &mut frame[ETHERNET_HEADER..ETHERNET_HEADER + IPV4_HEADER];
            ip[0] = 0x45;
            // TOS 0, as the kernel sends from a socket that set none: the
            // query's DSCP and ECN marks are the sender's, not ours.
            ip[1] = 0;
            ip[2..4].copy_from_slice(&(IPV4_HEADER as u16 + udp_length).to_be_bytes());
            // ID 0 with DF set, as Linux sends a datagram it will not fragment.
            ip[4..6].copy_from_slice(&[0, 0]);
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
            ip[8] = REPLY_TTL;
            ip[9] = PROTOCOL_UDP;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&from.octets());
            ip[16..20].copy_from_slice(&to.octets());
            let checksum = finish(add_words(0, ip));
            ip[10..12].copy_from_slice(&checksum.to_be_bytes());
            let mut pseudo = add_words(0, &from.octets());
            pseudo = add_words(pseudo, &to.octets());
            pseudo += u64::from(PROTOCOL_UDP) + u64::from(udp_length);
            (ETHERNET_HEADER + IPV4_HEADER, pseudo)
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => {
            frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let ip = &mut frame[ETHERNET_HEADER..ETHERNET_HEADER + IPV6_HEADER];
            // Traffic class and flow label 0 (see the IPv4 TOS above).
            ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
            ip[4..6].copy_from_slice(&udp_length.to_be_bytes());
            ip[6] = PROTOCOL_UDP;
            ip[7] = REPLY_TTL;
            ip[8..24].copy_from_slice(&from.octets());
            ip[24..40].copy_from_slice(&to.octets());
            let mut pseudo = add_words(0, &from.octets());
            pseudo = add_words(pseudo, &to.octets());
            pseudo += u64::from(PROTOCOL_UDP) + u64::from(udp_length);
            (ETHERNET_HEADER + IPV6_HEADER, pseudo)
        }
        // parse() gives both addresses of one family.
        _ => unreachable!("a datagram's addresses are of one family"),
    };
    let udp = &mut frame[udp_start..total];
    udp[0..2].copy_from_slice(&query.destination.port().to_be_bytes());
    udp[2..4].copy_from_slice(&query.source.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_length.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    // Computed for IPv4 too: the receiver checks it when it is not zero,
    // and a reply crossing no NIC that could offload it has no other.
    let mut checksum = finish(add_words(pseudo_sum, udp));
    if checksum == 0 {
        // Zero means "none" in UDP; its ones' complement twin stands in.
        checksum = 0xffff;
    }
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// A frame as a client's kernel sends it, with a correct UDP checksum.
    fn frame(source: SocketAddr, destination: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let query = Datagram {
            // Built as the reply of the reverse datagram.
            source: destination,
            destination: source,
            payload: (0, 0),
            source_mac: SERVER_MAC,
            destination_mac: CLIENT_MAC,
        };
        let mut bytes = vec![0u8; query.reply_header_len() + payload.len()];
        let start = query.reply_header_len();
        bytes[start..].copy_from_slice(payload);
        let len = write_reply(&query, &mut bytes, payload.len());
        bytes.truncate(len);
        bytes
    }

    fn v4(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    /// The checksum of a whole UDP datagram with its pseudo-header sums to
    /// 0xffff when right (RFC 768), as a receiving kernel checks it.
    fn udp_checksum_holds(frame: &[u8]) -> bool {
        let parsed = parse(frame).expect("parse");
        let ip_start = ETHERNET_HEADER;
        let (udp_start, mut sum) = match (parsed.source.ip(), parsed.destination.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (
                ip_start + IPV4_HEADER,
                add_words(add_words(0, &s.octets()), &d.octets()),
            ),
            (IpAddr::V6(s), IpAddr::V6(d)) => (
                ip_start + IPV6_HEADER,
                add_words(add_words(0, &s.octets()), &d.octets()),
            ),
            _ => unreachable!(),
        };
        let udp = &frame[udp_start..parsed.payload.1];
        sum += u64::from(PROTOCOL_UDP) + udp.len() as u64;
        finish(add_words(sum, udp)) == 0
    }

    #[test]
    fn an_ipv4_query_is_read_and_answered_with_swapped_headers() {
        let client = v4("198.18.0.2:40000");
        let server = v4("198.18.0.1:53");
        let payload = [0xabu8; 29];
        let received = frame(client, server, &payload);
        assert!(udp_checksum_holds(&received));
        let query = parse(&received).expect("parse");
        assert_eq!((query.source, query.destination), (client, server));
        assert_eq!(&received[query.payload()], &payload[..]);

        let answer = [0x5au8; 45];
        let mut reply = vec![0u8; 2048];
        let start = query.reply_header_len();
        reply[start..start + answer.len()].copy_from_slice(&answer);
        let len = write_reply(&query, &mut reply, answer.len());
        reply.truncate(len);
        let back = parse(&reply).expect("the reply parses");
        assert_eq!((back.source, back.destination), (server, client));
        assert_eq!(&reply[back.payload()], &answer[..]);
        assert_eq!(&reply[0..6], &CLIENT_MAC);
        assert_eq!(&reply[6..12], &SERVER_MAC);
        // The IPv4 header checksum: the header sums to 0xffff.
        assert_eq!(finish(add_words(0, &reply[14..34])), 0);
        assert!(udp_checksum_holds(&reply));
    }

    #[test]
    fn an_ipv6_query_is_read_and_answered_with_checksums() {
        let client: SocketAddr = "[2001:db8::2]:5353".parse().unwrap();
        let server: SocketAddr = "[2001:db8::1]:53".parse().unwrap();
        let received = frame(client, server, &[7u8; 33]);
        let query = parse(&received).expect("parse");
        assert_eq!((query.source, query.destination), (client, server));
        let mut reply = vec![0u8; 2048];
        let len = write_reply(&query, &mut reply, 101);
        reply.truncate(len);
        assert_eq!(len, 14 + 40 + 8 + 101);
        let back = parse(&reply).expect("the reply parses");
        assert_eq!((back.source, back.destination), (server, client));
        assert!(udp_checksum_holds(&reply));
    }

    #[test]
    fn ethernet_padding_is_ignored_and_damage_is_named() {
        let client = v4("198.18.0.2:40000");
        let server = v4("198.18.0.1:53");
        let mut padded = frame(client, server, &[1u8; 12]);
        let exact = parse(&padded).expect("parse");
        padded.extend_from_slice(&[0u8; 8]);
        assert_eq!(parse(&padded), Ok(exact));

        let whole = frame(client, server, &[1u8; 20]);
        // Cut anywhere: truncated (or, inside the UDP payload, a length
        // that disagrees), never a panic.
        for cut in 0..whole.len() {
            assert!(parse(&whole[..cut]).is_err(), "cut at {cut}");
        }
        let mut short = frame(client, server, &[1u8; 11]);
        assert_eq!(parse(&short), Err(Malformed::TooShort));
        short[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(parse(&short), Err(Malformed::Length));

        let mut fragment = whole.clone();
        fragment[14 + 6] = 0x20; // more fragments
        assert_eq!(parse(&fragment), Err(Malformed::Unexpected));
        let mut tcp = whole.clone();
        tcp[14 + 9] = 6;
        assert_eq!(parse(&tcp), Err(Malformed::Unexpected));
        let mut arp = whole;
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse(&arp), Err(Malformed::Unexpected));
    }

    #[test]
    fn group_macs_and_martian_sources_are_not_answered_and_marks_not_echoed() {
        let server = v4("198.18.0.1:53");
        let good = frame(v4("198.18.0.2:40000"), server, &[1u8; 12]);
        let mut broadcast = good.clone();
        broadcast[..6].fill(0xff);
        assert_eq!(parse(&broadcast), Err(Malformed::Source));
        let mut from_group = good.clone();
        from_group[6] |= 1;
        assert_eq!(parse(&from_group), Err(Malformed::Source));
        for source in [
            "127.0.0.1:40000",
            "0.0.0.0:40000",
            "224.0.0.1:40000",
            "255.255.255.255:40000",
            "198.18.0.2:0",
        ] {
            let martian = frame(v4(source), server, &[1u8; 12]);
            assert_eq!(parse(&martian), Err(Malformed::Source), "{source}");
        }
        let martian6 = frame(v4("[ff02::1]:40000"), v4("[2001:db8::1]:53"), &[1u8; 12]);
        assert_eq!(parse(&martian6), Err(Malformed::Source));
        // To loopback (found by the fuzzer: its reply would come from ::1).
        let to_loopback = frame(v4("[2001:2::3600]:40000"), v4("[::1]:53"), &[1u8; 12]);
        assert_eq!(parse(&to_loopback), Err(Malformed::Source));
        // To port 0 (found by the fuzzer: its reply would come from it).
        let to_port_zero = frame(v4("198.18.0.2:40000"), v4("198.18.0.1:0"), &[1u8; 12]);
        assert_eq!(parse(&to_port_zero), Err(Malformed::Source));

        // A query's DSCP and ECN (TOS 0xbb) stay out of the reply.
        let mut marked = good;
        marked[14 + 1] = 0xbb;
        let query = parse(&marked).expect("parse");
        let mut reply = vec![0u8; query.reply_header_len() + 12];
        write_reply(&query, &mut reply, 12);
        assert_eq!(reply[14 + 1], 0, "TOS of the reply");
    }

    #[test]
    fn a_checksum_of_zero_is_sent_as_all_ones() {
        // RFC 768: a computed 0 goes out as 0xffff. Searching for a
        // payload that sums to it exercises the branch.
        let client = v4("198.18.0.2:40000");
        let server = v4("198.18.0.1:53");
        let received = frame(client, server, &[0u8; 12]);
        let query = parse(&received).expect("parse");
        let mut found = false;
        for word in 0..=u16::MAX {
            let mut reply = vec![0u8; 128];
            let start = query.reply_header_len();
            reply[start + 10..start + 12].copy_from_slice(&word.to_be_bytes());
            let len = write_reply(&query, &mut reply, 12);
            if reply[14 + 20 + 6..14 + 20 + 8] == [0xff, 0xff] {
                reply.truncate(len);
                assert!(udp_checksum_holds(&reply));
                found = true;
                break;
            }
        }
        assert!(found);
    }
}
