//! `ntp`: the NTP packet decoder and the SNTP client's reading of a reply,
//! on any datagram, never panic; a decoded packet encodes back to the same
//! fields; a reply the client accepts gives a finite offset, a delay of at
//! least zero, a usable stratum and a short refid text.

use timepool::shared::ntp::client::read_reply;
use timepool::shared::ntp::packet::{NtpTimestamp, Packet};

pub fn check(data: &[u8]) {
    if let Ok(packet) = Packet::decode(data) {
        let encoded = packet.encode();
        let again = Packet::decode(&encoded).expect("an encoded packet decodes");
        assert_eq!(again.encode(), encoded, "encode and decode agree");
        let _ = packet.kiss_code();
        assert!(packet.refid_text().len() <= 64);
    }
    // The reply is taken as ours when its origin is our transmit time: use
    // the datagram's own origin field as t1 (when it has one), and a t4
    // from its first bytes, so both the accepted and the refused paths run.
    let word = |at: usize| {
        data.get(at..at + 8)
            .map(|b| u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    let t1 = NtpTimestamp(word(24).unwrap_or(0));
    let t4 = NtpTimestamp(word(0).unwrap_or(0));
    if let Some(Ok(measurement)) = read_reply(data, t1, t4) {
        assert!(measurement.offset.is_finite());
        assert!(measurement.rtt.is_finite() && measurement.rtt >= 0.0);
        assert!(measurement.stratum <= 10);
        assert!(measurement.leap <= 3);
        assert!(measurement.refid.len() <= 64);
    }
}
