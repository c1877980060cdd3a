//! The audit log: every change, who made it and when.

use sqlx::Row;

use super::{Db, DbError, Tx, now};

/// Who made a change: a web user or the command line.
#[derive(Clone, Debug)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub name: String,
}

impl Actor {
    pub fn cli() -> Actor {
        Actor {
            user_id: None,
            name: "cli".to_string(),
        }
    }
}

/// Records a change inside the transaction that makes it, so a change and
/// its audit line commit (or roll back) together.
pub async fn record(
    tx: &mut Tx,
    actor: &Actor,
    action: &str,
    target: &str,
    details: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO audit_log (ts, user_id, actor, action, target, details)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now())
    .bind(actor.user_id)
    .bind(&actor.name)
    .bind(action)
    .bind(target)
    .bind(details)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub ts: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: String,
}

pub async fn recent(db: &Db, limit: i64) -> Result<Vec<AuditEntry>, DbError> {
    let rows = sqlx::query(
        "SELECT id, ts, actor, action, target, details FROM audit_log ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AuditEntry {
                id: row.try_get("id")?,
                ts: row.try_get("ts")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                target: row.try_get("target")?,
                details: row.try_get("details")?,
            })
        })
        .collect()
}
