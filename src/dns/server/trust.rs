//! What a DNS node accepts as its snapshot (zones/README.md,
//! "Signatures"): when it pins public keys (`--snapshot-public-key`), only
//! bytes signed by one of them; always only a valid snapshot; and never
//! one whose serial is lower than the one it serves (a replayed old
//! snapshot is an attack) unless the operator allows it
//! (`--allow-serial-rollback`). The signature is checked first, on the
//! bytes as they came (after gzip, which the client undoes within its
//! size bound), so nothing unsigned is even parsed.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::dns::zone::{self, ZoneTable};
use crate::shared::snapshot::SnapshotError;
use crate::shared::snapshot::signature::{self, PublicKey, SignatureError};

/// The node's rules for snapshots.
#[derive(Clone, Debug, Default)]
pub struct SnapshotTrust {
    /// Accept only snapshots signed by one of these; empty: unsigned
    /// snapshots are accepted (and signatures not checked).
    pub keys: Vec<PublicKey>,
    /// Accept a serial lower than the one served.
    pub allow_serial_rollback: bool,
}

/// Why a snapshot was not taken; the table in use keeps serving.
#[derive(Debug)]
pub enum Rejection {
    Signature {
        source: String,
        error: SignatureError,
    },
    Invalid(SnapshotError),
    OlderSerial {
        source: String,
        offered: u32,
        serving: u32,
    },
}

/// The `reason` labels of `timepool_dns_snapshot_rejections_total`.
pub const REASONS: [&str; 6] = [
    "unsigned",
    "malformed_signature",
    "unknown_key",
    "bad_signature",
    "invalid",
    "older_serial",
];

impl Rejection {
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Signature { error, .. } => error.reason(),
            Rejection::Invalid(_) => "invalid",
            Rejection::OlderSerial { .. } => "older_serial",
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Signature { source, error } => write!(f, "{source}: {error}"),
            Rejection::Invalid(error) => write!(f, "{error}"),
            Rejection::OlderSerial {
                source,
                offered,
                serving,
            } => write!(
                f,
                "{source}: serial {offered} is lower than the serial served, {serving} (a replayed old snapshot?); refused (--allow-serial-rollback accepts it)"
            ),
        }
    }
}

/// Rejected snapshots by reason (metrics).
#[derive(Debug, Default)]
pub struct Rejections([AtomicU64; REASONS.len()]);

impl Rejections {
    pub fn count(&self, rejection: &Rejection) {
        let reason = rejection.reason();
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (reason, count) for every reason.
    pub fn totals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REASONS
            .iter()
            .zip(&self.0)
            .map(|(reason, count)| (*reason, count.load(Ordering::Relaxed)))
    }
}

impl SnapshotTrust {
    /// The signature (when keys are pinned), then the content. `source`
    /// names the snapshot in errors (a file or a URL).
    pub fn accept(
        &self,
        bytes: &[u8],
        signature: Option<&str>,
        source: &str,
    ) -> Result<ZoneTable, Rejection> {
        if !self.keys.is_empty() {
            signature::verify(bytes, signature, &self.keys).map_err(|error| {
                Rejection::Signature {
                    source: source.to_string(),
                    error,
                }
            })?;
        }
        zone::load_bytes(bytes, source).map_err(Rejection::Invalid)
    }

    /// A snapshot file and its detached signature (`FILE.sig`).
    pub fn accept_file(&self, path: &std::path::Path) -> Result<ZoneTable, Rejection> {
        let source = path.display().to_string();
        let read_error = |error| {
            Rejection::Invalid(SnapshotError::Read {
                path: source.clone(),
                error,
            })
        };
        let bytes = std::fs::read(path).map_err(read_error)?;
        if !self.keys.is_empty() {
            let text = signature::read_signature_file(path).map_err(read_error)?;
            signature::verify_file_text(&bytes, text.as_deref(), &self.keys).map_err(|error| {
                Rejection::Signature {
                    source: source.clone(),
                    error,
                }
            })?;
        }
        zone::load_bytes(&bytes, &source).map_err(Rejection::Invalid)
    }

    /// A snapshot may replace the one served only if its serial is not
    /// lower, unless rollbacks are allowed.
    pub fn check_serial(&self, source: &str, offered: u32, serving: u32) -> Result<(), Rejection> {
        if offered < serving && !self.allow_serial_rollback {
            return Err(Rejection::OlderSerial {
                source: source.to_string(),
                offered,
                serving,
            });
        }
        Ok(())
    }
}
