//! Applying a batch of a monitor's results (web/README.md, "The monitor
//! protocol" and "Scoring"), in one transaction: a log row and the pair's
//! score per result, the monitor's state, then the scores of the servers
//! the batch touched. Any refusal or failure rolls everything back.
//! Handing batches out is `schedule`.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::Db;
use super::scores::{self, Check};
use super::{DbError, Engine, Tx};
use crate::control::scoring::{self, CheckInput, LatestScore, MonitorState};
use crate::shared::monitor_protocol::ResultIn;

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
    /// The monitor reported its own clock off (now, or after this batch
    /// was issued): its results are not scored.
    ClockNotOk(i64),
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
            IngestError::ClockNotOk(id) => write!(
                f,
                "batch {id}: this monitor reported its own clock off since the batch was issued; its results are not scored"
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

/// The monitor's row as a batch of it is applied.
struct MonitorRow {
    state: String,
    healthy_streak: i64,
    last_batch_id: Option<i64>,
    self_check_ok: Option<i64>,
    self_check_failed_at: Option<i64>,
}

/// The monitor row first (locked on PostgreSQL) so two submissions of one
/// monitor apply one after the other and see each other's last_batch_id.
async fn lock_monitor(tx: &mut Tx, engine: Engine, monitor_id: i64) -> Result<MonitorRow, DbError> {
    // NO KEY UPDATE: it excludes another submission's lock, and not the
    // key-share lock PostgreSQL takes for a new row that refers to the
    // monitor (the selector adding a pair), which would otherwise wait on
    // this batch while this batch waits on the selector's pairs.
    let lock = match engine {
        Engine::Postgres => " FOR NO KEY UPDATE",
        Engine::Sqlite => "",
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT state, healthy_streak, last_batch_id, self_check_ok, self_check_failed_at
         FROM monitors WHERE id = $1{lock}"
    )))
    .bind(monitor_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(MonitorRow {
        state: row.try_get("state")?,
        healthy_streak: row.try_get("healthy_streak")?,
        last_batch_id: row.try_get("last_batch_id")?,
        self_check_ok: row.try_get("self_check_ok")?,
        self_check_failed_at: row.try_get("self_check_failed_at")?,
    })
}

/// The batch's issue time, once it is known to be this monitor's, not
/// applied yet and newer than the last one applied.
async fn open_batch(
    tx: &mut Tx,
    monitor: &MonitorRow,
    monitor_id: i64,
    batch_id: i64,
) -> Result<i64, IngestError> {
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
    if let Some(last) = monitor.last_batch_id
        && last >= batch_id
    {
        return Err(IngestError::Stale {
            batch_id,
            last_applied: last,
        });
    }
    // Never a score from a monitor whose clock is known off now, or was
    // found off after this batch was issued (a batch of the same second
    // counts as issued after: the agent itself drops what it checked
    // before a failed self-check, so this guards the batches it queued
    // earlier).
    if monitor.self_check_ok == Some(0)
        || monitor
            .self_check_failed_at
            .is_some_and(|failed| failed > issued_at)
    {
        return Err(IngestError::ClockNotOk(batch_id));
    }
    Ok(issued_at)
}

/// The batch's servers by address: id and this monitor's previous score.
async fn batch_servers(
    tx: &mut Tx,
    monitor_id: i64,
    batch_id: i64,
) -> Result<HashMap<String, (i64, Option<f64>)>, DbError> {
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
    let mut in_batch = HashMap::with_capacity(rows.len());
    for row in &rows {
        in_batch.insert(
            row.try_get("address")?,
            (row.try_get("server_id")?, row.try_get("score")?),
        );
    }
    Ok(in_batch)
}

/// The checks a batch's results make (pure): each result's step and the
/// pair's new score; and how many were good data points.
fn score_results(
    results: &[ResultIn],
    in_batch: &HashMap<String, (i64, Option<f64>)>,
    monitor_id: i64,
    issued_at: i64,
    now: i64,
) -> Result<(Vec<Check>, usize), IngestError> {
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
        let good_point = scoring::is_good_data_point(&input);
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
            good_point,
        });
        good += usize::from(good_point);
    }
    Ok((checks, good))
}

/// The monitor after a batch: this batch is the newest applied, and its
/// state may move by the batch's health. Returns the new state's text.
async fn advance_monitor(
    tx: &mut Tx,
    monitor: &MonitorRow,
    monitor_id: i64,
    batch_id: i64,
    good: usize,
    results: usize,
    now: i64,
) -> Result<String, DbError> {
    let mut new_state = monitor.state.clone();
    let mut new_streak = monitor.healthy_streak;
    if let (Some(state), Some(healthy)) = (
        MonitorState::parse(&monitor.state),
        scoring::batch_is_healthy(good, results),
    ) {
        let (state, streak) = scoring::next_monitor_state(state, monitor.healthy_streak, healthy);
        new_state = state.as_str().to_string();
        new_streak = streak;
    }
    sqlx::query(
        "UPDATE monitors SET last_batch_id = $1, last_seen = $2, state = $3, healthy_streak = $4
         WHERE id = $5",
    )
    .bind(batch_id)
    .bind(now)
    .bind(&new_state)
    .bind(new_streak)
    .bind(monitor_id)
    .execute(&mut **tx)
    .await?;
    if new_state != monitor.state {
        let actor = super::audit::Actor {
            user_id: None,
            name: "scoring".to_string(),
        };
        super::audit::record(
            tx,
            &actor,
            "monitor.state",
            &format!("monitor:{monitor_id}"),
            &format!("{} -> {new_state} (healthy batches)", monitor.state),
        )
        .await?;
    }
    Ok(new_state)
}

/// Mark the batch applied; a second submission racing this one finds it
/// applied and is refused.
async fn mark_applied(tx: &mut Tx, batch_id: i64, now: i64) -> Result<(), IngestError> {
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
    Ok(())
}

/// Server scores: the median over the pairs' latest scores, active pairs
/// first (`scoring::server_score`), for the servers this batch touched.
/// Paused pairs, pairs not checked yet and pairs of monitors that are
/// paused or deleted do not count.
async fn update_server_scores(
    tx: &mut Tx,
    engine: Engine,
    batch_id: i64,
    checked: &HashSet<i64>,
    now: i64,
) -> Result<(), DbError> {
    // The monitors that count, read once (a few rows; joining them in the
    // query below let PostgreSQL's planner scan every pair), and every
    // pair score of the batch's servers as one JSON document rather than
    // a row each (a row returned costs far more in the driver than in the
    // database). The score travels as 17-digit text, which reads back as
    // the same f64 (PostgreSQL's float text is exact; SQLite's printf is
    // for the range scores live in: see db::scores tests).
    let mut counting: HashSet<i64> = HashSet::new();
    for row in
        sqlx::query("SELECT id FROM monitors WHERE state IN ('candidate', 'testing', 'active')")
            .fetch_all(&mut **tx)
            .await?
    {
        counting.insert(row.try_get(0)?);
    }
    let aggregate = match engine {
        Engine::Sqlite => {
            "json_group_array(json_array(ss.server_id, ss.monitor_id, ss.status, printf('%!.17g', ss.score), ss.score_ts))"
        }
        Engine::Postgres => {
            "COALESCE(json_agg(json_build_array(ss.server_id, ss.monitor_id, ss.status, ss.score::text, ss.score_ts)), '[]'::json)::text"
        }
    };
    if checked.is_empty() {
        return Ok(());
    }
    // The servers as a list of integers (read from the database, not
    // outside input) rather than a join with the batch: PostgreSQL then
    // looks each up by the primary key instead of scanning every pair.
    let mut ids: Vec<i64> = checked.iter().copied().collect();
    ids.sort_unstable();
    let ids = ids
        .iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let document: String = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {aggregate}
         FROM server_scores ss
         WHERE ss.server_id IN ({ids}) AND ss.score_ts IS NOT NULL"
    )))
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    let pairs: Vec<(i64, i64, String, String, i64)> = serde_json::from_str(&document)
        .map_err(|e| DbError::Decode(format!("pair scores of batch {batch_id}: {e}").into()))?;
    let mut latest: HashMap<i64, Vec<LatestScore>> = HashMap::new();
    for (server_id, monitor_id, status, score, ts) in pairs {
        // Paused pairs, and pairs of paused or deleted monitors, say
        // nothing about the server.
        let Some(state) = MonitorState::parse(&status) else {
            continue;
        };
        if !counting.contains(&monitor_id) {
            continue;
        }
        let score: f64 = score.parse().map_err(|e| {
            DbError::Decode(format!("score {score:?} of server {server_id}: {e}").into())
        })?;
        latest
            .entry(server_id)
            .or_default()
            .push(LatestScore { state, score, ts });
    }
    let mut server_scores: Vec<(i64, f64)> = Vec::with_capacity(checked.len());
    for &server_id in checked {
        let Some(monitors) = latest.get(&server_id) else {
            continue;
        };
        if let Some(score) = scoring::server_score(monitors, now) {
            server_scores.push((server_id, score));
        }
    }
    server_scores.sort_by_key(|(id, _)| *id);
    scores::set_server_scores(tx, engine, &server_scores, now).await
}

/// The steps of applying a batch, in the caller's transaction.
async fn apply_in(
    tx: &mut Tx,
    engine: Engine,
    monitor_id: i64,
    batch_id: i64,
    results: &[ResultIn],
    now: i64,
) -> Result<Applied, IngestError> {
    let monitor = lock_monitor(tx, engine, monitor_id).await?;
    let issued_at = open_batch(tx, &monitor, monitor_id, batch_id).await?;
    let in_batch = batch_servers(tx, monitor_id, batch_id).await?;
    let (checks, good) = score_results(results, &in_batch, monitor_id, issued_at, now)?;
    scores::record_checks(tx, engine, &checks).await?;
    let new_state =
        advance_monitor(tx, &monitor, monitor_id, batch_id, good, results.len(), now).await?;
    mark_applied(tx, batch_id, now).await?;
    let checked: HashSet<i64> = checks.iter().map(|c| c.server_id).collect();
    update_server_scores(tx, engine, batch_id, &checked, now).await?;
    Ok(Applied {
        batch_id,
        results: results.len(),
        monitor_state: MonitorState::parse(&new_state)
            .map(MonitorState::as_str)
            .unwrap_or("paused"),
    })
}
