//! Scheduling: which servers a monitor is handed to check (web/README.md,
//! "Monitoring"):
//!
//! - each monitor checks a server at most every `CheckSchedule::interval`:
//!   by default 9 minutes for active monitors, 18 for testing, 36 for
//!   candidates;
//! - no server is handed out twice within `CheckSchedule::min_gap` (by
//!   default 60 s), to any monitor; the servers that waited longest go first;
//! - never to a monitor in the server's /24 (IPv6 /48), nor to a monitor run
//!   by the server's own account;
//! - servers whose deletion time has passed are not checked.
//!
//! Applying the results is `ingest`.

use std::net::IpAddr;

use sqlx::Row;

use super::{Db, DbError, Engine};
use crate::control::scoring::MonitorState;

/// How often servers are checked. The defaults are the pool's; a demo or a
/// test runs the same rules on a shorter clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckSchedule {
    /// Seconds between two checks of one server by one active monitor
    /// (testing monitors: twice this, candidates: four times).
    pub active_interval: i64,
    /// No two checks of one server, by any monitors, closer than this
    /// (seconds).
    pub min_gap: i64,
}

impl Default for CheckSchedule {
    fn default() -> CheckSchedule {
        CheckSchedule {
            active_interval: 9 * 60,
            min_gap: 60,
        }
    }
}

impl CheckSchedule {
    /// How often one monitor checks one server, by the monitor's state.
    pub fn interval(&self, state: MonitorState) -> i64 {
        match state {
            MonitorState::Active => self.active_interval,
            MonitorState::Testing => self.active_interval * 2,
            MonitorState::Candidate => self.active_interval * 4,
        }
    }

    /// Checks the values make sense (from flags or a config file).
    pub fn validated(self) -> Result<CheckSchedule, String> {
        if self.active_interval < 1 {
            return Err(format!(
                "the check interval must be at least 1 s, got {}",
                self.active_interval
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

/// Largest batch a monitor may ask for.
pub const MAX_BATCH: i64 = 500;

/// A monitor as the ingest API sees it.
#[derive(Clone, Debug)]
pub struct MonitorAuth {
    pub id: i64,
    pub name: String,
    /// candidate, testing, active, paused or deleted.
    pub state: String,
    pub ip: Option<String>,
    pub account_id: Option<i64>,
}

pub async fn monitor_by_token(db: &Db, token: &str) -> Result<Option<MonitorAuth>, DbError> {
    let row =
        sqlx::query("SELECT id, name, state, ip, account_id FROM monitors WHERE token_hash = $1")
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
        })
    })
    .transpose()
}

/// Whether two addresses share a /24 (IPv4) or /48 (IPv6).
pub fn same_network(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets()[..6] == b.octets()[..6],
        _ => false,
    }
}

/// A batch handed to a monitor.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Batch {
    /// None when nothing is due (no batch was created).
    pub batch_id: Option<i64>,
    pub servers: Vec<String>,
}

/// Picks up to `limit` servers due for this monitor and records the batch.
pub async fn issue_batch(
    db: &Db,
    monitor: &MonitorAuth,
    state: MonitorState,
    schedule: &CheckSchedule,
    limit: i64,
    now: i64,
) -> Result<Batch, DbError> {
    let limit = limit.clamp(1, MAX_BATCH);
    let monitor_ip: Option<IpAddr> = monitor.ip.as_deref().and_then(|ip| ip.parse().ok());
    let mut tx = db.begin().await?;
    // On PostgreSQL two monitors asking at once must not get the same server;
    // SKIP LOCKED gives the second one the next servers instead of waiting.
    // SQLite's BEGIN IMMEDIATE already serialises writers.
    let lock = match db.engine {
        Engine::Postgres => " FOR UPDATE OF s SKIP LOCKED",
        Engine::Sqlite => "",
    };
    // Fetch more than needed: some may be in the monitor's own network.
    let fetch = limit * 2 + 16;
    let sql = format!(
        "SELECT s.id, s.address FROM servers s
         WHERE (s.deletion_on IS NULL OR s.deletion_on > $1)
           AND COALESCE(s.last_issued_at, 0) <= $2
           AND s.account_id <> $3
           AND NOT EXISTS (SELECT 1 FROM server_scores ss
                           WHERE ss.server_id = s.id AND ss.monitor_id = $4 AND ss.score_ts > $5)
         ORDER BY COALESCE(s.last_issued_at, 0), s.id
         LIMIT $6{lock}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(now - schedule.min_gap)
        // Account ids start at 1, so 0 matches no server.
        .bind(monitor.account_id.unwrap_or(0))
        .bind(monitor.id)
        .bind(now - schedule.interval(state))
        .bind(fetch)
        .fetch_all(&mut *tx)
        .await?;
    let mut chosen: Vec<(i64, String)> = Vec::new();
    for row in &rows {
        let id: i64 = row.try_get("id")?;
        let address: String = row.try_get("address")?;
        let in_own_network = match (monitor_ip, address.parse::<IpAddr>()) {
            (Some(mine), Ok(theirs)) => same_network(mine, theirs),
            _ => false,
        };
        if !in_own_network {
            chosen.push((id, address));
        }
        if chosen.len() as i64 >= limit {
            break;
        }
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
        let ids = chunk
            .iter()
            .map(|(id, _)| id.to_string())
            .collect::<Vec<_>>()
            .join(",");
        // The ids are integers read from the database, not outside input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE servers SET last_issued_at = $1 WHERE id IN ({ids})"
        )))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_network_is_slash_24_and_slash_48() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(same_network(ip("192.0.2.1"), ip("192.0.2.254")));
        assert!(!same_network(ip("192.0.2.1"), ip("192.0.3.1")));
        assert!(same_network(ip("2001:db8:1::1"), ip("2001:db8:1:ffff::2")));
        assert!(!same_network(ip("2001:db8:1::1"), ip("2001:db8:2::1")));
        assert!(!same_network(ip("192.0.2.1"), ip("::ffff:192.0.2.1")));
    }
}
