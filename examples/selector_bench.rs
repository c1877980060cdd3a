//! Monitor selector benchmark (issue 15): 10 000 servers, 300 monitors on 60
//! accounts in realistic networks (pairs of monitors sharing a /20, servers
//! of the monitors' own accounts, a few in a monitor's /24). Prints the time
//! of a full selector pass (`db::pairs::selector_pass`) on a new pool and in
//! the steady state, the pairs per server and the checks per hour they
//! schedule, and a pass with ingest running beside it at the pool's rate.
//!
//! cargo run --release --example selector_bench [DATABASE_URL]
//! (default: SQLite in a temp dir; a postgres:// URL must be an empty database)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::Row;
use timepool::control::db::Db;
use timepool::control::db::ingest::apply_batch;
use timepool::control::db::pairs::{PassReport, selector_pass};
use timepool::control::db::schedule::CheckSchedule;
use timepool::control::monitor_selector::SelectorRules;
use timepool::shared::monitor_protocol::ResultIn;

const SERVERS: usize = 10_000;
const MONITORS: usize = 300;
const MONITOR_ACCOUNTS: usize = 60;
const BATCH: usize = 100;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = match std::env::args().nth(1) {
        Some(url) => url,
        None => {
            let dir = std::env::temp_dir()
                .join(format!("timepool-selector-bench-{}", std::process::id()));
            format!("sqlite://{}/bench.db?mode=rwc", dir.display())
        }
    };
    let db = Db::connect(&url).await?;
    let now = timepool::control::db::now();
    let rules = SelectorRules::default();
    let addresses = populate(&db).await?;
    println!(
        "{:?}: {SERVERS} servers, {MONITORS} monitors on {MONITOR_ACCOUNTS} accounts",
        db.engine
    );

    let started = Instant::now();
    let report = selector_pass(&db, &rules, now).await?;
    println!(
        "first pass (a new pool): {:.2} s, {} pairs added",
        started.elapsed().as_secs_f64(),
        report.added
    );
    // A day of results, made up: every pair has points, a healthy mean
    // step and a round trip that depends on the pair.
    sqlx::query(
        "UPDATE server_scores SET good_points = 100, avg_step = 0.8,
            avg_rtt = ((server_id * 31 + monitor_id * 17) % 200) / 1000.0 + 0.005,
            score = 15, score_ts = $1, last_issued_at = $1",
    )
    .bind(now)
    .execute(&db.pool)
    .await?;
    for pass in 2..=12 {
        let started = Instant::now();
        let report = selector_pass(&db, &rules, now + pass).await?;
        let changes = report.added + report.promoted + report.demoted + report.removed;
        println!(
            "pass {pass}: {:.2} s over {} pairs, {changes} changes ({} added, {} promoted, {} demoted, {} removed)",
            started.elapsed().as_secs_f64(),
            report.pairs,
            report.added,
            report.promoted,
            report.demoted,
            report.removed
        );
        if changes == 0 {
            break;
        }
    }
    let (active, testing, candidate) = pair_counts(&db).await?;
    let schedule = CheckSchedule::default();
    let per_hour = |n: i64, interval: i64| n as f64 * 3600.0 / interval as f64;
    let scheduled =
        per_hour(active, schedule.active_interval) + per_hour(testing, schedule.testing_interval);
    let candidates_at_most = per_hour(candidate, schedule.testing_interval);
    println!(
        "pairs per server: {:.1} active, {:.1} testing, {:.1} candidates ({:.1} in all, of {MONITORS} monitors)",
        active as f64 / SERVERS as f64,
        testing as f64 / SERVERS as f64,
        candidate as f64 / SERVERS as f64,
        (active + testing + candidate) as f64 / SERVERS as f64
    );
    println!(
        "checks scheduled per hour: {scheduled:.0} by active and testing pairs ({:.0}/s), at most {candidates_at_most:.0} more by candidates",
        scheduled / 3600.0
    );

    // Ingest beside a pass, at the pool's rate (the checks per hour above).
    let rate = scheduled / 3600.0;
    let stop = Arc::new(AtomicBool::new(false));
    let ingest = tokio::spawn(ingest_at(db.clone(), addresses.clone(), rate, stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut passes: Vec<(f64, PassReport)> = Vec::new();
    for pass in 0..3 {
        let started = Instant::now();
        let report = selector_pass(&db, &rules, now + 100 + pass).await?;
        passes.push((started.elapsed().as_secs_f64(), report));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (results, seconds, mut latencies) = ingest.await??;
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize] * 1000.0;
    for (elapsed, report) in &passes {
        println!(
            "pass with ingest beside it: {elapsed:.2} s ({} changes)",
            report.added + report.promoted + report.demoted + report.removed
        );
    }
    println!(
        "ingest beside it: {results} results in {seconds:.1} s ({:.0}/s, target {rate:.0}/s), batch of {BATCH} applied in p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        results as f64 / seconds,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    db.pool.close().await;
    Ok(())
}

/// Accounts, monitors and servers; returns the servers' addresses by id
/// order.
async fn populate(db: &Db) -> Result<Vec<(i64, String)>, BoxError> {
    let mut tx = db.begin().await?;
    for a in 0..MONITOR_ACCOUNTS + 200 {
        sqlx::query("INSERT INTO accounts (name, created_at) VALUES ($1, 0)")
            .bind(format!("bench-{a}"))
            .execute(&mut *tx)
            .await?;
    }
    let accounts: Vec<i64> = sqlx::query("SELECT id FROM accounts ORDER BY id")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
    // Monitors i and i + 150 share a /20 (x.y.0.5 and x.y.4.5); 270
    // active, 20 testing, 10 pending; five per account.
    for i in 0..MONITORS {
        let (id, _) =
            timepool::control::db::monitors::create(&mut tx, &format!("bench-{i}")).await?;
        let state = match i {
            0..270 => "active",
            270..290 => "testing",
            _ => "candidate",
        };
        let ip = format!("11.{}.{}.5", i % 150, (i / 150) * 4);
        sqlx::query("UPDATE monitors SET state = $1, ip = $2, account_id = $3 WHERE id = $4")
            .bind(state)
            .bind(ip)
            .bind(accounts[i % MONITOR_ACCOUNTS])
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    // Servers: mostly 10.x.y.z on the other accounts; every 50th on a
    // monitor's account, every 100th in a monitor's /24.
    let mut rows = Vec::with_capacity(SERVERS);
    for i in 0..SERVERS {
        let address = if i % 100 == 0 {
            format!("11.{}.0.{}", (i / 100) % 150, 100 + (i / 100) % 100)
        } else {
            format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)
        };
        let account = if i % 50 == 0 {
            accounts[i % MONITOR_ACCOUNTS]
        } else {
            accounts[MONITOR_ACCOUNTS + i % 200]
        };
        rows.push((account, address));
    }
    for chunk in rows.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO servers (account_id, address, ip_version, netspeed, created_at) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("(${}, ${}, 4, 1000, 0)", 2 * i + 1, 2 * i + 2));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (account, address) in chunk {
            q = q.bind(*account).bind(address.as_str());
        }
        q.execute(&mut *tx).await?;
    }
    let servers = sqlx::query("SELECT id, address FROM servers ORDER BY id")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("address")?)))
        .collect::<Result<Vec<(i64, String)>, sqlx::Error>>()?;
    tx.commit().await?;
    Ok(servers)
}

async fn pair_counts(db: &Db) -> Result<(i64, i64, i64), BoxError> {
    let mut counts = (0, 0, 0);
    for row in sqlx::query("SELECT status, COUNT(*) AS n FROM server_scores GROUP BY status")
        .fetch_all(&db.pool)
        .await?
    {
        let status: String = row.try_get("status")?;
        let n: i64 = row.try_get("n")?;
        match status.as_str() {
            "active" => counts.0 = n,
            "testing" => counts.1 = n,
            "candidate" => counts.2 = n,
            _ => {}
        }
    }
    Ok(counts)
}

/// Applies batches of `BATCH` results of active pairs at `rate` results/s
/// (the API's transaction) until `stop`; returns the results applied, the
/// seconds taken and each batch's apply time.
async fn ingest_at(
    db: Db,
    addresses: Vec<(i64, String)>,
    rate: f64,
    stop: Arc<AtomicBool>,
) -> Result<(usize, f64, Vec<f64>), BoxError> {
    let pairs: Vec<(i64, i64)> = sqlx::query(
        "SELECT monitor_id, server_id FROM server_scores WHERE status = 'active'
         ORDER BY monitor_id, server_id",
    )
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("monitor_id")?, r.try_get("server_id")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let address_of = |id: i64| {
        addresses
            .binary_search_by_key(&id, |(i, _)| *i)
            .map(|k| addresses[k].1.clone())
            .unwrap_or_default()
    };
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut results = 0usize;
    let mut cursor = 0usize;
    while !stop.load(Ordering::Relaxed) {
        // A batch: the next BATCH active pairs of one monitor.
        let monitor = pairs[cursor % pairs.len()].0;
        let chunk: Vec<i64> = pairs
            .iter()
            .cycle()
            .skip(cursor % pairs.len())
            .take_while(|(m, _)| *m == monitor)
            .take(BATCH)
            .map(|(_, s)| *s)
            .collect();
        cursor += chunk.len().max(1);
        let now = timepool::control::db::now();
        let batch: i64 = sqlx::query(
            "INSERT INTO monitor_batches (monitor_id, issued_at) VALUES ($1, $2) RETURNING id",
        )
        .bind(monitor)
        .bind(now)
        .fetch_one(&db.pool)
        .await?
        .try_get("id")?;
        for server in &chunk {
            sqlx::query("INSERT INTO monitor_batch_servers (batch_id, server_id) VALUES ($1, $2)")
                .bind(batch)
                .bind(*server)
                .execute(&db.pool)
                .await?;
        }
        let batch_results: Vec<ResultIn> = chunk
            .iter()
            .map(|server| ResultIn {
                server: address_of(*server),
                ts: now,
                offset: Some(0.001),
                rtt: Some(0.02),
                stratum: Some(2),
                leap: Some(0),
                error: None,
            })
            .collect();
        let applying = Instant::now();
        apply_batch(&db, monitor, batch, &batch_results, now).await?;
        latencies.push(applying.elapsed().as_secs_f64());
        results += batch_results.len();
        // Keep to the rate.
        let due = Duration::from_secs_f64(results as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    Ok((results, started.elapsed().as_secs_f64(), latencies))
}
