//! Snapshot format v1: the contract between the control plane and the DNS
//! daemon (documented in zones/README.md).
//!
//! A snapshot is JSON. [`parse`] (bytes) and [`read_file`] turn it into a
//! [`SnapshotSpec`]: parse, then validate every field, collecting every
//! problem with its JSON path instead of stopping at the first. A spec is
//! valid by construction; the DNS daemon compiles it into its zone table
//! (`dns::zone::ZoneTable::compile`, which cannot fail), the control
//! plane's zone builder checks what it publishes with the same [`parse`].
//! A snapshot that yields any problem is never served or published.
//! `signature` signs and verifies the bytes of a snapshot (Ed25519).
//!
//! Architecture invariant: a leaf of the shared floor. It reads JSON and
//! knows DNS name limits; it knows nothing of the zone table, sockets, the
//! database or the web layer.

pub mod signature;
mod validate;

use std::fmt;
use std::path::Path;

pub use validate::{
    MAX_ANSWER_TTL, MAX_NS_TTL, MAX_SOA_EXPIRE, MAX_SOA_MINIMUM, MAX_SOA_REFRESH, MAX_SOA_TTL,
    validate,
};

/// The only format version this build reads.
pub const FORMAT_VERSION: u64 = 1;

/// The headers of a pull of `GET /api/v1/snapshot` (zones/README.md,
/// "Pulling"): the node's name and the serial it serves, so the control
/// plane's nodes page knows where each node stands. (The signature comes
/// back in `signature::HEADER`.)
pub const NODE_HEADER: &str = "x-timepool-node";
pub const NODE_SERIAL_HEADER: &str = "x-timepool-node-serial";

/// Largest `max_hosts` an origin may ask for.
pub const MAX_HOSTS_LIMIT: usize = 16;

/// Most numbered labels (`0.`, `1.`, ...) a zone may have.
pub const MAX_NUMBERED_LABELS: usize = 10;

/// One thing wrong with a snapshot, at a JSON path like
/// `$.zones.de.servers[3]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a snapshot could not be loaded.
#[derive(Debug)]
pub enum SnapshotError {
    Read {
        path: String,
        error: std::io::Error,
    },
    Json {
        source: String,
        error: serde_json::Error,
    },
    Invalid {
        source: String,
        problems: Vec<Problem>,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Read { path, error } => write!(f, "{path}: cannot read: {error}"),
            SnapshotError::Json { source, error } => write!(
                f,
                "{source}: not valid JSON at line {} column {}: {error}",
                error.line(),
                error.column()
            ),
            SnapshotError::Invalid { source, problems } => {
                write!(f, "{source}: {} problem(s)", problems.len())?;
                for problem in problems {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SnapshotError {}

/// Read and validate a snapshot file.
pub fn read_file(path: &Path) -> Result<SnapshotSpec, SnapshotError> {
    let bytes = std::fs::read(path).map_err(|error| SnapshotError::Read {
        path: path.display().to_string(),
        error,
    })?;
    parse(&bytes, &path.display().to_string())
}

/// Validate a snapshot held in memory. `source` names it in errors (a file
/// name or a URL).
pub fn parse(bytes: &[u8], source: &str) -> Result<SnapshotSpec, SnapshotError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| SnapshotError::Json {
            source: source.to_string(),
            error,
        })?;
    validate(&value).map_err(|problems| SnapshotError::Invalid {
        source: source.to_string(),
        problems,
    })
}

/// A snapshot that passed validation: every reference resolves, every
/// name is well formed, every number in range. `ZoneTable::compile` relies
/// on that and cannot fail.
#[derive(Clone, Debug)]
pub struct SnapshotSpec {
    pub serial: u32,
    pub origins: Vec<OriginSpec>,
    pub servers: Vec<ServerSpec>,
    pub zones: Vec<ZoneSpec>,
    pub aliases: Vec<AliasSpec>,
}

#[derive(Clone, Debug)]
pub struct OriginSpec {
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub soa: SoaSpec,
    pub ns: Vec<String>,
    pub ns_ttl: u32,
    pub answer_ttl: u32,
    pub max_hosts: usize,
    pub ipv6_everywhere: bool,
}

#[derive(Clone, Debug)]
pub struct SoaSpec {
    pub mname: String,
    pub rname: String,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
    pub ttl: u32,
}

#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub id: u64,
    pub address: std::net::IpAddr,
    pub weight: u32,
}

#[derive(Clone, Debug)]
pub struct ZoneSpec {
    /// `@` for the global zone, else a lowercase label.
    pub name: String,
    /// Index into `SnapshotSpec::zones`; `None` only for `@`.
    pub parent: Option<usize>,
    /// Indexes into `SnapshotSpec::servers`.
    pub servers: Vec<usize>,
    /// Per numbered label, indexes into `SnapshotSpec::servers`.
    pub numbered: Vec<Vec<usize>>,
}

#[derive(Clone, Debug)]
pub struct AliasSpec {
    pub name: String,
    /// Index into `SnapshotSpec::zones`.
    pub target: usize,
}
