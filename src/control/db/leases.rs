//! Leases: one instance at a time does a job (the zone builder), for a
//! bounded time it keeps renewing. Times come from the database's clock,
//! so the instances' clocks need not agree; a holder that stops renewing
//! (killed, cut off) loses the lease when it expires.

use super::{Db, DbError, Engine, Tx};

/// The zone builder's lease.
pub const ZONE_BUILDER: &str = "zone_builder";

/// Unix seconds on the database's clock, as SQL.
fn now_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => "CAST(strftime('%s', 'now') AS BIGINT)",
        Engine::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS BIGINT)",
    }
}

/// Take the lease `name` for `holder` for `ttl_secs`, or renew it: true
/// when `holder` has it now. Taken over only once the last holder's
/// expired.
pub async fn acquire(db: &Db, name: &str, holder: &str, ttl_secs: i64) -> Result<bool, DbError> {
    let now = now_sql(db.engine);
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, {now} + $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.holder = excluded.holder OR leases.expires_at <= {now}"
    )))
    .bind(name)
    .bind(holder)
    .bind(ttl_secs)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Inside a write transaction: renew the lease if `holder` still has it,
/// and say whether it does. A publish commits only when this holds (the
/// fence against a holder that lost its lease without noticing).
pub async fn still_held(
    tx: &mut Tx,
    engine: Engine,
    name: &str,
    holder: &str,
    ttl_secs: i64,
) -> Result<bool, DbError> {
    let now = now_sql(engine);
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE leases SET expires_at = {now} + $3
         WHERE name = $1 AND holder = $2 AND expires_at > {now}"
    )))
    .bind(name)
    .bind(holder)
    .bind(ttl_secs)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Give the lease up (a clean stop), so another takes over at once.
pub async fn release(db: &Db, name: &str, holder: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Who holds the lease, and for how many more seconds.
pub async fn holder(db: &Db, name: &str) -> Result<Option<(String, i64)>, DbError> {
    use sqlx::Row;
    let now = now_sql(db.engine);
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT holder, expires_at - {now} AS remaining FROM leases WHERE name = $1"
    )))
    .bind(name)
    .fetch_optional(&db.pool)
    .await?;
    row.map(|row| Ok((row.try_get("holder")?, row.try_get("remaining")?)))
        .transpose()
}
