//! `xdp_frame`: a received Ethernet frame as the AF_XDP worker reads it
//! (`timepool::dns::server::xdp::frame::parse`), any bytes: never a panic
//! nor a read past the frame; a frame taken is a UDP datagram whose
//! payload lies inside it and holds a DNS header; and the reply written
//! for it (`write_reply`, headers swapped around the same payload) is
//! itself a frame `parse` takes, from the query's destination to its
//! source, with an IPv4 header checksum and a UDP checksum that verify.

use std::net::IpAddr;

use timepool::dns::server::xdp::frame::{parse, write_reply};

pub fn check(data: &[u8]) {
    let Ok(query) = parse(data) else {
        return;
    };
    let payload = query.payload();
    assert!(payload.end <= data.len(), "payload past the frame");
    assert!(payload.len() >= 12, "a payload shorter than a DNS header");
    assert_eq!(
        query.source.is_ipv4(),
        query.destination.is_ipv4(),
        "one address family"
    );

    let header_len = query.reply_header_len();
    let mut reply = vec![0u8; header_len + payload.len()];
    reply[header_len..].copy_from_slice(&data[payload.clone()]);
    let len = write_reply(&query, &mut reply, payload.len());
    assert_eq!(len, reply.len());
    let answer = parse(&reply).expect("the reply is a frame parse takes");
    assert_eq!(answer.source, query.destination);
    assert_eq!(answer.destination, query.source);
    assert_eq!(&reply[answer.payload()], &data[payload]);
    assert_eq!(&reply[0..6], &data[6..12], "to the sender's MAC");
    assert_eq!(&reply[6..12], &data[0..6], "from the MAC it was sent to");

    // The IPv4 header sums to 0xffff with its checksum; the UDP datagram
    // with its pseudo-header too (RFC 768), as the receiving kernel checks.
    let (udp_start, mut pseudo) = match (answer.source.ip(), answer.destination.ip()) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            assert_eq!(fold(sum(0, &reply[14..34])), 0xffff, "IPv4 header checksum");
            (34, sum(sum(0, &from.octets()), &to.octets()))
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => (54, sum(sum(0, &from.octets()), &to.octets())),
        _ => unreachable!("checked above"),
    };
    let udp = &reply[udp_start..];
    pseudo += 17 + udp.len() as u64;
    assert_eq!(fold(sum(pseudo, udp)), 0xffff, "UDP checksum");
}

fn sum(mut total: u64, bytes: &[u8]) -> u64 {
    for pair in bytes.chunks(2) {
        total += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    total
}

fn fold(mut total: u64) -> u16 {
    while total > 0xffff {
        total = (total & 0xffff) + (total >> 16);
    }
    total as u16
}
