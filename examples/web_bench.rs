//! Load test for `timepool web` (issue 5, "Speed"); run by scripts/bench-web.sh.
//!
//!   web_bench seed DATABASE_URL            5 000 servers, a year of history for 8.0.0.1
//!   web_bench load URL RATE SECONDS        open-loop GETs at RATE/s; prints req/s and latencies
//!
//! The load generator is open-loop: request i is due at start + i/RATE and its
//! latency counts from that moment, so a slow server cannot hide its queueing
//! by slowing the client down (no coordinated omission).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use timepool::control::db::scores::{self, Check};
use timepool::control::db::{Db, monitors, servers};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[path = "support/http.rs"]
mod http;
use http::{BoxError, get_request, read_response, split_url};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("seed") => seed(args.get(2).ok_or("seed DATABASE_URL")?).await,
        Some("load") => {
            let url = args.get(2).ok_or("load URL RATE SECONDS")?;
            let rate: u64 = args.get(3).ok_or("RATE")?.parse()?;
            let secs: u64 = args.get(4).ok_or("SECONDS")?.parse()?;
            load(url, rate, secs).await
        }
        _ => Err("usage: web_bench seed DATABASE_URL | load URL RATE SECONDS".into()),
    }
}

const COUNTRIES: &[&str] = &[
    "de", "us", "fr", "uk", "nl", "jp", "br", "au", "za", "ca", "se", "in",
];

async fn seed(url: &str) -> Result<(), BoxError> {
    let db = Db::connect(url).await?;
    let started = Instant::now();
    let hash = timepool::control::web::session::hash_password("bench password 1")
        .map_err(|e| format!("{e:?}"))?;
    let mut tx = db.begin().await?;
    let owner = timepool::control::db::accounts::create_account_with_user(
        &mut tx,
        "bench@example.net",
        &hash,
        "operator",
    )
    .await?;
    let mut ids = Vec::new();
    for i in 0..5_000u32 {
        // 8.0.0.1 .. public v4 space; every 5th is IPv6.
        let (address, version) = if i % 5 == 4 {
            (format!("2a01:4f8::{:x}", i + 1), 6)
        } else {
            (
                format!("8.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, (i & 255) + 1),
                4,
            )
        };
        let new = servers::NewServer {
            account_id: owner.account_id,
            address: &address,
            ip_version: version,
            hostname: None,
            geo_zone: None,
            zone_override: Some(COUNTRIES[i as usize % COUNTRIES.len()]),
            netspeed: 100_000,
        };
        ids.push(servers::insert(&mut tx, &new).await?);
    }
    let ts = timepool::control::db::now();
    for (n, id) in ids.iter().enumerate() {
        // Most servers are good; a few are below the DNS threshold.
        let score = if n % 10 == 0 { 2.0 } else { 18.0 };
        sqlx::query("UPDATE servers SET score = $1, score_ts = $2 WHERE id = $3")
            .bind(score)
            .bind(ts)
            .bind(*id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    eprintln!("5000 servers in {:?}", started.elapsed());

    // A year of history for the first server: 4 monitors every 15 minutes.
    let first = ids[0];
    let mut tx = db.begin().await?;
    let mut monitor_ids = Vec::new();
    for m in 0..4 {
        monitor_ids.push(
            monitors::create(&mut tx, &format!("bench-mon-{m}"))
                .await?
                .0,
        );
    }
    let start = ts - 365 * 86_400;
    let mut pair_scores = [0.0f64; 4];
    let mut rows = 0u64;
    for slot in 0..(365 * 96) as i64 {
        let when = start + slot * 900;
        for (m, monitor_id) in monitor_ids.iter().enumerate() {
            let offset = ((slot + m as i64) as f64 / 13.0).sin() * 0.003;
            pair_scores[m] = pair_scores[m] * 0.95 + 1.0;
            scores::record_check(
                &mut tx,
                &Check {
                    server_id: first,
                    monitor_id: *monitor_id,
                    ts: when + m as i64 * 30,
                    offset: Some(offset),
                    rtt: Some(0.02),
                    stratum: Some(2),
                    leap: Some(0),
                    error: None,
                    step: 1.0,
                    score: pair_scores[m],
                    good_point: true,
                },
            )
            .await?;
            rows += 1;
        }
        scores::set_server_score(&mut tx, first, pair_scores[0], when + 120).await?;
        rows += 1;
    }
    tx.commit().await?;
    eprintln!(
        "{rows} score log rows for 8.0.0.1 in {:?} total",
        started.elapsed()
    );
    db.pool.close().await;
    Ok(())
}

async fn load(url: &str, rate: u64, secs: u64) -> Result<(), BoxError> {
    let (host, path) = split_url(url)?;
    let total = rate * secs;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(100);
    let request = get_request(&host, &path);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (host, request, next) = (host.clone(), request.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut stream = TcpStream::connect(&host).await.ok();
            let mut buf = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                tokio::time::sleep_until(due.into()).await;
                if stream.is_none() {
                    stream = TcpStream::connect(&host).await.ok();
                }
                let ok = match stream.as_mut() {
                    Some(s) => match s.write_all(request.as_bytes()).await {
                        Ok(()) => matches!(read_response(s, &mut buf).await, Ok((200, _))),
                        Err(_) => false,
                    },
                    None => false,
                };
                if ok {
                    latencies.push(due.elapsed());
                } else {
                    errors += 1;
                    stream = None;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (lat, err) = task.await?;
        all.extend(lat);
        errors += err;
    }
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let idx = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[idx].as_secs_f64() * 1000.0
    };
    println!(
        "{path}: {} ok, {errors} errors, {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
