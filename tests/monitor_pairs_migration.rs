//! Migration 10 (issue 15) moves today's monitors and scores over without
//! losing history: every (server, monitor) score becomes a pair in its
//! monitor's state, with its score, time and last check; the log is
//! untouched; a deleted monitor's pairs go; and the first selector pass
//! keeps what the history earned.

mod web_support;

use sqlx::Row;
use timepool::control::db::Db;

#[tokio::test]
async fn todays_scores_become_pairs_in_their_monitors_state() {
    for (engine, url) in web_support::database_urls().await {
        eprintln!("--- engine: {engine}");
        let old = Db::connect_at_version(&url, 9).await.expect("schema 9");
        let exec = |sql: &'static str| {
            let old = old.clone();
            async move {
                sqlx::query(sql)
                    .execute(&old.pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        };
        exec("INSERT INTO accounts (id, name, created_at) VALUES (1, 'op', 0)").await;
        exec("INSERT INTO servers (id, account_id, address, ip_version, netspeed, created_at, score, score_ts) VALUES (1, 1, '192.0.2.10', 4, 1000, 0, 12.5, 1000)").await;
        for (id, state) in [
            (1, "active"),
            (2, "testing"),
            (3, "candidate"),
            (4, "deleted"),
            (5, "paused"),
        ] {
            sqlx::query("INSERT INTO monitors (id, name, token_hash, state, created_at) VALUES ($1, $2, $3, $4, 0)")
                .bind(id as i64)
                .bind(format!("m{id}"))
                .bind(format!("hash{id}"))
                .bind(state)
                .execute(&old.pool)
                .await
                .expect("monitor");
            sqlx::query("INSERT INTO server_scores (server_id, monitor_id, score, score_ts, offset_s, rtt_s, stratum, leap, error) VALUES (1, $1, $2, $3, 0.001, 0.02, 2, 0, NULL)")
                .bind(id as i64)
                .bind(10.0 + id as f64)
                .bind(900 + id as i64)
                .execute(&old.pool)
                .await
                .expect("pair score");
            sqlx::query("INSERT INTO score_log (server_id, monitor_id, ts, offset_s, step, score, rtt_s, leap) VALUES (1, $1, $2, 0.001, 1, $3, 0.02, 0)")
                .bind(id as i64)
                .bind(900 + id as i64)
                .bind(10.0 + id as f64)
                .execute(&old.pool)
                .await
                .expect("log");
        }
        old.pool.close().await;

        let db = Db::connect(&url)
            .await
            .expect("migrate to the newest schema");
        let rows = sqlx::query(
            "SELECT monitor_id, status, status_since, good_points, score, score_ts, rtt_s, last_issued_at
             FROM server_scores ORDER BY monitor_id",
        )
        .fetch_all(&db.pool)
        .await
        .expect("pairs");
        type PairRow = (i64, String, i64, i64, f64, Option<i64>, Option<f64>);
        let got: Vec<PairRow> = rows
            .iter()
            .map(|r| {
                (
                    r.try_get("monitor_id").expect("id"),
                    r.try_get("status").expect("status"),
                    r.try_get("status_since").expect("since"),
                    r.try_get("good_points").expect("points"),
                    r.try_get("score").expect("score"),
                    r.try_get("score_ts").expect("ts"),
                    r.try_get("rtt_s").expect("rtt"),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "active".into(), 901, 60, 11.0, Some(901), Some(0.02)),
                (2, "testing".into(), 902, 9, 12.0, Some(902), Some(0.02)),
                (3, "candidate".into(), 903, 0, 13.0, Some(903), Some(0.02)),
                (5, "candidate".into(), 905, 0, 15.0, Some(905), Some(0.02)),
            ],
            "a pair per score in its monitor's state; the deleted monitor's gone"
        );
        let log: i64 = sqlx::query("SELECT COUNT(*) AS n FROM score_log")
            .fetch_one(&db.pool)
            .await
            .expect("log")
            .try_get("n")
            .expect("n");
        assert_eq!(log, 5, "the history is untouched");
        let score: f64 = sqlx::query("SELECT score FROM servers")
            .fetch_one(&db.pool)
            .await
            .expect("server")
            .try_get("score")
            .expect("score");
        assert_eq!(score, 12.5);

        // The first selector pass keeps the active pair active (the 60
        // points the history earned it), promotes nothing (the testing
        // pair's monitor is globally testing, the candidate's pending) and
        // removes only the paused monitor's pair.
        let report = timepool::control::db::pairs::selector_pass(&db, &Default::default(), 1000)
            .await
            .expect("selector");
        let active: Vec<i64> =
            sqlx::query("SELECT monitor_id FROM server_scores WHERE status = 'active'")
                .fetch_all(&db.pool)
                .await
                .expect("active")
                .iter()
                .map(|r| r.try_get("monitor_id").expect("id"))
                .collect();
        assert_eq!(active, vec![1], "{report:?}");
        let paused_pair: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM server_scores WHERE monitor_id = 5")
                .fetch_one(&db.pool)
                .await
                .expect("n")
                .try_get("n")
                .expect("n");
        assert_eq!(paused_pair, 0, "a paused monitor's pair leaves");
        db.pool.close().await;
    }
}
