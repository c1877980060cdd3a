//! Accounts, their users, login sessions and invites.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, Engine, Tx, new_token, now, token_hash};

/// A logged-in (or loginable) user.
#[derive(Clone, Debug, serde::Serialize)]
pub struct User {
    pub id: i64,
    /// The account; meaningless while `in_account` is false.
    pub account_id: i64,
    pub email: String,
    pub role: String,
    /// Their part in the account: "owner" (invites, removes users, changes
    /// roles) or "member".
    pub account_role: String,
    /// False for a user removed from their account: they can log in, but
    /// see no account until one invites them again or they start one.
    pub in_account: bool,
    /// The user confirmed their address (a mailed link); until then the
    /// account cannot add servers.
    pub email_verified: bool,
}

impl User {
    pub fn is_staff(&self) -> bool {
        self.role == "staff"
    }

    pub fn is_owner(&self) -> bool {
        self.account_role == OWNER
    }

    fn from_row(row: &AnyRow) -> Result<User, DbError> {
        Ok(User {
            id: row.try_get("id")?,
            account_id: row.try_get("account_id")?,
            email: row.try_get("email")?,
            role: row.try_get("role")?,
            account_role: row.try_get("account_role")?,
            in_account: row.try_get::<Option<i64>, _>("removed_at")?.is_none(),
            email_verified: row
                .try_get::<Option<i64>, _>("email_verified_at")?
                .is_some(),
        })
    }
}

/// The roles in an account.
pub const OWNER: &str = "owner";
pub const MEMBER: &str = "member";

pub const SESSION_TTL_SECS: i64 = 14 * 86_400;
pub const INVITE_TTL_SECS: i64 = 7 * 86_400;

/// Creates an account and its first user in the caller's transaction.
pub async fn create_account_with_user(
    tx: &mut Tx,
    email: &str,
    password_hash: &str,
    role: &str,
) -> Result<User, DbError> {
    let account_id = insert_account(tx, email).await?;
    insert_user(tx, account_id, email, password_hash, role, OWNER).await
}

pub async fn insert_user(
    tx: &mut Tx,
    account_id: i64,
    email: &str,
    password_hash: &str,
    role: &str,
    account_role: &str,
) -> Result<User, DbError> {
    let id: i64 = sqlx::query(
        "INSERT INTO users (account_id, email, password_hash, role, account_role, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(account_id)
    .bind(email)
    .bind(password_hash)
    .bind(role)
    .bind(account_role)
    .bind(now())
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;
    Ok(User {
        id,
        account_id,
        email: email.to_string(),
        role: role.to_string(),
        account_role: account_role.to_string(),
        in_account: true,
        email_verified: false,
    })
}

/// The user and the stored password hash, for login (removed users too:
/// they log in to no account).
pub async fn find_login(db: &Db, email: &str) -> Result<Option<(User, String)>, DbError> {
    let row = sqlx::query(
        "SELECT id, account_id, email, role, account_role, removed_at, email_verified_at, password_hash FROM users
         WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(&db.pool)
    .await?;
    match row {
        Some(row) => Ok(Some((User::from_row(&row)?, row.try_get("password_hash")?))),
        None => Ok(None),
    }
}

pub async fn email_exists(db: &Db, email: &str) -> Result<bool, DbError> {
    let row = sqlx::query("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.is_some())
}

/// The login of an email, if any (removed users too).
pub async fn find_by_email(db: &Db, email: &str) -> Result<Option<User>, DbError> {
    Ok(find_login(db, email).await?.map(|(user, _)| user))
}

/// Starts a session; returns the cookie value (only its hash is stored).
/// Expired sessions are swept here, at the rate logins happen.
pub async fn create_session(db: &Db, user_id: i64) -> Result<String, DbError> {
    let token = new_token();
    let ts = now();
    sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(ts)
        .execute(&db.pool)
        .await?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash(&token))
    .bind(user_id)
    .bind(ts)
    .bind(ts + SESSION_TTL_SECS)
    .execute(&db.pool)
    .await?;
    Ok(token)
}

pub async fn session_user(db: &Db, token: &str) -> Result<Option<User>, DbError> {
    let row = sqlx::query(
        "SELECT u.id, u.account_id, u.email, u.role, u.account_role, u.removed_at, u.email_verified_at
         FROM sessions s
         JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = $1 AND s.expires_at > $2",
    )
    .bind(token_hash(token))
    .bind(now())
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(User::from_row).transpose()
}

pub async fn delete_session(db: &Db, token: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash(token))
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub async fn list_users(db: &Db, account_id: i64) -> Result<Vec<User>, DbError> {
    let rows = sqlx::query(
        "SELECT id, account_id, email, role, account_role, removed_at, email_verified_at FROM users
         WHERE account_id = $1 AND removed_at IS NULL ORDER BY email",
    )
    .bind(account_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(User::from_row).collect()
}

/// Puts a user who is in no account into `account_id` with `account_role`
/// (an invitation accepted: member; an account of their own: owner);
/// false if they are in one.
pub async fn join_account(
    tx: &mut Tx,
    user_id: i64,
    account_id: i64,
    account_role: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE users SET account_id = $1, account_role = $2, removed_at = NULL
         WHERE id = $3 AND removed_at IS NOT NULL",
    )
    .bind(account_id)
    .bind(account_role)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A new, empty account named `name`; its id.
pub async fn insert_account(tx: &mut Tx, name: &str) -> Result<i64, DbError> {
    let row = sqlx::query("INSERT INTO accounts (name, created_at) VALUES ($1, $2) RETURNING id")
        .bind(name)
        .bind(now())
        .fetch_one(&mut **tx)
        .await?;
    row.try_get("id")
}

/// Holds the account's users still for a change of roles or users, so
/// "the last owner" is the same at the check and at the write: on
/// PostgreSQL the account's row is locked until the transaction ends; on
/// SQLite the write transaction (BEGIN IMMEDIATE) already excludes every
/// other writer.
pub async fn lock_account(tx: &mut Tx, engine: Engine, account_id: i64) -> Result<(), DbError> {
    if engine == Engine::Postgres {
        sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE")
            .bind(account_id)
            .fetch_optional(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The account's users (not removed) in the transaction, after
/// `lock_account`: (id, email, account_role).
pub async fn users_in(tx: &mut Tx, account_id: i64) -> Result<Vec<(i64, String, String)>, DbError> {
    let rows = sqlx::query(
        "SELECT id, email, account_role FROM users
         WHERE account_id = $1 AND removed_at IS NULL ORDER BY id",
    )
    .bind(account_id)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                r.try_get("email")?,
                r.try_get("account_role")?,
            ))
        })
        .collect()
}

/// Sets a user's role in `account_id`; false when there is no such user.
pub async fn set_account_role(
    tx: &mut Tx,
    account_id: i64,
    user_id: i64,
    account_role: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE users SET account_role = $1
         WHERE id = $2 AND account_id = $3 AND removed_at IS NULL",
    )
    .bind(account_role)
    .bind(user_id)
    .bind(account_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes a user of `account_id`; false when there is no such user there.
/// With `end_sessions` their sessions end at once.
pub async fn remove_user(
    tx: &mut Tx,
    account_id: i64,
    user_id: i64,
    end_sessions: bool,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE users SET removed_at = $1 WHERE id = $2 AND account_id = $3 AND removed_at IS NULL",
    )
    .bind(now())
    .bind(user_id)
    .bind(account_id)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    if end_sessions {
        end_all_sessions(tx, user_id).await?;
    }
    Ok(true)
}

/// Ends every session of the user (a removal, a password reset, a
/// deletion asked for).
pub async fn end_all_sessions(tx: &mut Tx, user_id: i64) -> Result<(), DbError> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Invite {
    pub id: i64,
    pub account_id: i64,
    pub email: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

impl Invite {
    fn from_row(row: &AnyRow) -> Result<Invite, DbError> {
        Ok(Invite {
            id: row.try_get("id")?,
            account_id: row.try_get("account_id")?,
            email: row.try_get("email")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            used_at: row.try_get("used_at")?,
        })
    }
}

/// Creates an invite; returns the one-time token for the link.
pub async fn create_invite(
    tx: &mut Tx,
    account_id: i64,
    email: &str,
    created_by: i64,
) -> Result<String, DbError> {
    let token = new_token();
    let ts = now();
    sqlx::query(
        "INSERT INTO invites (account_id, email, token_hash, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(account_id)
    .bind(email)
    .bind(token_hash(&token))
    .bind(created_by)
    .bind(ts)
    .bind(ts + INVITE_TTL_SECS)
    .execute(&mut **tx)
    .await?;
    Ok(token)
}

const INVITE_COLUMNS: &str = "id, account_id, email, created_at, expires_at, used_at";

/// An invite that is neither used nor expired.
pub async fn find_open_invite(db: &Db, token: &str) -> Result<Option<Invite>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {INVITE_COLUMNS} FROM invites
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2"
    )))
    .bind(token_hash(token))
    .bind(now())
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(Invite::from_row).transpose()
}

/// Marks an invite used; false if someone used it first (one-time).
pub async fn use_invite(tx: &mut Tx, invite_id: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE invites SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now())
    .bind(invite_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list_invites(db: &Db, account_id: i64) -> Result<Vec<Invite>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {INVITE_COLUMNS} FROM invites WHERE account_id = $1 ORDER BY created_at DESC, id DESC"
    )))
    .bind(account_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(Invite::from_row).collect()
}

/// Withdraws an open invite of `account_id`; false when not found there.
pub async fn revoke_invite(tx: &mut Tx, account_id: i64, invite_id: i64) -> Result<bool, DbError> {
    let done =
        sqlx::query("DELETE FROM invites WHERE id = $1 AND account_id = $2 AND used_at IS NULL")
            .bind(invite_id)
            .bind(account_id)
            .execute(&mut **tx)
            .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct AccountSummary {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub users: i64,
    pub servers: i64,
}

/// All accounts with their user and server counts (staff page).
pub async fn list_accounts(db: &Db) -> Result<Vec<AccountSummary>, DbError> {
    let rows = sqlx::query(
        "SELECT a.id, a.name, a.created_at,
           (SELECT COUNT(*) FROM users u WHERE u.account_id = a.id AND u.removed_at IS NULL) AS users,
           (SELECT COUNT(*) FROM servers s WHERE s.account_id = a.id) AS servers
         FROM accounts a ORDER BY a.id",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AccountSummary {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                created_at: row.try_get("created_at")?,
                users: row.try_get("users")?,
                servers: row.try_get("servers")?,
            })
        })
        .collect()
}

/// Stores the language chosen by the user of this session (a logged-in
/// operator's choice goes with their login).
pub async fn set_language_by_session(db: &Db, token: &str, language: &str) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE users SET language = $1 WHERE id =
           (SELECT user_id FROM sessions WHERE token_hash = $2 AND expires_at > $3)",
    )
    .bind(language)
    .bind(token_hash(token))
    .bind(now())
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Stores a user's language (chosen in the URL of the login page).
pub async fn set_language(db: &Db, user_id: i64, language: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET language = $1 WHERE id = $2")
        .bind(language)
        .bind(user_id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// The language a user chose, if any.
pub async fn language_of(db: &Db, user_id: i64) -> Result<Option<String>, DbError> {
    let row = sqlx::query("SELECT language FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&db.pool)
        .await?;
    Ok(match row {
        Some(row) => row.try_get("language")?,
        None => None,
    })
}

/// How long an address confirmation link works.
pub const VERIFY_TTL_SECS: i64 = 7 * 86_400;
/// One confirmation mail per user in this long.
pub const VERIFY_INTERVAL_SECS: i64 = 300;

/// Marks a user's address confirmed (a link opened, an invitation mailed
/// to it accepted, a login made by staff).
pub async fn mark_verified(tx: &mut Tx, user_id: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE users SET email_verified_at = $1 WHERE id = $2 AND email_verified_at IS NULL",
    )
    .bind(now())
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A new confirmation link's token for `email` (the user's address, or
/// the new one they want), or `None` when one for the same address was
/// made less than `VERIFY_INTERVAL_SECS` ago.
pub async fn create_verification(
    tx: &mut Tx,
    user_id: i64,
    email: &str,
) -> Result<Option<String>, DbError> {
    let ts = now();
    let recent = sqlx::query(
        "SELECT COUNT(*) AS n FROM email_verifications
         WHERE user_id = $1 AND email = $2 AND created_at > $3",
    )
    .bind(user_id)
    .bind(email)
    .bind(ts - VERIFY_INTERVAL_SECS)
    .fetch_one(&mut **tx)
    .await?;
    if recent.try_get::<i64, _>("n")? > 0 {
        return Ok(None);
    }
    let token = new_token();
    sqlx::query(
        "INSERT INTO email_verifications (token_hash, user_id, email, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash(&token))
    .bind(user_id)
    .bind(email)
    .bind(ts)
    .bind(ts + VERIFY_TTL_SECS)
    .execute(&mut **tx)
    .await?;
    Ok(Some(token))
}

/// What a confirmation link did.
#[derive(Debug, PartialEq, Eq)]
pub enum Confirmed {
    /// The user's own address is confirmed.
    Address { user_id: i64 },
    /// The user's login moved to the new address the link was mailed to.
    NewAddress {
        user_id: i64,
        old: String,
        new: String,
    },
}

/// Uses a confirmation link: confirms the user's address, or makes the
/// address it was mailed to the user's (a change of address). `None`: the
/// link is used, expired or unknown. A unique violation means another
/// login took the new address meanwhile; nothing changes then.
pub async fn use_verification(tx: &mut Tx, token: &str) -> Result<Option<Confirmed>, DbError> {
    let ts = now();
    let Some(row) = sqlx::query(
        "SELECT v.user_id, v.email AS new_email, u.email AS old_email
         FROM email_verifications v JOIN users u ON u.id = v.user_id
         WHERE v.token_hash = $1 AND v.used_at IS NULL AND v.expires_at > $2",
    )
    .bind(token_hash(token))
    .bind(ts)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    let user_id: i64 = row.try_get("user_id")?;
    let new: String = row.try_get("new_email")?;
    let old: String = row.try_get("old_email")?;
    sqlx::query("UPDATE email_verifications SET used_at = $1 WHERE token_hash = $2")
        .bind(ts)
        .bind(token_hash(token))
        .execute(&mut **tx)
        .await?;
    if new == old {
        mark_verified(tx, user_id).await?;
        return Ok(Some(Confirmed::Address { user_id }));
    }
    sqlx::query("UPDATE users SET email = $1, email_verified_at = $2 WHERE id = $3")
        .bind(&new)
        .bind(ts)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(Some(Confirmed::NewAddress { user_id, old, new }))
}

/// A new password; every other session of the user ends.
pub async fn set_password(
    tx: &mut Tx,
    user_id: i64,
    password_hash: &str,
    keep_session: &str,
) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(password_hash)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
        .bind(user_id)
        .bind(token_hash(keep_session))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Who is told of a change to an account: its users' addresses and the
/// language each chose (none: English).
pub async fn mail_recipients(
    db: &Db,
    account_id: i64,
) -> Result<Vec<(String, Option<String>)>, DbError> {
    let rows = sqlx::query(
        "SELECT email, language FROM users
         WHERE account_id = $1 AND removed_at IS NULL ORDER BY id",
    )
    .bind(account_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("email")?, r.try_get("language")?)))
        .collect()
}
