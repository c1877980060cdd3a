//! Secrets every instance of the control plane shares, made once by
//! whichever instance needs one first.

use sqlx::Row;

use super::{Db, DbError, new_token};

/// The secret `name`: created (random, 256 bits, hex) if there is none,
/// the same on every instance afterwards.
pub async fn get_or_create(db: &Db, name: &str) -> Result<String, DbError> {
    sqlx::query("INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(new_token())
        .execute(&db.pool)
        .await?;
    sqlx::query("SELECT value FROM secrets WHERE name = $1")
        .bind(name)
        .fetch_one(&db.pool)
        .await?
        .try_get("value")
}
