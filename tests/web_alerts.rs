//! Bad-server alerts and automatic removal (web/README.md, "Alerts and
//! automatic removal") at the rules' edges, on a clock the test controls:
//! each pass is `alerts::pass(state, t)` with the test's `t`, on SQLite
//! and on PostgreSQL.

mod web_support;

use axum::http::StatusCode;
use timepool::control::db::{Db, mail, now};
use timepool::control::web::alerts::{PassReport, pass};

const DAY: i64 = 86_400;

async fn set_score(db: &Db, server_id: i64, score: f64) {
    sqlx::query("UPDATE servers SET score = $1, score_ts = $2 WHERE id = $3")
        .bind(score)
        .bind(now())
        .bind(server_id)
        .execute(&db.pool)
        .await
        .expect("set score");
}

fn report(alerted: usize, cleared: usize, removed: usize) -> PassReport {
    PassReport {
        alerted,
        cleared,
        removed,
        failed: 0,
    }
}

/// The queued mails of `kind`, oldest first.
async fn mails(db: &Db, kind: &str) -> Vec<mail::QueuedMail> {
    let mut all: Vec<_> = mail::recent(db, 1000)
        .await
        .expect("queue")
        .into_iter()
        .filter(|m| m.kind == kind)
        .collect();
    all.sort_by_key(|m| m.id);
    all
}

async fn deletion_on(db: &Db, server_id: i64) -> Option<i64> {
    sqlx::query_scalar("SELECT deletion_on FROM servers WHERE id = $1")
        .bind(server_id)
        .fetch_one(&db.pool)
        .await
        .expect("server")
}

#[tokio::test]
async fn alerts_and_removals_follow_the_rules_at_their_edges() {
    web_support::for_each_engine(true, |app| async move {
        let db = &app.db;
        let mut alice = app.client();
        alice.signup("alice@example.net").await;
        // Bob joins the account (by the mailed invitation) and reads German.
        alice
            .post("/manage/users/invite", &[("email", "bob@example.net")])
            .await;
        let link = web_support::mailed_link(db, "bob@example.net", "/invite/").await;
        let mut bob = app.client();
        let joined = bob
            .post(&link, &[("password", "bobs password"), ("password2", "bobs password")])
            .await;
        assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", joined.body);
        sqlx::query("UPDATE users SET language = 'de' WHERE email = 'bob@example.net'")
            .execute(&db.pool)
            .await
            .expect("language");
        // Someone else's account is never told.
        let mut carol = app.client();
        carol.signup("carol@example.net").await;
        let carols = carol.add_server("127.0.0.50", "de").await;
        set_score(db, carols, -20.0).await;

        let a = alice.add_server("127.0.0.41", "de").await;
        let b = alice.add_server("127.0.0.42", "de").await;
        let c = alice.add_server("127.0.0.43", "de").await;
        let d = alice.add_server("127.0.0.44", "de").await;
        let e = alice.add_server("127.0.0.45", "de").await;
        // Results for the alert to list.
        let t0 = now();
        sqlx::query(
            "INSERT INTO monitors (name, token_hash, state, created_at) VALUES ('mon-a', 'x', 'active', $1)",
        )
        .bind(t0)
        .execute(&db.pool)
        .await
        .expect("monitor");
        for (ts, offset, error, score) in [
            (t0 - 600, Some(0.0125), None, -10.0),
            (t0 - 60, None, Some("timeout"), -15.0),
        ] {
            sqlx::query(
                "INSERT INTO score_log (server_id, monitor_id, ts, offset_s, step, score, error)
                 SELECT $1, id, $2, $3, -5, $4, $5 FROM monitors WHERE name = 'mon-a'",
            )
            .bind(a)
            .bind(ts)
            .bind(offset)
            .bind(score)
            .bind(error)
            .execute(&db.pool)
            .await
            .expect("log");
        }

        // t0: -15 is alerted, -14.9 is not; out of the pool, or due for
        // deletion within 16 days, no alert either.
        set_score(db, a, -15.0).await;
        set_score(db, b, -14.9).await;
        set_score(db, d, -50.0).await;
        sqlx::query("UPDATE servers SET deletion_on = $1 WHERE id = $2")
            .bind(t0 + 16 * DAY)
            .bind(d)
            .execute(&db.pool)
            .await
            .expect("deletion");
        set_score(db, e, -50.0).await;
        sqlx::query("UPDATE servers SET in_pool = 0 WHERE id = $1")
            .bind(e)
            .execute(&db.pool)
            .await
            .expect("out of pool");
        assert_eq!(pass(&app.state, t0).await.expect("pass"), report(2, 0, 0));
        let sent = mails(db, "server_alert").await;
        let to: Vec<&str> = sent.iter().map(|m| m.recipient.as_str()).collect();
        assert_eq!(
            to,
            ["carol@example.net", "alice@example.net", "bob@example.net"]
        );
        let alert = &sent[1];
        assert_eq!(
            alert.subject,
            "pool.example.org: 127.0.0.41 is not working well (score -15.0)"
        );
        for text in [
            "its score is -15.0",
            "mon-a: error: timeout (score -15.0)",
            "mon-a: offset 12.5 ms (score -10.0)",
            "45 days after its first alert",
            "http://timepool.test/scores/127.0.0.41\n",
        ] {
            assert!(alert.body.contains(text), "{text:?} not in:\n{}", alert.body);
        }
        assert!(
            sent[2].subject.contains("127.0.0.41") && sent[2].body.contains("-15,0"),
            "Bob's mail is German: {}",
            sent[2].body
        );
        // Carol's server neither bad enough for more nor good: left alone.
        set_score(db, carols, 0.0).await;
        // The link works.
        app.client()
            .get("/scores/127.0.0.41")
            .await
            .assert(StatusCode::OK, &["127.0.0.41"]);

        // Nothing twice; a deletion due in 16 days and a second is far
        // enough to alert.
        set_score(db, b, -15.0).await;
        sqlx::query("UPDATE servers SET deletion_on = $1 WHERE id = $2")
            .bind(t0 + 60 + 16 * DAY + 1)
            .bind(d)
            .execute(&db.pool)
            .await
            .expect("deletion");
        let tb = t0 + 60;
        assert_eq!(pass(&app.state, tb).await.expect("pass"), report(2, 0, 0));
        assert_eq!(pass(&app.state, tb + 1).await.expect("pass"), report(0, 0, 0));
        set_score(db, b, -1.0).await;
        sqlx::query("UPDATE servers SET deletion_on = NULL WHERE id = $1")
            .bind(d)
            .execute(&db.pool)
            .await
            .expect("deletion");
        set_score(db, d, 20.0).await;

        // C: the alert state clears above 10, not at 10; a new fall is a
        // first alert again.
        set_score(db, c, -20.0).await;
        let tc = t0 + 120;
        assert_eq!(pass(&app.state, tc).await.expect("pass"), report(1, 1, 0), "D clears");
        set_score(db, c, 10.0).await;
        assert_eq!(pass(&app.state, tc + 60).await.expect("pass"), report(0, 0, 0));
        set_score(db, c, 10.1).await;
        assert_eq!(pass(&app.state, tc + 120).await.expect("pass"), report(0, 1, 0));
        set_score(db, c, -30.0).await;
        assert_eq!(pass(&app.state, tc + 180).await.expect("pass"), report(1, 0, 0));
        set_score(db, c, 50.0).await;
        assert_eq!(pass(&app.state, tc + 240).await.expect("pass"), report(0, 1, 0));

        // A: repeated after 14 days, not at 14 days...
        set_score(db, a, -50.0).await;
        assert_eq!(pass(&app.state, t0 + 14 * DAY).await.expect("pass"), report(0, 0, 0));
        let t1 = t0 + 14 * DAY + 1;
        assert_eq!(pass(&app.state, t1).await.expect("pass"), report(1, 0, 0));
        // ...and only if the score has not risen more than 10 since.
        set_score(db, a, -39.9).await;
        let t2 = t1 + 14 * DAY + 1;
        assert_eq!(pass(&app.state, t2).await.expect("pass"), report(0, 0, 0));
        set_score(db, a, -40.0).await;
        assert_eq!(pass(&app.state, t2).await.expect("pass"), report(1, 0, 0));
        let t3 = t2 + 14 * DAY + 1;
        assert_eq!(pass(&app.state, t3).await.expect("pass"), report(1, 0, 0));
        set_score(db, a, -1.0).await;

        // B: first alert at tb, score -1 since: removed once the first
        // alert is more than 45 days old.
        assert_eq!(pass(&app.state, tb + 45 * DAY).await.expect("pass"), report(0, 0, 0));
        assert_eq!(deletion_on(db, b).await, None);
        assert_eq!(
            pass(&app.state, tb + 45 * DAY + 1).await.expect("pass"),
            report(0, 0, 1)
        );
        assert_eq!(deletion_on(db, b).await, Some(tb + 47 * DAY + 1));
        // A: first alert 47 days old, the last one exactly 5 days: kept;
        // a second more: removed.
        assert_eq!(pass(&app.state, t3 + 5 * DAY).await.expect("pass"), report(0, 0, 0));
        assert_eq!(deletion_on(db, a).await, None);
        assert_eq!(
            pass(&app.state, t3 + 5 * DAY + 1).await.expect("pass"),
            report(0, 0, 1)
        );
        assert_eq!(deletion_on(db, a).await, Some(t3 + 7 * DAY + 1));
        assert_eq!(pass(&app.state, t3 + 6 * DAY).await.expect("pass"), report(0, 0, 0));

        // Every alert and removal went to both users of the account.
        let alerts = mails(db, "server_alert").await;
        let alices = alerts.iter().filter(|m| m.recipient == "alice@example.net");
        let subjects: Vec<&str> = alices
            .map(|m| m.subject.trim_start_matches("pool.example.org: "))
            .collect();
        let is_not_working_well = |address: &str, score: &str| {
            format!("{address} is not working well (score {score})")
        };
        let expected = [
            ("127.0.0.41", "-15.0"),
            ("127.0.0.42", "-15.0"),
            ("127.0.0.44", "-50.0"),
            ("127.0.0.43", "-20.0"),
            ("127.0.0.43", "-30.0"),
            ("127.0.0.41", "-50.0"),
            ("127.0.0.41", "-40.0"),
            ("127.0.0.41", "-40.0"),
        ]
        .map(|(address, score)| is_not_working_well(address, score));
        assert_eq!(subjects, expected);
        let removals = mails(db, "server_removal").await;
        let to: Vec<(&str, bool)> = removals
            .iter()
            .map(|m| (m.recipient.as_str(), m.subject.contains("127.0.0.41")))
            .collect();
        assert_eq!(
            to,
            [
                ("alice@example.net", false),
                ("bob@example.net", false),
                ("alice@example.net", true),
                ("bob@example.net", true)
            ]
        );
        let removal = &removals[2];
        assert!(
            removal.body.contains("scheduled for deletion")
                && removal.body.contains(&format!("http://timepool.test/manage/servers/{a}\n")),
            "{}",
            removal.body
        );
        // The link: the page shows the deletion, which can be cancelled;
        // cancelled, it stays cancelled (the rules start over).
        alice
            .get(&format!("/manage/servers/{a}"))
            .await
            .assert(StatusCode::OK, &["Cancel the deletion"]);
        alice
            .post(&format!("/manage/servers/{a}/undelete"), &[])
            .await;
        assert_eq!(deletion_on(db, a).await, None);
        assert_eq!(
            pass(&app.state, t3 + 7 * DAY).await.expect("pass"),
            report(0, 0, 0)
        );
        assert_eq!(deletion_on(db, a).await, None);
        let audit: Vec<String> =
            sqlx::query_scalar("SELECT actor FROM audit_log WHERE action = 'server.delete.auto'")
                .fetch_all(&db.pool)
                .await
                .expect("audit");
        assert_eq!(audit, ["pool rules", "pool rules"]);
    })
    .await;
}
