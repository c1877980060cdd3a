//! The monitor ingest API on both engines: authentication, validation,
//! scheduling rules, and that a refused batch changes nothing.

mod web_support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::Row;
use timepool::control::db::Db;
use tower::ServiceExt;
use web_support::{TestApp, for_each_engine};

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (StatusCode, Value) {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body)),
        None => builder.body(Body::empty()),
    }
    .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

async fn account(db: &Db, name: &str) -> i64 {
    sqlx::query("INSERT INTO accounts (name, created_at) VALUES ($1, 0) RETURNING id")
        .bind(name)
        .fetch_one(&db.pool)
        .await
        .expect("account")
        .try_get("id")
        .expect("id")
}

async fn server(db: &Db, account_id: i64, address: &str) -> i64 {
    sqlx::query(
        "INSERT INTO servers (account_id, address, ip_version, netspeed, created_at)
         VALUES ($1, $2, $3, 1000, 0) RETURNING id",
    )
    .bind(account_id)
    .bind(address)
    .bind(if address.contains(':') { 6i64 } else { 4 })
    .fetch_one(&db.pool)
    .await
    .expect("server")
    .try_get("id")
    .expect("id")
}

/// A monitor in `state`; returns (id, token).
async fn monitor(
    db: &Db,
    name: &str,
    state: &str,
    ip: Option<&str>,
    account_id: Option<i64>,
) -> (i64, String) {
    let mut tx = db.begin().await.expect("tx");
    let (id, token) = timepool::control::db::monitors::create(&mut tx, name)
        .await
        .expect("monitor");
    tx.commit().await.expect("commit");
    sqlx::query("UPDATE monitors SET state = $1, ip = $2, account_id = $3 WHERE id = $4")
        .bind(state)
        .bind(ip)
        .bind(account_id)
        .bind(id)
        .execute(&db.pool)
        .await
        .expect("set monitor");
    (id, token)
}

/// Everything a batch may change, to compare before and after a refusal.
async fn db_state(db: &Db) -> String {
    let mut out = String::new();
    for sql in [
        "SELECT COUNT(*) AS n FROM score_log",
        "SELECT COUNT(*) AS n FROM server_scores",
        "SELECT COUNT(*) AS n FROM monitor_batches WHERE applied_at IS NOT NULL",
    ] {
        let n: i64 = sqlx::query(sql)
            .fetch_one(&db.pool)
            .await
            .expect("count")
            .try_get("n")
            .expect("n");
        out.push_str(&format!("{n} "));
    }
    for row in sqlx::query("SELECT id, score FROM servers ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .expect("servers")
    {
        let score: f64 = row.try_get("score").expect("score");
        out.push_str(&format!(
            "s{}={score} ",
            row.try_get::<i64, _>("id").expect("id")
        ));
    }
    for row in
        sqlx::query("SELECT id, state, healthy_streak, last_batch_id FROM monitors ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .expect("monitors")
    {
        let last: Option<i64> = row.try_get("last_batch_id").expect("last");
        out.push_str(&format!(
            "m{}={}/{}/{last:?} ",
            row.try_get::<i64, _>("id").expect("id"),
            row.try_get::<String, _>("state").expect("state"),
            row.try_get::<i64, _>("healthy_streak").expect("streak"),
        ));
    }
    out
}

fn now() -> i64 {
    timepool::control::db::now()
}

async fn batch(app: &TestApp, token: &str, limit: u32) -> (Option<i64>, Vec<String>) {
    let (status, body) = call(
        app,
        "GET",
        &format!("/api/v1/monitor/batch?limit={limit}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let servers = body["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| s.as_str().unwrap_or("").to_string())
        .collect();
    (body["batch_id"].as_i64(), servers)
}

async fn submit(app: &TestApp, token: &str, document: Value) -> (StatusCode, Value) {
    call(
        app,
        "POST",
        "/api/v1/monitor/results",
        Some(token),
        Some(document.to_string()),
    )
    .await
}

fn good(server: &str, offset: f64) -> Value {
    json!({"server": server, "ts": now(), "offset": offset, "rtt": 0.01, "stratum": 2, "leap": 0, "error": null})
}

#[tokio::test]
async fn tokens_are_checked() {
    for_each_engine(false, |app| async move {
        let (_, paused) = monitor(&app.db, "paused", "paused", None, None).await;
        let (_, deleted) = monitor(&app.db, "deleted", "deleted", None, None).await;
        let (_, fine) = monitor(&app.db, "fine", "candidate", None, None).await;
        for path in ["/api/v1/monitor/batch", "/api/v1/monitor/results"] {
            let method = if path.ends_with("batch") {
                "GET"
            } else {
                "POST"
            };
            let body = Some(json!({"batch_id": 1, "results": []}).to_string());
            let (status, v) = call(&app, method, path, None, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
            assert!(v["error"].as_str().unwrap_or("").contains("Bearer"), "{v}");
            let (status, v) = call(&app, method, path, Some("not-a-token"), body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
            assert_eq!(v["error"], "unknown monitor token");
            let (status, v) = call(&app, method, path, Some(&paused), body.clone()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
            assert!(v["error"].as_str().unwrap_or("").contains("paused"), "{v}");
            let (status, _) = call(&app, method, path, Some(&deleted), body.clone()).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
        let (status, v) = call(&app, "GET", "/api/v1/monitor/batch", Some(&fine), None).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["batch_id"], Value::Null, "no servers, no batch");
    })
    .await;
}

#[tokio::test]
async fn scheduling_rules() {
    for_each_engine(false, |app| async move {
        let operator = account(&app.db, "op").await;
        let monitor_owner = account(&app.db, "mon").await;
        server(&app.db, operator, "192.0.2.10").await;
        server(&app.db, operator, "198.51.100.7").await; // the monitor's /24
        server(&app.db, monitor_owner, "203.0.113.5").await; // the monitor's own account
        server(&app.db, operator, "2001:db8:1::1").await;
        server(&app.db, operator, "2001:db8:2::1").await; // the monitor's /48
        let (_, token) = monitor(
            &app.db,
            "m1",
            "active",
            Some("198.51.100.200"),
            Some(monitor_owner),
        )
        .await;
        let (_, token_v6) = monitor(&app.db, "m2", "active", Some("2001:db8:2:ff::9"), None).await;
        let (id, mut servers) = batch(&app, &token, 100).await;
        assert!(id.is_some());
        servers.sort();
        assert_eq!(
            servers,
            vec!["192.0.2.10", "2001:db8:1::1", "2001:db8:2::1"]
        );
        // Handed out seconds ago: not again within 60 s, to anyone; m2 gets
        // the two m1 could not have (and never its own /48).
        let (id2, mut servers2) = batch(&app, &token_v6, 100).await;
        assert!(id2.is_some());
        servers2.sort();
        assert_eq!(
            servers2,
            vec!["198.51.100.7", "203.0.113.5"],
            "60 s between checks"
        );
        let (id3, servers3) = batch(&app, &token, 100).await;
        assert_eq!((id3, servers3), (None, vec![]), "nothing left within 60 s");
        // Later (moved back in time here), m2 gets them, but not its /48.
        sqlx::query("UPDATE servers SET last_issued_at = last_issued_at - 61")
            .execute(&app.db.pool)
            .await
            .expect("age");
        let (_, mut servers2) = batch(&app, &token_v6, 100).await;
        servers2.sort();
        assert_eq!(
            servers2,
            vec!["192.0.2.10", "198.51.100.7", "2001:db8:1::1", "203.0.113.5"]
        );
        let (status, v) = call(
            &app,
            "GET",
            "/api/v1/monitor/batch?limit=0",
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    })
    .await;
}

#[tokio::test]
async fn results_are_validated_and_nothing_changes() {
    for_each_engine(false, |app| async move {
        let operator = account(&app.db, "op").await;
        server(&app.db, operator, "192.0.2.10").await;
        let (_, token) = monitor(&app.db, "m1", "active", None, None).await;
        let (Some(batch_id), _) = batch(&app, &token, 100).await else { panic!("no batch") };
        let before = db_state(&app.db).await;
        let ts = now();
        let cases: Vec<(String, &str)> = vec![
            ("{".to_string(), "invalid results document"),
            (json!({"batch_id": batch_id}).to_string(), "missing field `results`"),
            (json!({"batch_id": batch_id, "results": [], "extra": 1}).to_string(), "unknown field `extra`"),
            (json!({"batch_id": batch_id, "results": [{"server": "nope", "ts": ts, "error": "timeout"}]}).to_string(), "results[0].server: \"nope\" is not an IP address"),
            (json!({"batch_id": batch_id, "results": [{"server": "192.0.2.10", "ts": ts, "rtt": 0.1, "stratum": 2, "leap": 0}]}).to_string(), "results[0].offset: required when error is null"),
            (json!({"batch_id": batch_id, "results": [good("192.0.2.10", 0.0), good("192.0.2.10", 0.0)]}).to_string(), "results[1].server: 192.0.2.10 appears more than once"),
            (json!({"batch_id": batch_id, "results": [{"server": "192.0.2.10", "ts": ts, "offset": 0.0, "rtt": 0.1, "stratum": 12, "leap": 0}]}).to_string(), "results[0].stratum: 12 is above 10"),
            (json!({"batch_id": batch_id, "results": [{"server": "192.0.2.10", "ts": ts, "offset": 0.0, "rtt": -1.0, "stratum": 2, "leap": 0}]}).to_string(), "results[0].rtt: must be 0..60"),
            (json!({"batch_id": batch_id, "results": [{"server": "192.0.2.10", "ts": ts, "offset": 0.0, "rtt": 0.1, "stratum": 2, "leap": 7}]}).to_string(), "results[0].leap: must be 0..3"),
            (json!({"batch_id": batch_id, "results": [{"server": "192.0.2.10", "ts": ts, "error": ""}]}).to_string(), "results[0].error: must not be empty"),
            (json!({"batch_id": batch_id, "results": [{"server": "192.0.2.10", "ts": ts + 3600, "error": "timeout"}]}).to_string(), "in the future"),
            (json!({"batch_id": batch_id + 1000, "results": []}).to_string(), "was not issued to this monitor"),
        ];
        for (body, want) in cases {
            let (status, v) = call(&app, "POST", "/api/v1/monitor/results", Some(&token), Some(body.clone())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
            let message = v["error"].as_str().unwrap_or("");
            assert!(message.contains(want), "{body}: {message:?} should contain {want:?}");
            assert_eq!(db_state(&app.db).await, before, "{body} changed the database");
        }
    })
    .await;
}

#[tokio::test]
async fn a_batch_is_scored_once_and_refusals_change_nothing() {
    for_each_engine(false, |app| async move {
        let operator = account(&app.db, "op").await;
        let a = server(&app.db, operator, "192.0.2.10").await;
        server(&app.db, operator, "192.0.2.20").await;
        server(&app.db, operator, "192.0.2.30").await;
        let (monitor_id, token) = monitor(&app.db, "m1", "active", None, None).await;
        let (Some(first), servers) = batch(&app, &token, 1).await else { panic!("no batch") };
        assert_eq!(servers, vec!["192.0.2.10"]);
        let (Some(second), servers) = batch(&app, &token, 1).await else { panic!("no batch") };
        assert_eq!(servers, vec!["192.0.2.20"]);

        // A result for a server of another batch: refused, nothing changed.
        let before = db_state(&app.db).await;
        let (status, v) = submit(&app, &token, json!({"batch_id": first, "results": [good("192.0.2.10", 0.0), good("192.0.2.20", 0.0)]})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap_or("").contains("192.0.2.20 was not in this batch"), "{v}");
        assert_eq!(db_state(&app.db).await, before);

        // The second batch, applied: a +200 ms result.
        let (status, v) = submit(&app, &token, json!({"batch_id": second, "results": [good("192.0.2.20", 0.2)]})).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["results"], 1);
        let after_second = db_state(&app.db).await;

        // Replayed: refused, nothing changed.
        let (status, v) = submit(&app, &token, json!({"batch_id": second, "results": [good("192.0.2.20", 0.2)]})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{v}");
        assert!(v["error"].as_str().unwrap_or("").contains("applied already"), "{v}");
        assert_eq!(db_state(&app.db).await, after_second);

        // The first batch is now older than one applied: stale, refused.
        let (status, v) = submit(&app, &token, json!({"batch_id": first, "results": [good("192.0.2.10", 0.0)]})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{v}");
        assert!(v["error"].as_str().unwrap_or("").contains("older than batch"), "{v}");
        assert_eq!(db_state(&app.db).await, after_second);

        // Another monitor's token cannot submit this monitor's batch.
        let (_, other) = monitor(&app.db, "m2", "active", None, None).await;
        let (status, _) = submit(&app, &other, json!({"batch_id": second, "results": []})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // Scores: the pair got the step of 200 ms from 0; the server its
        // median (one active monitor); a log row each.
        let step = -2.308 * 0.2 + 0.731;
        let row = sqlx::query("SELECT s.score AS server_score, ss.score AS pair_score FROM servers s JOIN server_scores ss ON ss.server_id = s.id WHERE s.address = '192.0.2.20' AND ss.monitor_id = $1")
            .bind(monitor_id)
            .fetch_one(&app.db.pool)
            .await
            .expect("scores");
        let pair: f64 = row.try_get("pair_score").expect("pair");
        let server_score: f64 = row.try_get("server_score").expect("server");
        assert!((pair - step).abs() < 1e-9, "{pair}");
        assert!((server_score - step).abs() < 1e-9, "{server_score}");
        let (status, v) = call(&app, "GET", "/api/v1/servers/192.0.2.20/scores", None, None).await;
        assert_eq!(status, StatusCode::OK);
        let history = v["history"].as_array().expect("history");
        assert_eq!(history.len(), 2, "a check row and a server row: {v}");
        assert!(history.iter().any(|h| h["monitor_name"] == "m1" && (h["step"].as_f64().unwrap_or(0.0) - step).abs() < 1e-9));
        // Untouched: the server of the refused batch.
        let untouched: f64 = sqlx::query("SELECT score FROM servers WHERE id = $1").bind(a).fetch_one(&app.db.pool).await.expect("a").try_get("score").expect("score");
        assert_eq!(untouched, 0.0);
    })
    .await;
}

#[tokio::test]
async fn server_score_is_the_median_of_active_monitors() {
    for_each_engine(false, |app| async move {
        let operator = account(&app.db, "op").await;
        server(&app.db, operator, "192.0.2.10").await;
        let mut tokens = Vec::new();
        for (i, state) in ["active", "active", "active", "candidate"]
            .iter()
            .enumerate()
        {
            tokens.push(
                monitor(&app.db, &format!("m{i}"), state, None, None)
                    .await
                    .1,
            );
        }
        // Offsets 0, 50 ms, 5 s from the active monitors; DENY from the candidate.
        let results = [
            good("192.0.2.10", 0.0),
            good("192.0.2.10", 0.05),
            good("192.0.2.10", 5.0),
            json!({"server": "192.0.2.10", "ts": now(), "error": "kod:DENY"}),
        ];
        for (token, result) in tokens.iter().zip(results) {
            sqlx::query("UPDATE servers SET last_issued_at = NULL")
                .execute(&app.db.pool)
                .await
                .expect("reset");
            let (Some(id), _) = batch(&app, token, 10).await else {
                panic!("no batch")
            };
            let (status, v) =
                submit(&app, token, json!({"batch_id": id, "results": [result]})).await;
            assert_eq!(status, StatusCode::OK, "{v}");
        }
        let score: f64 = sqlx::query("SELECT score FROM servers")
            .fetch_one(&app.db.pool)
            .await
            .expect("s")
            .try_get("score")
            .expect("score");
        // Active scores 1, -6.667*0.05+1.167 = 0.83365, -4: median 0.83365.
        assert!((score - (-6.667 * 0.05 + 1.167)).abs() < 1e-9, "{score}");
    })
    .await;
}
