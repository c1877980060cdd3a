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
    for row in sqlx::query(
        "SELECT server_id, monitor_id, score, good_points, score_ts FROM server_scores
         ORDER BY server_id, monitor_id",
    )
    .fetch_all(&db.pool)
    .await
    .expect("pairs")
    {
        out.push_str(&format!(
            "p{}/{}={}/{}/{:?} ",
            row.try_get::<i64, _>("server_id").expect("server"),
            row.try_get::<i64, _>("monitor_id").expect("monitor"),
            row.try_get::<f64, _>("score").expect("score"),
            row.try_get::<i64, _>("good_points").expect("points"),
            row.try_get::<Option<i64>, _>("score_ts").expect("score_ts"),
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

/// One pass of the monitor selector, which pairs servers with monitors.
async fn select(db: &Db) -> timepool::control::db::pairs::PassReport {
    timepool::control::db::pairs::selector_pass(db, &Default::default(), now())
        .await
        .expect("selector pass")
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
        let (m2, token_v6) = monitor(&app.db, "m2", "active", Some("2001:db8:2:ff::9"), None).await;
        // Nothing is handed out before the selector pairs servers and monitors.
        assert_eq!(batch(&app, &token, 100).await, (None, vec![]));
        let report = select(&app.db).await;
        assert_eq!(report.added, 7, "{report:?}");
        let (id, mut servers) = batch(&app, &token, 100).await;
        assert!(id.is_some());
        servers.sort();
        assert_eq!(
            servers,
            vec!["192.0.2.10", "2001:db8:1::1", "2001:db8:2::1"],
            "m1's pairs: never its /24 nor its account's server"
        );
        // Candidates wait 60 s after any check of the server: m2 gets the
        // two m1 could not have (and never its own /48).
        let (id2, mut servers2) = batch(&app, &token_v6, 100).await;
        assert!(id2.is_some());
        servers2.sort();
        assert_eq!(
            servers2,
            vec!["198.51.100.7", "203.0.113.5"],
            "60 s between checks of a candidate"
        );
        let (id3, servers3) = batch(&app, &token, 100).await;
        assert_eq!((id3, servers3), (None, vec![]), "nothing due");
        // Later (moved back in time here), m2 gets the rest of its pairs;
        // its others are candidates, not due again for 45 minutes.
        sqlx::query("UPDATE servers SET last_issued_at = last_issued_at - 61")
            .execute(&app.db.pool)
            .await
            .expect("age");
        let (_, mut servers2) = batch(&app, &token_v6, 100).await;
        servers2.sort();
        assert_eq!(servers2, vec!["192.0.2.10", "2001:db8:1::1"]);
        // An active pair is due after 9 minutes, a testing one after 45.
        sqlx::query("UPDATE server_scores SET last_issued_at = last_issued_at - 541, status = 'active' WHERE monitor_id = $1 AND server_id IN (SELECT id FROM servers WHERE address = '198.51.100.7')")
            .bind(m2)
            .execute(&app.db.pool)
            .await
            .expect("active pair");
        sqlx::query("UPDATE server_scores SET last_issued_at = last_issued_at - 541, status = 'testing' WHERE monitor_id = $1 AND server_id IN (SELECT id FROM servers WHERE address = '203.0.113.5')")
            .bind(m2)
            .execute(&app.db.pool)
            .await
            .expect("testing pair");
        assert_eq!(batch(&app, &token_v6, 100).await.1, vec!["198.51.100.7"]);
        // "Check now": every pair of the server is due at once.
        let server_id: i64 = sqlx::query("SELECT id FROM servers WHERE address = '203.0.113.5'")
            .fetch_one(&app.db.pool).await.expect("server").try_get("id").expect("id");
        use timepool::control::db::pairs::{request_check, CheckRequest};
        assert_eq!(request_check(&app.db, monitor_owner, server_id, 60, now()).await.expect("check"), CheckRequest::Requested);
        assert_eq!(request_check(&app.db, monitor_owner, server_id, 60, now() + 2).await.expect("check"), CheckRequest::TooSoon, "once a minute");
        assert_eq!(batch(&app, &token_v6, 100).await.1, vec!["203.0.113.5"]);
        assert_eq!(batch(&app, &token_v6, 100).await.1, Vec::<String>::new(), "once");
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
        select(&app.db).await;
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
        select(&app.db).await;
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
        // The pairs: active for the active monitors, a candidate for the other.
        select(&app.db).await;
        sqlx::query("UPDATE server_scores SET status = 'active' WHERE monitor_id IN (SELECT id FROM monitors WHERE state = 'active')")
            .execute(&app.db.pool)
            .await
            .expect("active pairs");
        // Offsets 0, 50 ms, 5 s from the active pairs; DENY from the candidate.
        let results = [
            good("192.0.2.10", 0.0),
            good("192.0.2.10", 0.05),
            good("192.0.2.10", 5.0),
            json!({"server": "192.0.2.10", "ts": now(), "error": "kod:DENY"}),
        ];
        for (token, result) in tokens.iter().zip(results) {
            sqlx::query("UPDATE servers SET last_issued_at = NULL, check_requested_at = NULL")
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

/// A self-check report as the agent sends it.
fn self_check(ok: bool, offset: f64) -> String {
    json!({"ok": ok, "offset": offset, "max_offset": 0.01,
           "references": [{"server": "192.0.2.123", "offset": offset}]})
    .to_string()
}

#[tokio::test]
async fn a_monitor_whose_clock_is_off_gets_nothing_and_is_not_scored() {
    for_each_engine(false, |app| async move {
        let operator = account(&app.db, "op").await;
        server(&app.db, operator, "192.0.2.10").await;
        server(&app.db, operator, "192.0.2.20").await;
        let (monitor_id, token) = monitor(&app.db, "m1", "active", None, None).await;
        select(&app.db).await;
        let (Some(before_failure), _) = batch(&app, &token, 1).await else { panic!("no batch") };
        sqlx::query("UPDATE monitor_batches SET issued_at = issued_at - 10 WHERE id = $1")
            .bind(before_failure)
            .execute(&app.db.pool).await.expect("issued earlier");

        // Bad reports are refused with the field named.
        for (body, want) in [
            (json!({"ok": true, "max_offset": 0.01, "references": []}).to_string(), "references: 1..16"),
            (json!({"ok": true, "max_offset": 0.01, "references": [{"server": "x"}]}).to_string(), "an offset or an error"),
            (json!({"ok": true, "max_offset": 0.01, "references": [{"server": "x\n", "offset": 0.0}]}).to_string(), "references[0].server"),
            ("{".to_string(), "invalid self-check report"),
        ] {
            let (status, v) = call(&app, "POST", "/api/v1/monitor/self-check", Some(&token), Some(body.clone())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
            assert!(v["error"].as_str().unwrap_or("").contains(want), "{body}: {v}");
        }

        // 50 ms off: not ok. No batch for it, and no result scored.
        let (status, v) = call(&app, "POST", "/api/v1/monitor/self-check", Some(&token), Some(self_check(false, 0.05))).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let (id, servers) = batch(&app, &token, 10).await;
        assert_eq!((id, servers), (None, vec![]), "no batch while the clock is off");
        let state_before = db_state(&app.db).await;
        let (status, v) = submit(&app, &token, json!({"batch_id": before_failure, "results": [good("192.0.2.10", 0.0)]})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{v}");
        assert!(v["error"].as_str().unwrap_or("").contains("clock off"), "{v}");
        assert_eq!(db_state(&app.db).await, state_before, "a refused batch changes nothing");
        let row = sqlx::query("SELECT self_check_ok, self_check_detail FROM monitors WHERE id = $1")
            .bind(monitor_id).fetch_one(&app.db.pool).await.expect("monitor");
        assert_eq!(row.try_get::<Option<i64>, _>("self_check_ok").expect("ok"), Some(0));
        let detail: String = row.try_get("self_check_detail").expect("detail");
        assert!(detail.contains("+50.0 ms (limit 10.0 ms)"), "{detail}");

        // Back within 10 ms: batches again; the batch issued before the
        // failure stays refused, a new one is scored.
        let (status, _) = call(&app, "POST", "/api/v1/monitor/self-check", Some(&token), Some(self_check(true, 0.001))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, v) = submit(&app, &token, json!({"batch_id": before_failure, "results": [good("192.0.2.10", 0.0)]})).await;
        assert_eq!(status, StatusCode::CONFLICT, "issued before the failure: {v}");
        let (Some(after), servers) = batch(&app, &token, 10).await else { panic!("no batch after recovery") };
        let results: Vec<Value> = servers.iter().map(|s| good(s, 0.0)).collect();
        let (status, v) = submit(&app, &token, json!({"batch_id": after, "results": results})).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    })
    .await;
}

/// Pair states per server: address -> sorted (monitor name, status).
async fn pair_states(db: &Db) -> Vec<(String, String, String)> {
    sqlx::query(
        "SELECT s.address, m.name, ss.status FROM server_scores ss
         JOIN servers s ON s.id = ss.server_id JOIN monitors m ON m.id = ss.monitor_id
         ORDER BY s.address, m.name",
    )
    .fetch_all(&db.pool)
    .await
    .expect("pairs")
    .iter()
    .map(|r| {
        (
            r.try_get("address").expect("address"),
            r.try_get("name").expect("name"),
            r.try_get("status").expect("status"),
        )
    })
    .collect()
}

#[tokio::test]
async fn the_selector_prefers_measured_pairs_and_settles() {
    for_each_engine(false, |app| async move {
        let operator = account(&app.db, "op").await;
        server(&app.db, operator, "192.0.2.10").await;
        server(&app.db, operator, "192.0.2.20").await;
        for i in 0..5 {
            monitor(&app.db, &format!("m{i}"), "active", None, None).await;
        }
        let report = select(&app.db).await;
        assert_eq!(report.added, 10, "{report:?}");
        // m4 has been measured (healthy, 50 ms away); the others not yet:
        // the bootstrap (4 testing per pass) takes m4, and no unmeasured
        // pair passes for a healthy one.
        sqlx::query("UPDATE server_scores SET good_points = 3, avg_step = 0.5, avg_rtt = 0.05, score_ts = $1 WHERE monitor_id = (SELECT id FROM monitors WHERE name = 'm4')")
            .bind(now())
            .execute(&app.db.pool)
            .await
            .expect("measure m4");
        let report = select(&app.db).await;
        assert_eq!(report.promoted, 8, "{report:?}");
        let states = pair_states(&app.db).await;
        assert!(states.contains(&("192.0.2.10".into(), "m4".into(), "testing".into())), "{states:?}");
        // A day of good results: the passes promote step by step and then
        // change nothing (no pair moves back and forth).
        sqlx::query("UPDATE server_scores SET good_points = 100, avg_step = 0.9, avg_rtt = 0.02, score_ts = $1")
            .bind(now())
            .execute(&app.db.pool)
            .await
            .expect("results");
        let mut passes = 0;
        loop {
            let report = select(&app.db).await;
            passes += 1;
            if report.added + report.promoted + report.demoted + report.removed == 0 {
                break;
            }
            assert!(passes < 10, "still changing after 10 passes: {report:?}");
        }
        let states = pair_states(&app.db).await;
        assert_eq!(states.len(), 10);
        assert!(states.iter().all(|(_, _, status)| status == "active"), "{states:?}");
        let audit: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE actor = 'selector' AND action = 'monitor.pair'")
            .fetch_one(&app.db.pool).await.expect("audit").try_get("n").expect("n");
        assert_eq!(audit, 10 + 10 + 10, "a row per change: added, to testing, to active");
    })
    .await;
}

#[tokio::test]
async fn check_now_is_limited_per_account() {
    use timepool::control::db::pairs::{CHECKS_PER_ACCOUNT, CheckRequest, request_check};
    for_each_engine(false, |app| async move {
        let operator = account(&app.db, "op").await;
        let other = account(&app.db, "other").await;
        let mut ids = Vec::new();
        for i in 0..=CHECKS_PER_ACCOUNT {
            ids.push(server(&app.db, operator, &format!("192.0.2.{}", i + 1)).await);
        }
        let elsewhere = server(&app.db, other, "198.51.100.1").await;
        let t = now();
        for id in &ids[..CHECKS_PER_ACCOUNT as usize] {
            assert_eq!(
                request_check(&app.db, operator, *id, 60, t)
                    .await
                    .expect("check"),
                CheckRequest::Requested
            );
        }
        let last = ids[CHECKS_PER_ACCOUNT as usize];
        assert_eq!(
            request_check(&app.db, operator, last, 60, t)
                .await
                .expect("check"),
            CheckRequest::AccountLimit
        );
        assert_eq!(
            request_check(&app.db, other, last, 60, t)
                .await
                .expect("check"),
            CheckRequest::TooSoon,
            "not its server"
        );
        assert_eq!(
            request_check(&app.db, other, elsewhere, 60, t)
                .await
                .expect("check"),
            CheckRequest::Requested,
            "another account has its own"
        );
        assert_eq!(
            request_check(&app.db, operator, last, 60, t + 601)
                .await
                .expect("check"),
            CheckRequest::Requested,
            "10 minutes later"
        );
    })
    .await;
}

/// Two submissions of one batch at the same moment (an agent's retry
/// racing its first try): one is applied, the other refused, and the
/// results are logged once (issue 18: the race path of the ingest).
#[tokio::test]
async fn two_submissions_of_one_batch_at_once_apply_it_once() {
    for_each_engine(false, |app| async move {
        let operator = account(&app.db, "op").await;
        for i in 1..=20 {
            server(&app.db, operator, &format!("192.0.2.{i}")).await;
        }
        let (_, token) = monitor(&app.db, "m1", "active", None, None).await;
        select(&app.db).await;
        let (Some(batch_id), servers) = batch(&app, &token, 100).await else {
            panic!("no batch")
        };
        assert_eq!(servers.len(), 20);
        let results: Vec<Value> = servers.iter().map(|s| good(s, 0.001)).collect();
        let document = json!({"batch_id": batch_id, "results": results});
        let (first, second) = tokio::join!(
            submit(&app, &token, document.clone()),
            submit(&app, &token, document.clone())
        );
        let mut statuses = [first.0, second.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{first:?} {second:?}"
        );
        let logged: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM score_log WHERE monitor_id IS NOT NULL")
                .fetch_one(&app.db.pool)
                .await
                .expect("log")
                .try_get("n")
                .expect("n");
        assert_eq!(logged, 20, "each result logged once");
        let points: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM server_scores WHERE good_points = 1")
                .fetch_one(&app.db.pool)
                .await
                .expect("points")
                .try_get("n")
                .expect("n");
        assert_eq!(points, 20, "each pair counted once (one point each)");
    })
    .await;
}

/// Monitors asking for batches at the same moment: a candidate pair's
/// check waits until no monitor was handed the server for a minute, so no
/// server goes to two monitors as a candidate at once, however their
/// requests interleave (on PostgreSQL they run in parallel).
#[tokio::test]
async fn monitors_asking_at_once_never_share_a_candidate_server() {
    use timepool::control::db::schedule::{CheckSchedule, issue_batch, monitor_by_token};
    for_each_engine(false, |app| async move {
        let operator = account(&app.db, "op").await;
        for i in 1..=40 {
            server(&app.db, operator, &format!("192.0.2.{i}")).await;
        }
        let mut monitors = Vec::new();
        for i in 1..=6 {
            let (_, token) = monitor(&app.db, &format!("m{i}"), "active", None, None).await;
            let auth = monitor_by_token(&app.db, &token)
                .await
                .expect("monitor")
                .expect("known token");
            monitors.push(auth);
        }
        select(&app.db).await;
        // Every pair a candidate (the first pass may have made some test).
        sqlx::query("UPDATE server_scores SET status = 'candidate'")
            .execute(&app.db.pool)
            .await
            .expect("candidates");
        let at = now();
        let mut requests = tokio::task::JoinSet::new();
        for round in 0..3 {
            for monitor in &monitors {
                let db = app.db.clone();
                let monitor = monitor.clone();
                requests.spawn(async move {
                    let schedule = CheckSchedule::default();
                    let limit = 5 + round;
                    issue_batch(&db, &monitor, &schedule, limit, at).await
                });
            }
        }
        let mut handed = 0;
        while let Some(joined) = requests.join_next().await {
            let batch = joined.expect("task").expect("issue_batch");
            handed += batch.servers.len();
        }
        assert!(handed > 0, "some candidates were handed out");
        let shared: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT bs.server_id, COUNT(*) FROM monitor_batch_servers bs
             GROUP BY bs.server_id HAVING COUNT(*) > 1",
        )
        .fetch_all(&app.db.pool)
        .await
        .expect("shared servers");
        assert_eq!(
            shared,
            vec![],
            "servers handed to more than one monitor at once"
        );
        // Each handed server was marked, so the next minute's requests
        // skip them too.
        let marked: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM servers WHERE last_issued_at = $1")
                .bind(at)
                .fetch_one(&app.db.pool)
                .await
                .expect("marked");
        assert_eq!(marked as usize, handed);
    })
    .await;
}

/// A failure after the checks are written (here the servers' score
/// update, the last write of a batch, refused by a trigger) rolls back the
/// whole batch: no check, no pair score, no monitor state, the batch not
/// applied; the monitor's resend, once the failure is gone, applies it
/// once.
#[tokio::test]
async fn a_failure_after_the_checks_are_written_rolls_the_batch_back() {
    for_each_engine(false, |app| async move {
        let operator = account(&app.db, "op").await;
        server(&app.db, operator, "192.0.2.10").await;
        server(&app.db, operator, "192.0.2.20").await;
        let (_, token) = monitor(&app.db, "m1", "active", None, None).await;
        select(&app.db).await;
        let (Some(batch_id), servers) = batch(&app, &token, 10).await else {
            panic!("no batch")
        };
        assert_eq!(servers.len(), 2);
        let document = json!({"batch_id": batch_id, "results": [good("192.0.2.10", 0.001), good("192.0.2.20", 0.002)]});
        let (create, drop) = match app.db.engine {
            timepool::control::db::Engine::Sqlite => (
                vec!["CREATE TRIGGER fail_scores BEFORE UPDATE OF score ON servers
                      BEGIN SELECT RAISE(ABORT, 'injected failure'); END"],
                "DROP TRIGGER fail_scores",
            ),
            timepool::control::db::Engine::Postgres => (
                vec![
                    "CREATE FUNCTION fail_scores() RETURNS trigger AS $$
                     BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql",
                    "CREATE TRIGGER fail_scores BEFORE UPDATE OF score ON servers
                     FOR EACH ROW EXECUTE FUNCTION fail_scores()",
                ],
                "DROP TRIGGER fail_scores ON servers",
            ),
        };
        for sql in create {
            sqlx::query(sql).execute(&app.db.pool).await.expect("trigger");
        }
        let before = db_state(&app.db).await;
        let log_before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM score_log")
            .fetch_one(&app.db.pool)
            .await
            .expect("log");
        let (status, v) = submit(&app, &token, document.clone()).await;
        assert!(status.is_server_error(), "{status} {v}");
        assert!(
            !v["error"].as_str().unwrap_or("").contains("injected"),
            "the database's words stay in the log: {v}"
        );
        assert_eq!(db_state(&app.db).await, before, "nothing of the batch stays");
        sqlx::query(drop).execute(&app.db.pool).await.expect("drop trigger");

        // The agent sends it again: applied, once.
        let (status, v) = submit(&app, &token, document.clone()).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["results"], 2);
        let log_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM score_log")
            .fetch_one(&app.db.pool)
            .await
            .expect("log");
        // A check row per result and a server row per server.
        assert_eq!(log_after - log_before, 4);
        let (status, _) = submit(&app, &token, document).await;
        assert_eq!(status, StatusCode::CONFLICT, "applied once");
    })
    .await;
}

/// Every writer at once for a few seconds: monitors submitting batches,
/// operators saving their servers' forms, the zone builder publishing and
/// the selector passing over the pairs. On SQLite (one writer at a time)
/// they wait for each other: no "database is locked" reaches a monitor or
/// a person, nothing fails; on PostgreSQL the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_see_a_locked_database() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use timepool::control::db::schedule::CheckSchedule;
    use timepool::control::zone_builder::{BuildConfig, build_and_publish};
    use web_support::for_each_engine_configured;
    // Pairs due again a second after their check: batches keep coming.
    let schedule = |settings: &mut timepool::control::web::Settings| {
        settings.check_schedule = CheckSchedule {
            active_interval: 1,
            testing_interval: 1,
            min_gap: 0,
        };
    };
    for_each_engine_configured(schedule, |app| async move {
        let operator = account(&app.db, "op").await;
        let mut addresses = Vec::new();
        for i in 1..=30 {
            let address = format!("192.0.2.{i}");
            server(&app.db, operator, &address).await;
            addresses.push(address);
        }
        let mut monitors = Vec::new();
        for i in 1..=3 {
            monitors.push(monitor(&app.db, &format!("m{i}"), "active", None, None).await);
        }
        select(&app.db).await;
        let mut owners = Vec::new();
        for i in 1..=2 {
            let mut c = app.client();
            c.signup(&format!("owner{i}@example.net")).await;
            let id = c.add_server(&format!("8.8.{i}.8"), "de").await;
            owners.push((c, id));
        }
        let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let done = Arc::new(AtomicUsize::new(0));
        let app = Arc::new(app);
        let mut writers = tokio::task::JoinSet::new();
        for (_, token) in monitors {
            let (app, done) = (app.clone(), done.clone());
            writers.spawn(async move {
                while std::time::Instant::now() < until {
                    let (id, servers) = batch(&app, &token, 50).await;
                    let Some(id) = id else {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    };
                    let results: Vec<Value> = servers.iter().map(|s| good(s, 0.001)).collect();
                    let (status, body) =
                        submit(&app, &token, json!({"batch_id": id, "results": results})).await;
                    if status != StatusCode::OK {
                        return Err(format!("results: {status} {body}"));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            });
        }
        for (mut client, id) in owners {
            let done = done.clone();
            writers.spawn(async move {
                let mut speed = 1500;
                while std::time::Instant::now() < until {
                    speed = if speed == 1500 { 10000 } else { 1500 };
                    let page = format!("/manage/servers/{id}");
                    let r = client
                        .post(&page, &[("zone", "de"), ("netspeed", &speed.to_string())])
                        .await;
                    if !r.status.is_success() && !r.status.is_redirection() {
                        return Err(format!("form: {} {}", r.status, r.body));
                    }
                    if r.body.contains("locked") {
                        return Err(format!("form: {}", r.body));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            });
        }
        {
            let (app, done) = (app.clone(), done.clone());
            writers.spawn(async move {
                let config = BuildConfig::for_origin("pool.example.org", Vec::new(), None);
                while std::time::Instant::now() < until {
                    build_and_publish(&app.db, &config, &app.state.snapshot, now())
                        .await
                        .map_err(|e| format!("builder: {e}"))?;
                    select(&app.db).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            });
        }
        while let Some(joined) = writers.join_next().await {
            if let Err(error) = joined.expect("writer task") {
                panic!("{}: a writer failed: {error}", app.engine);
            }
        }
        eprintln!(
            "{}: {} writes at once in 3 s, none refused",
            app.engine,
            done.load(Ordering::Relaxed)
        );
        assert!(done.load(Ordering::Relaxed) > 0);
    })
    .await;
}
