//! The DNS nodes that pull the snapshot: registered ones (a token made by
//! `timepool admin create-node`) and unregistered ones known only by the
//! name they sent, at most `MAX_UNREGISTERED` of those.

use sqlx::Row;

use super::{Db, DbError, Tx, new_token, now, token_hash};

/// Unregistered names kept; a flood of made-up names stops here.
pub const MAX_UNREGISTERED: i64 = 1000;

/// An unregistered name not heard of for this long may be dropped to make
/// room for a new one.
const FORGET_UNREGISTERED_SECS: i64 = 7 * 86_400;

async fn unregistered(db: &Db) -> Result<i64, DbError> {
    sqlx::query("SELECT COUNT(*) AS n FROM dns_nodes WHERE token_hash IS NULL")
        .fetch_one(&db.pool)
        .await?
        .try_get("n")
}

/// A node as the nodes page shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Node {
    pub name: String,
    pub registered: bool,
    pub last_pull_at: Option<i64>,
    pub last_address: Option<String>,
    pub serial: Option<i64>,
    pub version: Option<String>,
    /// When the snapshot after the node's serial was published: how long
    /// the node has been behind (none: it is current).
    pub superseded_at: Option<i64>,
}

/// Registers a node with a token; returns the token (shown once).
pub async fn create(tx: &mut Tx, name: &str) -> Result<String, DbError> {
    let token = new_token();
    sqlx::query(
        "INSERT INTO dns_nodes (name, token_hash, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash
         WHERE dns_nodes.token_hash IS NULL",
    )
    .bind(name)
    .bind(token_hash(&token))
    .bind(now())
    .execute(&mut **tx)
    .await
    .and_then(|done| {
        if done.rows_affected() == 1 {
            Ok(token)
        } else {
            Err(DbError::Protocol(format!(
                "a registered node named {name} exists"
            )))
        }
    })
}

/// The name of the registered node with this token.
pub async fn by_token(db: &Db, token: &str) -> Result<Option<String>, DbError> {
    let row = sqlx::query("SELECT name FROM dns_nodes WHERE token_hash = $1")
        .bind(token_hash(token))
        .fetch_optional(&db.pool)
        .await?;
    row.map(|row| row.try_get("name")).transpose()
}

/// What a pull tells about a node.
#[derive(Clone, Debug)]
pub struct Pull<'a> {
    pub name: &'a str,
    /// The node showed its token; else only its name, which must not be
    /// a registered node's.
    pub registered: bool,
    pub address: &'a str,
    pub serial: Option<u32>,
    pub version: Option<&'a str>,
    pub at: i64,
}

/// Record a pull. A registered node's row changes only on a pull with
/// its token; an unregistered name is added only while fewer than
/// `MAX_UNREGISTERED` are known. False when nothing was recorded.
pub async fn record_pull(db: &Db, pull: &Pull<'_>) -> Result<bool, DbError> {
    let serial = pull.serial.map(i64::from);
    let updated = sqlx::query(if pull.registered {
        "UPDATE dns_nodes SET last_pull_at = $2, last_address = $3, serial = $4, version = $5
         WHERE name = $1 AND token_hash IS NOT NULL"
    } else {
        "UPDATE dns_nodes SET last_pull_at = $2, last_address = $3, serial = $4, version = $5
         WHERE name = $1 AND token_hash IS NULL"
    })
    .bind(pull.name)
    .bind(pull.at)
    .bind(pull.address)
    .bind(serial)
    .bind(pull.version)
    .execute(&db.pool)
    .await?;
    if updated.rows_affected() == 1 {
        return Ok(true);
    }
    if pull.registered {
        return Ok(false);
    }
    if unregistered(db).await? >= MAX_UNREGISTERED {
        // Make room from names not heard of for a week, if any.
        sqlx::query("DELETE FROM dns_nodes WHERE token_hash IS NULL AND last_pull_at < $1")
            .bind(pull.at - FORGET_UNREGISTERED_SECS)
            .execute(&db.pool)
            .await?;
        if unregistered(db).await? >= MAX_UNREGISTERED {
            return Ok(false);
        }
    }
    sqlx::query(
        "INSERT INTO dns_nodes (name, created_at, last_pull_at, last_address, serial, version)
         VALUES ($1, $2, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
    )
    .bind(pull.name)
    .bind(pull.at)
    .bind(pull.address)
    .bind(serial)
    .bind(pull.version)
    .execute(&db.pool)
    .await
    .map(|done| done.rows_affected() == 1)
}

/// Every node, by name, with when its serial was superseded.
pub async fn list(db: &Db) -> Result<Vec<Node>, DbError> {
    let rows = sqlx::query(
        "SELECT n.name,
                CAST(CASE WHEN n.token_hash IS NULL THEN 0 ELSE 1 END AS BIGINT) AS registered,
                n.last_pull_at,
                n.last_address, n.serial, n.version,
                (SELECT MIN(s.published_at) FROM snapshots s
                 WHERE s.serial > COALESCE(n.serial, 0)) AS superseded_at
         FROM dns_nodes n ORDER BY n.name",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            let registered: i64 = row.try_get("registered")?;
            Ok(Node {
                name: row.try_get("name")?,
                registered: registered != 0,
                last_pull_at: row.try_get("last_pull_at")?,
                last_address: row.try_get("last_address")?,
                serial: row.try_get("serial")?,
                version: row.try_get("version")?,
                superseded_at: row.try_get("superseded_at")?,
            })
        })
        .collect()
}
