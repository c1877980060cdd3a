//! Building a response into a caller-owned buffer.
//!
//! The writer never allocates and never writes past `limit`: every push
//! returns `Err(NoSpace)` instead, and the caller rolls back to a
//! [`Mark`] and sets TC. Responses need no name compression at run time:
//! an owner is a pointer to the question, and the records that hold other
//! names (SOA, NS) were compressed when they were encoded, at load
//! ([`super::packed`]).

use super::flags;

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

/// Compression pointers can only reach the first 16 KiB.
pub(super) const MAX_POINTER_TARGET: usize = 0x3FFF;

/// A point to roll back to.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    len: usize,
    counts: [u16; 4],
}

pub struct MessageWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    limit: usize,
    counts: [u16; 4],
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

    /// Copy a question as the client sent it (keeping its letter case).
    pub fn question(&mut self, question: &[u8]) -> Result<(), NoSpace> {
        self.push_bytes(question)?;
        self.counts[0] += 1;
        Ok(())
    }

    pub fn mark(&self) -> Mark {
        Mark {
            len: self.len,
            counts: self.counts,
        }
    }

    pub fn rollback(&mut self, mark: Mark) {
        self.len = mark.len;
        self.counts = mark.counts;
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
