//! Signed snapshots (zones/README.md, "Signatures"): an Ed25519 signature
//! over the exact bytes of a snapshot, made by the control plane with its
//! private key and checked by a DNS node against the public keys it pins.
//!
//! The signature travels as one line of text, `ed25519 KEYID SIGNATURE`
//! (the key id: the first 8 bytes of the SHA-256 of the raw public key;
//! the signature: 64 bytes; both in hex), in the `X-Timepool-Signature`
//! header of `GET /api/v1/snapshot` and in a detached `FILE.sig` next to
//! a snapshot file. Keys are PEM files as OpenSSL writes them (PKCS#8
//! `PRIVATE KEY`, SubjectPublicKeyInfo `PUBLIC KEY`), so `openssl pkeyutl
//! -verify -rawin` checks a snapshot too.
//!
//! Architecture invariant: knows bytes, keys and files; nothing of HTTP,
//! the zone table or the database.

use std::fmt;
use std::path::{Path, PathBuf};

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};

use crate::shared::encoding::{hex, hex_decode, pem};

/// The response header that carries the signature line.
pub const HEADER: &str = "x-timepool-signature";

/// The algorithm word that starts a signature line.
const ALGORITHM: &str = "ed25519";

/// Longest signature line read (the real one is 154 bytes); anything
/// longer is malformed, and a `.sig` file is never read past this.
pub const MAX_SIGNATURE_LEN: usize = 512;

/// The DER of an Ed25519 SubjectPublicKeyInfo up to the 32 key bytes
/// (RFC 8410: SEQUENCE { SEQUENCE { OID 1.3.101.112 } BIT STRING }).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Names a key in signature lines and logs: the first 8 bytes of the
/// SHA-256 of its 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KeyId([u8; 8]);

impl KeyId {
    fn of(public_key: &[u8]) -> KeyId {
        let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest.as_ref()[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// Why a key file could not be used.
#[derive(Debug)]
pub struct KeyError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for KeyError {}

fn key_error(path: &Path, message: impl Into<String>) -> KeyError {
    KeyError {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Key files are small; a bigger one is not a key.
const MAX_KEY_FILE: u64 = 16 * 1024;

fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| key_error(path, e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| key_error(path, e.to_string()))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(key_error(path, "too large for a key file"));
    }
    Ok(bytes)
}

/// The control plane's private key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    id: KeyId,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.id)
    }
}

impl SigningKey {
    /// Reads a PKCS#8 `PRIVATE KEY` PEM file holding an Ed25519 key.
    pub fn read_file(path: &Path) -> Result<SigningKey, KeyError> {
        SigningKey::from_pem(&read_key_file(path)?).map_err(|message| key_error(path, message))
    }

    /// The key from the text of a PKCS#8 `PRIVATE KEY` PEM file.
    pub fn from_pem(bytes: &[u8]) -> Result<SigningKey, String> {
        let der = PrivateKeyDer::from_pem_slice(bytes)
            .map_err(|e| format!("not a PEM private key: {e}"))?;
        let PrivateKeyDer::Pkcs8(der) = der else {
            return Err("not a PKCS#8 key (want PRIVATE KEY)".into());
        };
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
            .map_err(|e| format!("not an Ed25519 key: {e}"))?;
        let id = KeyId::of(pair.public_key().as_ref());
        Ok(SigningKey { pair, id })
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The signature line of `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> String {
        let signature = self.pair.sign(bytes);
        format!("{ALGORITHM} {} {}", self.id, hex(signature.as_ref()))
    }
}

/// The DER of an Ed25519 PKCS#8 v1 private key up to its 32-byte seed
/// (RFC 8410), the form OpenSSL writes and reads.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// ring's PKCS#8 v2 document up to the seed (RFC 8410 OneAsymmetricKey;
/// the public key follows the seed).
const PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A new key pair as PEM files: (private PKCS#8 v1, public SPKI), both as
/// OpenSSL writes them.
pub fn generate_key_pair() -> Result<(String, String), String> {
    let rng = ring::rand::SystemRandom::new();
    let v2 =
        Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| format!("cannot generate a key: {e}"))?;
    let seed = v2
        .as_ref()
        .strip_prefix(&PKCS8_V2_PREFIX[..])
        .and_then(|rest| rest.get(..32))
        .ok_or("unexpected PKCS#8 document from ring")?;
    let mut v1 = PKCS8_V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&v1)
        .map_err(|e| format!("generated key unusable: {e}"))?;
    let mut spki = SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    Ok((pem("PRIVATE KEY", &v1), pem("PUBLIC KEY", &spki)))
}

/// Writes a new key pair: the private key readable by its owner only
/// (0600), the public key by all (0644). Refuses to overwrite either file.
/// Returns the public key.
pub fn write_key_pair(private_file: &Path, public_file: &Path) -> Result<PublicKey, KeyError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let (private, public) =
        generate_key_pair().map_err(|message| key_error(private_file, message))?;
    let create = |path: &Path, mode: u32, text: &str| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|e| key_error(path, e.to_string()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            // The mode is the wanted one whatever the process's umask.
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| key_error(path, e.to_string()))
    };
    create(private_file, 0o600, &private)?;
    if let Err(error) = create(public_file, 0o644, &public) {
        let _ = std::fs::remove_file(private_file);
        return Err(error);
    }
    PublicKey::read_file(public_file)
}

/// A public key a DNS node pins.
#[derive(Clone, Debug)]
pub struct PublicKey {
    bytes: [u8; 32],
    id: KeyId,
}

impl PublicKey {
    /// Reads a `PUBLIC KEY` PEM file holding an Ed25519 key.
    pub fn read_file(path: &Path) -> Result<PublicKey, KeyError> {
        PublicKey::from_pem(&read_key_file(path)?).map_err(|message| key_error(path, message))
    }

    /// The key from the text of a `PUBLIC KEY` PEM file.
    pub fn from_pem(bytes: &[u8]) -> Result<PublicKey, String> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(bytes)
            .map_err(|e| format!("not a PEM public key: {e}"))?;
        let der: &[u8] = der.as_ref();
        if der.len() != SPKI_PREFIX.len() + 32 || der[..SPKI_PREFIX.len()] != SPKI_PREFIX {
            return Err("not an Ed25519 public key".into());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&der[SPKI_PREFIX.len()..]);
        Ok(PublicKey {
            bytes: key,
            id: KeyId::of(&key),
        })
    }

    pub fn id(&self) -> KeyId {
        self.id
    }
}

/// Why a snapshot's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// No signature came with the snapshot.
    Missing,
    /// The signature line does not parse.
    Malformed(String),
    /// Signed by a key this node does not pin.
    UnknownKey(String),
    /// The signature does not match the bytes (tampered, or cut short).
    Invalid(KeyId),
}

impl SignatureError {
    /// The `reason` label of the rejection metric.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::Missing => "unsigned",
            SignatureError::Malformed(_) => "malformed_signature",
            SignatureError::UnknownKey(_) => "unknown_key",
            SignatureError::Invalid(_) => "bad_signature",
        }
    }
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::Missing => write!(f, "not signed"),
            SignatureError::Malformed(why) => write!(f, "signature malformed: {why}"),
            SignatureError::UnknownKey(id) => {
                write!(f, "signed by key {id}, which is not among the pinned keys")
            }
            SignatureError::Invalid(id) => {
                write!(f, "signature by key {id} does not match the bytes")
            }
        }
    }
}

/// Checks that `signature` (a signature line) signs `bytes` with one of
/// `keys`; returns that key's id.
pub fn verify(
    bytes: &[u8],
    signature: Option<&str>,
    keys: &[PublicKey],
) -> Result<KeyId, SignatureError> {
    let line = signature.ok_or(SignatureError::Missing)?.trim();
    if line.len() > MAX_SIGNATURE_LEN {
        return Err(SignatureError::Malformed("too long".into()));
    }
    let mut words = line.split_ascii_whitespace();
    let (Some(algorithm), Some(id), Some(signature), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(SignatureError::Malformed(format!(
            "want \"{ALGORITHM} KEYID SIGNATURE\""
        )));
    };
    if algorithm != ALGORITHM {
        return Err(SignatureError::Malformed(format!(
            "algorithm {algorithm:?}, want {ALGORITHM}"
        )));
    }
    let signature = hex_decode(signature)
        .filter(|s| s.len() == 64)
        .ok_or_else(|| SignatureError::Malformed("the signature is not 64 bytes of hex".into()))?;
    let key = keys
        .iter()
        .find(|key| key.id.to_string().eq_ignore_ascii_case(id))
        .ok_or_else(|| SignatureError::UnknownKey(id.chars().take(16).collect()))?;
    UnparsedPublicKey::new(&ED25519, &key.bytes)
        .verify(bytes, &signature)
        .map(|()| key.id)
        .map_err(|_| SignatureError::Invalid(key.id))
}

/// Where the detached signature of a snapshot file is: `FILE.sig`.
pub fn signature_path(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Replace a snapshot file and its `FILE.sig` (removed when `signature`
/// is `None`), each atomically and only if it does not already hold these
/// bytes (an unchanged file keeps its time, so watchers see no change).
/// The zone builder's output and a DNS node's cache are both written this
/// way.
///
/// Two files cannot be replaced at once, so the pair passes through a
/// state that fits both: first `FILE.sig` gets the new signature line
/// above the lines it had (one of which signs the bytes still in place),
/// then the bytes are replaced, then only the new line stays. A process
/// killed at any point, and a reader at any moment, finds bytes that one
/// of the lines signs ([`verify_file_text`] takes any of them).
pub fn write_signed(path: &Path, bytes: &[u8], signature: Option<&str>) -> std::io::Result<()> {
    let signature_path = signature_path(path);
    let bytes_in_place = std::fs::read(path).is_ok_and(|current| current == bytes);
    match signature {
        Some(line) => {
            let text = format!("{line}\n");
            let current = std::fs::read(&signature_path).ok();
            if current.as_deref() != Some(text.as_bytes()) {
                // The lines now there (two after an earlier write was
                // cut short, one of them for the bytes in place).
                let old: Vec<&str> = current
                    .as_deref()
                    .and_then(|c| std::str::from_utf8(c).ok())
                    .map(|c| {
                        c.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty() && *l != line)
                            .take(MAX_SIGNATURE_LINES - 1)
                            .collect()
                    })
                    .unwrap_or_default();
                if !bytes_in_place && !old.is_empty() {
                    let all = format!("{line}\n{}\n", old.join("\n"));
                    crate::shared::atomic_file::write(&signature_path, all.as_bytes())?;
                    crate::shared::atomic_file::write(path, bytes)?;
                }
                crate::shared::atomic_file::write(&signature_path, text.as_bytes())?;
            }
        }
        None => match std::fs::remove_file(&signature_path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        },
    }
    if std::fs::read(path).is_ok_and(|current| current == bytes) {
        return Ok(());
    }
    crate::shared::atomic_file::write(path, bytes)
}

/// Most lines a `FILE.sig` holds: the new signature and, while the file
/// is replaced, the old one, or the two of a write cut short.
const MAX_SIGNATURE_LINES: usize = 3;

/// Checks the text of a `FILE.sig` against the snapshot's bytes: one
/// signature line, or more while the file is being replaced (see
/// [`write_signed`]); any of them may sign them. The first line's error is
/// the one reported.
pub fn verify_file_text(
    bytes: &[u8],
    text: Option<&str>,
    keys: &[PublicKey],
) -> Result<KeyId, SignatureError> {
    let text = text.ok_or(SignatureError::Missing)?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .take(MAX_SIGNATURE_LINES + 1)
        .collect();
    if lines.len() > MAX_SIGNATURE_LINES {
        return Err(SignatureError::Malformed(format!(
            "more than {MAX_SIGNATURE_LINES} signature lines"
        )));
    }
    let (first, others) = lines
        .split_first()
        .ok_or_else(|| SignatureError::Malformed("an empty signature file".into()))?;
    verify(bytes, Some(first), keys).or_else(|error| {
        others
            .iter()
            .find_map(|line| verify(bytes, Some(line), keys).ok())
            .ok_or(error)
    })
}

/// The detached signature of a snapshot file, if there is one (read no
/// further than a signature line can be).
pub fn read_signature_file(snapshot: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let path = signature_path(snapshot);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(std::io::Error::new(
                error.kind(),
                format!("{}: {error}", path.display()),
            ));
        }
    };
    let mut text = String::new();
    // A few lines at most (see `write_signed`), each within the limit.
    file.take(MAX_SIGNATURE_LINES as u64 * (MAX_SIGNATURE_LEN as u64 + 1) + 1)
        .read_to_string(&mut text)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_pair(dir: &Path, name: &str) -> (SigningKey, PublicKey) {
        let private = dir.join(format!("{name}.key"));
        let _ = std::fs::remove_file(&private);
        let _ = std::fs::remove_file(dir.join(format!("{name}.pub")));
        let public = write_key_pair(&private, &dir.join(format!("{name}.pub"))).unwrap();
        (SigningKey::read_file(&private).unwrap(), public)
    }

    #[test]
    fn signs_and_verifies_and_refuses_everything_else() {
        let dir = std::env::temp_dir().join(format!("timepool-sig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (signing, public) = key_pair(&dir, "a");
        let (other_signing, other_public) = key_pair(&dir, "b");
        assert_eq!(signing.id(), public.id());
        let bytes = br#"{"version": 1, "serial": 7}"#;
        let line = signing.sign(bytes);
        assert_eq!(line.len(), 7 + 1 + 16 + 1 + 128);
        let keys = [public.clone()];
        assert_eq!(verify(bytes, Some(&line), &keys), Ok(public.id()));
        // Rotation: either pinned key verifies.
        let both = [other_public.clone(), public.clone()];
        assert!(verify(bytes, Some(&other_signing.sign(bytes)), &both).is_ok());
        assert!(verify(bytes, Some(&line), &both).is_ok());

        let mut tampered = bytes.to_vec();
        tampered[20] ^= 1;
        assert_eq!(
            verify(&tampered, Some(&line), &keys),
            Err(SignatureError::Invalid(public.id()))
        );
        assert_eq!(verify(bytes, None, &keys), Err(SignatureError::Missing));
        assert_eq!(
            verify(bytes, Some(&other_signing.sign(bytes)), &keys)
                .unwrap_err()
                .reason(),
            "unknown_key"
        );
        for bad in ["", "ed25519", "rsa x y", "ed25519 00 zz", &"x".repeat(600)] {
            assert!(
                matches!(
                    verify(bytes, Some(bad), &keys),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        // A private key is not a public key and the other way round.
        assert!(PublicKey::read_file(&dir.join("a.key")).is_err());
        assert!(SigningKey::read_file(&dir.join("a.pub")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn private_keys_are_pkcs8_v1_as_openssl_writes_them() {
        let (private, public) = generate_key_pair().unwrap();
        let der = PrivateKeyDer::from_pem_slice(private.as_bytes()).unwrap();
        assert_eq!(der.secret_der().len(), 48);
        assert_eq!(der.secret_der()[..16], PKCS8_V1_PREFIX);
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        // An OpenSSL-made key (`openssl genpkey -algorithm ed25519`) reads.
        let openssl = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINMzonvYdqsItrO1miDU/4Czhe8Rn1+aJYPW4Mr9UpZn\n-----END PRIVATE KEY-----\n";
        let dir = std::env::temp_dir().join(format!("timepool-pkcs8-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("k"), openssl).unwrap();
        assert!(SigningKey::read_file(&dir.join("k")).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_signature_file_fits_its_bytes_whenever_a_write_is_cut_short() {
        let dir = std::env::temp_dir().join(format!("timepool-sigpair-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (key, public) = key_pair(&dir, "k");
        let keys = std::slice::from_ref(&public);
        let path = dir.join("snapshot.json");
        let read = |path: &Path| {
            (
                std::fs::read(path).unwrap(),
                read_signature_file(path).unwrap(),
            )
        };
        let (old, new, newer) = (b"old".as_slice(), b"new".as_slice(), b"newer".as_slice());
        write_signed(&path, old, Some(&key.sign(old))).unwrap();
        let (bytes, text) = read(&path);
        assert_eq!(bytes, old);
        assert_eq!(text.as_deref().map(|t| t.lines().count()), Some(1));
        // Killed after the signature file got both lines, before the bytes:
        // the old bytes and both lines; then after the bytes: the new ones.
        let both = format!("{}\n{}\n", key.sign(new), key.sign(old));
        std::fs::write(signature_path(&path), &both).unwrap();
        assert!(verify_file_text(old, Some(&both), keys).is_ok());
        assert!(verify_file_text(new, Some(&both), keys).is_ok());
        assert!(verify_file_text(b"other", Some(&both), keys).is_err());
        // The next write from the first of those states: the lines it
        // passes through include the one for the bytes in place, and it
        // ends with one line for its own bytes.
        write_signed(&path, newer, Some(&key.sign(newer))).unwrap();
        let (bytes, text) = read(&path);
        assert_eq!(bytes, newer);
        assert_eq!(text.as_deref().map(|t| t.lines().count()), Some(1));
        assert!(verify_file_text(&bytes, text.as_deref(), keys).is_ok());
        // Too many lines, or none: malformed.
        let four = format!("{0}\n{0}\n{0}\n{0}\n", key.sign(newer));
        assert!(matches!(
            verify_file_text(newer, Some(&four), keys),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify_file_text(newer, Some("\n"), keys),
            Err(SignatureError::Malformed(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn signature_file_sits_next_to_the_snapshot() {
        assert_eq!(
            signature_path(Path::new("/var/lib/x/snapshot.json")),
            PathBuf::from("/var/lib/x/snapshot.json.sig")
        );
    }
}
