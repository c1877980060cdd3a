//! Building a response into a caller-owned buffer.
//!
//! The writer never allocates and never writes past `limit`: every push
//! returns `Err(NoSpace)` instead, and the caller rolls back to a
//! [`Mark`] and sets TC. Names are compressed against the names already in
//! the message (RFC 1035 4.1.4).

use super::{HEADER_LEN, flags};

/// The message would not fit in the size allowed for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoSpace;

/// The sections that follow the question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Answer = 1,
    Authority = 2,
    Additional = 3,
}

/// How many name positions the compression table remembers. A response
/// of this server holds a handful of names; past this they are written
/// uncompressed, which is still correct.
const COMPRESSION_SLOTS: usize = 32;

/// Compression pointers can only reach the first 16 KiB.
pub(super) const MAX_POINTER_TARGET: usize = 0x3FFF;

/// A point to roll back to.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    len: usize,
    counts: [u16; 4],
    names: usize,
}

pub struct MessageWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    limit: usize,
    counts: [u16; 4],
    names: [u16; COMPRESSION_SLOTS],
    name_count: usize,
}

impl<'b> MessageWriter<'b> {
    /// A writer over `buf` that will not write past `limit` bytes (nor past
    /// the end of `buf`). The header is zeroed and set by [`Self::header`].
    pub fn new(buf: &'b mut [u8], limit: usize) -> Self {
        let limit = limit.min(buf.len());
        MessageWriter {
            buf,
            len: 0,
            limit,
            counts: [0; 4],
            names: [0; COMPRESSION_SLOTS],
            name_count: 0,
        }
    }

    /// Write the header: ID and flags. Counts are written by [`Self::finish`].
    pub fn header(&mut self, id: u16, header_flags: u16) -> Result<(), NoSpace> {
        self.len = 0;
        self.push_u16(id)?;
        self.push_u16(header_flags)?;
        self.push_bytes(&[0; 8])
    }

    pub fn flags(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }

    pub fn set_flags(&mut self, header_flags: u16) {
        self.buf[2..4].copy_from_slice(&header_flags.to_be_bytes());
    }

    /// Set the truncation bit.
    pub fn set_truncated(&mut self) {
        self.set_flags(self.flags() | flags::TC);
    }

    /// Set the low four bits of the response code.
    pub fn set_rcode(&mut self, rcode: u16) {
        self.set_flags((self.flags() & !0x000F) | (rcode & 0x000F));
    }

    /// Copy a question as the client sent it (keeping its letter case) and
    /// remember its name for compression. `label_starts` are the offsets of
    /// the labels within the question name.
    pub fn question(&mut self, question: &[u8], label_starts: &[u8]) -> Result<(), NoSpace> {
        let at = self.len;
        self.push_bytes(question)?;
        self.counts[0] += 1;
        for &start in label_starts {
            self.remember_name(at + usize::from(start));
        }
        Ok(())
    }

    pub fn mark(&self) -> Mark {
        Mark {
            len: self.len,
            counts: self.counts,
            names: self.name_count,
        }
    }

    pub fn rollback(&mut self, mark: Mark) {
        self.len = mark.len;
        self.counts = mark.counts;
        self.name_count = mark.names;
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lower the limit, for example to keep room for an OPT record that
    /// must be written last.
    pub fn reserve_tail(&mut self, bytes: usize) -> usize {
        let old = self.limit;
        self.limit = self.limit.saturating_sub(bytes).max(self.len);
        old
    }

    pub fn restore_limit(&mut self, limit: usize) {
        self.limit = limit.min(self.buf.len());
    }

    pub fn push_u8(&mut self, value: u8) -> Result<(), NoSpace> {
        self.push_bytes(&[value])
    }

    pub fn push_u16(&mut self, value: u16) -> Result<(), NoSpace> {
        self.push_bytes(&value.to_be_bytes())
    }

    pub fn push_u32(&mut self, value: u32) -> Result<(), NoSpace> {
        self.push_bytes(&value.to_be_bytes())
    }

    #[inline]
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Result<(), NoSpace> {
        let end = self.len + bytes.len();
        if end > self.limit {
            return Err(NoSpace);
        }
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// A compression pointer to a name already in the message.
    pub fn push_pointer(&mut self, target: u16) -> Result<(), NoSpace> {
        self.push_u16(0xC000 | target)
    }

    /// Write a name given in uncompressed wire format, compressed against
    /// the names already written.
    pub fn push_name(&mut self, name: &[u8]) -> Result<(), NoSpace> {
        let mut at = 0usize;
        while let Some(&len) = name.get(at) {
            if len == 0 {
                break;
            }
            if let Some(target) = self.find_name(&name[at..]) {
                self.push_bytes(&name[..at])?;
                self.remember_labels(name, at);
                return self.push_pointer(target);
            }
            at += 1 + usize::from(len);
        }
        let start = self.len;
        self.push_bytes(name)?;
        self.remember_labels_at(start, name);
        Ok(())
    }

    /// Start a record whose owner has been written: type, class, TTL and a
    /// placeholder for RDLENGTH. Returns where RDLENGTH goes.
    pub fn begin_record(&mut self, rtype: u16, class: u16, ttl: u32) -> Result<usize, NoSpace> {
        // One push (one bounds check) for the four fields.
        let mut fields = [0u8; 10];
        fields[0..2].copy_from_slice(&rtype.to_be_bytes());
        fields[2..4].copy_from_slice(&class.to_be_bytes());
        fields[4..8].copy_from_slice(&ttl.to_be_bytes());
        let rdlength_at = self.len + 8;
        self.push_bytes(&fields)?;
        Ok(rdlength_at)
    }

    /// Close a record started with [`Self::begin_record`] and count it.
    pub fn end_record(&mut self, section: Section, rdlength_at: usize) {
        let rdlength = (self.len - rdlength_at - 2) as u16;
        self.buf[rdlength_at..rdlength_at + 2].copy_from_slice(&rdlength.to_be_bytes());
        self.counts[section as usize] += 1;
    }

    /// Write a whole record from a ready header (owner, type, class, TTL,
    /// RDLENGTH) and its data, and count it: one bounds check.
    #[inline]
    pub fn push_record(
        &mut self,
        section: Section,
        header: &[u8],
        rdata: &[u8],
    ) -> Result<(), NoSpace> {
        let end = self.len + header.len() + rdata.len();
        if end > self.limit {
            return Err(NoSpace);
        }
        let middle = self.len + header.len();
        self.buf[self.len..middle].copy_from_slice(header);
        self.buf[middle..end].copy_from_slice(rdata);
        self.len = end;
        self.counts[section as usize] += 1;
        Ok(())
    }

    /// The size the message may not pass.
    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// Extend the message by `len` bytes (the caller has checked the
    /// limit) and return them to fill.
    pub(super) fn append(&mut self, len: usize) -> &mut [u8] {
        let start = self.len;
        self.len += len;
        &mut self.buf[start..self.len]
    }

    /// Count `records` more records in `section`.
    pub(super) fn add_count(&mut self, section: Section, records: u16) {
        self.counts[section as usize] += records;
    }

    /// Write the section counts and return the message length.
    pub fn finish(self) -> usize {
        for (i, count) in self.counts.iter().enumerate() {
            let at = 4 + 2 * i;
            self.buf[at..at + 2].copy_from_slice(&count.to_be_bytes());
        }
        self.len
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn remember_name(&mut self, at: usize) {
        if self.name_count < COMPRESSION_SLOTS && (HEADER_LEN..=MAX_POINTER_TARGET).contains(&at) {
            self.names[self.name_count] = at as u16;
            self.name_count += 1;
        }
    }

    /// Remember the labels of `name[..upto]`, just written uncompressed at
    /// `self.len - 2 - upto` (before a pointer is pushed).
    fn remember_labels(&mut self, name: &[u8], upto: usize) {
        let start = self.len - upto;
        let mut at = 0;
        while at < upto {
            self.remember_name(start + at);
            at += 1 + usize::from(name[at]);
        }
    }

    fn remember_labels_at(&mut self, start: usize, name: &[u8]) {
        let mut at = 0;
        while let Some(&len) = name.get(at) {
            if len == 0 {
                break;
            }
            self.remember_name(start + at);
            at += 1 + usize::from(len);
        }
    }

    fn find_name(&self, suffix: &[u8]) -> Option<u16> {
        self.names[..self.name_count]
            .iter()
            .copied()
            .find(|&target| self.name_at_equals(usize::from(target), suffix))
    }

    /// Whether the (possibly compressed) name at `at` in the message equals
    /// the uncompressed `name`, ignoring ASCII case.
    fn name_at_equals(&self, mut at: usize, name: &[u8]) -> bool {
        let message = &self.buf[..self.len];
        let mut i = 0usize;
        let mut hops = 0;
        loop {
            let Some(&len) = message.get(at) else {
                return false;
            };
            if len & 0xC0 == 0xC0 {
                let Some(&low) = message.get(at + 1) else {
                    return false;
                };
                hops += 1;
                if hops > 16 {
                    return false;
                }
                at = usize::from(len & 0x3F) << 8 | usize::from(low);
                continue;
            }
            if name.get(i) != Some(&len) {
                return false;
            }
            if len == 0 {
                return true;
            }
            let len = usize::from(len);
            let (Some(ours), Some(theirs)) = (
                message.get(at + 1..at + 1 + len),
                name.get(i + 1..i + 1 + len),
            ) else {
                return false;
            };
            if !ours.eq_ignore_ascii_case(theirs) {
                return false;
            }
            at += 1 + len;
            i += 1 + len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_against_the_question_and_earlier_names() {
        let mut buf = [0u8; 512];
        let mut writer = MessageWriter::new(&mut buf, 512);
        writer.header(7, flags::QR).unwrap();
        let question = b"\x04POOL\x03ntp\x03org\x00\x00\x06\x00\x01";
        writer.question(question, &[0, 5, 9]).unwrap();
        let before = writer.len();
        writer
            .push_name(b"\x03ns1\x04pool\x03ntp\x03org\x00")
            .unwrap();
        // "ns1" then a pointer to "POOL.ntp.org" at offset 12.
        assert_eq!(&writer.as_slice()[before..], b"\x03ns1\xC0\x0C");
        let before = writer.len();
        writer
            .push_name(b"\x03ns1\x04pool\x03ntp\x03org\x00")
            .unwrap();
        assert_eq!(&writer.as_slice()[before..], &[0xC0, before as u8 - 6]);
        let before = writer.len();
        writer.push_name(b"\x01a\x05ntpns\x03org\x00").unwrap();
        assert_eq!(&writer.as_slice()[before..], b"\x01a\x05ntpns\xC0\x15");
    }

    #[test]
    fn refuses_to_write_past_the_limit() {
        let mut buf = [0u8; 64];
        let mut writer = MessageWriter::new(&mut buf, 20);
        writer.header(1, 0).unwrap();
        assert_eq!(writer.push_bytes(&[0; 9]), Err(NoSpace));
        let mark = writer.mark();
        writer.push_bytes(&[1; 8]).unwrap();
        writer.rollback(mark);
        assert_eq!(writer.len(), 12);
    }
}
