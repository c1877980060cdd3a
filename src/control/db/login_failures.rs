//! Failed logins, in the database so the login limit holds whichever
//! instance a request reaches. Rows are keyed by a hash (no email
//! address is stored) and swept once past the limiter's window; a row is
//! written only after a full password check, so their number is bounded
//! by the hashing rate times the window.

use sqlx::Row;

use super::{Db, DbError, token_hash};

/// The hashed form of a limiter key.
pub fn key_hash(key: &str) -> String {
    token_hash(key)
}

/// Failures of `key_hash` at or after `since`.
pub async fn count_since(db: &Db, key_hash: &str, since: i64) -> Result<i64, DbError> {
    sqlx::query("SELECT COUNT(*) AS n FROM login_failures WHERE key_hash = $1 AND ts >= $2")
        .bind(key_hash)
        .bind(since)
        .fetch_one(&db.pool)
        .await?
        .try_get("n")
}

/// One failure for each key at `now`; rows older than `forget_before`
/// go.
pub async fn record(
    db: &Db,
    key_hashes: &[String],
    now: i64,
    forget_before: i64,
) -> Result<(), DbError> {
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM login_failures WHERE ts < $1")
        .bind(forget_before)
        .execute(&mut *tx)
        .await?;
    for key in key_hashes {
        sqlx::query("INSERT INTO login_failures (key_hash, ts) VALUES ($1, $2)")
            .bind(key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Forget the failures of `key_hash` (a successful login).
pub async fn clear(db: &Db, key_hash: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM login_failures WHERE key_hash = $1")
        .bind(key_hash)
        .execute(&db.pool)
        .await?;
    Ok(())
}
