//! A user's own data (web/README.md, "Your data and deleting your
//! login"): the JSON download, and the deletion of the login 7 days after
//! it is asked for, cancelled by logging in, refused for the last user of
//! an account that still has servers; on SQLite and PostgreSQL, the due
//! deletions run on a clock the test sets.

mod web_support;

use axum::http::StatusCode;
use timepool::control::db::{Db, mail, now};
use timepool::control::web::user_data::{DeletionReport, delete_due};
use web_support::Client;

const DAY: i64 = 86_400;
const PASSWORD: &str = "correct horse battery";

async fn count(db: &Db, sql: &str, bind: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(bind.to_string())
        .fetch_one(&db.pool)
        .await
        .expect(sql)
}

fn report(deleted: usize, refused: usize) -> DeletionReport {
    DeletionReport { deleted, refused }
}

/// Bob joins `inviter`'s account by the mailed invitation.
async fn join(app: &web_support::TestApp, inviter: &mut Client, email: &str) -> Client {
    inviter
        .post("/manage/users/invite", &[("email", email)])
        .await;
    let link = web_support::mailed_link(&app.db, email, "/invite/").await;
    let mut client = app.client();
    let joined = client
        .post(&link, &[("password", PASSWORD), ("password2", PASSWORD)])
        .await;
    assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", joined.body);
    client
}

async fn log_in(app: &web_support::TestApp, email: &str) -> (Client, String) {
    let mut client = app.client();
    let r = client
        .post("/login", &[("email", email), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "login {email}: {}", r.body);
    let to = r.location().to_string();
    (client, to)
}

#[tokio::test]
async fn a_user_downloads_everything_stored_about_them() {
    web_support::for_each_engine(true, |app| async move {
        app.client()
            .get("/manage/login/data.json")
            .await
            .assert(StatusCode::SEE_OTHER, &[]);
        let mut alice = app.client();
        alice.signup("alice@example.net").await;
        alice.add_server("127.0.0.70", "de").await;
        alice
            .post("/manage/users/invite", &[("email", "bob@example.net")])
            .await;
        let r = alice.get("/manage/login/data.json").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.content_type(), "application/json");
        assert_eq!(
            r.headers["content-disposition"],
            "attachment; filename=\"timepool-my-data.json\""
        );
        let data: serde_json::Value = serde_json::from_str(&r.raw).expect("JSON");
        assert_eq!(data["site"], "pool.example.org");
        assert_eq!(data["login"]["email"], "alice@example.net");
        assert!(data["login"]["email_verified_at"].is_i64());
        assert_eq!(data["account"]["servers"][0]["address"], "127.0.0.70");
        assert_eq!(data["account"]["servers"][0]["netspeed"], 1_000_000);
        assert_eq!(data["invitations_sent"][0]["email"], "bob@example.net");
        assert_eq!(data["sessions"].as_array().map(Vec::len), Some(1));
        let kinds: Vec<&str> = data["mails"]
            .as_array()
            .expect("mails")
            .iter()
            .filter_map(|m| m["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["verify", "user_invited"]);
        let actions: Vec<&str> = data["audit_log"]
            .as_array()
            .expect("audit")
            .iter()
            .filter_map(|m| m["action"].as_str())
            .collect();
        for action in [
            "account.signup",
            "user.verify",
            "server.add",
            "invite.create",
        ] {
            assert!(actions.contains(&action), "{action} not in {actions:?}");
        }
        // Only what names Alice exactly: a failed login of
        // "malice@example.net" is not hers.
        let failed = app
            .client()
            .post(
                "/login",
                &[("email", "malice@example.net"), ("password", "guess guess")],
            )
            .await;
        assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
        let again = alice.get("/manage/login/data.json").await;
        assert!(!again.raw.contains("malice@example.net"), "{}", again.raw);
        // No secret is in it: no password hash, no token or its hash.
        let hashes: Vec<String> = sqlx::query_scalar(
            "SELECT token_hash FROM sessions UNION ALL SELECT token_hash FROM invites
             UNION ALL SELECT password_hash FROM users",
        )
        .fetch_all(&app.db.pool)
        .await
        .expect("secrets");
        for secret in hashes {
            assert!(!r.raw.contains(&secret), "{secret} in the export");
        }
        assert!(!r.raw.contains("argon2"));
    })
    .await;
}

#[tokio::test]
async fn a_login_is_deleted_seven_days_after_it_is_asked_unless_its_user_logs_in() {
    web_support::for_each_engine(true, |app| async move {
        let db = &app.db;
        let mut carol = app.client();
        carol.signup("carol@example.net").await;
        carol
            .get("/manage/login")
            .await
            .assert(StatusCode::OK, &["Download my data (JSON)", "Delete my login"]);
        carol
            .get("/manage/login/delete")
            .await
            .assert(StatusCode::OK, &["is deleted 7 days after you ask"]);
        carol
            .post("/manage/login/delete", &[("current", "not my password")])
            .await
            .assert(StatusCode::UNPROCESSABLE_ENTITY, &["The password is wrong."]);
        let asked = carol
            .post("/manage/login/delete", &[("current", PASSWORD)])
            .await;
        assert_eq!(asked.location(), "/?done=login-deletion-requested");
        let t = now();
        carol
            .get(asked.location())
            .await
            .assert(StatusCode::OK, &["Your login is to be deleted in 7 days"]);
        // Every session ended; the mail says how to keep the login.
        assert_eq!(carol.get("/manage").await.location(), "/login");
        let told = mail::recent(db, 10).await.expect("queue");
        assert_eq!(told[0].kind, "login_deletion");
        assert_eq!(told[0].recipient, "carol@example.net");
        assert!(told[0].body.contains("logging in cancels the deletion"), "{}", told[0].body);

        // Logging in cancels it.
        let (mut carol, to) = log_in(&app, "carol@example.net").await;
        assert_eq!(to, "/manage?done=login-deletion-cancelled");
        carol
            .get(&to)
            .await
            .assert(StatusCode::OK, &["the deletion of your login is cancelled"]);
        assert_eq!(delete_due(&app.state, t + 8 * DAY).await.expect("due"), report(0, 0));

        // Someone else's records that contain the address are not touched.
        app.client()
            .post(
                "/login",
                &[("email", "jcarol@example.net"), ("password", "guess guess")],
            )
            .await;
        // Asked again: kept for 7 days, then deleted with every row about it.
        carol
            .post("/manage/login/delete", &[("current", PASSWORD)])
            .await;
        let t = now();
        assert_eq!(delete_due(&app.state, t + 7 * DAY - 2).await.expect("due"), report(0, 0));
        assert_eq!(delete_due(&app.state, t + 7 * DAY + 1).await.expect("due"), report(1, 0));
        let email = "carol@example.net";
        for sql in [
            "SELECT COUNT(*) FROM users WHERE email = $1",
            "SELECT COUNT(*) FROM mail_queue WHERE recipient = $1",
            "SELECT COUNT(*) FROM accounts WHERE name = $1",
            "SELECT COUNT(*) FROM audit_log WHERE actor = $1 OR target = 'login:' || $1 OR details = $1",
        ] {
            assert_eq!(count(db, sql, email).await, 0, "{sql}");
        }
        assert!(
            count(db, "SELECT COUNT(*) FROM audit_log WHERE actor LIKE $1", "deleted user #%").await > 0,
            "the audit log keeps what was done"
        );
        assert_eq!(
            count(
                db,
                "SELECT COUNT(*) FROM audit_log WHERE actor = $1 AND target = 'login:jcarol@example.net'",
                "jcarol@example.net"
            )
            .await,
            1,
            "another address's failed login keeps its name"
        );
        assert_eq!(
            app.client()
                .post("/login", &[("email", email), ("password", PASSWORD)])
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        // The address is free again.
        app.client().signup(email).await;
    })
    .await;
}

#[tokio::test]
async fn the_last_user_of_an_account_with_servers_cannot_delete_their_login() {
    web_support::for_each_engine(true, |app| async move {
        let db = &app.db;
        let mut dave = app.client();
        dave.signup("dave@example.net").await;
        dave.add_server("127.0.0.71", "de").await;
        dave.get("/manage/login/delete").await.assert(
            StatusCode::OK,
            &["You are the last user of your account, which still has 1 servers"],
        );
        dave.post("/manage/login/delete", &[("current", PASSWORD)])
            .await
            .assert(
                StatusCode::CONFLICT,
                &["You are the last user of your account"],
            );

        // With Erin in the account, as an owner too, Dave may go...
        join(&app, &mut dave, "erin@example.net").await;
        dave.get("/manage/login/delete")
            .await
            .assert(StatusCode::OK, &["You are the only owner of your account"]);
        let erins_id: i64 =
            sqlx::query_scalar("SELECT id FROM users WHERE email = 'erin@example.net'")
                .fetch_one(&db.pool)
                .await
                .expect("erin");
        dave.post(
            &format!("/manage/users/{erins_id}/role"),
            &[("role", "owner")],
        )
        .await;
        let asked = dave
            .post("/manage/login/delete", &[("current", PASSWORD)])
            .await;
        assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.body);
        // ...but not once Erin is gone: the deletion is refused when due,
        // and Dave is told.
        let (mut dave, _) = log_in(&app, "dave@example.net").await;
        dave.post(
            &format!("/manage/users/{erins_id}/remove"),
            &[("confirm", "yes")],
        )
        .await;
        // (Dave logged in, which cancelled; ask once more while Erin is
        // still there is not possible now, so set the request directly.)
        sqlx::query("UPDATE users SET deletion_requested_at = $1 WHERE email = 'dave@example.net'")
            .bind(now())
            .execute(&db.pool)
            .await
            .expect("request");
        assert_eq!(
            delete_due(&app.state, now() + 8 * DAY).await.expect("due"),
            report(0, 1)
        );
        let told = mail::recent(db, 1).await.expect("queue");
        assert_eq!(told[0].kind, "login_deletion_refused");
        assert!(told[0].body.contains("1 servers"), "{}", told[0].body);
        assert_eq!(
            count(
                db,
                "SELECT COUNT(*) FROM users WHERE email = $1 AND deletion_requested_at IS NULL",
                "dave@example.net"
            )
            .await,
            1
        );

        // A user removed from their account still has their data and
        // login to look after, from the no-account page.
        let (mut erin, _) = log_in(&app, "erin@example.net").await;
        erin.get("/manage/no-account").await.assert(
            StatusCode::OK,
            &["Download my data (JSON)", "Delete my login"],
        );
        let data = erin.get("/manage/login/data.json").await;
        let data: serde_json::Value = serde_json::from_str(&data.raw).expect("JSON");
        assert!(data["account"].is_null());
        assert!(data["login"]["removed_from_account_at"].is_i64());
        let asked = erin
            .post("/manage/login/delete", &[("current", PASSWORD)])
            .await;
        assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.body);
        assert_eq!(
            delete_due(&app.state, now() + 8 * DAY).await.expect("due"),
            report(1, 0)
        );
    })
    .await;
}
