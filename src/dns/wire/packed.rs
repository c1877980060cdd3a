//! Records encoded once, when a zone table is built, and copied into
//! responses.
//!
//! An origin's SOA and NS records are the same in every response but for
//! one thing: where the origin's name sits in that message (it is a suffix
//! of the question's name, after a query-dependent number of labels). So
//! they are encoded at load with their names already compressed, and a
//! response copies the bytes and fills in the compression pointers that
//! lead to the origin's name. Names that share no suffix with the origin
//! are compressed against each other (the SOA's RNAME against its MNAME,
//! one NS name against another), with pointers relative to the records'
//! own start: those are filled in per response too, since the records'
//! place in the message also varies.
//!
//! The A and AAAA records of an answer are owned by the question's name
//! (always at the same place): their fixed part is encoded once per origin
//! ([`question_owned_header`]) and copied before each address.

use super::writer::{MAX_POINTER_TARGET, Section};
use super::{HEADER_LEN, MessageWriter, NoSpace};

/// A compression pointer to fill in when the records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PointerTarget {
    /// The origin's name in the message, plus this many bytes (a suffix of
    /// the origin: `ntp.org.` of `pool.ntp.org.`).
    Origin(u16),
    /// This many bytes after the start of the records in the message.
    Local(u16),
}

#[derive(Clone, Copy, Debug)]
struct Pointer {
    /// Where the two pointer bytes go, from the start of the records.
    at: u16,
    target: PointerTarget,
}

/// One or more records owned by an origin, ready to copy into a response.
#[derive(Clone, Debug)]
pub struct PackedRecords {
    bytes: Box<[u8]>,
    pointers: Box<[Pointer]>,
    count: u16,
}

/// A piece of RDATA given to [`PackedRecordsBuilder::record`].
pub enum RdataPart<'a> {
    /// A name in uncompressed wire format (lowercase, root label included).
    Name(&'a [u8]),
    Bytes(&'a [u8]),
}

/// Encodes records owned by `origin` into [`PackedRecords`].
pub struct PackedRecordsBuilder<'o> {
    origin: &'o [u8],
    bytes: Vec<u8>,
    pointers: Vec<Pointer>,
    /// Names written uncompressed so far: (offset in `bytes`, the name
    /// from there to its end, in uncompressed form).
    written: Vec<(u16, Vec<u8>)>,
    count: u16,
}

impl<'o> PackedRecordsBuilder<'o> {
    /// Records owned by `origin` (uncompressed wire format).
    pub fn new(origin: &'o [u8]) -> Self {
        PackedRecordsBuilder {
            origin,
            bytes: Vec::new(),
            pointers: Vec::new(),
            written: Vec::new(),
            count: 0,
        }
    }

    /// Add a record owned by the origin.
    pub fn record(&mut self, rtype: u16, class: u16, ttl: u32, rdata: &[RdataPart<'_>]) {
        self.push_pointer(PointerTarget::Origin(0));
        self.bytes.extend_from_slice(&rtype.to_be_bytes());
        self.bytes.extend_from_slice(&class.to_be_bytes());
        self.bytes.extend_from_slice(&ttl.to_be_bytes());
        let rdlength_at = self.bytes.len();
        self.bytes.extend_from_slice(&[0, 0]);
        for part in rdata {
            match part {
                RdataPart::Name(name) => self.push_name(name),
                RdataPart::Bytes(bytes) => self.bytes.extend_from_slice(bytes),
            }
        }
        let rdlength = (self.bytes.len() - rdlength_at - 2) as u16;
        self.bytes[rdlength_at..rdlength_at + 2].copy_from_slice(&rdlength.to_be_bytes());
        self.count += 1;
    }

    pub fn finish(self) -> PackedRecords {
        PackedRecords {
            bytes: self.bytes.into(),
            pointers: self.pointers.into(),
            count: self.count,
        }
    }

    fn push_pointer(&mut self, target: PointerTarget) {
        self.pointers.push(Pointer {
            at: self.bytes.len() as u16,
            target,
        });
        self.bytes.extend_from_slice(&[0xC0, 0]);
    }

    /// Write `name` with its longest suffix that is a suffix of the origin
    /// or of a name written before replaced by a pointer.
    fn push_name(&mut self, name: &[u8]) {
        let mut at = 0usize;
        while let Some(&len) = name.get(at) {
            if len == 0 {
                break;
            }
            let suffix = &name[at..];
            if let Some(target) = self.suffix_target(suffix) {
                self.push_pointer(target);
                return;
            }
            self.written
                .push((self.bytes.len() as u16, suffix.to_vec()));
            self.bytes
                .extend_from_slice(&name[at..at + 1 + usize::from(len)]);
            at += 1 + usize::from(len);
        }
        self.bytes.push(0);
    }

    fn suffix_target(&self, suffix: &[u8]) -> Option<PointerTarget> {
        let mut at = 0usize;
        while let Some(&len) = self.origin.get(at) {
            if len == 0 {
                break;
            }
            if self.origin[at..].eq_ignore_ascii_case(suffix) {
                return Some(PointerTarget::Origin(at as u16));
            }
            at += 1 + usize::from(len);
        }
        self.written
            .iter()
            .find(|(_, written)| written.eq_ignore_ascii_case(suffix))
            .map(|&(offset, _)| PointerTarget::Local(offset))
    }
}

/// The fixed part of a record whose owner is the question's name (a
/// pointer to it) and whose data has `rdlength` bytes: owner, type, class,
/// TTL and RDLENGTH, encoded once and copied before each record's data.
pub fn question_owned_header(rtype: u16, class: u16, ttl: u32, rdlength: u16) -> [u8; 12] {
    let mut header = [0u8; 12];
    header[..2].copy_from_slice(&(0xC000 | HEADER_LEN as u16).to_be_bytes());
    header[2..4].copy_from_slice(&rtype.to_be_bytes());
    header[4..6].copy_from_slice(&class.to_be_bytes());
    header[6..10].copy_from_slice(&ttl.to_be_bytes());
    header[10..12].copy_from_slice(&rdlength.to_be_bytes());
    header
}

impl PackedRecords {
    /// How many records these are.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// The records' length in bytes, as written into a response.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl MessageWriter<'_> {
    /// Copy `records` into `section`, their pointers to the origin leading
    /// to `origin_at` (where the origin's name is in this message). One
    /// bounds check. The names inside are not offered for compression to
    /// names written later.
    pub fn push_packed(
        &mut self,
        section: Section,
        records: &PackedRecords,
        origin_at: u16,
    ) -> Result<(), NoSpace> {
        let start = self.len();
        let end = start + records.bytes.len();
        // A pointer reaches only the first 16 KiB: SOA and NS records come
        // right after the question, so only a caller writing them far
        // into a TCP message could miss it, and it gets NoSpace rather
        // than a wrong pointer.
        if end > self.limit() || end > MAX_POINTER_TARGET {
            return Err(NoSpace);
        }
        let out = self.append(records.bytes.len());
        out.copy_from_slice(&records.bytes);
        for pointer in records.pointers.iter() {
            let target = match pointer.target {
                PointerTarget::Origin(plus) => usize::from(origin_at) + usize::from(plus),
                PointerTarget::Local(offset) => start + usize::from(offset),
            };
            let at = usize::from(pointer.at);
            out[at..at + 2].copy_from_slice(&(0xC000 | target as u16).to_be_bytes());
        }
        self.add_count(section, records.count);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::{class, rtype};

    fn wire(dotted: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in dotted.split('.') {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    /// Read a possibly compressed name at `at` of `message` as dotted text.
    fn read_name(message: &[u8], mut at: usize) -> String {
        let mut labels = Vec::new();
        for _ in 0..64 {
            let len = message[at];
            if len & 0xC0 == 0xC0 {
                at = usize::from(u16::from_be_bytes([len & 0x3F, message[at + 1]]));
                continue;
            }
            if len == 0 {
                return labels.join(".");
            }
            let label = &message[at + 1..at + 1 + usize::from(len)];
            labels.push(String::from_utf8_lossy(label).into_owned());
            at += 1 + usize::from(len);
        }
        panic!("pointer loop");
    }

    #[test]
    fn soa_names_point_into_the_origin_and_at_each_other() {
        let origin = wire("pool.ntp.org");
        let mut builder = PackedRecordsBuilder::new(&origin);
        let numbers = [7u8; 20];
        builder.record(
            rtype::SOA,
            class::IN,
            3600,
            &[
                RdataPart::Name(&wire("ns1.pool.ntp.org")),
                RdataPart::Name(&wire("hostmaster.ntppool.example")),
                RdataPart::Bytes(&numbers),
            ],
        );
        builder.record(
            rtype::NS,
            class::IN,
            60,
            &[RdataPart::Name(&wire("b.ntppool.example"))],
        );
        builder.record(
            rtype::NS,
            class::IN,
            60,
            &[RdataPart::Name(&wire("ntp.org"))],
        );
        let records = builder.finish();
        assert_eq!(records.count(), 3);

        // A message whose question is `x.Pool.NTP.org`: the origin sits
        // two bytes into the name.
        let mut buf = [0u8; 512];
        let mut writer = MessageWriter::new(&mut buf, 512);
        writer.header(1, 0).unwrap();
        let question = [&wire("x.Pool.NTP.org")[..], &[0, 6, 0, 1]].concat();
        writer.question(&question).unwrap();
        let start = writer.len();
        writer
            .push_packed(Section::Authority, &records, 12 + 2)
            .unwrap();
        let len = writer.finish();
        let message = &buf[..len];
        assert_eq!(&message[8..10], &[0, 3], "three authority records");

        // Owner, then type/class/TTL/RDLENGTH, then the two SOA names.
        assert_eq!(read_name(message, start), "Pool.NTP.org");
        let rdata = start + 2 + 10;
        assert_eq!(read_name(message, rdata), "ns1.Pool.NTP.org");
        // "ns1" + pointer = 6 bytes.
        assert_eq!(read_name(message, rdata + 6), "hostmaster.ntppool.example");
        assert_eq!(&message[rdata + 6 + 28..rdata + 6 + 28 + 20], &numbers);
        let ns1 = rdata + 6 + 28 + 20;
        assert_eq!(read_name(message, ns1), "Pool.NTP.org");
        // The NS name shares "ntppool.example" with the SOA's RNAME: "b" +
        // a pointer; the second NS name is a suffix of the origin: a pointer.
        assert_eq!(&message[ns1 + 10..ns1 + 12], &[0, 4], "RDLENGTH");
        assert_eq!(read_name(message, ns1 + 12), "b.ntppool.example");
        let ns2 = ns1 + 16;
        assert_eq!(&message[ns2 + 10..ns2 + 12], &[0, 2], "RDLENGTH");
        assert_eq!(read_name(message, ns2 + 12), "NTP.org");
        assert_eq!(len, ns2 + 14);
    }

    #[test]
    fn too_little_room_writes_nothing() {
        let origin = wire("pool.ntp.org");
        let mut builder = PackedRecordsBuilder::new(&origin);
        builder.record(
            rtype::NS,
            class::IN,
            60,
            &[RdataPart::Name(&wire("a.example"))],
        );
        let records = builder.finish();
        let mut buf = [0u8; 64];
        let mut writer = MessageWriter::new(&mut buf, 12 + 20);
        writer.header(1, 0).unwrap();
        assert_eq!(
            writer.push_packed(Section::Answer, &records, 12),
            Err(NoSpace)
        );
        assert_eq!(writer.len(), 12);
        assert_eq!(writer.finish(), 12);
        assert_eq!(&buf[6..8], &[0, 0]);
    }
}
