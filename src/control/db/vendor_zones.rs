//! Vendor zones (`N.debian.<origin>`): operators apply, staff decide.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, Tx, now};

pub const CLIENT_TYPES: &[&str] = &["ntp", "sntp", "legacy", "all"];

#[derive(Clone, Debug, serde::Serialize)]
pub struct VendorZone {
    pub id: i64,
    pub name: String,
    pub client_type: String,
    pub description: String,
    pub status: String,
    pub account_id: i64,
    pub created_at: i64,
    pub decided_at: Option<i64>,
}

impl VendorZone {
    fn from_row(row: &AnyRow) -> Result<VendorZone, DbError> {
        Ok(VendorZone {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            client_type: row.try_get("client_type")?,
            description: row.try_get("description")?,
            status: row.try_get("status")?,
            account_id: row.try_get("account_id")?,
            created_at: row.try_get("created_at")?,
            decided_at: row.try_get("decided_at")?,
        })
    }
}

const COLUMNS: &str =
    "id, name, client_type, description, status, account_id, created_at, decided_at";

pub async fn name_taken(tx: &mut Tx, name: &str) -> Result<bool, DbError> {
    let row = sqlx::query("SELECT id FROM vendor_zones WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}

pub async fn apply(
    tx: &mut Tx,
    account_id: i64,
    name: &str,
    client_type: &str,
    description: &str,
) -> Result<i64, DbError> {
    let row = sqlx::query(
        "INSERT INTO vendor_zones (name, client_type, description, status, account_id, created_at)
         VALUES ($1, $2, $3, 'pending', $4, $5) RETURNING id",
    )
    .bind(name)
    .bind(client_type)
    .bind(description)
    .bind(account_id)
    .bind(now())
    .fetch_one(&mut **tx)
    .await?;
    row.try_get("id")
}

pub async fn list_for_account(db: &Db, account_id: i64) -> Result<Vec<VendorZone>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM vendor_zones WHERE account_id = $1 ORDER BY name"
    )))
    .bind(account_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(VendorZone::from_row).collect()
}

pub async fn list_all(db: &Db) -> Result<Vec<VendorZone>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM vendor_zones ORDER BY status, name"
    )))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(VendorZone::from_row).collect()
}

/// Approves or rejects a pending application; false if not pending.
pub async fn decide(tx: &mut Tx, id: i64, status: &str, user_id: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE vendor_zones SET status = $1, decided_at = $2, decided_by = $3
         WHERE id = $4 AND status = 'pending'",
    )
    .bind(status)
    .bind(now())
    .bind(user_id)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One application by id.
pub async fn get(db: &Db, id: i64) -> Result<Option<VendorZone>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM vendor_zones WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(VendorZone::from_row).transpose()
}
