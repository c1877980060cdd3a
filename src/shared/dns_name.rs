//! DNS name limits (RFC 1035 section 3.1), the one definition the wire
//! format and the snapshot validator both use.

/// Longest name on the wire, terminal root label included.
pub const MAX_NAME_LEN: usize = 255;
/// Longest label.
pub const MAX_LABEL_LEN: usize = 63;

/// A dotted name (already checked: lowercase labels of 1 to 63 bytes, no
/// trailing dot; "" is the root) in wire format, root label included.
pub fn to_wire(dotted: &str) -> Box<[u8]> {
    let mut wire = relative_wire(dotted).into_vec();
    wire.push(0);
    wire.into()
}

/// A dotted name's labels in wire format without the root label ("" gives
/// nothing): the key of a name relative to its origin.
pub fn relative_wire(dotted: &str) -> Box<[u8]> {
    let mut key = Vec::with_capacity(dotted.len() + 1);
    if !dotted.is_empty() {
        for label in dotted.split('.') {
            key.push(label.len() as u8);
            key.extend_from_slice(label.as_bytes());
        }
    }
    key.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_in_wire_format() {
        assert_eq!(&*to_wire("pool.ntp.org"), b"\x04pool\x03ntp\x03org\x00");
        assert_eq!(&*to_wire(""), b"\x00");
        assert_eq!(&*relative_wire("2.de"), b"\x012\x02de");
        assert!(relative_wire("").is_empty());
    }
}
