//! Bad-server alerts: the `server_alerts` rows and the servers the rules
//! (`control::alert_rules`) look at. Every write is conditional on the row
//! the decision was made from, so two instances making the same pass, or a
//! pass racing an operator, alert or remove a server once.

use sqlx::Row;

use super::{Db, DbError, Tx};
use crate::control::alert_rules::{AlertRecord, ServerState};

/// A server the rules may act on, with what they need.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub server_id: i64,
    pub account_id: i64,
    pub address: String,
    pub state: ServerState,
}

/// Servers that have an alert state, or are in the pool at or below
/// `alert_score` and not yet deleted at `now`.
pub async fn candidates(db: &Db, alert_score: f64, now: i64) -> Result<Vec<Candidate>, DbError> {
    let rows = sqlx::query(
        "SELECT s.id, s.account_id, s.address, s.score, s.in_pool, s.deletion_on,
                a.server_id AS alerted, a.first_alert_at, a.last_alert_at, a.last_score
         FROM servers s LEFT JOIN server_alerts a ON a.server_id = s.id
         WHERE (s.deletion_on IS NULL OR s.deletion_on > $1)
           AND (a.server_id IS NOT NULL OR (s.in_pool = 1 AND s.score <= $2))
         ORDER BY s.id",
    )
    .bind(now)
    .bind(alert_score)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            let alerted: Option<i64> = row.try_get("alerted")?;
            let alert = match alerted {
                Some(_) => Some(AlertRecord {
                    first_alert_at: row.try_get("first_alert_at")?,
                    last_alert_at: row.try_get("last_alert_at")?,
                    last_score: row.try_get("last_score")?,
                }),
                None => None,
            };
            let in_pool: i64 = row.try_get("in_pool")?;
            Ok(Candidate {
                server_id: row.try_get("id")?,
                account_id: row.try_get("account_id")?,
                address: row.try_get("address")?,
                state: ServerState {
                    score: row.try_get("score")?,
                    in_pool: in_pool == 1,
                    deletion_on: row.try_get("deletion_on")?,
                    alert,
                },
            })
        })
        .collect()
}

/// The alert state of one server, if any (the server's page shows it).
pub async fn get(db: &Db, server_id: i64) -> Result<Option<AlertRecord>, DbError> {
    let row = sqlx::query(
        "SELECT first_alert_at, last_alert_at, last_score FROM server_alerts WHERE server_id = $1",
    )
    .bind(server_id)
    .fetch_optional(&db.pool)
    .await?;
    row.map(|row| {
        Ok(AlertRecord {
            first_alert_at: row.try_get("first_alert_at")?,
            last_alert_at: row.try_get("last_alert_at")?,
            last_score: row.try_get("last_score")?,
        })
    })
    .transpose()
}

/// Records an alert sent at `now` with `score`, if the state is still
/// `previous`: true when this call recorded it (and the mail is to go).
pub async fn record_alert(
    tx: &mut Tx,
    server_id: i64,
    previous: Option<&AlertRecord>,
    score: f64,
    now: i64,
) -> Result<bool, DbError> {
    let done =
        match previous {
            None => sqlx::query(
                "INSERT INTO server_alerts (server_id, first_alert_at, last_alert_at, last_score)
                 VALUES ($1, $2, $2, $3) ON CONFLICT (server_id) DO NOTHING",
            )
            .bind(server_id)
            .bind(now)
            .bind(score)
            .execute(&mut **tx)
            .await?,
            Some(previous) => {
                sqlx::query(
                    "UPDATE server_alerts SET last_alert_at = $1, last_score = $2
                 WHERE server_id = $3 AND last_alert_at = $4",
                )
                .bind(now)
                .bind(score)
                .bind(server_id)
                .bind(previous.last_alert_at)
                .execute(&mut **tx)
                .await?
            }
        };
    Ok(done.rows_affected() == 1)
}

/// Forgets the alert state `previous` of a server that is good again.
pub async fn clear(tx: &mut Tx, server_id: i64, previous: &AlertRecord) -> Result<bool, DbError> {
    let done = sqlx::query("DELETE FROM server_alerts WHERE server_id = $1 AND last_alert_at = $2")
        .bind(server_id)
        .bind(previous.last_alert_at)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Schedules the automatic removal of a server still in the pool with no
/// deletion scheduled: true when this call scheduled it.
pub async fn schedule_removal(
    tx: &mut Tx,
    server_id: i64,
    deletion_on: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE servers SET deletion_on = $1
         WHERE id = $2 AND deletion_on IS NULL AND in_pool = 1",
    )
    .bind(deletion_on)
    .bind(server_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets a server's alert state (its operator cancelled its automatic
/// removal: the rules start over, a first alert again if it stays bad).
pub async fn forget(tx: &mut Tx, server_id: i64) -> Result<(), DbError> {
    sqlx::query("DELETE FROM server_alerts WHERE server_id = $1")
        .bind(server_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
