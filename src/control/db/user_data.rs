//! A user's own data: everything stored about them, for download, and the
//! deletion of their login (web/README.md, "Your data and deleting your
//! login"): asked for, done `LOGIN_DELETION_DELAY_SECS` later unless they
//! log in before; refused while they are the last user of an account that
//! still has servers, vendor zones or monitors.

use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, Engine, Tx};

/// A requested deletion is carried out this long after the request.
pub const LOGIN_DELETION_DELAY_SECS: i64 = 7 * 86_400;

/// What keeps a login from being deleted: the account it is the last user
/// of still has these (counts); or it is the only owner of an account
/// with other users (an account keeps an owner).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Blockers {
    pub servers: i64,
    pub vendor_zones: i64,
    pub monitors: i64,
    pub sole_owner: bool,
}

impl Blockers {
    pub fn any(&self) -> bool {
        self.sole_owner || self.servers + self.vendor_zones + self.monitors > 0
    }
}

/// What blocks deleting `user_id` at `now`: being the only owner of an
/// account that has other users; or being its last user while it has
/// servers (not deleted), vendor zones (not rejected) or monitors (not
/// deleted).
///
/// Read in the caller's transaction with the account locked
/// (`accounts::lock_account`), so the answer holds until it commits.
pub async fn blockers(
    tx: &mut Tx,
    engine: Engine,
    user_id: i64,
    now: i64,
) -> Result<Blockers, DbError> {
    let account: Option<i64> = sqlx::query_scalar("SELECT account_id FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(account) = account else {
        return Ok(Blockers::default());
    };
    super::accounts::lock_account(tx, engine, account).await?;
    let row = sqlx::query(
        "SELECT u.account_id, u.removed_at, u.account_role,
                (SELECT COUNT(*) FROM users o
                 WHERE o.account_id = u.account_id AND o.removed_at IS NULL AND o.id <> u.id) AS others,
                (SELECT COUNT(*) FROM users o
                 WHERE o.account_id = u.account_id AND o.removed_at IS NULL AND o.id <> u.id
                   AND o.account_role = 'owner') AS other_owners
         FROM users u WHERE u.id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(Blockers::default());
    };
    let removed: Option<i64> = row.try_get("removed_at")?;
    let others: i64 = row.try_get("others")?;
    let other_owners: i64 = row.try_get("other_owners")?;
    let role: String = row.try_get("account_role")?;
    if removed.is_some() {
        return Ok(Blockers::default());
    }
    if others > 0 {
        return Ok(Blockers {
            sole_owner: role == "owner" && other_owners == 0,
            ..Blockers::default()
        });
    }
    let account_id: i64 = row.try_get("account_id")?;
    let counts = sqlx::query(
        "SELECT
           (SELECT COUNT(*) FROM servers
            WHERE account_id = $1 AND (deletion_on IS NULL OR deletion_on > $2)) AS servers,
           (SELECT COUNT(*) FROM vendor_zones
            WHERE account_id = $1 AND status <> 'rejected') AS vendor_zones,
           (SELECT COUNT(*) FROM monitors
            WHERE account_id = $1 AND state <> 'deleted') AS monitors",
    )
    .bind(account_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Blockers {
        servers: counts.try_get("servers")?,
        vendor_zones: counts.try_get("vendor_zones")?,
        monitors: counts.try_get("monitors")?,
        sole_owner: false,
    })
}

/// When the user asked for their login to be deleted, if they did.
pub async fn deletion_requested_at(db: &Db, user_id: i64) -> Result<Option<i64>, DbError> {
    let row = sqlx::query("SELECT deletion_requested_at FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&db.pool)
        .await?;
    Ok(match row {
        Some(row) => row.try_get("deletion_requested_at")?,
        None => None,
    })
}

/// Records the request and ends every session of the user (the next
/// login cancels it).
pub async fn request_deletion(tx: &mut Tx, user_id: i64, now: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET deletion_requested_at = $1 WHERE id = $2")
        .bind(now)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    super::accounts::end_all_sessions(tx, user_id).await
}

/// Cancels a requested deletion (the user logged in): true when there
/// was one.
pub async fn cancel_deletion(tx: &mut Tx, user_id: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE users SET deletion_requested_at = NULL
         WHERE id = $1 AND deletion_requested_at IS NOT NULL",
    )
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Users whose deletion is due at `now`: (id, email).
pub async fn due_deletions(db: &Db, now: i64) -> Result<Vec<(i64, String)>, DbError> {
    let rows = sqlx::query(
        "SELECT id, email FROM users
         WHERE deletion_requested_at IS NOT NULL AND deletion_requested_at <= $1 ORDER BY id",
    )
    .bind(now - LOGIN_DELETION_DELAY_SECS)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("email")?)))
        .collect()
}

/// The addresses the user has had: the current one and every one a
/// confirmation link was made for (an address change), except those that
/// are another login's now.
async fn addresses_of(tx: &mut Tx, user_id: i64, email: &str) -> Result<Vec<String>, DbError> {
    let rows = sqlx::query(
        "SELECT DISTINCT v.email FROM email_verifications v
         WHERE v.user_id = $1
           AND NOT EXISTS (SELECT 1 FROM users o WHERE o.email = v.email AND o.id <> $1)",
    )
    .bind(user_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut addresses = vec![email.to_string()];
    for row in rows {
        let address: String = row.try_get("email")?;
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    Ok(addresses)
}

/// Deletes the login `user_id` (still due for deletion: a login since
/// cancels it) and every row about it; where a record must stay (the
/// audit log, an account's name, news and vendor zone decisions) the
/// user's addresses are replaced by "deleted user #ID", matched exactly,
/// never as a part of another address. False when the deletion is no
/// longer requested.
pub async fn delete_login(tx: &mut Tx, user_id: i64, email: &str) -> Result<bool, DbError> {
    // A no-op write: on PostgreSQL it locks the row, so a login cancelling
    // the deletion meanwhile waits for this transaction (or wins before).
    let still = sqlx::query(
        "UPDATE users SET deletion_requested_at = deletion_requested_at
         WHERE id = $1 AND email = $2 AND deletion_requested_at IS NOT NULL",
    )
    .bind(user_id)
    .bind(email)
    .execute(&mut **tx)
    .await?;
    if still.rows_affected() != 1 {
        return Ok(false);
    }
    let pseudonym = format!("deleted user #{user_id}");
    // What they did: under the pseudonym, no longer linked to the row.
    sqlx::query("UPDATE audit_log SET actor = $1, user_id = NULL WHERE user_id = $2")
        .bind(&pseudonym)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    for address in addresses_of(tx, user_id, email).await? {
        let login_target = format!("login:{address}");
        for sql in [
            // Failed logins name the address they tried.
            "UPDATE audit_log SET actor = $2 WHERE user_id IS NULL AND actor = $1",
            "UPDATE audit_log SET details = $2 WHERE details = $1",
            "UPDATE accounts SET name = $2 WHERE name = $1",
        ] {
            sqlx::query(sql)
                .bind(&address)
                .bind(&pseudonym)
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query("UPDATE audit_log SET target = $2 WHERE target = $1")
            .bind(&login_target)
            .bind(format!("login:{pseudonym}"))
            .execute(&mut **tx)
            .await?;
        for sql in [
            "DELETE FROM invites WHERE email = $1",
            "DELETE FROM mail_queue WHERE recipient = $1",
        ] {
            sqlx::query(sql).bind(&address).execute(&mut **tx).await?;
        }
    }
    for sql in [
        "DELETE FROM sessions WHERE user_id = $1",
        "DELETE FROM password_resets WHERE user_id = $1",
        "DELETE FROM email_verifications WHERE user_id = $1",
        "DELETE FROM invites WHERE created_by = $1",
        "UPDATE vendor_zones SET decided_by = NULL WHERE decided_by = $1",
        "UPDATE news SET created_by = NULL WHERE created_by = $1",
        "DELETE FROM users WHERE id = $1",
    ] {
        sqlx::query(sql).bind(user_id).execute(&mut **tx).await?;
    }
    Ok(true)
}

/// Everything stored about the user, as one JSON document: the login,
/// the account and what it holds (servers, vendor zones), sessions (times
/// only), invitations sent and received, links mailed (times only), the
/// mails sent to them (kind, subject, times) and the audit log entries of
/// what they did or that name them. Secrets (password hash, token hashes)
/// are not in it.
pub async fn export(db: &Db, user_id: i64) -> Result<Value, DbError> {
    let user = sqlx::query(
        "SELECT id, account_id, email, role, language, created_at, email_verified_at,
                removed_at, deletion_requested_at
         FROM users WHERE id = $1",
    )
    .bind(user_id)
    .fetch_one(&db.pool)
    .await?;
    let email: String = user.try_get("email")?;
    let account_id: i64 = user.try_get("account_id")?;
    let removed_at: Option<i64> = user.try_get("removed_at")?;
    let login = json!({
        "id": user_id,
        "email": email,
        "role": user.try_get::<String, _>("role")?,
        "language": user.try_get::<Option<String>, _>("language")?,
        "created_at": user.try_get::<i64, _>("created_at")?,
        "email_verified_at": user.try_get::<Option<i64>, _>("email_verified_at")?,
        "removed_from_account_at": removed_at,
        "deletion_requested_at": user.try_get::<Option<i64>, _>("deletion_requested_at")?,
    });
    let account = if removed_at.is_none() {
        let account = sqlx::query("SELECT id, name, created_at FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_one(&db.pool)
            .await?;
        json!({
            "id": account_id,
            "name": account.try_get::<String, _>("name")?,
            "created_at": account.try_get::<i64, _>("created_at")?,
            "servers": rows(db, "SELECT id, address, hostname, geo_zone, zone_override, netspeed,
                                     in_pool, score, created_at, deletion_on
                              FROM servers WHERE account_id = $1 ORDER BY id", Key::Id(account_id), &["id", "address", "hostname", "geo_zone", "zone_override",
                                          "netspeed", "in_pool", "score", "created_at", "deletion_on"]).await?,
            "vendor_zones": rows(db, "SELECT name, client_type, description, status, created_at, decided_at
                                   FROM vendor_zones WHERE account_id = $1 ORDER BY id", Key::Id(account_id), &["name", "client_type", "description", "status",
                                               "created_at", "decided_at"]).await?,
        })
    } else {
        Value::Null
    };
    Ok(json!({
        "login": login,
        "account": account,
        "sessions": rows(db, "SELECT created_at, expires_at FROM sessions WHERE user_id = $1
                              ORDER BY created_at", Key::Id(user_id), &["created_at", "expires_at"]).await?,
        "invitations_sent": rows(db, "SELECT email, created_at, expires_at, used_at FROM invites
                                      WHERE created_by = $1 ORDER BY id", Key::Id(user_id), &["email", "created_at", "expires_at", "used_at"]).await?,
        "invitations_received": rows(db, "SELECT account_id, created_at, expires_at, used_at
                                                   FROM invites WHERE email = $1 ORDER BY id", Key::Email(&email), &["account_id", "created_at", "expires_at", "used_at"]).await?,
        "password_reset_links": rows(db, "SELECT created_at, expires_at, used_at FROM password_resets
                                          WHERE user_id = $1 ORDER BY created_at", Key::Id(user_id), &["created_at", "expires_at", "used_at"]).await?,
        "address_confirmation_links": rows(db, "SELECT email, created_at, expires_at, used_at
                                                FROM email_verifications WHERE user_id = $1
                                                ORDER BY created_at", Key::Id(user_id), &["email", "created_at", "expires_at", "used_at"]).await?,
        "mails": rows(db, "SELECT kind, subject, created_at, sent_at, failed_at
                                    FROM mail_queue WHERE recipient = $1 ORDER BY id", Key::Email(&email), &["kind", "subject", "created_at", "sent_at", "failed_at"]).await?,
        "audit_log": audit_rows(db, user_id, &email).await?,
    }))
}

/// The columns of each row as JSON (BIGINT, DOUBLE PRECISION or TEXT,
/// any of them NULL).
fn row_json(row: &AnyRow, columns: &[&str]) -> Result<Value, DbError> {
    let mut object = serde_json::Map::new();
    for &column in columns {
        let value = if let Ok(v) = row.try_get::<Option<i64>, _>(column) {
            json!(v)
        } else if let Ok(v) = row.try_get::<Option<f64>, _>(column) {
            json!(v)
        } else {
            json!(row.try_get::<Option<String>, _>(column)?)
        };
        object.insert(column.to_string(), value);
    }
    Ok(Value::Object(object))
}

/// What a query's `$1` is: the user's id or their address.
enum Key<'a> {
    Id(i64),
    Email(&'a str),
}

async fn rows(
    db: &Db,
    sql: &'static str,
    key: Key<'_>,
    columns: &[&str],
) -> Result<Value, DbError> {
    let query = sqlx::query(sql);
    let query = match key {
        Key::Id(id) => query.bind(id),
        Key::Email(email) => query.bind(email.to_string()),
    };
    let rows = query.fetch_all(&db.pool).await?;
    rows.iter()
        .map(|row| row_json(row, columns))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// The most audit rows an export holds (the newest).
const EXPORT_AUDIT_ROWS: i64 = 10_000;

/// The audit log entries of what the user did, and those naming them
/// exactly (failed logins with their address, changes to their login,
/// details that are their address), newest first.
async fn audit_rows(db: &Db, user_id: i64, email: &str) -> Result<Value, DbError> {
    let rows = sqlx::query(
        "SELECT ts, actor, action, target, details FROM audit_log
         WHERE user_id = $1 OR (user_id IS NULL AND actor = $2) OR target = $3
            OR target = $4 OR details = $2
         ORDER BY id DESC LIMIT $5",
    )
    .bind(user_id)
    .bind(email)
    .bind(format!("login:{email}"))
    .bind(format!("user:{user_id}"))
    .bind(EXPORT_AUDIT_ROWS)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| row_json(row, &["ts", "actor", "action", "target", "details"]))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}
