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
    pub account_id: Option<i64>,
    /// The account's name, for staff.
    pub account_name: Option<String>,
    /// The latest self-check: ok, when, the offset measured, the words.
    pub self_check_ok: Option<bool>,
    pub self_check_at: Option<i64>,
    pub self_check_offset: Option<f64>,
    pub self_check_detail: Option<String>,
}

const MONITOR_COLUMNS: &str = "m.id, m.name, m.state, m.ip, m.created_at, m.last_seen,
    m.account_id, a.name AS account_name, m.self_check_ok, m.self_check_at,
    m.self_check_offset, m.self_check_detail";

fn monitor_from_row(row: &sqlx::any::AnyRow) -> Result<Monitor, DbError> {
    Ok(Monitor {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        state: row.try_get("state")?,
        ip: row.try_get("ip")?,
        created_at: row.try_get("created_at")?,
        last_seen: row.try_get("last_seen")?,
        account_id: row.try_get("account_id")?,
        account_name: row.try_get("account_name")?,
        self_check_ok: row
            .try_get::<Option<i64>, _>("self_check_ok")?
            .map(|ok| ok != 0),
        self_check_at: row.try_get("self_check_at")?,
        self_check_offset: row.try_get("self_check_offset")?,
        self_check_detail: row.try_get("self_check_detail")?,
    })
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
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MONITOR_COLUMNS} FROM monitors m LEFT JOIN accounts a ON a.id = m.account_id
         WHERE m.state <> 'deleted' ORDER BY m.name"
    )))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(monitor_from_row).collect()
}

/// One monitor, deleted ones too (the staff page of a monitor).
pub async fn get(db: &Db, id: i64) -> Result<Option<Monitor>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MONITOR_COLUMNS} FROM monitors m LEFT JOIN accounts a ON a.id = m.account_id
         WHERE m.id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(monitor_from_row).transpose()
}

/// The monitor a bearer token belongs to.
pub async fn by_token(db: &Db, token: &str) -> Result<Option<Monitor>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MONITOR_COLUMNS} FROM monitors m LEFT JOIN accounts a ON a.id = m.account_id
         WHERE m.token_hash = $1"
    )))
    .bind(token_hash(token))
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(monitor_from_row).transpose()
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

/// Stores the monitor's latest self-check (`POST /api/v1/monitor/self-check`).
pub async fn record_self_check(
    db: &Db,
    id: i64,
    ok: bool,
    offset: Option<f64>,
    detail: &str,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE monitors SET self_check_ok = $1, self_check_at = $2, self_check_offset = $3,
                self_check_detail = $4,
                self_check_failed_at = CASE WHEN $1 = 0 THEN $2 ELSE self_check_failed_at END,
                last_seen = $2
         WHERE id = $5",
    )
    .bind(i64::from(ok))
    .bind(now)
    .bind(offset)
    .bind(detail)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}
