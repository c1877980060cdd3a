//! DNS cookies (RFC 7873) with the interoperable server cookie of RFC 9018,
//! so that every node of an anycast site, given the same secret, makes and
//! accepts the same cookies.
//!
//! A server cookie is 16 bytes: version 1, three reserved zero bytes, a
//! 32-bit timestamp (seconds, serial number arithmetic) and the first 8
//! bytes of SipHash-2-4 over client cookie | version | reserved |
//! timestamp | client address, keyed with the 128-bit secret. It is valid
//! for an hour after its timestamp, and five minutes before it (clocks of
//! the nodes of a site differ a little): RFC 9018 section 4.3.
//!
//! Architecture invariant: knows cookies, secrets and addresses; nothing
//! of zones, sockets or files but the secret file it is read from. Checking
//! and making a cookie allocate nothing.

use std::net::IpAddr;
use std::path::Path;

/// Length of a client cookie (RFC 7873 section 4).
pub const CLIENT_COOKIE_LEN: usize = 8;
/// Length of an RFC 9018 server cookie.
pub const SERVER_COOKIE_LEN: usize = 16;
/// RFC 9018's version number.
const VERSION: u8 = 1;
/// How long a server cookie is accepted after its timestamp (RFC 9018:
/// one hour).
const VALID_FOR: u32 = 3600;
/// How far in the future a timestamp may be (RFC 9018: five minutes).
const FUTURE_SLACK: u32 = 300;

/// A 128-bit SipHash key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CookieSecret {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret into a log.
        f.write_str("CookieSecret(..)")
    }
}

impl CookieSecret {
    /// A secret from its 16 bytes (as written in the secret file, in hex).
    pub fn from_bytes(bytes: [u8; 16]) -> CookieSecret {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&bytes[..8]);
        k1.copy_from_slice(&bytes[8..]);
        CookieSecret {
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
        }
    }

    /// A fresh random secret.
    pub fn random() -> CookieSecret {
        CookieSecret::from_bytes(rand::random())
    }

    fn parse_hex(text: &str) -> Option<CookieSecret> {
        if text.len() != 32 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(CookieSecret::from_bytes(bytes))
    }
}

/// The secrets a node makes and checks server cookies with: the current
/// one, and during a rotation the previous one (accepted, never used for
/// new cookies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieSecrets {
    pub current: CookieSecret,
    pub previous: Option<CookieSecret>,
}

/// What a query's COOKIE option proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieCheck {
    /// No COOKIE option.
    None,
    /// A client cookie alone (a first query, RFC 7873 section 5.2.3).
    ClientOnly,
    /// A server cookie this site did not make, or made too long ago
    /// (section 5.2.4).
    BadServer,
    /// A server cookie this site made for this client recently: the client
    /// is not spoofed (section 5.2.5).
    Valid,
}

impl CookieSecrets {
    /// One secret, no previous one.
    pub fn single(secret: [u8; 16]) -> CookieSecrets {
        CookieSecrets {
            current: CookieSecret::from_bytes(secret),
            previous: None,
        }
    }

    /// A single random secret: cookies work, but only this process makes
    /// and accepts them (an anycast site shares a file instead).
    pub fn random() -> CookieSecrets {
        CookieSecrets {
            current: CookieSecret::random(),
            previous: None,
        }
    }

    /// Read the secret file: one secret per line as 32 hex digits, the
    /// current one first and optionally the previous one second; empty
    /// lines and lines starting with `#` are skipped.
    pub fn from_file(path: &Path) -> Result<CookieSecrets, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        Self::parse(&text).map_err(|error| format!("{}: {error}", path.display()))
    }

    /// Parse the secret file's text (see [`CookieSecrets::from_file`]).
    pub fn parse(text: &str) -> Result<CookieSecrets, String> {
        let mut secrets = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let secret = CookieSecret::parse_hex(line).ok_or_else(|| {
                format!(
                    "line {}: a secret is 32 hex digits (16 bytes), e.g. from `openssl rand -hex 16`",
                    number + 1
                )
            })?;
            secrets.push(secret);
        }
        match secrets.as_slice() {
            [current] => Ok(CookieSecrets {
                current: *current,
                previous: None,
            }),
            [current, previous] => Ok(CookieSecrets {
                current: *current,
                previous: Some(*previous),
            }),
            [] => Err("no secret in the file".into()),
            _ => Err(format!(
                "{} secrets: give the current one and at most one previous one",
                secrets.len()
            )),
        }
    }

    /// The server cookie for this client at time `now` (unix seconds),
    /// made with the current secret.
    pub fn server_cookie(
        &self,
        client_cookie: &[u8; CLIENT_COOKIE_LEN],
        client: IpAddr,
        now: u32,
    ) -> [u8; SERVER_COOKIE_LEN] {
        let mut cookie = [0u8; SERVER_COOKIE_LEN];
        cookie[0] = VERSION;
        cookie[4..8].copy_from_slice(&now.to_be_bytes());
        let hash = cookie_hash(&self.current, client_cookie, &cookie, client);
        cookie[8..].copy_from_slice(&hash);
        cookie
    }

    /// Check a query's cookies (`server_cookie` empty when the client sent
    /// only its own). A server cookie must be of our format, from the last
    /// hour (or at most five minutes ahead), and hash right under the
    /// current or the previous secret.
    pub fn check(
        &self,
        client_cookie: &[u8; CLIENT_COOKIE_LEN],
        server_cookie: &[u8],
        client: IpAddr,
        now: u32,
    ) -> CookieCheck {
        if server_cookie.is_empty() {
            return CookieCheck::ClientOnly;
        }
        let Ok(cookie) = <&[u8; SERVER_COOKIE_LEN]>::try_from(server_cookie) else {
            return CookieCheck::BadServer;
        };
        if cookie[0] != VERSION {
            return CookieCheck::BadServer;
        }
        let stamp = u32::from_be_bytes([cookie[4], cookie[5], cookie[6], cookie[7]]);
        // Serial number arithmetic (RFC 1982): the age wraps with the clock.
        let age = now.wrapping_sub(stamp);
        if age > VALID_FOR && stamp.wrapping_sub(now) > FUTURE_SLACK {
            return CookieCheck::BadServer;
        }
        let good = |secret: &CookieSecret| {
            constant_time_eq(
                &cookie_hash(secret, client_cookie, cookie, client),
                &cookie[8..],
            )
        };
        if good(&self.current) || self.previous.as_ref().is_some_and(good) {
            CookieCheck::Valid
        } else {
            CookieCheck::BadServer
        }
    }
}

/// SipHash-2-4 of client cookie | the server cookie's first 8 bytes |
/// client address, as RFC 9018 section 4.4 orders them; the 8 bytes in the
/// reference implementation's (little-endian) order. The input's words are
/// taken straight from their parts (no byte string to assemble and cut
/// into words again): this runs for every query with a cookie.
fn cookie_hash(
    secret: &CookieSecret,
    client_cookie: &[u8; CLIENT_COOKIE_LEN],
    server_cookie: &[u8; SERVER_COOKIE_LEN],
    client: IpAddr,
) -> [u8; 8] {
    let word = |bytes: &[u8]| {
        let mut word = [0u8; 8];
        word[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(word)
    };
    let head = [word(client_cookie), word(&server_cookie[..8])];
    let hash = match client {
        // 20 bytes: two whole words, then the address and the length.
        IpAddr::V4(v4) => {
            siphash24_words(secret.k0, secret.k1, &head, word(&v4.octets()) | (20 << 56))
        }
        // 32 bytes: four whole words, then the length alone.
        IpAddr::V6(v6) => {
            let octets = v6.octets();
            let words = [head[0], head[1], word(&octets[..8]), word(&octets[8..])];
            siphash24_words(secret.k0, secret.k1, &words, 32 << 56)
        }
    };
    hash.to_le_bytes()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SipHash-2-4 (Aumasson and Bernstein) of a message given as its whole little-endian words and
/// its last word (the 0-7 remaining bytes, the length in the top byte).
/// The state is four locals (not an array) so that it stays in registers.
#[inline(always)]
fn siphash24_words(k0: u64, k1: u64, words: &[u64], last: u64) -> u64 {
    let mut state = SipState {
        v0: k0 ^ 0x736f_6d65_7073_6575,
        v1: k1 ^ 0x646f_7261_6e64_6f6d,
        v2: k0 ^ 0x6c79_6765_6e65_7261,
        v3: k1 ^ 0x7465_6462_7974_6573,
    };
    for &word in words {
        state.compress(word);
    }
    state.compress(last);
    state.v2 ^= 0xff;
    for _ in 0..4 {
        state.round();
    }
    state.v0 ^ state.v1 ^ state.v2 ^ state.v3
}

struct SipState {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl SipState {
    /// One message word, two rounds (the "2" of SipHash-2-4).
    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SipHash-2-4 over a byte string, the reference implementation's
    /// interface, for its test vectors.
    fn siphash24(k0: u64, k1: u64, data: &[u8]) -> u64 {
        let mut chunks = data.chunks_exact(8);
        let mut words = Vec::with_capacity(data.len() / 8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            words.push(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        last[7] = data.len() as u8;
        siphash24_words(k0, k1, &words, u64::from_le_bytes(last))
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn secret(text: &str) -> CookieSecret {
        CookieSecret::from_bytes(hex(text).try_into().unwrap())
    }

    fn client_cookie(text: &str) -> [u8; 8] {
        hex(text).try_into().unwrap()
    }

    #[test]
    fn siphash_matches_the_reference_vectors() {
        // The reference implementation's vectors: key 00..0f, messages
        // 00, 00 01, ...: the first, an 8-byte one and a 15-byte one.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let message: Vec<u8> = (0..64).collect();
        assert_eq!(siphash24(k0, k1, &message[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(k0, k1, &message[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(k0, k1, &message[..15]), 0xa129_ca61_49be_45e5);
    }

    /// RFC 9018 appendix A, vector by vector.
    #[test]
    fn server_cookies_are_those_of_rfc_9018() {
        let site = CookieSecrets {
            current: secret("e5e973e5a6b2a43f48e7dc849e37bfcf"),
            previous: None,
        };
        // A.1: a first query, a client cookie alone.
        let client: IpAddr = "198.51.100.100".parse().unwrap();
        let cookie = client_cookie("2464c4abcf10c957");
        assert_eq!(
            site.check(&cookie, &[], client, 1559731985),
            CookieCheck::ClientOnly
        );
        let made = site.server_cookie(&cookie, client, 1559731985);
        assert_eq!(made.to_vec(), hex("010000005cf79f111f8130c3eee29480"));
        // A.2: 40 minutes later it is still good, and a fresh one is made.
        assert_eq!(
            site.check(&cookie, &made, client, 1559734385),
            CookieCheck::Valid
        );
        assert_eq!(
            site.server_cookie(&cookie, client, 1559734385).to_vec(),
            hex("010000005cf7a871d4a564a1442aca77")
        );
        // A.3: reserved bytes set by another implementation still hash
        // right (checked at its own time: 1 h 52 min later it has expired).
        let client: IpAddr = "203.0.113.203".parse().unwrap();
        let cookie = client_cookie("fc93fc62807ddb86");
        let sent = hex("01abcdef5cf78f71a314227b6679ebf5");
        assert_eq!(
            site.check(&cookie, &sent, client, 1559727985),
            CookieCheck::Valid
        );
        assert_eq!(
            site.check(&cookie, &sent, client, 1559734700),
            CookieCheck::BadServer
        );
        assert_eq!(
            site.server_cookie(&cookie, client, 1559734700).to_vec(),
            hex("010000005cf7a9acf73a7810aca2381e")
        );
        // A.4: IPv6, after a rollover: the old secret is still accepted,
        // the new one makes the cookie.
        let rolled = CookieSecrets {
            current: secret("445536bcd2513298075a5d379663c962"),
            previous: Some(secret("dd3bdf9344b678b185a6f5cb60fca715")),
        };
        let client: IpAddr = "2001:db8:220:1:59de:d0f4:8769:82b8".parse().unwrap();
        let cookie = client_cookie("22681ab97d52c298");
        let sent = hex("010000005cf7c57926556bd0934c72f8");
        assert_eq!(
            rolled.check(&cookie, &sent, client, 1559741961),
            CookieCheck::Valid
        );
        assert_eq!(
            rolled.server_cookie(&cookie, client, 1559741961).to_vec(),
            hex("010000005cf7c609a6bb79d16625507a")
        );
        let without_previous = CookieSecrets {
            previous: None,
            ..rolled.clone()
        };
        assert_eq!(
            without_previous.check(&cookie, &sent, client, 1559741961),
            CookieCheck::BadServer
        );
    }

    #[test]
    fn a_cookie_is_bound_to_its_client_its_time_and_its_format() {
        let site = CookieSecrets::single([9; 16]);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let cookie = [1, 2, 3, 4, 5, 6, 7, 8];
        let now = 1_700_000_000;
        let made = site.server_cookie(&cookie, client, now);
        let check = |sent: &[u8], client: &str, cookie: &[u8; 8], at: u32| {
            site.check(cookie, sent, client.parse().unwrap(), at)
        };
        assert_eq!(check(&made, "192.0.2.1", &cookie, now), CookieCheck::Valid);
        assert_eq!(
            check(&made, "192.0.2.2", &cookie, now),
            CookieCheck::BadServer
        );
        assert_eq!(
            check(&made, "192.0.2.1", &[0; 8], now),
            CookieCheck::BadServer
        );
        assert_eq!(
            check(&made, "192.0.2.1", &cookie, now + 3600),
            CookieCheck::Valid
        );
        assert_eq!(
            check(&made, "192.0.2.1", &cookie, now + 3601),
            CookieCheck::BadServer
        );
        assert_eq!(
            check(&made, "192.0.2.1", &cookie, now - 300),
            CookieCheck::Valid
        );
        assert_eq!(
            check(&made, "192.0.2.1", &cookie, now - 301),
            CookieCheck::BadServer
        );
        let mut other_version = made;
        other_version[0] = 2;
        assert_eq!(
            check(&other_version, "192.0.2.1", &cookie, now),
            CookieCheck::BadServer
        );
        let mut flipped = made;
        flipped[15] ^= 1;
        assert_eq!(
            check(&flipped, "192.0.2.1", &cookie, now),
            CookieCheck::BadServer
        );
        assert_eq!(
            check(&made[..8], "192.0.2.1", &cookie, now),
            CookieCheck::BadServer
        );
        // Across the 32-bit wrap of the timestamp (serial arithmetic).
        let late = site.server_cookie(&cookie, client, u32::MAX - 10);
        assert_eq!(check(&late, "192.0.2.1", &cookie, 100), CookieCheck::Valid);
    }

    #[test]
    fn the_secret_file_holds_one_or_two_secrets() {
        let one = CookieSecrets::parse("# site fra\n000102030405060708090a0b0c0d0e0f\n").unwrap();
        assert!(one.previous.is_none());
        let two = CookieSecrets::parse(
            "000102030405060708090a0b0c0d0e0f\n\nffeeddccbbaa99887766554433221100\n",
        )
        .unwrap();
        assert!(two.previous.is_some());
        let cases = [
            ("", "no secret"),
            ("0001", "line 1: a secret is 32 hex digits"),
            (
                "# c\nzz0102030405060708090a0b0c0d0e0f",
                "line 2: a secret is 32 hex digits",
            ),
            (
                "000102030405060708090a0b0c0d0e0f\n000102030405060708090a0b0c0d0e0f\n000102030405060708090a0b0c0d0e0f",
                "3 secrets",
            ),
        ];
        for (text, expected) in cases {
            let error = CookieSecrets::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        assert_eq!(format!("{:?}", one.current), "CookieSecret(..)");
    }
}
