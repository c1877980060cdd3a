//! Monitors: the agents that check servers. Their tokens are stored hashed.

use sqlx::Row;

use super::{Db, DbError, Tx, new_token, now, token_hash};

pub const STATES: &[&str] = &["candidate", "testing", "active", "paused"];

#[derive(Clone, Debug, serde::Serialize)]
pub struct Monitor {
    pub id: i64,
    pub name: String,
    pub state: String,
    pub ip: Option<String>,
    pub created_at: i64,
    pub last_seen: Option<i64>,
}

/// Creates a candidate monitor; returns it and its token (shown once).
pub async fn create(tx: &mut Tx, name: &str) -> Result<(i64, String), DbError> {
    let token = new_token();
    let id: i64 = sqlx::query(
        "INSERT INTO monitors (name, token_hash, state, created_at)
         VALUES ($1, $2, 'candidate', $3) RETURNING id",
    )
    .bind(name)
    .bind(token_hash(&token))
    .bind(now())
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;
    Ok((id, token))
}

pub async fn list(db: &Db) -> Result<Vec<Monitor>, DbError> {
    let rows = sqlx::query(
        "SELECT id, name, state, ip, created_at, last_seen FROM monitors
         WHERE state <> 'deleted' ORDER BY name",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Monitor {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                state: row.try_get("state")?,
                ip: row.try_get("ip")?,
                created_at: row.try_get("created_at")?,
                last_seen: row.try_get("last_seen")?,
            })
        })
        .collect()
}

/// The monitor a bearer token belongs to (for the ingest API).
pub async fn by_token(db: &Db, token: &str) -> Result<Option<Monitor>, DbError> {
    let row = sqlx::query(
        "SELECT id, name, state, ip, created_at, last_seen FROM monitors WHERE token_hash = $1",
    )
    .bind(token_hash(token))
    .fetch_optional(&db.pool)
    .await?;
    row.map(|row| {
        Ok(Monitor {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            state: row.try_get("state")?,
            ip: row.try_get("ip")?,
            created_at: row.try_get("created_at")?,
            last_seen: row.try_get("last_seen")?,
        })
    })
    .transpose()
}

pub async fn set_state(tx: &mut Tx, id: i64, state: &str) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE monitors SET state = $1 WHERE id = $2 AND state <> 'deleted'")
        .bind(state)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The address the monitor checks from (the /24, /48 rule of scheduling).
pub async fn set_ip(tx: &mut Tx, id: i64, ip: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE monitors SET ip = $1 WHERE id = $2")
        .bind(ip)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
