//! The (server, monitor) pairs (`server_scores`): the selector's pass over
//! every server (the rules are `control::monitor_selector`), the views of
//! the pairs for the score pages and staff, staff pausing a pair, and an
//! operator's "check now".

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use sqlx::Row;

use super::{Db, DbError, Engine};
use crate::control::monitor_selector::{
    self, Change, GlobalState, MonitorInfo, Pair, PairStatus, SelectorRules, ServerInfo,
};

/// The selector's lease: one instance runs the pass at a time.
pub const SELECTOR_LEASE: &str = "monitor_selector";

/// Servers whose changes are written in one transaction: short enough
/// that the ingest API never waits long for SQLite's write lock.
const SERVERS_PER_TRANSACTION: usize = 500;

/// What a pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PassReport {
    pub servers: usize,
    pub pairs: usize,
    pub added: usize,
    pub promoted: usize,
    pub demoted: usize,
    pub removed: usize,
    /// Changes not applied because the pair moved meanwhile (another
    /// writer); the next pass looks again.
    pub skipped: usize,
}

/// Everything one pass reads, in three statements.
struct PassInput {
    monitors: Vec<MonitorInfo>,
    servers: Vec<ServerInfo>,
    pairs: HashMap<i64, Vec<Pair>>,
    pair_count: usize,
}

async fn load(db: &Db, now: i64) -> Result<PassInput, DbError> {
    let mut monitors = Vec::new();
    for row in sqlx::query("SELECT id, state, ip, account_id FROM monitors ORDER BY id")
        .fetch_all(&db.pool)
        .await?
    {
        let state: String = row.try_get("state")?;
        let ip: Option<String> = row.try_get("ip")?;
        monitors.push(MonitorInfo {
            id: row.try_get("id")?,
            state: GlobalState::parse(&state).unwrap_or(GlobalState::Paused),
            ip: ip.and_then(|ip| ip.parse().ok()),
            account_id: row.try_get("account_id")?,
        });
    }
    // Servers and pairs as one JSON document each rather than a row each:
    // a row costs far more in the driver than in the database (see
    // db::scores::record_checks), and a pass reads every pair. (SQLite's
    // printf turns NULL into "0.0": a pair never measured must stay
    // unmeasured, hence the CASEs.)
    let (servers_sql, pairs_sql) = match db.engine {
        Engine::Sqlite => (
            "SELECT json_group_array(json_array(id, address, account_id)) FROM servers
             WHERE deletion_on IS NULL OR deletion_on > $1",
            "SELECT json_group_array(json_array(server_id, monitor_id, status, good_points,
                    CASE WHEN avg_step IS NULL THEN NULL ELSE printf('%!.17g', avg_step) END,
                    CASE WHEN avg_rtt IS NULL THEN NULL ELSE printf('%!.17g', avg_rtt) END, score_ts, status_since))
             FROM server_scores",
        ),
        Engine::Postgres => (
            "SELECT COALESCE(json_agg(json_build_array(id, address, account_id)), '[]'::json)::text
             FROM servers WHERE deletion_on IS NULL OR deletion_on > $1",
            "SELECT COALESCE(json_agg(json_build_array(server_id, monitor_id, status, good_points,
                    avg_step::text, avg_rtt::text, score_ts, status_since)), '[]'::json)::text
             FROM server_scores",
        ),
    };
    let document: String = sqlx::query(servers_sql)
        .bind(now)
        .fetch_one(&db.pool)
        .await?
        .try_get(0)?;
    let rows: Vec<(i64, String, i64)> = serde_json::from_str(&document)
        .map_err(|e| DbError::Decode(format!("servers for the selector: {e}").into()))?;
    let servers = rows
        .into_iter()
        .map(|(id, address, account_id)| ServerInfo {
            id,
            ip: address.parse::<IpAddr>().ok(),
            account_id,
        })
        .collect();
    let document: String = sqlx::query(pairs_sql)
        .fetch_one(&db.pool)
        .await?
        .try_get(0)?;
    type PairRow = (
        i64,
        i64,
        String,
        i64,
        Option<String>,
        Option<String>,
        Option<i64>,
        i64,
    );
    let rows: Vec<PairRow> = serde_json::from_str(&document)
        .map_err(|e| DbError::Decode(format!("pairs for the selector: {e}").into()))?;
    let pair_count = rows.len();
    let mut pairs: HashMap<i64, Vec<Pair>> = HashMap::new();
    for (server_id, monitor_id, status, good_points, avg_step, avg_rtt, score_ts, since) in rows {
        let number = |text: Option<String>, what: &str| -> Result<Option<f64>, DbError> {
            text.map(|t| {
                t.parse::<f64>().map_err(|e| {
                    DbError::Decode(
                        format!("{what} {t:?} of pair ({server_id}, {monitor_id}): {e}").into(),
                    )
                })
            })
            .transpose()
        };
        let status = PairStatus::parse(&status).ok_or_else(|| {
            DbError::Decode(format!("status {status:?} of pair ({server_id}, {monitor_id})").into())
        })?;
        pairs.entry(server_id).or_default().push(Pair {
            monitor_id,
            status,
            good_points,
            avg_step: number(avg_step, "avg_step")?,
            avg_rtt: number(avg_rtt, "avg_rtt")?,
            last_result: score_ts,
            status_since: since,
        });
    }
    Ok(PassInput {
        monitors,
        servers,
        pairs,
        pair_count,
    })
}

/// The selector's lease as a pass holds it: every write transaction
/// renews it and commits only while it holds.
#[derive(Clone, Debug)]
pub struct Fence {
    pub holder: String,
    pub ttl_secs: i64,
}

/// One pass of the selector over every server at `now`: reads everything,
/// decides (pure), then writes the changes, each conditional on the pair
/// still being as it was read, with an audit row each. Tests and
/// benchmarks (one instance) run it without a lease.
pub async fn selector_pass(
    db: &Db,
    rules: &SelectorRules,
    now: i64,
) -> Result<PassReport, DbError> {
    selector_pass_fenced(db, rules, now, None).await
}

/// `selector_pass` under the selector's lease: a pass whose instance lost
/// the lease (a stall longer than it lasts) stops before its next write,
/// so two instances never decide on the same targets at once.
pub async fn selector_pass_fenced(
    db: &Db,
    rules: &SelectorRules,
    now: i64,
    fence: Option<&Fence>,
) -> Result<PassReport, DbError> {
    let input = load(db, now).await?;
    let mut report = PassReport {
        servers: input.servers.len(),
        pairs: input.pair_count,
        ..PassReport::default()
    };
    let no_pairs: Vec<Pair> = Vec::new();
    let mut decided: Vec<(i64, Vec<Change>)> = Vec::new();
    for server in &input.servers {
        let pairs = input.pairs.get(&server.id).unwrap_or(&no_pairs);
        let changes = monitor_selector::select(rules, server, pairs, &input.monitors, now);
        if !changes.is_empty() {
            decided.push((server.id, changes));
        }
    }
    for chunk in decided.chunks(SERVERS_PER_TRANSACTION) {
        if !apply(db, chunk, now, fence, &mut report).await? {
            tracing::warn!(
                "monitor selector: lost its lease mid-pass; the rest is left to the holder"
            );
            break;
        }
    }
    Ok(report)
}

/// Writes one chunk of servers' changes in one transaction: the new
/// pairs, the moves and the removals as one statement each (the changes
/// travel as one JSON parameter, see `db::scores::record_checks`), each
/// move and removal only where the pair is still as it was read; an audit
/// row for each change that was made.
/// False (nothing written) when the lease no longer holds.
async fn apply(
    db: &Db,
    chunk: &[(i64, Vec<Change>)],
    now: i64,
    fence: Option<&Fence>,
    report: &mut PassReport,
) -> Result<bool, DbError> {
    let mut added: Vec<serde_json::Value> = Vec::new();
    let mut moved: Vec<serde_json::Value> = Vec::new();
    let mut removed: Vec<serde_json::Value> = Vec::new();
    for (server_id, changes) in chunk {
        for change in changes {
            let row =
                |from: &str, to: &str| serde_json::json!([server_id, change.monitor_id, from, to]);
            match (change.from, change.to) {
                (None, Some(to)) => added.push(row("new", to.as_str())),
                (Some(from), Some(to)) => moved.push(row(from.as_str(), to.as_str())),
                (Some(from), None) => removed.push(row(from.as_str(), "removed")),
                (None, None) => {}
            }
        }
    }
    let (source, column): (&str, fn(usize, &str) -> String) = match db.engine {
        Engine::Sqlite => ("json_each($1)", |i, _| format!("value->>{i}")),
        Engine::Postgres => ("json_array_elements($1::json) AS e(value)", |i, ty| {
            format!("(value->>{i})::{ty}")
        }),
    };
    let (big, text) = ("bigint", "text");
    let mut tx = db.begin().await?;
    if let Some(fence) = fence
        && !super::leases::still_held(
            &mut tx,
            db.engine,
            SELECTOR_LEASE,
            &fence.holder,
            fence.ttl_secs,
        )
        .await?
    {
        tx.rollback().await?;
        return Ok(false);
    }
    // In key order, so two writers of the same pairs lock them in the
    // same order (PostgreSQL).
    let key = |row: &serde_json::Value| (row[0].as_i64(), row[1].as_i64());
    added.sort_by_key(key);
    moved.sort_by_key(key);
    removed.sort_by_key(key);
    if db.engine == Engine::Postgres {
        // An UPDATE or DELETE joined with the JSON rows locks the pairs in
        // the join's order, not the key order; a batch being applied locks
        // its monitor's pairs in key order. So lock the pairs to change
        // first, in key order (FOR UPDATE under ORDER BY locks in that
        // order): the two never deadlock.
        let mut keys: Vec<(i64, i64)> = moved
            .iter()
            .chain(removed.iter())
            .filter_map(|row| Some((row[0].as_i64()?, row[1].as_i64()?)))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if !keys.is_empty() {
            // Integers read from the database, not outside input.
            let list = keys
                .iter()
                .map(|(server, monitor)| format!("({server},{monitor})"))
                .collect::<Vec<_>>()
                .join(",");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT server_id FROM server_scores WHERE (server_id, monitor_id) IN ({list})
                 ORDER BY server_id, monitor_id FOR UPDATE"
            )))
            .execute(&mut *tx)
            .await?;
        }
    }
    let mut done: HashSet<(i64, i64)> = HashSet::new();
    if !added.is_empty() {
        let sql = format!(
            "INSERT INTO server_scores (server_id, monitor_id, status, status_since)
             SELECT {}, {}, {}, $2 FROM {source} WHERE true
             ON CONFLICT (server_id, monitor_id) DO NOTHING
             RETURNING server_id, monitor_id",
            column(0, big),
            column(1, big),
            column(3, text),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::Value::Array(added).to_string())
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        report.added += collect_pairs(&rows, &mut done)?;
    }
    if !moved.is_empty() {
        let sql = format!(
            "UPDATE server_scores SET status = {}, status_since = $2
             FROM {source}
             WHERE server_scores.server_id = {} AND server_scores.monitor_id = {}
               AND server_scores.status = {}
             RETURNING server_scores.server_id, server_scores.monitor_id",
            column(3, text),
            column(0, big),
            column(1, big),
            column(2, text),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::Value::Array(moved.clone()).to_string())
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        collect_pairs(&rows, &mut done)?;
    }
    if !removed.is_empty() {
        let sql = format!(
            "DELETE FROM server_scores
             WHERE (server_id, monitor_id, status) IN (SELECT {}, {}, {} FROM {source})
             RETURNING server_id, monitor_id",
            column(0, big),
            column(1, big),
            column(2, text),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::Value::Array(removed).to_string())
            .fetch_all(&mut *tx)
            .await?;
        report.removed += collect_pairs(&rows, &mut done)?;
    }
    let mut audit: Vec<serde_json::Value> = Vec::new();
    for (server_id, changes) in chunk {
        for change in changes {
            if !done.contains(&(*server_id, change.monitor_id)) {
                report.skipped += 1;
                continue;
            }
            if let (Some(from), Some(to)) = (change.from, change.to) {
                if to > from {
                    report.promoted += 1;
                } else {
                    report.demoted += 1;
                }
            }
            let from = change.from.map(PairStatus::as_str).unwrap_or("new");
            let to = change.to.map(PairStatus::as_str).unwrap_or("removed");
            audit.push(serde_json::json!([
                format!("server:{server_id}"),
                format!(
                    "monitor:{} {from} -> {to}: {}",
                    change.monitor_id, change.reason
                )
            ]));
        }
    }
    if !audit.is_empty() {
        let sql = format!(
            "INSERT INTO audit_log (ts, user_id, actor, action, target, details)
             SELECT $2, NULL, 'selector', 'monitor.pair', {}, {} FROM {source}",
            column(0, text),
            column(1, text),
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::Value::Array(audit).to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// The (server, monitor) pairs a statement returned, into `done`; how many.
fn collect_pairs(
    rows: &[sqlx::any::AnyRow],
    done: &mut HashSet<(i64, i64)>,
) -> Result<usize, DbError> {
    for row in rows {
        done.insert((row.try_get(0)?, row.try_get(1)?));
    }
    Ok(rows.len())
}

/// A pair as the score pages show it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PairView {
    pub monitor_id: i64,
    pub monitor_name: String,
    /// candidate, testing, active or paused.
    pub status: String,
    pub status_since: i64,
    pub good_points: i64,
    /// The pair's score; None before its first check.
    pub score: Option<f64>,
    pub score_ts: Option<i64>,
    /// The latest check's round trip and offset (seconds).
    pub rtt: Option<f64>,
    pub offset: Option<f64>,
    pub stratum: Option<i64>,
    pub leap: Option<i64>,
    pub error: Option<String>,
    /// The recent mean round trip.
    pub avg_rtt: Option<f64>,
    /// The monitor's last self-check found its clock off: it checks
    /// nothing until it passes again.
    pub monitor_clock_off: bool,
}

/// A server's pairs, active first, then testing, candidates, paused.
pub async fn for_server(db: &Db, server_id: i64) -> Result<Vec<PairView>, DbError> {
    let rows = sqlx::query(
        "SELECT ss.monitor_id, m.name, ss.status, ss.status_since, ss.good_points, ss.score,
                ss.score_ts, ss.rtt_s, ss.offset_s, ss.stratum, ss.leap, ss.error, ss.avg_rtt,
                m.self_check_ok
         FROM server_scores ss JOIN monitors m ON m.id = ss.monitor_id
         WHERE ss.server_id = $1
         ORDER BY CASE ss.status WHEN 'active' THEN 0 WHEN 'testing' THEN 1
                  WHEN 'candidate' THEN 2 ELSE 3 END, m.name",
    )
    .bind(server_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            let score_ts: Option<i64> = row.try_get("score_ts")?;
            let score: f64 = row.try_get("score")?;
            Ok(PairView {
                monitor_id: row.try_get("monitor_id")?,
                monitor_name: row.try_get("name")?,
                status: row.try_get("status")?,
                status_since: row.try_get("status_since")?,
                good_points: row.try_get("good_points")?,
                score: score_ts.map(|_| score),
                score_ts,
                rtt: row.try_get("rtt_s")?,
                offset: row.try_get("offset_s")?,
                stratum: row.try_get("stratum")?,
                leap: row.try_get("leap")?,
                error: row.try_get("error")?,
                avg_rtt: row.try_get("avg_rtt")?,
                monitor_clock_off: row.try_get::<Option<i64>, _>("self_check_ok")? == Some(0),
            })
        })
        .collect()
}

/// Pairs per monitor and state: monitor id -> [active, testing,
/// candidate, paused].
pub async fn counts_by_monitor(db: &Db) -> Result<HashMap<i64, [i64; 4]>, DbError> {
    let rows = sqlx::query(
        "SELECT monitor_id, status, COUNT(*) AS n FROM server_scores GROUP BY monitor_id, status",
    )
    .fetch_all(&db.pool)
    .await?;
    let mut counts: HashMap<i64, [i64; 4]> = HashMap::new();
    for row in &rows {
        let status: String = row.try_get("status")?;
        let slot = match PairStatus::parse(&status) {
            Some(PairStatus::Active) => 0,
            Some(PairStatus::Testing) => 1,
            Some(PairStatus::Candidate) => 2,
            Some(PairStatus::Paused) => 3,
            None => continue,
        };
        counts.entry(row.try_get("monitor_id")?).or_default()[slot] = row.try_get("n")?;
    }
    Ok(counts)
}

/// A monitor's pairs (the staff page of one monitor): server id, address,
/// status, good points, score, when.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MonitorPair {
    pub server_id: i64,
    pub address: String,
    pub status: String,
    pub good_points: i64,
    pub score: Option<f64>,
    pub score_ts: Option<i64>,
    pub avg_rtt: Option<f64>,
}

pub async fn for_monitor(db: &Db, monitor_id: i64) -> Result<Vec<MonitorPair>, DbError> {
    let rows = sqlx::query(
        "SELECT ss.server_id, s.address, ss.status, ss.good_points, ss.score, ss.score_ts, ss.avg_rtt
         FROM server_scores ss JOIN servers s ON s.id = ss.server_id
         WHERE ss.monitor_id = $1
         ORDER BY CASE ss.status WHEN 'active' THEN 0 WHEN 'testing' THEN 1
                  WHEN 'candidate' THEN 2 ELSE 3 END, s.address
         LIMIT 2000",
    )
    .bind(monitor_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            let score_ts: Option<i64> = row.try_get("score_ts")?;
            let score: f64 = row.try_get("score")?;
            Ok(MonitorPair {
                server_id: row.try_get("server_id")?,
                address: row.try_get("address")?,
                status: row.try_get("status")?,
                good_points: row.try_get("good_points")?,
                score: score_ts.map(|_| score),
                score_ts,
                avg_rtt: row.try_get("avg_rtt")?,
            })
        })
        .collect()
}

/// Staff pause a pair (the selector leaves it alone, it is not checked)
/// or give it back to the selector as a candidate. False when no such
/// pair is in the state the change starts from.
pub async fn set_paused(
    tx: &mut super::Tx,
    server_id: i64,
    monitor_id: i64,
    paused: bool,
    now: i64,
) -> Result<bool, DbError> {
    let sql = if paused {
        "UPDATE server_scores SET status = 'paused', status_since = $1
         WHERE server_id = $2 AND monitor_id = $3 AND status <> 'paused'"
    } else {
        "UPDATE server_scores SET status = 'candidate', status_since = $1
         WHERE server_id = $2 AND monitor_id = $3 AND status = 'paused'"
    };
    let done = sqlx::query(sql)
        .bind(now)
        .bind(server_id)
        .bind(monitor_id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// What became of a "check now".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckRequest {
    Requested,
    /// This server's was asked for less than the gap ago.
    TooSoon,
    /// The account asked for `CHECKS_PER_ACCOUNT` servers' within
    /// `CHECK_WINDOW_SECS` already.
    AccountLimit,
}

/// "Check now" requests an account may make per window (each makes every
/// pair of a server check it: about a dozen checks).
pub const CHECKS_PER_ACCOUNT: i64 = 20;
pub const CHECK_WINDOW_SECS: i64 = 600;

/// An operator's "check now": every pair of the server is due at once;
/// at most once per `min_gap` per server and `CHECKS_PER_ACCOUNT` per
/// account and window (the count and the write in one transaction).
pub async fn request_check(
    db: &Db,
    account_id: i64,
    server_id: i64,
    min_gap: i64,
    now: i64,
) -> Result<CheckRequest, DbError> {
    let mut tx = db.begin().await?;
    // The account locked first (PostgreSQL; SQLite's write transaction
    // already is), so two requests at once count each other.
    if db.engine == Engine::Postgres {
        sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE")
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?;
    }
    let recent: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM servers WHERE account_id = $1 AND check_requested_at > $2",
    )
    .bind(account_id)
    .bind(now - CHECK_WINDOW_SECS)
    .fetch_one(&mut *tx)
    .await?
    .try_get("n")?;
    let done = sqlx::query(
        "UPDATE servers SET check_requested_at = $1
         WHERE id = $2 AND account_id = $3
           AND (check_requested_at IS NULL OR check_requested_at <= $4)",
    )
    .bind(now)
    .bind(server_id)
    .bind(account_id)
    .bind(now - min_gap)
    .execute(&mut *tx)
    .await?;
    let outcome = if done.rows_affected() != 1 {
        CheckRequest::TooSoon
    } else if recent >= CHECKS_PER_ACCOUNT {
        CheckRequest::AccountLimit
    } else {
        CheckRequest::Requested
    };
    if outcome == CheckRequest::Requested {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(outcome)
}

/// When the server's latest "check now" was asked for.
pub async fn check_requested_at(db: &Db, server_id: i64) -> Result<Option<i64>, DbError> {
    Ok(
        sqlx::query("SELECT check_requested_at FROM servers WHERE id = $1")
            .bind(server_id)
            .fetch_optional(&db.pool)
            .await?
            .map(|row| row.try_get("check_requested_at"))
            .transpose()?
            .flatten(),
    )
}
