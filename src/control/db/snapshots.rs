//! The zone builder's tables: the servers eligible for DNS, approved vendor
//! zones, and the record of published snapshots (serial and content hash).

use sqlx::Row;

use super::servers::DELETION_DNS_WINDOW_SECS;
use super::{Db, DbError, Tx};

/// A server eligible for DNS as stored: in pool, score at or above the
/// builder's minimum (10, or the low end of a score ramp), netspeed > 0,
/// not due for deletion within the DNS window (zones/README.md).
#[derive(Clone, Debug)]
pub struct EligibleRow {
    pub id: i64,
    pub address: String,
    pub netspeed: i64,
    pub score: f64,
    /// The operator's zone, else the GeoIP zone.
    pub zone: Option<String>,
}

/// The servers eligible for DNS at `now` (unix seconds) with a score of
/// at least `min_score`, by id.
pub async fn eligible_servers(
    db: &Db,
    now: i64,
    min_score: f64,
) -> Result<Vec<EligibleRow>, DbError> {
    let rows = sqlx::query(
        "SELECT id, address, netspeed, score, geo_zone, zone_override FROM servers
         WHERE in_pool = 1 AND score >= $1 AND netspeed > 0
           AND (deletion_on IS NULL OR deletion_on > $2)
         ORDER BY id",
    )
    .bind(min_score)
    .bind(now + DELETION_DNS_WINDOW_SECS)
    .fetch_all(&db.pool)
    .await?;
    let mut servers = Vec::with_capacity(rows.len());
    for row in rows {
        let geo_zone: Option<String> = row.try_get("geo_zone")?;
        let zone_override: Option<String> = row.try_get("zone_override")?;
        servers.push(EligibleRow {
            id: row.try_get("id")?,
            address: row.try_get("address")?,
            netspeed: row.try_get("netspeed")?,
            score: row.try_get("score")?,
            zone: zone_override.or(geo_zone),
        });
    }
    Ok(servers)
}

/// The names of the approved vendor zones, as stored.
pub async fn approved_vendor_names(db: &Db) -> Result<Vec<String>, DbError> {
    let rows = sqlx::query("SELECT name FROM vendor_zones WHERE status = 'approved' ORDER BY name")
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|row| row.try_get("name")).collect()
}

/// The last publish recorded.
#[derive(Clone, Debug)]
pub struct LastPublish {
    pub serial: u32,
    pub published_at: i64,
    pub content_hash: String,
}

pub async fn last_publish(db: &Db) -> Result<Option<LastPublish>, DbError> {
    let row = sqlx::query(
        "SELECT serial, published_at, content_hash FROM snapshots ORDER BY serial DESC LIMIT 1",
    )
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let serial: i64 = row.try_get("serial")?;
    Ok(Some(LastPublish {
        serial: u32::try_from(serial).unwrap_or(u32::MAX),
        published_at: row.try_get("published_at")?,
        content_hash: row.try_get("content_hash")?,
    }))
}

/// Record a publish in the caller's transaction (committed only once the
/// file is in place).
pub async fn record_publish(tx: &mut Tx, serial: u32, now: i64, hash: &str) -> Result<(), DbError> {
    sqlx::query("INSERT INTO snapshots (serial, published_at, content_hash) VALUES ($1, $2, $3)")
        .bind(i64::from(serial))
        .bind(now)
        .bind(hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The snapshot every instance serves, as stored.
#[derive(Clone, Debug)]
pub struct StoredSnapshot {
    pub serial: u32,
    pub published_at: i64,
    pub body: String,
    pub signature: Option<String>,
}

/// Store the snapshot to serve (its exact bytes and signature), in the
/// caller's transaction.
pub async fn store_published(tx: &mut Tx, snapshot: &StoredSnapshot) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO published_snapshot (id, serial, published_at, body, signature)
         VALUES (1, $1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET serial = excluded.serial,
           published_at = excluded.published_at, body = excluded.body,
           signature = excluded.signature",
    )
    .bind(i64::from(snapshot.serial))
    .bind(snapshot.published_at)
    .bind(&snapshot.body)
    .bind(&snapshot.signature)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The serial and signature of the stored snapshot: enough to tell
/// whether the copy in memory is current, without reading the body.
pub async fn published_head(db: &Db) -> Result<Option<(u32, Option<String>)>, DbError> {
    let row = sqlx::query("SELECT serial, signature FROM published_snapshot WHERE id = 1")
        .fetch_optional(&db.pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let serial: i64 = row.try_get("serial")?;
    Ok(Some((
        u32::try_from(serial).unwrap_or(u32::MAX),
        row.try_get("signature")?,
    )))
}

pub async fn published(db: &Db) -> Result<Option<StoredSnapshot>, DbError> {
    let row = sqlx::query(
        "SELECT serial, published_at, body, signature FROM published_snapshot WHERE id = 1",
    )
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let serial: i64 = row.try_get("serial")?;
    Ok(Some(StoredSnapshot {
        serial: u32::try_from(serial).unwrap_or(u32::MAX),
        published_at: row.try_get("published_at")?,
        body: row.try_get("body")?,
        signature: row.try_get("signature")?,
    }))
}

/// A new signature for the stored snapshot of `serial` (the signing key
/// changed; the bytes stay).
pub async fn set_signature(tx: &mut Tx, serial: u32, signature: &str) -> Result<bool, DbError> {
    let done =
        sqlx::query("UPDATE published_snapshot SET signature = $1 WHERE id = 1 AND serial = $2")
            .bind(signature)
            .bind(i64::from(serial))
            .execute(&mut **tx)
            .await?;
    Ok(done.rows_affected() == 1)
}
