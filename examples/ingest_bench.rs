//! Ingest benchmark: 10 000 servers x 10 monitors of results, applied in
//! batches of 100 through `db::ingest::apply_batch` (the API's transaction:
//! score log rows, pair scores, monitor state, server scores).
//!
//! cargo run --release --example ingest_bench [DATABASE_URL]
//! (default: SQLite in a temp dir; a postgres:// URL must be an empty database)

use std::time::Instant;

use sqlx::Row;
use timepool::control::db::Db;
use timepool::control::db::ingest::apply_batch;
use timepool::shared::monitor_protocol::ResultIn;

const SERVERS: usize = 10_000;
const MONITORS: usize = 10;
const BATCH: usize = 100;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = match std::env::args().nth(1) {
        Some(url) => url,
        None => {
            let dir =
                std::env::temp_dir().join(format!("timepool-ingest-bench-{}", std::process::id()));
            format!("sqlite://{}/bench.db?mode=rwc", dir.display())
        }
    };
    let db = Db::connect(&url).await?;
    let now = timepool::control::db::now();

    // Servers 10.x.y.z (made up; the database does not check), one account.
    let mut tx = db.begin().await?;
    let account: i64 =
        sqlx::query("INSERT INTO accounts (name, created_at) VALUES ('bench', 0) RETURNING id")
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
    let addresses: Vec<String> = (0..SERVERS)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    for chunk in addresses.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO servers (account_id, address, ip_version, netspeed, created_at) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("($1, ${}, 4, 1000, 0)", i + 2));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account);
        for a in chunk {
            q = q.bind(a.as_str());
        }
        q.execute(&mut *tx).await?;
    }
    let ids: Vec<i64> = sqlx::query("SELECT id FROM servers ORDER BY id")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
    let mut monitors = Vec::new();
    for m in 0..MONITORS {
        let (id, _) =
            timepool::control::db::monitors::create(&mut tx, &format!("bench-{m}")).await?;
        sqlx::query("UPDATE monitors SET state = 'active' WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        monitors.push(id);
    }
    // The pairs, as the selector would have made them (every monitor
    // active for every server), and the batches, as the scheduler would
    // have issued them.
    sqlx::query(
        "INSERT INTO server_scores (server_id, monitor_id, status, status_since)
         SELECT s.id, m.id, 'active', 0 FROM servers s CROSS JOIN monitors m",
    )
    .execute(&mut *tx)
    .await?;
    let mut batches: Vec<(i64, i64, usize)> = Vec::new(); // (monitor, batch, first server index)
    for &monitor in &monitors {
        for start in (0..SERVERS).step_by(BATCH) {
            let batch: i64 = sqlx::query(
                "INSERT INTO monitor_batches (monitor_id, issued_at) VALUES ($1, $2) RETURNING id",
            )
            .bind(monitor)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
            let mut sql =
                String::from("INSERT INTO monitor_batch_servers (batch_id, server_id) VALUES ");
            for i in 0..BATCH {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("($1, ${})", i + 2));
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(batch);
            for id in &ids[start..start + BATCH] {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
            batches.push((monitor, batch, start));
        }
    }
    tx.commit().await?;
    // Apply in batch order per monitor (older first, as the API requires),
    // the monitors interleaved as they would arrive.
    batches.sort_by_key(|(monitor, batch, _)| (*batch, *monitor));

    let started = Instant::now();
    for (i, (monitor, batch, start)) in batches.iter().enumerate() {
        let results: Vec<ResultIn> = (0..BATCH)
            .map(|k| {
                let n = (i * BATCH + k) as f64;
                ResultIn {
                    server: addresses[start + k].clone(),
                    ts: now,
                    offset: Some(((n * 0.37).sin()) * 0.05),
                    rtt: Some(0.02),
                    stratum: Some(2),
                    leap: Some(0),
                    error: if k % 50 == 0 {
                        Some("timeout".to_string())
                    } else {
                        None
                    },
                }
            })
            .collect();
        apply_batch(&db, *monitor, *batch, &results, now).await?;
    }
    let elapsed = started.elapsed();
    let total = batches.len() * BATCH;
    let log_rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM score_log")
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?;
    let pairs: i64 = sqlx::query("SELECT COUNT(*) AS n FROM server_scores")
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?;
    println!(
        "{:?}: {total} results in {} batches of {BATCH}: {:.2} s, {:.0} results/s ({log_rows} score log rows, {pairs} pair scores)",
        db.engine,
        batches.len(),
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    db.pool.close().await;
    Ok(())
}
