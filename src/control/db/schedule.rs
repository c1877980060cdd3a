//! Scheduling by pair: which servers a monitor is handed to check
//! (web/README.md, "Monitoring: pairs and the selector"):
//!
//! - a monitor checks only the servers it has a pair with (the selector,
//!   `db::pairs`, makes them), never a staff-paused pair;
//! - an active pair every `CheckSchedule::active_interval` (9 minutes by
//!   default), a testing pair every `testing_interval` (45 minutes);
//! - candidates as capacity allows: as often as testing pairs, after the
//!   active and testing ones, and only when no monitor was handed the
//!   server within `min_gap` (60 s);
//! - an operator's "check now" makes every pair of the server due at once;
//! - nothing to a monitor whose latest self-check says its clock is off;
//! - servers whose deletion time has passed are not checked.
//!
//! Applying the results is `ingest`.

use std::collections::HashSet;

use sqlx::Row;

use super::{Db, DbError, Engine};

/// How often servers are checked. The defaults are the pool's; a demo or a
/// test runs the same rules on a shorter clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckSchedule {
    /// Seconds between two checks of one server by one active pair.
    pub active_interval: i64,
    /// The same for a testing pair (and a candidate, as capacity allows).
    pub testing_interval: i64,
    /// A candidate pair's check waits until no monitor was handed the
    /// server for this long (seconds).
    pub min_gap: i64,
}

impl Default for CheckSchedule {
    fn default() -> CheckSchedule {
        CheckSchedule {
            active_interval: 9 * 60,
            testing_interval: 45 * 60,
            min_gap: 60,
        }
    }
}

impl CheckSchedule {
    /// Checks the values make sense (from flags or a config file).
    pub fn validated(self) -> Result<CheckSchedule, String> {
        if self.active_interval < 1 {
            return Err(format!(
                "the check interval must be at least 1 s, got {}",
                self.active_interval
            ));
        }
        if self.testing_interval < self.active_interval {
            return Err(format!(
                "the testing check interval ({} s) must not be shorter than the active one ({} s)",
                self.testing_interval, self.active_interval
            ));
        }
        if self.min_gap < 0 || self.min_gap > self.active_interval {
            return Err(format!(
                "the minimum gap between checks must be 0..={} s (the check interval), got {}",
                self.active_interval, self.min_gap
            ));
        }
        Ok(self)
    }

    /// Seconds a monitor that got nothing to check waits before asking again.
    pub fn idle_wait(&self) -> u64 {
        (self.min_gap / 2).clamp(1, 30) as u64
    }
}

/// Largest batch a monitor may ask for (the protocol's limit).
pub const MAX_BATCH: i64 = crate::shared::monitor_protocol::MAX_BATCH as i64;

/// A monitor as the ingest API sees it.
#[derive(Clone, Debug)]
pub struct MonitorAuth {
    pub id: i64,
    pub name: String,
    /// candidate, testing, active, paused or deleted.
    pub state: String,
    pub ip: Option<String>,
    pub account_id: Option<i64>,
    /// The latest self-check said the monitor's clock is off.
    pub clock_not_ok: bool,
}

pub async fn monitor_by_token(db: &Db, token: &str) -> Result<Option<MonitorAuth>, DbError> {
    let row = sqlx::query(
        "SELECT id, name, state, ip, account_id, self_check_ok FROM monitors WHERE token_hash = $1",
    )
    .bind(super::token_hash(token))
    .fetch_optional(&db.pool)
    .await?;
    row.map(|row| {
        Ok(MonitorAuth {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            state: row.try_get("state")?,
            ip: row.try_get("ip")?,
            account_id: row.try_get("account_id")?,
            clock_not_ok: row.try_get::<Option<i64>, _>("self_check_ok")? == Some(0),
        })
    })
    .transpose()
}

/// A batch handed to a monitor.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Batch {
    /// None when nothing is due (no batch was created).
    pub batch_id: Option<i64>,
    pub servers: Vec<String>,
}

/// Picks up to `limit` of this monitor's pairs that are due and records
/// the batch.
pub async fn issue_batch(
    db: &Db,
    monitor: &MonitorAuth,
    schedule: &CheckSchedule,
    limit: i64,
    now: i64,
) -> Result<Batch, DbError> {
    let limit = limit.clamp(1, MAX_BATCH);
    if monitor.clock_not_ok {
        // Its results would not be scored; spare the servers the checks.
        return Ok(Batch {
            batch_id: None,
            servers: Vec::new(),
        });
    }
    let mut tx = db.begin().await?;
    // On PostgreSQL one monitor asking twice at once must not get the same
    // pair twice; SKIP LOCKED hands the second request the next ones.
    // SQLite's BEGIN IMMEDIATE already serialises writers.
    let lock = match db.engine {
        Engine::Postgres => " FOR UPDATE OF ss SKIP LOCKED",
        Engine::Sqlite => "",
    };
    // Due: asked for by "check now" since the pair's last check (a pair
    // made after the request is not), or past its interval (a candidate
    // also only when the server has had no check within min_gap). Active
    // first, then check-now, testing, candidates, each the longest
    // waiting first: a burst of "check now" never delays the checks that
    // keep the scores.
    let sql = format!(
        "SELECT ss.server_id AS id, s.address,
                CASE WHEN ss.status = 'candidate'
                      AND NOT (s.check_requested_at IS NOT NULL
                               AND COALESCE(ss.last_issued_at, ss.status_since) < s.check_requested_at)
                     THEN 1 ELSE 0 END AS needs_gap
         FROM server_scores ss
         JOIN servers s ON s.id = ss.server_id
         WHERE ss.monitor_id = $1
           AND ss.status <> 'paused'
           AND (s.deletion_on IS NULL OR s.deletion_on > $2)
           AND ((s.check_requested_at IS NOT NULL
                 AND COALESCE(ss.last_issued_at, ss.status_since) < s.check_requested_at)
             OR (ss.status = 'active' AND COALESCE(ss.last_issued_at, 0) <= $3)
             OR (ss.status = 'testing' AND COALESCE(ss.last_issued_at, 0) <= $4)
             OR (ss.status = 'candidate' AND COALESCE(ss.last_issued_at, 0) <= $4
                 AND COALESCE(s.last_issued_at, 0) <= $5))
         ORDER BY CASE WHEN ss.status = 'active' AND COALESCE(ss.last_issued_at, 0) <= $3 THEN 0
                       WHEN s.check_requested_at IS NOT NULL
                        AND COALESCE(ss.last_issued_at, ss.status_since) < s.check_requested_at THEN 1
                       WHEN ss.status = 'testing' THEN 2 ELSE 3 END,
                  COALESCE(ss.last_issued_at, 0), ss.server_id
         LIMIT $6{lock}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(monitor.id)
        .bind(now)
        .bind(now - schedule.active_interval)
        .bind(now - schedule.testing_interval)
        .bind(now - schedule.min_gap)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    let mut chosen: Vec<(i64, String)> = Vec::with_capacity(rows.len());
    let mut needs_gap = HashSet::new();
    for row in &rows {
        let id: i64 = row.try_get("id")?;
        if row.try_get::<i64, _>("needs_gap")? == 1 {
            needs_gap.insert(id);
        }
        chosen.push((id, row.try_get("address")?));
    }
    if !chosen.is_empty() {
        // The servers' rows, locked in id order (on PostgreSQL a FOR
        // UPDATE under ORDER BY locks in that order; the ingest's score
        // updates lock them the same way), so two writers of them never
        // deadlock; and their hand-out time as it is now, once any other
        // monitor's batch that took them has committed. A candidate whose
        // server was just handed to another monitor waits its minute.
        // NO KEY UPDATE: not in the way of a new pair's key-share lock
        // on its server (see `db::ingest`).
        let lock = match db.engine {
            Engine::Postgres => " FOR NO KEY UPDATE",
            Engine::Sqlite => "",
        };
        let ids = id_list(chosen.iter().map(|(id, _)| *id));
        let current = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, COALESCE(last_issued_at, 0) AS last FROM servers
             WHERE id IN ({ids}) ORDER BY id{lock}"
        )))
        .fetch_all(&mut *tx)
        .await?;
        let mut taken = HashSet::new();
        for row in &current {
            let id: i64 = row.try_get("id")?;
            if needs_gap.contains(&id) && row.try_get::<i64, _>("last")? > now - schedule.min_gap {
                taken.insert(id);
            }
        }
        chosen.retain(|(id, _)| !taken.contains(id));
    }
    if chosen.is_empty() {
        tx.rollback().await?;
        return Ok(Batch {
            batch_id: None,
            servers: Vec::new(),
        });
    }
    let batch_id: i64 = sqlx::query(
        "INSERT INTO monitor_batches (monitor_id, issued_at) VALUES ($1, $2) RETURNING id",
    )
    .bind(monitor.id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    // One statement per 100 servers instead of one per server.
    for chunk in chosen.chunks(100) {
        let mut sql =
            String::from("INSERT INTO monitor_batch_servers (batch_id, server_id) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("($1, ${})", i + 2));
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(batch_id);
        for (id, _) in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut *tx).await?;
    }
    // The servers' rows are locked already (above).
    let ids = id_list(chosen.iter().map(|(id, _)| *id));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE servers SET last_issued_at = $1 WHERE id IN ({ids})"
    )))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE server_scores SET last_issued_at = $1
         WHERE monitor_id = $2 AND server_id IN ({ids})"
    )))
    .bind(now)
    .bind(monitor.id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE monitors SET last_seen = $1 WHERE id = $2")
        .bind(now)
        .bind(monitor.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Batch {
        batch_id: Some(batch_id),
        servers: chosen.into_iter().map(|(_, address)| address).collect(),
    })
}

/// Ids as an SQL list, in order. They are integers read from the
/// database, not outside input.
fn id_list(ids: impl Iterator<Item = i64>) -> String {
    let mut ids: Vec<i64> = ids.collect();
    ids.sort_unstable();
    ids.iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
