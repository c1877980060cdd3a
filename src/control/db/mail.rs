//! The mail queue and the password reset links (migrations/0005_mail.sql).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, Tx, new_token, now, token_hash};

/// A mail to send (or sent), as the sender and the staff page see it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QueuedMail {
    pub id: i64,
    pub recipient: String,
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
    pub failed_at: Option<i64>,
}

const COLUMNS: &str = "id, recipient, kind, subject, body, created_at, next_attempt_at, \
                       attempts, last_error, sent_at, failed_at";

impl QueuedMail {
    fn from_row(row: &AnyRow) -> Result<QueuedMail, DbError> {
        Ok(QueuedMail {
            id: row.try_get("id")?,
            recipient: row.try_get("recipient")?,
            kind: row.try_get("kind")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
            created_at: row.try_get("created_at")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            sent_at: row.try_get("sent_at")?,
            failed_at: row.try_get("failed_at")?,
        })
    }
}

/// Queues a mail in the caller's transaction: it is sent only if what it
/// tells of is committed, and then surely.
pub async fn enqueue(
    tx: &mut Tx,
    recipient: &str,
    kind: &str,
    subject: &str,
    body: &str,
) -> Result<i64, DbError> {
    let ts = now();
    let row = sqlx::query(
        "INSERT INTO mail_queue (recipient, kind, subject, body, created_at, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(recipient)
    .bind(kind)
    .bind(subject)
    .bind(body)
    .bind(ts)
    .fetch_one(&mut **tx)
    .await?;
    row.try_get("id")
}

/// Mails due at `at`, oldest first.
pub async fn due(db: &Db, at: i64, limit: i64) -> Result<Vec<QueuedMail>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM mail_queue
         WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
         ORDER BY next_attempt_at, id LIMIT $2"
    )))
    .bind(at)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(QueuedMail::from_row).collect()
}

/// Takes a due mail for this instance until `until` (several instances
/// share the queue): false when another one took it first.
pub async fn claim(db: &Db, mail: &QueuedMail, until: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE mail_queue SET next_attempt_at = $1
         WHERE id = $2 AND next_attempt_at = $3 AND sent_at IS NULL AND failed_at IS NULL",
    )
    .bind(until)
    .bind(mail.id)
    .bind(mail.next_attempt_at)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sent: the body goes (it may hold a one-time link).
pub async fn mark_sent(db: &Db, id: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE mail_queue SET sent_at = $1, body = '', attempts = attempts + 1, last_error = NULL
         WHERE id = $2",
    )
    .bind(now())
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Not sent this time: tried again at `next_attempt_at`, or never when
/// the server refused it for good.
pub async fn mark_failed(
    db: &Db,
    id: i64,
    error: &str,
    next_attempt_at: i64,
    permanent: bool,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE mail_queue SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2,
                failed_at = CASE WHEN $3 = 1 THEN $4 ELSE NULL END
         WHERE id = $5",
    )
    .bind(error)
    .bind(next_attempt_at)
    .bind(i64::from(permanent))
    .bind(now())
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// How long a sent or refused mail's row is kept (for /staff/mail), and
/// a used or expired one-time link's.
pub const KEEP_SECS: i64 = 90 * 86_400;

/// Forgets what is older than `before`: sent and refused mails, used or
/// expired reset and confirmation links. Mails still waiting stay.
pub async fn prune(db: &Db, before: i64) -> Result<u64, DbError> {
    let mut gone = 0;
    for sql in [
        "DELETE FROM mail_queue WHERE (sent_at IS NOT NULL AND sent_at < $1)
            OR (failed_at IS NOT NULL AND failed_at < $1)",
        "DELETE FROM password_resets WHERE expires_at < $1",
        "DELETE FROM email_verifications WHERE expires_at < $1",
    ] {
        gone += sqlx::query(sql)
            .bind(before)
            .execute(&db.pool)
            .await?
            .rows_affected();
    }
    Ok(gone)
}

/// The latest mails, for staff.
pub async fn recent(db: &Db, limit: i64) -> Result<Vec<QueuedMail>, DbError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM mail_queue ORDER BY id DESC LIMIT $1"
    )))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(QueuedMail::from_row).collect()
}

/// Mails waiting to be sent (for the metrics and the staff page).
pub async fn waiting(db: &Db) -> Result<i64, DbError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM mail_queue WHERE sent_at IS NULL AND failed_at IS NULL",
    )
    .fetch_one(&db.pool)
    .await?;
    row.try_get("n")
}

/// How long a password reset link works.
pub const RESET_TTL_SECS: i64 = 3600;
/// One reset mail per user in this long, whoever asks.
pub const RESET_INTERVAL_SECS: i64 = 300;

/// A new reset link's token for `user_id`, or `None` when one was made
/// less than `RESET_INTERVAL_SECS` ago (asking again does not flood the
/// user's mailbox).
pub async fn create_reset(tx: &mut Tx, user_id: i64) -> Result<Option<String>, DbError> {
    let ts = now();
    let recent = sqlx::query(
        "SELECT COUNT(*) AS n FROM password_resets WHERE user_id = $1 AND created_at > $2",
    )
    .bind(user_id)
    .bind(ts - RESET_INTERVAL_SECS)
    .fetch_one(&mut **tx)
    .await?;
    if recent.try_get::<i64, _>("n")? > 0 {
        return Ok(None);
    }
    let token = new_token();
    sqlx::query(
        "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash(&token))
    .bind(user_id)
    .bind(ts)
    .bind(ts + RESET_TTL_SECS)
    .execute(&mut **tx)
    .await?;
    Ok(Some(token))
}

/// The user of an open (unused, unexpired) reset link.
pub async fn reset_user(db: &Db, token: &str) -> Result<Option<i64>, DbError> {
    let row = sqlx::query(
        "SELECT user_id FROM password_resets
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash(token))
    .bind(now())
    .fetch_optional(&db.pool)
    .await?;
    row.map(|r| r.try_get("user_id")).transpose()
}

/// Uses a reset link: the new password, every other link of the user
/// closed and every session ended. False if the link was used or expired
/// meanwhile (nothing changes).
pub async fn use_reset(
    tx: &mut Tx,
    token: &str,
    password_hash: &str,
) -> Result<Option<i64>, DbError> {
    let ts = now();
    let Some(row) = sqlx::query(
        "SELECT user_id FROM password_resets
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash(token))
    .bind(ts)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    let user_id: i64 = row.try_get("user_id")?;
    sqlx::query("UPDATE password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
        .bind(ts)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(password_hash)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    super::accounts::end_all_sessions(tx, user_id).await?;
    Ok(Some(user_id))
}
