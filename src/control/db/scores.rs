//! The score log and the monitors' latest result per server.
//!
//! The scoring algorithm itself (web/README.md, "Scoring") comes with the ingest
//! API (issue 6); this module stores and reads what it produces.

use sqlx::Row;

use super::{Db, DbError, Engine, Tx};

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
    /// Whether it counts as a good data point for the pair's promotion.
    pub good_point: bool,
}

/// The weight of the newest check in a pair's moving averages of step and
/// round trip: about the last 30 checks count (the pool averages a day).
pub const PAIR_AVERAGE_WEIGHT: f64 = 1.0 / 16.0;

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
    // A pair made here is active (test fixtures); the ingest API only
    // updates the pairs the selector made (`record_checks`).
    sqlx::query(
        "INSERT INTO server_scores (server_id, monitor_id, score, score_ts, offset_s, rtt_s,
                                    stratum, leap, error, status, status_since)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $4)
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

/// `record_check` for many checks: one statement per table for the whole
/// batch. The checks travel as one JSON array parameter that the database
/// unpacks (SQLite `json_each`, PostgreSQL `json_array_elements`): binding
/// nine parameters per check cost far more in the driver than the inserts
/// cost in the database (the ingest benchmark, README "Monitoring").
/// Numbers keep their exact value: serde_json writes the shortest text that
/// reads back as the same f64, and both engines read it correctly rounded.
pub async fn record_checks(tx: &mut Tx, engine: Engine, checks: &[Check]) -> Result<(), DbError> {
    if checks.is_empty() {
        return Ok(());
    }
    // In key order: two writers of the same pairs (another batch, the
    // selector) take their row locks in the same order on PostgreSQL.
    let mut ordered: Vec<&Check> = checks.iter().collect();
    ordered.sort_by_key(|c| (c.server_id, c.monitor_id));
    let rows: Vec<serde_json::Value> = ordered
        .into_iter()
        .map(|c| {
            serde_json::json!([
                c.server_id,
                c.monitor_id,
                c.ts,
                c.offset,
                c.step,
                c.score,
                c.rtt,
                c.leap,
                c.error,
                c.stratum,
                i64::from(c.good_point)
            ])
        })
        .collect();
    let document = serde_json::Value::Array(rows).to_string();
    // Element i of each row as a typed SQL value.
    let (from, column): (&str, fn(usize, &str) -> String) = match engine {
        // `WHERE true`: SQLite needs it between INSERT ... SELECT and an
        // ON CONFLICT clause, to parse them apart.
        Engine::Sqlite => ("json_each($1) WHERE true", |i, _| format!("value->>{i}")),
        Engine::Postgres => ("json_array_elements($1::json) AS e(value)", |i, ty| {
            format!("(value->>{i})::{ty}")
        }),
    };
    let (big, real, text) = ("bigint", "double precision", "text");
    let log = format!(
        "INSERT INTO score_log (server_id, monitor_id, ts, offset_s, step, score, rtt_s, leap, error)
         SELECT {}, {}, {}, {}, {}, {}, {}, {}, {} FROM {from}",
        column(0, big),
        column(1, big),
        column(2, big),
        column(3, real),
        column(4, real),
        column(5, real),
        column(6, real),
        column(7, big),
        column(8, text),
    );
    sqlx::query(sqlx::AssertSqlSafe(log))
        .bind(&document)
        .execute(&mut **tx)
        .await?;
    // The pair's latest check, score, good points and moving averages
    // (`PAIR_AVERAGE_WEIGHT`). Only pairs that exist (the EXISTS): one the
    // selector removed after the batch was issued keeps just the log row.
    // An upsert rather than UPDATE ... FROM: each row finds its pair by the
    // primary key whatever the planner's statistics (PostgreSQL's join
    // plan for UPDATE ... FROM a JSON array scanned the whole table on a
    // fresh one, 3x slower).
    let w = PAIR_AVERAGE_WEIGHT;
    let latest = format!(
        "INSERT INTO server_scores (server_id, monitor_id, status, status_since, score,
                                    score_ts, offset_s, rtt_s, stratum, leap, error,
                                    good_points, avg_step, avg_rtt)
         SELECT {server}, {monitor}, 'candidate', {ts}, {score}, {ts}, {offset}, {rtt},
                {stratum}, {leap}, {error}, {good}, {step}, {rtt}
         FROM {from}
         AND EXISTS (SELECT 1 FROM server_scores p
                     WHERE p.server_id = {server} AND p.monitor_id = {monitor})
         ON CONFLICT (server_id, monitor_id) DO UPDATE SET
           score = excluded.score, score_ts = excluded.score_ts, offset_s = excluded.offset_s,
           rtt_s = excluded.rtt_s, stratum = excluded.stratum, leap = excluded.leap,
           error = excluded.error,
           good_points = server_scores.good_points + excluded.good_points,
           avg_step = CASE WHEN server_scores.avg_step IS NULL THEN excluded.avg_step
                           ELSE server_scores.avg_step * {keep} + excluded.avg_step * {w} END,
           avg_rtt = CASE WHEN excluded.avg_rtt IS NULL THEN server_scores.avg_rtt
                          WHEN server_scores.avg_rtt IS NULL THEN excluded.avg_rtt
                          ELSE server_scores.avg_rtt * {keep} + excluded.avg_rtt * {w} END",
        from = match engine {
            Engine::Sqlite => "json_each($1) WHERE true",
            Engine::Postgres => "json_array_elements($1::json) AS e(value) WHERE true",
        },
        score = column(5, real),
        ts = column(2, big),
        offset = column(3, real),
        rtt = column(6, real),
        stratum = column(9, big),
        leap = column(7, big),
        error = column(8, text),
        good = column(10, big),
        step = column(4, real),
        keep = 1.0 - w,
        server = column(0, big),
        monitor = column(1, big),
    );
    sqlx::query(sqlx::AssertSqlSafe(latest))
        .bind(&document)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// `set_server_score` for many servers: the scores, then one log row each,
/// one statement each with the scores as one JSON parameter (see
/// `record_checks`).
pub async fn set_server_scores(
    tx: &mut Tx,
    engine: Engine,
    scores: &[(i64, f64)],
    ts: i64,
) -> Result<(), DbError> {
    if scores.is_empty() {
        return Ok(());
    }
    let document = serde_json::to_string(scores).map_err(|e| DbError::Encode(Box::new(e)))?;
    // (server id, score) pairs as rows `v (id, score)`.
    let pairs = match engine {
        Engine::Sqlite => "SELECT value->>0 AS id, value->>1 AS score FROM json_each($1)",
        Engine::Postgres => {
            "SELECT (value->>0)::bigint AS id, (value->>1)::double precision AS score
             FROM json_array_elements($1::json) AS e(value)"
        }
    };
    if engine == Engine::Postgres {
        // Lock the rows in id order first, as the batches that hand out
        // these servers do (db::schedule): an UPDATE locks them in the
        // order of its join, and two writers in different orders can
        // deadlock. (SQLite has one writer at a time.)
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH v AS ({pairs})
             SELECT s.id FROM servers s WHERE s.id IN (SELECT id FROM v) ORDER BY s.id FOR NO KEY UPDATE OF s"
        )))
        .bind(&document)
        .execute(&mut **tx)
        .await?;
    }
    // UPDATE ... FROM works on SQLite >= 3.33 and PostgreSQL.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH v AS ({pairs})
         UPDATE servers SET score = v.score, score_ts = $2 FROM v WHERE servers.id = v.id"
    )))
    .bind(&document)
    .bind(ts)
    .execute(&mut **tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO score_log (server_id, ts, score) SELECT v.id, $2, v.score FROM ({pairs}) AS v"
    )))
    .bind(&document)
    .bind(ts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// The bulk paths move numbers through JSON text: into SQLite every f64
    /// must arrive bit for bit, and scores read back as 17-digit text too.
    #[tokio::test]
    async fn floats_survive_json_both_ways_in_sqlite() {
        let dir = std::env::temp_dir().join(format!("timepool-json-floats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = Db::connect(&crate::control::db::default_sqlite_url(&dir))
            .await
            .expect("db");
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut values: Vec<f64> = vec![
            0.1 + 0.2,
            1.0 / 3.0,
            -67.1216741634237,
            15.70722472114124,
            5e-324,
            1e300,
        ];
        for _ in 0..3000 {
            let x: f64 = rng.random_range(-100.0..20.0);
            values.push(x);
            values.push(x * 1e-6);
        }
        let document = serde_json::to_string(&values).unwrap();
        // In: JSON text -> REAL, read back through the driver's binding.
        let mut wrong_in = 0;
        let stored: Vec<(f64,)> =
            sqlx::query_as("SELECT CAST(value AS REAL) FROM json_each($1) ORDER BY key")
                .bind(&document)
                .fetch_all(&db.pool)
                .await
                .expect("query");
        for (a, (b,)) in values.iter().zip(&stored) {
            if a.to_bits() != b.to_bits() {
                wrong_in += 1;
                if wrong_in < 5 {
                    eprintln!("in: {a:?} stored as {b:?}");
                }
            }
        }
        // Out: REAL -> text with 17 digits -> f64.
        let mut wrong_out = 0;
        let back: (String,) = sqlx::query_as(
            "SELECT json_group_array(printf('%!.17g', CAST(value AS REAL))) FROM json_each($1)",
        )
        .bind(&document)
        .fetch_one(&db.pool)
        .await
        .expect("query");
        let parsed: Vec<String> = serde_json::from_str(&back.0).expect("json");
        // SQLite's printf is exact with 17 digits for the magnitudes scores
        // live in (the caps keep them within -100..20), not at the extremes.
        for (a, b) in values.iter().zip(&parsed) {
            if !(1e-12..1e6).contains(&a.abs()) {
                continue;
            }
            let b: f64 = b.parse().expect("number");
            if a.to_bits() != b.to_bits() {
                wrong_out += 1;
                if wrong_out < 5 {
                    eprintln!("out: {a:?} came back as {b:?}");
                }
            }
        }
        assert_eq!((wrong_in, wrong_out), (0, 0), "of {}", values.len());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
