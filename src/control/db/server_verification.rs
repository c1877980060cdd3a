//! Servers shown to be run by their account (web/README.md, "Owners,
//! members and verified servers"): one-time verification URLs (only the
//! token's hash is stored), the verification itself, claims of an address
//! registered by another account, and staff approval.

use sqlx::Row;

use super::{Db, DbError, Tx, new_token, token_hash};

/// How long a verification URL works.
pub const VERIFY_TTL_SECS: i64 = 24 * 3600;

/// An open verification URL and the server it is for.
#[derive(Clone, Debug)]
pub struct OpenVerification {
    pub token_hash: String,
    pub server_id: i64,
    pub address: String,
    /// The account that asked (the server's own, or one claiming it).
    pub account_id: i64,
    /// The account the server is registered to now.
    pub server_account_id: i64,
}

impl OpenVerification {
    /// Whether the URL was made by another account than the server's: a
    /// claim of the address.
    pub fn is_claim(&self) -> bool {
        self.account_id != self.server_account_id
    }
}

/// A new verification URL's token for `server_id`, asked by `account_id`;
/// the earlier unused ones of that account for that server stop working.
pub async fn create(
    tx: &mut Tx,
    server_id: i64,
    account_id: i64,
    now: i64,
) -> Result<String, DbError> {
    sqlx::query(
        "DELETE FROM server_verifications
         WHERE server_id = $1 AND account_id = $2 AND used_at IS NULL",
    )
    .bind(server_id)
    .bind(account_id)
    .execute(&mut **tx)
    .await?;
    let token = new_token();
    sqlx::query(
        "INSERT INTO server_verifications (token_hash, server_id, account_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash(&token))
    .bind(server_id)
    .bind(account_id)
    .bind(now)
    .bind(now + VERIFY_TTL_SECS)
    .execute(&mut **tx)
    .await?;
    Ok(token)
}

/// The open (unused, unexpired) verification of `token`, if any.
pub async fn find_open(
    db: &Db,
    token: &str,
    now: i64,
) -> Result<Option<OpenVerification>, DbError> {
    let row = sqlx::query(
        "SELECT v.token_hash, v.server_id, v.account_id, s.address, s.account_id AS server_account_id
         FROM server_verifications v JOIN servers s ON s.id = v.server_id
         WHERE v.token_hash = $1 AND v.used_at IS NULL AND v.expires_at > $2",
    )
    .bind(token_hash(token))
    .bind(now)
    .fetch_optional(&db.pool)
    .await?;
    row.map(|row| {
        Ok(OpenVerification {
            token_hash: row.try_get("token_hash")?,
            server_id: row.try_get("server_id")?,
            address: row.try_get("address")?,
            account_id: row.try_get("account_id")?,
            server_account_id: row.try_get("server_account_id")?,
        })
    })
    .transpose()
}

/// Uses the verification: true when this call used it (once only).
pub async fn use_once(tx: &mut Tx, open: &OpenVerification, now: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE server_verifications SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
    )
    .bind(now)
    .bind(&open.token_hash)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks a server verified (by its URL or by staff); false when there is
/// no such server.
pub async fn mark_verified(tx: &mut Tx, server_id: i64, now: i64) -> Result<bool, DbError> {
    let done =
        sqlx::query("UPDATE servers SET verified_at = COALESCE(verified_at, $1) WHERE id = $2")
            .bind(now)
            .bind(server_id)
            .execute(&mut **tx)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// A claimed server moves from `from` to `to`, verified, with no deletion
/// scheduled and no alert state (the new account starts afresh); the
/// other open verification URLs of the server stop working. False when it
/// is no longer `from`'s.
pub async fn move_server(
    tx: &mut Tx,
    server_id: i64,
    from: i64,
    to: i64,
    now: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE servers SET account_id = $1, verified_at = $2, deletion_on = NULL
         WHERE id = $3 AND account_id = $4",
    )
    .bind(to)
    .bind(now)
    .bind(server_id)
    .bind(from)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM server_alerts WHERE server_id = $1")
        .bind(server_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM server_verifications WHERE server_id = $1 AND used_at IS NULL")
        .bind(server_id)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

/// The addresses of the account's servers that are not verified (deleted
/// ones aside).
pub async fn unverified_of_account(
    db: &Db,
    account_id: i64,
    now: i64,
) -> Result<Vec<String>, DbError> {
    let rows = sqlx::query(
        "SELECT address FROM servers
         WHERE account_id = $1 AND verified_at IS NULL
           AND (deletion_on IS NULL OR deletion_on > $2)
         ORDER BY id",
    )
    .bind(account_id)
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| r.try_get("address")).collect()
}

/// Whether the account has a server that is not verified (deleted ones
/// aside), in the caller's transaction.
pub async fn has_unverified(tx: &mut Tx, account_id: i64, now: i64) -> Result<bool, DbError> {
    let row = sqlx::query(
        "SELECT id FROM servers
         WHERE account_id = $1 AND verified_at IS NULL
           AND (deletion_on IS NULL OR deletion_on > $2)
         LIMIT 1",
    )
    .bind(account_id)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.is_some())
}

/// An unverified server, for the staff page.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Unverified {
    pub id: i64,
    pub address: String,
    pub account_name: String,
    pub netspeed: i64,
    pub created_at: i64,
}

/// Every unverified server (deleted ones aside), oldest first.
pub async fn list_unverified(db: &Db, now: i64) -> Result<Vec<Unverified>, DbError> {
    let rows = sqlx::query(
        "SELECT s.id, s.address, a.name AS account_name, s.netspeed, s.created_at
         FROM servers s JOIN accounts a ON a.id = s.account_id
         WHERE s.verified_at IS NULL AND (s.deletion_on IS NULL OR s.deletion_on > $1)
         ORDER BY s.id LIMIT 1000",
    )
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Unverified {
                id: r.try_get("id")?,
                address: r.try_get("address")?,
                account_name: r.try_get("account_name")?,
                netspeed: r.try_get("netspeed")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}
