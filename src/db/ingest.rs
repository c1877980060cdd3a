//! The monitor protocol's database side: handing out batches of servers to
//! check (scheduling) and applying a batch of results (scoring) in one
//! transaction.
//!
//! Scheduling rules (design.md section 6, issue 6):
//! - each monitor checks a server at most every `CheckSchedule::interval`:
//!   by default 9 minutes for active monitors, 18 for testing, 36 for
//!   candidates;
//! - no server is handed out twice within `CheckSchedule::min_gap` (by
//!   default 60 s), to any monitor; the servers that waited longest go first;
//! - never to a monitor in the server's /24 (IPv6 /48), nor to a monitor run
//!   by the server's own account;
//! - servers whose deletion time has passed are not checked.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use sqlx::Row;

use super::scores::{self, Check};
use super::{Db, DbError, Engine, Tx};
use crate::scoring::{self, CheckInput, LatestScore, MonitorState};

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

/// One result as submitted, already validated for shape (src/web/ingest.rs).
#[derive(Clone, Debug)]
pub struct ResultIn {
    /// Canonical address text, as stored in `servers.address`.
    pub server: String,
    pub ts: i64,
    pub offset: Option<f64>,
    pub rtt: Option<f64>,
    pub stratum: Option<i64>,
    pub leap: Option<i64>,
    pub error: Option<String>,
}

/// Why a batch was refused; nothing was changed.
#[derive(Debug)]
pub enum IngestError {
    /// No such batch for this monitor.
    UnknownBatch(i64),
    /// This batch was applied already.
    Replayed(i64),
    /// A newer batch of this monitor was applied already.
    Stale {
        batch_id: i64,
        last_applied: i64,
    },
    /// A result for a server that was not handed out in this batch.
    NotInBatch(String),
    /// A result's time is before the batch was issued or in the future.
    BadTimestamp {
        server: String,
        ts: i64,
    },
    Db(DbError),
}

impl From<DbError> for IngestError {
    fn from(e: DbError) -> IngestError {
        IngestError::Db(e)
    }
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::UnknownBatch(id) => write!(f, "batch {id} was not issued to this monitor"),
            IngestError::Replayed(id) => {
                write!(f, "batch {id} was applied already; nothing was changed")
            }
            IngestError::Stale {
                batch_id,
                last_applied,
            } => write!(
                f,
                "batch {batch_id} is older than batch {last_applied}, applied already; nothing was changed"
            ),
            IngestError::NotInBatch(server) => write!(
                f,
                "results[].server {server} was not in this batch; nothing was changed"
            ),
            IngestError::BadTimestamp { server, ts } => write!(
                f,
                "results[].ts {ts} for {server} is before the batch was issued or in the future"
            ),
            IngestError::Db(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for IngestError {}

/// What applying a batch did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Applied {
    pub batch_id: i64,
    pub results: usize,
    /// The monitor's state after this batch.
    pub monitor_state: &'static str,
}

/// Results may be dated this much after the server's clock says now
/// (the monitor's clock may be a little ahead).
const FUTURE_SLACK: i64 = 60;

/// Applies a batch of results in one transaction: a log row and the pair's
/// score per result, the monitor's state, then the server scores. Any
/// refusal or failure rolls everything back.
pub async fn apply_batch(
    db: &Db,
    monitor_id: i64,
    batch_id: i64,
    results: &[ResultIn],
    now: i64,
) -> Result<Applied, IngestError> {
    let mut tx = db.begin().await?;
    let applied = apply_in(&mut tx, db.engine, monitor_id, batch_id, results, now).await;
    match applied {
        Ok(applied) => {
            tx.commit().await?;
            Ok(applied)
        }
        Err(e) => {
            tx.rollback().await?;
            Err(e)
        }
    }
}

async fn apply_in(
    tx: &mut Tx,
    engine: Engine,
    monitor_id: i64,
    batch_id: i64,
    results: &[ResultIn],
    now: i64,
) -> Result<Applied, IngestError> {
    // The monitor row first (locked on PostgreSQL) so two submissions of one
    // monitor apply one after the other and see each other's last_batch_id.
    let lock = match engine {
        Engine::Postgres => " FOR UPDATE",
        Engine::Sqlite => "",
    };
    let monitor = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT state, healthy_streak, last_batch_id FROM monitors WHERE id = $1{lock}"
    )))
    .bind(monitor_id)
    .fetch_one(&mut **tx)
    .await?;
    let state_text: String = monitor.try_get("state")?;
    let streak: i64 = monitor.try_get("healthy_streak")?;
    let last_applied: Option<i64> = monitor.try_get("last_batch_id")?;

    let batch = sqlx::query(
        "SELECT issued_at, applied_at FROM monitor_batches WHERE id = $1 AND monitor_id = $2",
    )
    .bind(batch_id)
    .bind(monitor_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(IngestError::UnknownBatch(batch_id))?;
    let issued_at: i64 = batch.try_get("issued_at")?;
    let applied_at: Option<i64> = batch.try_get("applied_at")?;
    if applied_at.is_some() {
        return Err(IngestError::Replayed(batch_id));
    }
    if let Some(last) = last_applied
        && last >= batch_id
    {
        return Err(IngestError::Stale {
            batch_id,
            last_applied: last,
        });
    }

    // The batch's servers and this monitor's previous score for each.
    let rows = sqlx::query(
        "SELECT bs.server_id, s.address, ss.score
         FROM monitor_batch_servers bs
         JOIN servers s ON s.id = bs.server_id
         LEFT JOIN server_scores ss ON ss.server_id = bs.server_id AND ss.monitor_id = $2
         WHERE bs.batch_id = $1",
    )
    .bind(batch_id)
    .bind(monitor_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut in_batch: HashMap<String, (i64, Option<f64>)> = HashMap::with_capacity(rows.len());
    for row in &rows {
        in_batch.insert(
            row.try_get("address")?,
            (row.try_get("server_id")?, row.try_get("score")?),
        );
    }

    let mut checks = Vec::with_capacity(results.len());
    let mut good = 0usize;
    for result in results {
        let Some(&(server_id, previous)) = in_batch.get(&result.server) else {
            return Err(IngestError::NotInBatch(result.server.clone()));
        };
        // A check cannot predate the batch (a minute of slack for the
        // monitor's clock) nor lie in the future.
        if result.ts < issued_at - FUTURE_SLACK || result.ts > now + FUTURE_SLACK {
            return Err(IngestError::BadTimestamp {
                server: result.server.clone(),
                ts: result.ts,
            });
        }
        let input = CheckInput {
            error: result.error.as_deref(),
            offset: result.offset,
            stratum: result.stratum,
        };
        if scoring::is_good_data_point(&input) {
            good += 1;
        }
        let step = scoring::step_for(&input);
        let score = scoring::next_score(previous.unwrap_or(scoring::NEW_PAIR_SCORE), step);
        checks.push(Check {
            server_id,
            monitor_id,
            ts: result.ts,
            offset: result.offset,
            rtt: result.rtt,
            stratum: result.stratum,
            leap: result.leap,
            error: result.error.clone(),
            step: step.step,
            score,
        });
    }
    scores::record_checks(tx, engine, &checks).await?;

    // The monitor: this batch is the newest applied; its state may move.
    let mut new_state_text = state_text.clone();
    let mut new_streak = streak;
    if let (Some(state), Some(healthy)) = (
        MonitorState::parse(&state_text),
        scoring::batch_is_healthy(good, results.len()),
    ) {
        let (state, streak) = scoring::next_monitor_state(state, streak, healthy);
        new_state_text = state.as_str().to_string();
        new_streak = streak;
    }
    sqlx::query(
        "UPDATE monitors SET last_batch_id = $1, last_seen = $2, state = $3, healthy_streak = $4
         WHERE id = $5",
    )
    .bind(batch_id)
    .bind(now)
    .bind(&new_state_text)
    .bind(new_streak)
    .bind(monitor_id)
    .execute(&mut **tx)
    .await?;
    if new_state_text != state_text {
        let actor = super::audit::Actor {
            user_id: None,
            name: "scoring".to_string(),
        };
        super::audit::record(
            tx,
            &actor,
            "monitor.state",
            &format!("monitor:{monitor_id}"),
            &format!("{state_text} -> {new_state_text} (healthy batches)"),
        )
        .await?;
    }
    let marked = sqlx::query(
        "UPDATE monitor_batches SET applied_at = $1 WHERE id = $2 AND applied_at IS NULL",
    )
    .bind(now)
    .bind(batch_id)
    .execute(&mut **tx)
    .await?;
    if marked.rows_affected() != 1 {
        return Err(IngestError::Replayed(batch_id));
    }

    // Server scores: the median over the monitors' latest scores, for the
    // servers this batch touched.
    let checked: HashSet<i64> = checks.iter().map(|c| c.server_id).collect();
    // The monitors that count, read once (a few rows), and every pair score
    // of the batch's servers as one JSON document rather than a row each
    // (a server has a score per monitor: a thousand rows for a batch of
    // 100, and each row returned costs far more in the driver than in the
    // database). The score travels as 17-digit text, which reads back as
    // the same f64 (PostgreSQL's float text is exact; SQLite's printf is
    // for the range scores live in: see db::scores tests).
    let mut monitor_states: HashMap<i64, MonitorState> = HashMap::new();
    for row in sqlx::query(
        "SELECT id, state FROM monitors WHERE state IN ('candidate', 'testing', 'active')",
    )
    .fetch_all(&mut **tx)
    .await?
    {
        let state: String = row.try_get(1)?;
        if let Some(state) = MonitorState::parse(&state) {
            monitor_states.insert(row.try_get(0)?, state);
        }
    }
    let aggregate = match engine {
        Engine::Sqlite => {
            "json_group_array(json_array(ss.server_id, ss.monitor_id, printf('%!.17g', ss.score), ss.score_ts))"
        }
        Engine::Postgres => {
            "COALESCE(json_agg(json_build_array(ss.server_id, ss.monitor_id, ss.score::text, ss.score_ts)), '[]'::json)::text"
        }
    };
    let document: String = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {aggregate}
         FROM monitor_batch_servers bs
         JOIN server_scores ss ON ss.server_id = bs.server_id
         WHERE bs.batch_id = $1"
    )))
    .bind(batch_id)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    let pairs: Vec<(i64, i64, String, i64)> = serde_json::from_str(&document)
        .map_err(|e| DbError::Decode(format!("pair scores of batch {batch_id}: {e}").into()))?;
    let mut latest: HashMap<i64, Vec<LatestScore>> = HashMap::new();
    for (server_id, monitor_id, score, ts) in pairs {
        let Some(&state) = monitor_states.get(&monitor_id) else {
            continue;
        };
        let score: f64 = score.parse().map_err(|e| {
            DbError::Decode(format!("score {score:?} of server {server_id}: {e}").into())
        })?;
        latest
            .entry(server_id)
            .or_default()
            .push(LatestScore { state, score, ts });
    }
    let mut server_scores: Vec<(i64, f64)> = Vec::with_capacity(checked.len());
    for server_id in checked {
        let Some(monitors) = latest.get(&server_id) else {
            continue;
        };
        if let Some(score) = scoring::server_score(monitors, now) {
            server_scores.push((server_id, score));
        }
    }
    server_scores.sort_by_key(|(id, _)| *id);
    scores::set_server_scores(tx, engine, &server_scores, now).await?;

    Ok(Applied {
        batch_id,
        results: results.len(),
        monitor_state: MonitorState::parse(&new_state_text)
            .map(MonitorState::as_str)
            .unwrap_or("paused"),
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
