//! The control plane's database: one code path over SQLite and PostgreSQL.
//!
//! Everything goes through sqlx's `Any` driver with runtime queries; `$1`
//! placeholders work on both engines (SQLite reads `$N` as the N-th
//! parameter). Column types are restricted to BIGINT, DOUBLE PRECISION and
//! TEXT so values decode the same on both (see migrations/0001_initial.sql).
//!
//! Architecture invariant: nothing here knows about HTTP or DNS. The web layer
//! calls these functions; the DNS daemon never links against this module's
//! data (it reads the snapshot file).

pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod ingest;
pub mod leases;
pub mod login_failures;
pub mod mail;
pub mod migrate;
pub mod monitors;
pub mod news;
pub mod nodes;
pub mod pairs;
pub mod schedule;
pub mod scores;
pub mod secrets;
pub mod server_verification;
pub mod servers;
pub mod snapshots;
pub mod user_data;
pub mod vendor_zones;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Transaction};

pub use sqlx::Error as DbError;

/// Which engine a URL points at; only consulted where SQL must differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// The pool plus the engine it talks to. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub engine: Engine,
}

pub type Tx = Transaction<'static, sqlx::Any>;

/// Where the database is, once flags and config are resolved.
pub fn default_sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}/timepool.db?mode=rwc", data_dir.display())
}

/// The longest a request waits for a database connection.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether an error says the database cannot serve us now (down,
/// restarting, unreachable, out of connections, or SQLite still busy
/// after its timeout) rather than that the request was wrong: the same
/// request may succeed later, so it is answered 503, try again.
pub fn is_unavailable(error: &DbError) -> bool {
    match error {
        DbError::Io(_) | DbError::PoolTimedOut | DbError::PoolClosed | DbError::Tls(_) => true,
        DbError::Database(e) => e.code().is_some_and(|code| {
            // PostgreSQL: connection exceptions (08), operator
            // intervention such as a shutdown (57P), too many connections
            // (53300); SQLite: busy (5) and locked (6).
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "53300"
                || code == "5"
                || code == "6"
        }),
        _ => false,
    }
}

impl Db {
    /// Connects, switches SQLite to WAL, and runs the migrations.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        Db::connect_at_version(url, i64::MAX).await
    }

    /// `connect` with the schema only up to migration `version` (tests of
    /// a migration: `connect` later runs the rest).
    pub async fn connect_at_version(url: &str, version: i64) -> Result<Db, DbError> {
        install_default_drivers();
        let engine = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            return Err(DbError::Configuration(
                format!("unsupported database URL (want sqlite:// or postgres://): {url}").into(),
            ));
        };
        if engine == Engine::Sqlite {
            prepare_sqlite_path(url)?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if engine == Engine::Sqlite { 8 } else { 16 })
            // A request waits this long for a connection, not sqlx's 30 s:
            // with the database down, pages and the API say so at once
            // (503) instead of hanging.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        let db = Db { pool, engine };
        if engine == Engine::Sqlite {
            // WAL lets readers (page views) proceed while a writer commits.
            // The setting is stored in the file, so once is enough.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&db.pool)
                .await?;
        }
        migrate::run_up_to(&db, version).await?;
        Ok(db)
    }

    /// Starts a write transaction. On SQLite it takes the write lock up front
    /// (BEGIN IMMEDIATE) so two writers wait for each other instead of failing
    /// with SQLITE_BUSY when a read transaction tries to upgrade.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        match self.engine {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Engine::Postgres => self.pool.begin().await,
        }
    }
}

/// The SQLite file's directory exists (made owner-only when new) and the
/// file, which holds password hashes, is readable by its owner alone: an
/// older file left readable by others is tightened, with a warning. A
/// file that does not exist yet is made (owner-only) unless the URL asks
/// for another `mode=` than `rwc`: sqlx opens `sqlite://path` read-write
/// without creating it, which `--help`'s form of the URL would not expect.
fn prepare_sqlite_path(url: &str) -> Result<(), DbError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let mode = params
        .split('&')
        .find_map(|p| p.strip_prefix("mode="))
        .unwrap_or("rwc");
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| {
                DbError::Configuration(format!("cannot create {}: {e}", parent.display()).into())
            })?;
    }
    if mode == "rwc" && !Path::new(path).exists() {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => tracing::info!(path, "created a new database file"),
            // Made by another process meanwhile: fine, it is there.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(DbError::Configuration(
                    format!("cannot create the database file {path}: {e}").into(),
                ));
            }
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{path}{suffix}");
        let Ok(metadata) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                file,
                mode = format!("{:o}", mode & 0o777),
                "the database was readable by others; now owner-only (0600)"
            );
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(|e| DbError::Configuration(format!("cannot chmod {file}: {e}").into()))?;
        }
    }
    Ok(())
}

/// Unix seconds now; every timestamp in the schema is one of these.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A random secret as 64 hex characters (256 bits from the OS-seeded CSPRNG).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    hex(&bytes)
}

/// Tokens (sessions, invites, monitors) are stored as their SHA-256, so a
/// leaked database does not hand out logins.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(token.as_bytes()))
}

pub use crate::shared::encoding::hex;

/// True when the error is a UNIQUE violation (same meaning on both engines).
pub fn is_unique_violation(err: &DbError) -> bool {
    match err {
        DbError::Database(e) => e.is_unique_violation(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::Db;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn a_sqlite_url_without_mode_makes_its_file_owner_only() {
        let dir = std::env::temp_dir().join(format!("timepool-db-new-{}", std::process::id()));
        let file = dir.join("sub/new.db");
        let db = Db::connect(&format!("sqlite://{}", file.display()))
            .await
            .expect("a new file is made");
        db.pool.close().await;
        let mode = std::fs::metadata(&file).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Read-only asks not to create: a missing file is an error.
        let missing = dir.join("missing.db");
        assert!(
            Db::connect(&format!("sqlite://{}?mode=ro", missing.display()))
                .await
                .is_err()
        );
        assert!(!missing.exists());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
