//! The score log and the monitors' latest result per server.
//!
//! The scoring algorithm itself (design.md section 5) comes with the ingest
//! API (issue 6); this module stores and reads what it produces.

use sqlx::Row;

use super::{Db, DbError, Tx};

/// One row of the score log, as the graph and the CSV read it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LogEntry {
    pub ts: i64,
    pub offset: Option<f64>,
    pub step: Option<f64>,
    pub score: f64,
    /// None for the server's overall score line.
    pub monitor_id: Option<i64>,
    pub monitor_name: Option<String>,
    pub rtt: Option<f64>,
    pub leap: Option<i64>,
    pub error: Option<String>,
}

/// What to read from the log.
#[derive(Clone, Debug)]
pub struct LogQuery {
    pub limit: i64,
    pub since: Option<i64>,
    pub monitor_id: Option<i64>,
}

/// Newest first, at most `limit` rows.
pub async fn log(db: &Db, server_id: i64, q: &LogQuery) -> Result<Vec<LogEntry>, DbError> {
    let rows = sqlx::query(
        "SELECT l.ts, l.offset_s, l.step, l.score, l.monitor_id, m.name AS monitor_name,
                l.rtt_s, l.leap, l.error
         FROM score_log l LEFT JOIN monitors m ON m.id = l.monitor_id
         WHERE l.server_id = $1 AND l.ts >= $2 AND ($3 = 0 OR l.monitor_id = $4)
         ORDER BY l.ts DESC, l.id DESC LIMIT $5",
    )
    .bind(server_id)
    .bind(q.since.unwrap_or(0))
    .bind(i64::from(q.monitor_id.is_some()))
    .bind(q.monitor_id.unwrap_or(0))
    .bind(q.limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(LogEntry {
                ts: row.try_get("ts")?,
                offset: row.try_get("offset_s")?,
                step: row.try_get("step")?,
                score: row.try_get("score")?,
                monitor_id: row.try_get("monitor_id")?,
                monitor_name: row.try_get("monitor_name")?,
                rtt: row.try_get("rtt_s")?,
                leap: row.try_get("leap")?,
                error: row.try_get("error")?,
            })
        })
        .collect()
}

/// A monitor's latest view of one server.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MonitorResult {
    pub monitor_id: i64,
    pub monitor_name: String,
    pub monitor_state: String,
    pub score: f64,
    pub score_ts: i64,
    pub offset: Option<f64>,
    pub rtt: Option<f64>,
    pub stratum: Option<i64>,
    pub leap: Option<i64>,
    pub error: Option<String>,
}

pub async fn latest_by_monitor(db: &Db, server_id: i64) -> Result<Vec<MonitorResult>, DbError> {
    let rows = sqlx::query(
        "SELECT ss.monitor_id, m.name, m.state, ss.score, ss.score_ts, ss.offset_s, ss.rtt_s,
                ss.stratum, ss.leap, ss.error
         FROM server_scores ss JOIN monitors m ON m.id = ss.monitor_id
         WHERE ss.server_id = $1 ORDER BY m.name",
    )
    .bind(server_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(MonitorResult {
                monitor_id: row.try_get("monitor_id")?,
                monitor_name: row.try_get("name")?,
                monitor_state: row.try_get("state")?,
                score: row.try_get("score")?,
                score_ts: row.try_get("score_ts")?,
                offset: row.try_get("offset_s")?,
                rtt: row.try_get("rtt_s")?,
                stratum: row.try_get("stratum")?,
                leap: row.try_get("leap")?,
                error: row.try_get("error")?,
            })
        })
        .collect()
}

/// One monitor check of one server, already scored.
#[derive(Clone, Debug)]
pub struct Check {
    pub server_id: i64,
    pub monitor_id: i64,
    pub ts: i64,
    pub offset: Option<f64>,
    pub rtt: Option<f64>,
    pub stratum: Option<i64>,
    pub leap: Option<i64>,
    pub error: Option<String>,
    pub step: f64,
    /// The pair's score after this check.
    pub score: f64,
}

/// Stores a check: a log row plus the pair's latest state (upsert).
pub async fn record_check(tx: &mut Tx, c: &Check) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO score_log (server_id, monitor_id, ts, offset_s, step, score, rtt_s, leap, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(c.server_id)
    .bind(c.monitor_id)
    .bind(c.ts)
    .bind(c.offset)
    .bind(c.step)
    .bind(c.score)
    .bind(c.rtt)
    .bind(c.leap)
    .bind(c.error.as_deref())
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO server_scores (server_id, monitor_id, score, score_ts, offset_s, rtt_s,
                                    stratum, leap, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (server_id, monitor_id) DO UPDATE SET
           score = excluded.score, score_ts = excluded.score_ts, offset_s = excluded.offset_s,
           rtt_s = excluded.rtt_s, stratum = excluded.stratum, leap = excluded.leap,
           error = excluded.error",
    )
    .bind(c.server_id)
    .bind(c.monitor_id)
    .bind(c.score)
    .bind(c.ts)
    .bind(c.offset)
    .bind(c.rtt)
    .bind(c.stratum)
    .bind(c.leap)
    .bind(c.error.as_deref())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Sets the server's overall score and logs it (monitor_id NULL).
pub async fn set_server_score(
    tx: &mut Tx,
    server_id: i64,
    score: f64,
    ts: i64,
) -> Result<(), DbError> {
    sqlx::query("UPDATE servers SET score = $1, score_ts = $2 WHERE id = $3")
        .bind(score)
        .bind(ts)
        .bind(server_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO score_log (server_id, ts, score) VALUES ($1, $2, $3)")
        .bind(server_id)
        .bind(ts)
        .bind(score)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Rows per multi-row statement: 9 parameters a row stays well under
/// SQLite's limit of 32 766 parameters and PostgreSQL's 65 535.
const ROWS_PER_STATEMENT: usize = 100;

/// `record_check` for many checks with one statement per table per 100
/// checks (the ingest path: a batch is one transaction).
pub async fn record_checks(tx: &mut Tx, checks: &[Check]) -> Result<(), DbError> {
    for chunk in checks.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO score_log (server_id, monitor_id, ts, offset_s, step, score, rtt_s, leap, error) VALUES ",
        );
        push_placeholders(&mut sql, chunk.len(), 9);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for c in chunk {
            query = query
                .bind(c.server_id)
                .bind(c.monitor_id)
                .bind(c.ts)
                .bind(c.offset)
                .bind(c.step)
                .bind(c.score)
                .bind(c.rtt)
                .bind(c.leap)
                .bind(c.error.clone());
        }
        query.execute(&mut **tx).await?;

        let mut sql = String::from(
            "INSERT INTO server_scores (server_id, monitor_id, score, score_ts, offset_s, rtt_s, stratum, leap, error) VALUES ",
        );
        push_placeholders(&mut sql, chunk.len(), 9);
        sql.push_str(
            " ON CONFLICT (server_id, monitor_id) DO UPDATE SET
               score = excluded.score, score_ts = excluded.score_ts, offset_s = excluded.offset_s,
               rtt_s = excluded.rtt_s, stratum = excluded.stratum, leap = excluded.leap,
               error = excluded.error",
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for c in chunk {
            query = query
                .bind(c.server_id)
                .bind(c.monitor_id)
                .bind(c.score)
                .bind(c.ts)
                .bind(c.offset)
                .bind(c.rtt)
                .bind(c.stratum)
                .bind(c.leap)
                .bind(c.error.clone());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// `set_server_score` for many servers: the scores, then one log row each.
pub async fn set_server_scores(tx: &mut Tx, scores: &[(i64, f64)], ts: i64) -> Result<(), DbError> {
    for chunk in scores.chunks(ROWS_PER_STATEMENT) {
        // One UPDATE for the chunk: the new scores as a VALUES list joined
        // to servers (UPDATE ... FROM works on SQLite >= 3.33 and PostgreSQL).
        let mut sql = String::from("WITH v (id, score) AS (VALUES ");
        push_placeholders(&mut sql, chunk.len(), 2);
        let ts_param = chunk.len() * 2 + 1;
        sql.push_str(&format!(
            ") UPDATE servers SET score = v.score, score_ts = ${ts_param} FROM v WHERE servers.id = v.id"
        ));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (server_id, score) in chunk {
            query = query.bind(*server_id).bind(*score);
        }
        query.bind(ts).execute(&mut **tx).await?;

        let mut sql = String::from("INSERT INTO score_log (server_id, ts, score) VALUES ");
        push_placeholders(&mut sql, chunk.len(), 3);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (server_id, score) in chunk {
            query = query.bind(*server_id).bind(ts).bind(*score);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Appends `($1, ..., $k), ($k+1, ...)` for `rows` rows of `columns` values.
fn push_placeholders(sql: &mut String, rows: usize, columns: usize) {
    use std::fmt::Write;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "${}", row * columns + column + 1);
        }
        sql.push(')');
    }
}
