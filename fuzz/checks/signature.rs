//! `signature`: the snapshot signature line a DNS node reads beside a
//! snapshot (over HTTP from the control plane, or `FILE.sig`), and the PEM
//! key files, on any bytes: an error or a key id, never a panic. A line is
//! accepted only for bytes the fixture key signed, and no longer once one
//! byte of them changes.

use std::sync::OnceLock;

use timepool::shared::snapshot::signature::{PublicKey, SigningKey, verify};

/// A key pair made for the fuzz target only (`timepool admin
/// gen-snapshot-key`); it signs the seeds.
pub const PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIB6PK4QXlU1TURKbfj5UTZfdBxE7i6475sBDcwtHpaCf
-----END PRIVATE KEY-----
";
const PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAiB5TQ2CPleU+SiWZ1+kdrJCqFTqvsH9VaDLnx64T6f4=
-----END PUBLIC KEY-----
";

fn key() -> &'static PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    KEY.get_or_init(|| PublicKey::from_pem(PUBLIC_PEM.as_bytes()).expect("the fixture key"))
}

/// The first byte picks what is read: 0 and 1 a signature line (up to the
/// first newline) then the signed bytes; 2 a private key file; 3 a public
/// key file.
pub fn check(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        2 => {
            let _ = SigningKey::from_pem(rest);
        }
        3 => {
            let _ = PublicKey::from_pem(rest);
        }
        _ => {
            let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let (line, bytes) = rest.split_at(split);
            let bytes = bytes.get(1..).unwrap_or(&[]);
            let line = String::from_utf8_lossy(line);
            if let Ok(id) = verify(bytes, Some(&line), std::slice::from_ref(key())) {
                assert_eq!(id, key().id());
                let mut changed = bytes.to_vec();
                match changed.last_mut() {
                    Some(last) => *last ^= 1,
                    None => changed.push(0),
                }
                assert!(
                    verify(&changed, Some(&line), std::slice::from_ref(key())).is_err(),
                    "a signature still valid for other bytes"
                );
            }
        }
    }
}
