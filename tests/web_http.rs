//! HTTP-level tests of every route of `timepool web`, on SQLite and (when
//! TIMEPOOL_TEST_PG_URL is set) PostgreSQL.

mod web_support;

use axum::http::StatusCode;
use timepool::control::db::scores::{self, Check};
use timepool::control::db::{monitors, now, servers};
use web_support::{TestApp, for_each_engine, server_id_in, staff_client};

#[tokio::test]
async fn public_pages_render() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.get("/").await.assert(
            StatusCode::OK,
            &[
                "pool.example.org",
                "Europe",
                "North America",
                "Global",
                "IPv6",
            ],
        );
        c.get("/zone/@").await.assert(
            StatusCode::OK,
            &["0.pool.example.org", "europe", "Sub-zones"],
        );
        c.get("/zone/europe").await.assert(
            StatusCode::OK,
            &["2.europe.pool.example.org", "Germany", "/zone/de"],
        );
        c.get("/zone/de").await.assert(
            StatusCode::OK,
            &[
                "0.de.pool.example.org",
                "de.pool.example.org",
                "/zone/europe",
            ],
        );
        let gb = c.get("/zone/gb").await;
        assert_eq!(gb.status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(gb.location(), "/zone/uk");
        c.get("/zone/xx")
            .await
            .assert(StatusCode::NOT_FOUND, &["Not found"]);
        c.get("/use")
            .await
            .assert(StatusCode::OK, &["pool 0.pool.example.org iburst"]);
        c.get("/join")
            .await
            .assert(StatusCode::OK, &["Sign up", "three days"]);
        let home = c.get("/").await;
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "same-origin"),
        ] {
            assert_eq!(
                home.headers.get(name).and_then(|v| v.to_str().ok()),
                Some(value)
            );
        }
        assert!(home.headers.contains_key("content-security-policy"));
        let css = c.get("/static/style.css").await;
        assert_eq!(css.status, StatusCode::OK);
        assert!(css.content_type().starts_with("text/css"));
        let missing = c.get("/no/such/page").await;
        missing.assert(StatusCode::NOT_FOUND, &["There is no page at this address"]);
        assert!(missing.content_type().starts_with("text/html"));
        c.request("DELETE", "/", None)
            .await
            .assert(StatusCode::METHOD_NOT_ALLOWED, &["Method not allowed"]);
        c.request("PUT", "/login", None)
            .await
            .assert(StatusCode::METHOD_NOT_ALLOWED, &[]);
        c.get("/logout")
            .await
            .assert(StatusCode::METHOD_NOT_ALLOWED, &[]);
        c.get("/scores/192.0.2.1")
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
        c.get("/scores/not-an-ip")
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
    })
    .await;
}

#[tokio::test]
async fn signup_login_logout() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.get("/signup")
            .await
            .assert(StatusCode::OK, &["name=\"csrf\""]);
        c.get("/login")
            .await
            .assert(StatusCode::OK, &["name=\"csrf\"", "Log in"]);
        // Validation: messages next to fields, typed email kept.
        let bad = c
            .post(
                "/signup",
                &[
                    ("email", "not-an-email"),
                    ("password", "short"),
                    ("password2", "short"),
                ],
            )
            .await;
        bad.assert(
            StatusCode::UNPROCESSABLE_ENTITY,
            &[
                "does not look like an email",
                "at least 10 characters",
                "value=\"not-an-email\"",
            ],
        );
        let mismatch = c
            .post(
                "/signup",
                &[
                    ("email", "op@example.net"),
                    ("password", "long enough 1"),
                    ("password2", "long enough 2"),
                ],
            )
            .await;
        mismatch.assert(
            StatusCode::UNPROCESSABLE_ENTITY,
            &["The two passwords differ", "value=\"op@example.net\""],
        );

        c.signup("Op@Example.net").await;
        let session = c
            .cookies
            .get("tp_session")
            .cloned()
            .expect("session cookie");
        assert_eq!(session.len(), 64);
        let manage = c.get("/manage").await;
        manage.assert(StatusCode::OK, &["op@example.net", "Add a server"]);

        // The same email again is refused (any case).
        let mut other = app.client();
        let dup = other
            .post(
                "/signup",
                &[
                    ("email", "OP@example.net"),
                    ("password", "another password"),
                    ("password2", "another password"),
                ],
            )
            .await;
        dup.assert(StatusCode::UNPROCESSABLE_ENTITY, &["already a login"]);

        // Log out: the session is gone server-side too.
        let out = c.post("/logout", &[]).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
        let mut replay = app.client();
        replay.cookies.insert("tp_session".into(), session);
        assert_eq!(replay.get("/manage").await.location(), "/login");

        // Wrong password, then right.
        c.post(
            "/login",
            &[("email", "op@example.net"), ("password", "wrong password")],
        )
        .await
        .assert(
            StatusCode::UNAUTHORIZED,
            &["wrong", "value=\"op@example.net\""],
        );
        let ok = c
            .post(
                "/login",
                &[
                    ("email", "op@example.net"),
                    ("password", "correct horse battery"),
                ],
            )
            .await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER);
        assert_eq!(ok.location(), "/manage");
        let cookie = ok
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
    })
    .await;
}

/// The POST routes of the page router, read from its source: each
/// `.route("PATH", ...)` whose method router has a `post(` handler, up to
/// the JSON API (which has no forms). A route added there is tested
/// below without being listed anywhere.
fn page_post_routes() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/control/web/mod.rs");
    let source = std::fs::read_to_string(path).expect("read src/control/web/mod.rs");
    let start = source
        .find("fn public_router(")
        .expect("public_router in mod.rs");
    let end = start
        + source[start..]
            .find(".nest(\"/api/v1\"")
            .expect("the API nested in public_router");
    let body = &source[start..end];
    let mut routes = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find(".route(") {
        let call = &rest[at + ".route(".len()..];
        // The call ends at its matching parenthesis.
        let mut depth = 1;
        let mut len = 0;
        for (i, c) in call.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                len = i;
                break;
            }
        }
        let call = &call[..len];
        let path = call
            .split('"')
            .nth(1)
            .expect("a route's path is its first string");
        if call.contains("post(") {
            routes.push(path.to_string());
        }
        rest = &rest[at + ".route(".len() + len..];
    }
    routes
}

/// Every row count the forms could change.
async fn row_counts(app: &TestApp) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for table in [
        "accounts",
        "users",
        "sessions",
        "invites",
        "servers",
        "server_verifications",
        "monitors",
        "server_scores",
        "vendor_zones",
        "news",
        "audit_log",
        "mail_queue",
        "password_resets",
        "email_verifications",
    ] {
        // The table names are the literals above.
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&app.db.pool)
            .await
            .expect(table);
        counts.push((table, n));
    }
    counts
}

#[tokio::test]
async fn csrf_is_required_on_every_form() {
    let routes = page_post_routes();
    // The parser found them all (31 when this test was written).
    assert!(routes.len() >= 31, "POST routes found: {routes:?}");
    for_each_engine(false, |app| {
        let routes = routes.clone();
        async move {
            // A logged-in staff member who owns a server and a monitor: the
            // handlers' own checks would let every form through.
            let mut staff = staff_client(&app, "staff@example.net").await;
            staff.add_server("8.8.8.8", "de").await;
            web_support::active_monitor(&app.db, "csrf-monitor").await;
            let before = row_counts(&app).await;
            let wrong = "0".repeat(64);
            for route in &routes {
                let path = route
                    .replace("{id}", "1")
                    .replace("{token}", &"a".repeat(43));
                let fields = [
                    ("address", "9.9.9.9"),
                    ("email", "new@example.net"),
                    ("password", "long enough password"),
                    ("password2", "long enough password"),
                    ("zone", "de"),
                    ("netspeed", "10000"),
                    ("role", "owner"),
                    ("state", "paused"),
                    ("confirm", "yes"),
                    ("name", "x"),
                ];
                staff
                    .post_raw(&path, &fields)
                    .await
                    .assert(StatusCode::FORBIDDEN, &["Form expired"]);
                let mut with_wrong = fields.to_vec();
                with_wrong.push(("csrf", &wrong));
                staff
                    .post_raw(&path, &with_wrong)
                    .await
                    .assert(StatusCode::FORBIDDEN, &["Form expired"]);
                // Other methods are refused whatever they carry.
                staff
                    .request("PUT", &path, None)
                    .await
                    .assert(StatusCode::METHOD_NOT_ALLOWED, &[]);
            }
            // Under a language prefix too (the page then speaks German).
            for route in &routes {
                let path = route
                    .replace("{id}", "1")
                    .replace("{token}", &"a".repeat(43));
                staff
                    .post_raw(&format!("/de{path}"), &[("confirm", "yes")])
                    .await
                    .assert(StatusCode::FORBIDDEN, &["Formular abgelaufen"]);
            }
            assert_eq!(row_counts(&app).await, before, "nothing changed");
            // Still logged in: the refused forms did not log out.
            staff.get("/en/staff").await;
            let r = staff.get("/staff/accounts").await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.location());

            // The body is read within the route's limit: a small form's
            // limit is 16 KiB, a news item's 1 MiB.
            let big = "x".repeat(20 * 1024);
            staff
                .post("/manage/servers", &[("address", &big)])
                .await
                .assert(StatusCode::PAYLOAD_TOO_LARGE, &["Nothing was changed"]);
            staff
                .post_raw("/staff/news", &[("text_en", &big)])
                .await
                .assert(StatusCode::FORBIDDEN, &["Form expired"]);
            assert_eq!(row_counts(&app).await, before, "nothing changed");
        }
    })
    .await;
}

#[tokio::test]
async fn login_attempts_are_rate_limited() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.signup("rl@example.net").await;
        for _ in 0..5 {
            c.post(
                "/login",
                &[("email", "rl@example.net"), ("password", "bad guess")],
            )
            .await
            .assert(StatusCode::UNAUTHORIZED, &[]);
        }
        // Now even the right password waits.
        c.post(
            "/login",
            &[
                ("email", "rl@example.net"),
                ("password", "correct horse battery"),
            ],
        )
        .await
        .assert(StatusCode::TOO_MANY_REQUESTS, &["Too many failed attempts"]);
        // Another email from the same client is not affected.
        c.post(
            "/login",
            &[("email", "other@example.net"), ("password", "bad guess")],
        )
        .await
        .assert(StatusCode::UNAUTHORIZED, &[]);
    })
    .await;
}

#[tokio::test]
async fn add_servers_with_validation() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.signup("add@example.net").await;
        let cases: &[(&str, &str)] = &[
            ("10.1.2.3", "is a private address (10.0.0.0/8)"),
            ("192.168.0.10", "is a private address"),
            ("127.0.0.1", "is a loopback address"),
            ("169.254.3.4", "link-local"),
            ("192.0.2.1", "documentation"),
            ("224.0.0.1", "multicast"),
            ("240.1.1.1", "reserved"),
            ("0.0.0.0", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd12::1", "unique local"),
            ("2001:db8::5", "documentation"),
            ("::1", "loopback"),
            ("ff02::1", "multicast"),
            ("not a host!", "neither an IP address nor a valid hostname"),
            ("", "Enter an IPv4 or IPv6 address"),
        ];
        for (address, reason) in cases {
            let r = c
                .post(
                    "/manage/servers",
                    &[("address", address), ("zone", "de"), ("netspeed", "10000")],
                )
                .await;
            r.assert(StatusCode::UNPROCESSABLE_ENTITY, &[reason]);
            if !address.is_empty() && !address.contains('!') {
                assert!(
                    r.body.contains(&format!("value=\"{address}\"")),
                    "typed value kept for {address}"
                );
            }
        }
        // Bad netspeed and zone, and no zone where GeoIP cannot tell.
        c.post(
            "/manage/servers",
            &[("address", "8.8.4.4"), ("zone", "de"), ("netspeed", "7")],
        )
        .await
        .assert(
            StatusCode::UNPROCESSABLE_ENTITY,
            &["Choose a connection speed"],
        );
        c.post(
            "/manage/servers",
            &[
                ("address", "8.8.4.4"),
                ("zone", "atlantis"),
                ("netspeed", "10000"),
            ],
        )
        .await
        .assert(
            StatusCode::UNPROCESSABLE_ENTITY,
            &["Choose a country from the list"],
        );
        c.post(
            "/manage/servers",
            &[("address", "8.8.4.4"), ("zone", ""), ("netspeed", "10000")],
        )
        .await
        .assert(StatusCode::UNPROCESSABLE_ENTITY, &["choose its country"]);

        // Good ones: IPv4 and IPv6, the latter written in a long form.
        // Listed by address as a number: 9.9.9.9 before 9.9.9.10.
        c.add_server("9.9.9.10", "de").await;
        c.add_server("9.9.9.9", "de").await;
        let list = c.get("/manage").await.body;
        let (nine, ten) = (
            list.find("9.9.9.9<").expect("9.9.9.9"),
            list.find("9.9.9.10<").expect("9.9.9.10"),
        );
        assert!(nine < ten, "9.9.9.10 listed before 9.9.9.9");
        let v4 = c.add_server("8.8.4.4", "de").await;
        let v6 = c.add_server("2a01:04f8:0000::0001", "GB").await;
        let list = c.get("/manage").await;
        list.assert(
            StatusCode::OK,
            &[
                "8.8.4.4",
                "2a01:4f8::1",
                "de, europe, @",
                "uk, europe, @",
                // The speed as the picker says it, not "10000 kbit".
                "10 Mbit",
                "new",
            ],
        );
        assert_ne!(v4, v6);

        // No duplicates, across accounts too.
        let mut other = app.client();
        other.signup("other@example.net").await;
        other
            .post(
                "/manage/servers",
                &[
                    ("address", "8.8.4.4"),
                    ("zone", "fr"),
                    ("netspeed", "10000"),
                ],
            )
            .await
            .assert(
                StatusCode::UNPROCESSABLE_ENTITY,
                &[
                    "8.8.4.4 is registered by another account. If you run it, claim it below.",
                    "Claim 8.8.4.4",
                ],
            );
        c.post(
            "/manage/servers",
            &[
                ("address", "2a01:4f8::1"),
                ("zone", "de"),
                ("netspeed", "10000"),
            ],
        )
        .await
        .assert(
            StatusCode::UNPROCESSABLE_ENTITY,
            &["2a01:4f8::1 is one of your servers already."],
        );
        assert!(server_id_in(&other.get("/manage").await.body, "8.8.4.4").is_none());

        // Settings: zone override and netspeed, with validation.
        let path = format!("/manage/servers/{v4}");
        c.get(&path)
            .await
            .assert(StatusCode::OK, &["Settings", "Leave the pool"]);
        c.post(&path, &[("zone", "fr"), ("netspeed", "3")])
            .await
            .assert(
                StatusCode::UNPROCESSABLE_ENTITY,
                &["Choose a connection speed"],
            );
        let saved = c.post(&path, &[("zone", "fr"), ("netspeed", "0")]).await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
        c.get(saved.location())
            .await
            .assert(StatusCode::OK, &["Saved."]);
        c.get("/manage")
            .await
            .assert(StatusCode::OK, &["fr, europe, @", "monitor only"]);
    })
    .await;
}

#[tokio::test]
async fn hostnames_and_loopback_setting() {
    for_each_engine(true, |app| async move {
        let mut c = app.client();
        c.signup("lo@example.net").await;
        // localhost resolves through /etc/hosts to 127.0.0.1 (and ::1 where configured).
        let r = c
            .post(
                "/manage/servers",
                &[
                    ("address", "localhost"),
                    ("zone", "de"),
                    ("netspeed", "10000"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let list = c.get("/manage").await;
        list.assert(StatusCode::OK, &["127.0.0.1", "localhost"]);
        // Still no private addresses with the loopback setting.
        c.post(
            "/manage/servers",
            &[
                ("address", "10.0.0.1"),
                ("zone", "de"),
                ("netspeed", "10000"),
            ],
        )
        .await
        .assert(StatusCode::UNPROCESSABLE_ENTITY, &["private"]);
        c.post(
            "/manage/servers",
            &[
                ("address", "no-such-host.invalid"),
                ("zone", "de"),
                ("netspeed", "10000"),
            ],
        )
        .await
        .assert(StatusCode::UNPROCESSABLE_ENTITY, &["could not be resolved"]);
    })
    .await;
}

#[tokio::test]
async fn check_now_from_the_server_page() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.signup("check@example.net").await;
        let id = c.add_server("9.9.9.9", "ch").await;
        // A monitor paired with it (the selector's pass).
        web_support::active_monitor(&app.db, "mon-1").await;
        // The pair made a minute ago, so a check asked for now makes it due.
        timepool::control::db::pairs::selector_pass(&app.db, &Default::default(), now() - 60)
            .await
            .expect("selector");
        let page = format!("/manage/servers/{id}");
        c.get(&page)
            .await
            .assert(StatusCode::OK, &["mon-1", "Check now", "not yet"]);
        let asked = c.post(&format!("{page}/check"), &[]).await;
        assert_eq!(asked.status, StatusCode::SEE_OTHER);
        let shown = c.get(asked.location()).await;
        shown.assert(
            StatusCode::OK,
            &[
                "The monitors check this server within a minute",
                "0 of 1 monitors have reported since",
                "http-equiv=\"refresh\"",
            ],
        );
        c.post(&format!("{page}/check"), &[])
            .await
            .assert(StatusCode::SEE_OTHER, &[]);
        let again = c.post(&format!("{page}/check"), &[]).await;
        c.get(again.location())
            .await
            .assert(StatusCode::OK, &["less than a minute ago"]);
        // Someone else's server: not found.
        let mut other = app.client();
        other.signup("other@example.net").await;
        other
            .post(&format!("{page}/check"), &[])
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
    })
    .await;
}

#[tokio::test]
async fn staff_see_a_monitor_s_pairs_and_self_check_and_pause_a_pair() {
    for_each_engine(false, |app| async move {
        let mut op = app.client();
        op.signup("op-pairs@example.net").await;
        let server_id = op.add_server("9.9.9.9", "ch").await;
        let (monitor_id, _) = web_support::active_monitor(&app.db, "mon-skewed").await;
        timepool::control::db::monitors::record_self_check(
            &app.db,
            monitor_id,
            false,
            Some(0.05),
            "median offset +50.0 ms (limit 10.0 ms); 192.0.2.123: +50.0 ms",
            now(),
        )
        .await
        .expect("self-check");
        timepool::control::db::pairs::selector_pass(&app.db, &Default::default(), now())
            .await
            .expect("selector");
        // The operator's page says why that monitor checks nothing.
        op.get(&format!("/manage/servers/{server_id}"))
            .await
            .assert(
                StatusCode::OK,
                &["mon-skewed", "clock is off: it checks nothing"],
            );
        let mut staff = staff_client(&app, "staff-pairs@example.net").await;
        staff.get("/staff/monitors").await.assert(
            StatusCode::OK,
            &[
                "mon-skewed",
                "0 / 0 / 1 / 0",
                "not ok",
                "median offset +50.0 ms (limit 10.0 ms)",
            ],
        );
        let page = format!("/staff/monitors/{monitor_id}");
        staff.get(&page).await.assert(
            StatusCode::OK,
            &["mon-skewed", "9.9.9.9", "candidate", "Pause", "not ok"],
        );
        let server = server_id.to_string();
        staff
            .post(
                &format!("{page}/pairs"),
                &[("server_id", &server), ("paused", "1")],
            )
            .await
            .assert(StatusCode::SEE_OTHER, &[]);
        staff
            .get(&page)
            .await
            .assert(StatusCode::OK, &["paused", "Give back"]);
        // The selector leaves a paused pair alone.
        let report =
            timepool::control::db::pairs::selector_pass(&app.db, &Default::default(), now())
                .await
                .expect("selector");
        assert_eq!(
            report.added + report.removed + report.promoted + report.demoted,
            0,
            "{report:?}"
        );
        staff
            .post(
                &format!("{page}/pairs"),
                &[("server_id", &server), ("paused", "0")],
            )
            .await
            .assert(StatusCode::SEE_OTHER, &[]);
        staff
            .post(
                &format!("{page}/pairs"),
                &[("server_id", &server), ("paused", "maybe")],
            )
            .await
            .assert(StatusCode::BAD_REQUEST, &["paused must be 1 or 0"]);
        // Not for operators.
        op.get(&page).await.assert(StatusCode::FORBIDDEN, &[]);
    })
    .await;
}

#[tokio::test]
async fn deletion_is_scheduled_and_cancelled() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.signup("del@example.net").await;
        let id = c.add_server("9.9.9.9", "ch").await;
        let path = format!("/manage/servers/{id}/delete");
        let tomorrow = timepool::control::timefmt::date(now() + 86_400);
        c.post(&path, &[("on", &tomorrow)]).await.assert(
            StatusCode::UNPROCESSABLE_ENTITY,
            &["at least 3 days out", &tomorrow],
        );
        c.post(&path, &[("on", "soon")])
            .await
            .assert(StatusCode::UNPROCESSABLE_ENTITY, &["YYYY-MM-DD"]);
        let later = timepool::control::timefmt::date(now() + 5 * 86_400);
        let scheduled = c.post(&path, &[("on", &later)]).await;
        assert_eq!(scheduled.status, StatusCode::SEE_OTHER);
        // The list writes the day the language's way.
        let later_day = timepool::control::timefmt::parse_date(&later).expect("date");
        let written = timepool::control::web::i18n::english().date(later_day);
        // The page says what was done, with the day.
        c.get(scheduled.location()).await.assert(
            StatusCode::OK,
            &[&format!("Deletion scheduled for {written}.")],
        );
        c.get("/manage")
            .await
            .assert(StatusCode::OK, &["deletion scheduled", &written]);
        c.get(&format!("/manage/servers/{id}"))
            .await
            .assert(StatusCode::OK, &["Cancel the deletion"]);
        let cancelled = c.post(&format!("/manage/servers/{id}/undelete"), &[]).await;
        assert_eq!(cancelled.status, StatusCode::SEE_OTHER);
        c.get(cancelled.location())
            .await
            .assert(StatusCode::OK, &["The deletion is cancelled."]);
        let list = c.get("/manage").await;
        assert!(!list.body.contains("deletion scheduled"), "{}", list.body);
    })
    .await;
}

#[tokio::test]
async fn operators_cannot_reach_other_accounts() {
    for_each_engine(false, |app| async move {
        let mut alice = app.client();
        alice.signup("alice@example.net").await;
        let id = alice.add_server("1.1.1.1", "au").await;
        alice
            .post("/manage/users/invite", &[("email", "carol@example.net")])
            .await
            .assert(
                StatusCode::OK,
                &["An invitation is mailed to carol@example.net."],
            );
        let users = alice.get("/manage/users").await;
        let invite_id = between(&users.body, "/manage/invites/", "/revoke").expect("invite id");

        let mut bob = app.client();
        bob.signup("bob@example.net").await;
        let alice_user_id: i64 =
            sqlx::query_scalar("SELECT id FROM users WHERE email = 'alice@example.net'")
                .fetch_one(&app.db.pool)
                .await
                .expect("alice id");
        let s = format!("/manage/servers/{id}");
        bob.get(&s).await.assert(StatusCode::NOT_FOUND, &[]);
        bob.post(&s, &[("zone", "de"), ("netspeed", "0")])
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
        let far = timepool::control::timefmt::date(now() + 10 * 86_400);
        bob.post(&format!("{s}/delete"), &[("on", &far)])
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
        bob.post(&format!("{s}/undelete"), &[])
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
        bob.post(&format!("/manage/users/{alice_user_id}/remove"), &[])
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
        bob.post(&format!("/manage/invites/{invite_id}/revoke"), &[])
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
        // An id that is no number is the same not-found page, not axum's
        // "Invalid URL: Cannot parse".
        for bad in ["abc", "0", "-1", "99999999999999999999", "1.5"] {
            let r = bob.get(&format!("/manage/servers/{bad}")).await;
            r.assert(StatusCode::NOT_FOUND, &["There is no page at this address"]);
            assert!(!r.body.contains("Cannot parse"), "{bad}");
            bob.post(&format!("/manage/servers/{bad}/delete"), &[("on", &far)])
                .await
                .assert(StatusCode::NOT_FOUND, &["There is no page at this address"]);
        }
        let bob_users = bob.get("/manage/users").await;
        assert!(!bob_users.body.contains("alice@") && !bob_users.body.contains("carol@"));
        assert!(!bob.get("/manage").await.body.contains("1.1.1.1"));
        // Alice's server is unchanged.
        alice
            .get("/manage")
            .await
            .assert(StatusCode::OK, &["au, oceania, @"]);

        // Staff pages: operators 403, anonymous to the login.
        for path in [
            "/staff",
            "/staff/accounts",
            "/staff/monitors",
            "/staff/vendor-zones",
            "/staff/audit",
        ] {
            bob.get(path)
                .await
                .assert(StatusCode::FORBIDDEN, &["staff"]);
            assert_eq!(app.client().get(path).await.location(), "/login");
        }
        bob.post("/staff/monitors", &[("name", "sneaky")])
            .await
            .assert(StatusCode::FORBIDDEN, &[]);
        bob.post("/staff/monitors/1/state", &[("state", "active")])
            .await
            .assert(StatusCode::FORBIDDEN, &[]);
        bob.post("/staff/vendor-zones/1/decide", &[("decision", "approve")])
            .await
            .assert(StatusCode::FORBIDDEN, &[]);
        for path in [
            "/manage",
            "/manage/users",
            "/manage/vendor",
            "/manage/servers/1",
        ] {
            assert_eq!(app.client().get(path).await.location(), "/login");
        }
    })
    .await;
}

fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(text[from..to].to_string())
}

#[tokio::test]
async fn invites_add_users_once_and_users_can_be_removed() {
    for_each_engine(false, |app| async move {
        let mut alice = app.client();
        alice.signup("alice@example.net").await;
        alice.add_server("1.0.0.1", "au").await;
        alice
            .post("/manage/users/invite", &[("email", "bad")])
            .await
            .assert(StatusCode::UNPROCESSABLE_ENTITY, &["email address"]);
        let page = alice
            .post("/manage/users/invite", &[("email", "Dave@example.net")])
            .await;
        page.assert(
            StatusCode::OK,
            &["An invitation is mailed to dave@example.net."],
        );
        // The link is in the mail only, absolute, with the inviter's name.
        assert!(!page.body.contains("/invite/"), "the page shows the link");
        let mail = timepool::control::db::mail::recent(&app.db, 1)
            .await
            .expect("queue");
        assert_eq!(mail[0].recipient, "dave@example.net");
        assert_eq!(mail[0].kind, "invite");
        assert!(
            mail[0].body.contains("alice@example.net invites you"),
            "{}",
            mail[0].body
        );
        assert!(
            mail[0].body.contains("http://timepool.test/invite/"),
            "{}",
            mail[0].body
        );
        let link = web_support::mailed_link(&app.db, "dave@example.net", "/invite/").await;

        let mut dave = app.client();
        dave.get(&link)
            .await
            .assert(StatusCode::OK, &["dave@example.net"]);
        dave.post(&link, &[("password", "short"), ("password2", "short")])
            .await
            .assert(StatusCode::UNPROCESSABLE_ENTITY, &["at least 10"]);
        let ok = dave
            .post(
                &link,
                &[
                    ("password", "daves password"),
                    ("password2", "daves password"),
                ],
            )
            .await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
        dave.get("/manage")
            .await
            .assert(StatusCode::OK, &["1.0.0.1"]);
        // One time only.
        app.client()
            .get(&link)
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
        app.client()
            .get("/invite/deadbeef")
            .await
            .assert(StatusCode::NOT_FOUND, &[]);

        // Alice removes Dave; his session ends.
        let dave_id: i64 =
            sqlx::query_scalar("SELECT id FROM users WHERE email = 'dave@example.net'")
                .fetch_one(&app.db.pool)
                .await
                .expect("dave");
        let alice_id: i64 =
            sqlx::query_scalar("SELECT id FROM users WHERE email = 'alice@example.net'")
                .fetch_one(&app.db.pool)
                .await
                .expect("alice");
        // Alice, the account's only owner, can neither leave nor be removed.
        alice
            .post(&format!("/manage/users/{alice_id}/remove"), &[])
            .await
            .assert(StatusCode::OK, &["Leave this account?"]);
        alice
            .post(
                &format!("/manage/users/{alice_id}/remove"),
                &[("confirm", "yes")],
            )
            .await
            .assert(
                StatusCode::CONFLICT,
                &["The last owner of an account can neither be removed nor leave it"],
            );
        // "Remove" asks first; nothing changes until it is confirmed.
        let path = format!("/manage/users/{dave_id}/remove");
        alice.post(&path, &[]).await.assert(
            StatusCode::OK,
            &[
                "Remove <strong>dave@example.net</strong> from this account?",
                "Keep this user",
            ],
        );
        assert_eq!(dave.get("/manage").await.status, StatusCode::OK);
        let removed = alice.post(&path, &[("confirm", "yes")]).await;
        assert_eq!(removed.status, StatusCode::SEE_OTHER);
        alice
            .get(removed.location())
            .await
            .assert(StatusCode::OK, &["The user is removed from this account."]);
        assert!(!alice.get("/manage/users").await.body.contains("is removed"));
        assert_eq!(dave.get("/manage").await.location(), "/login");
        // Dave can still log in, to no account: the account's pages send
        // him to the page that says so.
        let dave_login = [
            ("email", "dave@example.net"),
            ("password", "daves password"),
        ];
        assert_eq!(
            dave.post("/login", &dave_login).await.status,
            StatusCode::SEE_OTHER
        );
        for path in [
            "/manage",
            "/manage/users",
            "/manage/servers/1",
            "/manage/vendor",
        ] {
            assert_eq!(
                dave.get(path).await.location(),
                "/manage/no-account",
                "{path}"
            );
        }
        dave.get("/manage/no-account")
            .await
            .assert(StatusCode::OK, &["not part of any account now"]);
        // Alice can invite him again; he joins with the password he has.
        let again = alice
            .post("/manage/users/invite", &[("email", "dave@example.net")])
            .await;
        again.assert(
            StatusCode::OK,
            &["An invitation is mailed to dave@example.net."],
        );
        let link = web_support::mailed_link(&app.db, "dave@example.net", "/invite/").await;
        dave.get(&link).await.assert(
            StatusCode::OK,
            &["which already has a login", "Join the account"],
        );
        dave.post(&link, &[("password", "not his password")])
            .await
            .assert(
                StatusCode::UNPROCESSABLE_ENTITY,
                &["The password is wrong."],
            );
        assert_eq!(dave.get("/manage").await.location(), "/manage/no-account");
        let joined = dave.post(&link, &[("password", "daves password")]).await;
        assert_eq!(joined.location(), "/manage", "{}", joined.body);
        dave.get("/manage/users")
            .await
            .assert(StatusCode::OK, &["alice@example.net", "dave@example.net"]);
        // Removed once more, he starts an account of his own instead.
        alice.post(&path, &[("confirm", "yes")]).await;
        dave.post("/login", &dave_login).await;
        let own = dave.post("/manage/no-account", &[]).await;
        assert_eq!(own.location(), "/manage");
        let users = dave.get("/manage/users").await;
        users.assert(StatusCode::OK, &["dave@example.net"]);
        assert!(!users.body.contains("alice@example.net"));
        // The invitation of a login that is in an account is refused.
        alice
            .post("/manage/users/invite", &[("email", "dave@example.net")])
            .await
            .assert(StatusCode::UNPROCESSABLE_ENTITY, &["already has a login"]);

        // Withdrawing an open invite.
        alice
            .post("/manage/users/invite", &[("email", "erin@example.net")])
            .await;
        let users = alice.get("/manage/users").await;
        let invite_id = between(&users.body, "/manage/invites/", "/revoke").expect("invite");
        let withdrawn = alice
            .post(&format!("/manage/invites/{invite_id}/revoke"), &[])
            .await;
        assert_eq!(withdrawn.status, StatusCode::SEE_OTHER);
        alice
            .get(withdrawn.location())
            .await
            .assert(StatusCode::OK, &["The invitation is withdrawn."]);
        // A made-up notice name shows nothing.
        let page = alice.get("/manage/users?done=%3Cb%3Eowned").await;
        assert!(
            !page.raw.contains("class=\"notice\" role=\"status\""),
            "{}",
            page.raw
        );
    })
    .await;
}

/// Seeds a monitor and 30 checks for `address`, one a minute from an hour
/// ago, plus an overall score with each. Returns the monitor and the first
/// check's time (a test that filters by time counts from it, not from a
/// second reading of the clock that may have moved on).
async fn seed_scores(app: &TestApp, address: &str, overall: f64) -> (i64, i64) {
    let server = servers::get_by_address(&app.db, address)
        .await
        .expect("query")
        .expect("server");
    let mut tx = app.db.begin().await.expect("begin");
    let (monitor_id, _token) = monitors::create(&mut tx, "mon-a, \"quoted\"")
        .await
        .expect("monitor");
    let t0 = now() - 3600;
    for i in 0..30 {
        let ts = t0 + i * 60;
        scores::record_check(
            &mut tx,
            &Check {
                server_id: server.id,
                monitor_id,
                ts,
                offset: Some(0.001 * i as f64),
                rtt: Some(0.02),
                stratum: Some(2),
                leap: Some(0),
                error: if i == 3 {
                    Some("i/o timeout, no reply".into())
                } else {
                    None
                },
                step: 1.0,
                score: i as f64 * 0.5,
                good_point: true,
            },
        )
        .await
        .expect("check");
        scores::set_server_score(&mut tx, server.id, overall.min(i as f64), ts)
            .await
            .expect("score");
    }
    tx.commit().await.expect("commit");
    (monitor_id, t0)
}

#[tokio::test]
async fn score_pages_csv_graph_and_api() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.signup("sc@example.net").await;
        c.add_server("2a01:4f8::53", "de").await;
        c.add_server("8.8.8.8", "de").await;
        let (monitor_id, t0) = seed_scores(&app, "8.8.8.8", 15.0).await;

        let page = c.get("/scores/8.8.8.8").await;
        page.assert(
            StatusCode::OK,
            &["graph.svg", "mon-a", "active", "/zone/de", "/zone/europe"],
        );
        let svg = c.get("/scores/8.8.8.8/graph.svg").await;
        assert_eq!(svg.status, StatusCode::OK);
        assert_eq!(svg.content_type(), "image/svg+xml");
        assert!(
            svg.body.contains("<svg") && svg.body.contains("<polyline"),
            "{}",
            &svg.body[..svg.body.len().min(400)]
        );
        let empty = c.get("/scores/2a01:4f8::53/graph.svg").await;
        assert!(empty.body.contains("No measurements yet"));
        c.get("/scores/2a01:04f8::0053")
            .await
            .assert(StatusCode::OK, &["2a01:4f8::53"]);

        // CSV: header, default limit, filters.
        let csv = c.get("/scores/8.8.8.8/log").await;
        assert_eq!(csv.status, StatusCode::OK);
        assert!(csv.content_type().starts_with("text/csv"));
        let lines: Vec<&str> = csv.body.lines().collect();
        assert_eq!(
            lines[0],
            "ts_epoch,ts,offset,step,score,monitor_id,monitor_name,rtt,leap,error"
        );
        assert_eq!(lines.len(), 61, "30 checks + 30 overall scores + header");
        assert!(
            csv.body.contains("\"mon-a, \"\"quoted\"\"\""),
            "monitor name quoted"
        );
        assert!(csv.body.contains("\"i/o timeout, no reply\""));
        let limited = c.get("/scores/8.8.8.8/log?limit=5").await;
        assert_eq!(limited.body.lines().count(), 6);
        let by_monitor = c
            .get(&format!(
                "/scores/8.8.8.8/log?monitor={monitor_id}&limit=10000"
            ))
            .await;
        assert_eq!(by_monitor.body.lines().count(), 31);
        let since = t0 + 25 * 60;
        let recent = c
            .get(&format!("/scores/8.8.8.8/log?since={since}&limit=20000"))
            .await;
        assert_eq!(recent.body.lines().count(), 1 + 2 * 5);
        c.get("/scores/8.8.8.8/log?limit=0")
            .await
            .assert(StatusCode::BAD_REQUEST, &["limit"]);
        c.get("/scores/8.8.8.8/log?limit=abc")
            .await
            .assert(StatusCode::BAD_REQUEST, &[]);
        c.get("/scores/8.8.8.8/log?since=yesterday")
            .await
            .assert(StatusCode::BAD_REQUEST, &["since"]);
        c.get("/scores/8.8.8.8/log?monitor=nobody")
            .await
            .assert(StatusCode::BAD_REQUEST, &["no monitor"]);
        c.get("/scores/8.8.4.4/log")
            .await
            .assert(StatusCode::NOT_FOUND, &[]);

        // Counts: 8.8.8.8 has score 15 (eligible), the IPv6 one is new.
        let home = c.get("/").await;
        assert!(
            home.body
                .contains("<td><a href=\"/zone/europe\">Europe</a></td><td>1</td><td>0</td>"),
            "{}",
            home.body
        );
        c.get("/zone/de")
            .await
            .assert(StatusCode::OK, &["<td>Registered</td><td>1</td><td>1</td>"]);

        // JSON API.
        let zones: serde_json::Value =
            serde_json::from_str(&c.get("/api/v1/zones").await.body).expect("json");
        let de = zones["zones"]
            .as_array()
            .expect("zones")
            .iter()
            .find(|z| z["zone"] == "de")
            .expect("de listed")
            .clone();
        assert_eq!(
            (
                de["v4"].as_i64(),
                de["v6"].as_i64(),
                de["registered_v6"].as_i64()
            ),
            (Some(1), Some(0), Some(1))
        );
        let zone: serde_json::Value =
            serde_json::from_str(&c.get("/api/v1/zones/europe").await.body).expect("json");
        assert_eq!(zone["names"][0], "0.europe.pool.example.org");
        assert!(
            zone["children"]
                .as_array()
                .expect("children")
                .iter()
                .any(|z| z["zone"] == "de")
        );
        c.get("/api/v1/zones/nowhere")
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
        let hist = c.get("/api/v1/servers/8.8.8.8/scores?limit=3").await;
        let hist: serde_json::Value = serde_json::from_str(&hist.body).expect("json");
        assert_eq!(hist["server"]["status"], "active");
        assert_eq!(hist["history"].as_array().map(Vec::len), Some(3));
        c.get("/api/v1/servers/8.8.4.4/scores")
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
        c.get("/api/v1/servers/8.8.8.8/scores?limit=-1")
            .await
            .assert(StatusCode::BAD_REQUEST, &["\"error\":\"limit must be"]);
        let unknown = c.get("/api/v1/nothing").await;
        unknown.assert(StatusCode::NOT_FOUND, &["{\"error\":\"not found\"}"]);
        assert_eq!(unknown.content_type(), "application/json");
    })
    .await;
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        let r = c.get("/api/v1/openapi.json").await;
        assert_eq!(r.status, StatusCode::OK);
        let doc: serde_json::Value = serde_json::from_str(&r.body).expect("valid JSON");
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
        for route in timepool::control::web::api::ROUTES {
            assert!(
                doc["paths"].get(*route).is_some(),
                "{route} missing from openapi.json"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn staff_monitors_vendor_zones_accounts_audit() {
    for_each_engine(false, |app| async move {
        let mut staff = staff_client(&app, "staff@example.net").await;
        let mut op = app.client();
        op.signup("vendor@example.net").await;

        // Monitors: token shown once, states change, validation.
        let created = staff.post("/staff/monitors", &[("name", "mon-1")]).await;
        created.assert(StatusCode::OK, &["mon-1", "monitor-token"]);
        let token =
            between(&created.body, "<code id=\"monitor-token\">", "</code>").expect("token");
        assert_eq!(token.len(), 64);
        let stored: String =
            sqlx::query_scalar("SELECT token_hash FROM monitors WHERE name = 'mon-1'")
                .fetch_one(&app.db.pool)
                .await
                .expect("hash");
        assert_ne!(stored, token);
        assert_eq!(stored, timepool::control::db::token_hash(&token));
        let list = staff.get("/staff/monitors").await;
        assert!(!list.body.contains(&token), "token shown only once");
        staff
            .post("/staff/monitors", &[("name", "mon-1")])
            .await
            .assert(StatusCode::UNPROCESSABLE_ENTITY, &["exists"]);
        staff
            .post("/staff/monitors", &[("name", "bad name!")])
            .await
            .assert(StatusCode::UNPROCESSABLE_ENTITY, &["Use 1 to 64"]);
        let id: i64 = sqlx::query_scalar("SELECT id FROM monitors WHERE name = 'mon-1'")
            .fetch_one(&app.db.pool)
            .await
            .expect("id");
        assert_eq!(
            staff
                .post(
                    &format!("/staff/monitors/{id}/state"),
                    &[("state", "active")]
                )
                .await
                .status,
            StatusCode::SEE_OTHER
        );
        staff
            .post(&format!("/staff/monitors/{id}/state"), &[("state", "boss")])
            .await
            .assert(StatusCode::BAD_REQUEST, &[]);
        staff
            .post("/staff/monitors/999999/state", &[("state", "paused")])
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
        staff
            .get("/staff/monitors")
            .await
            .assert(StatusCode::OK, &["<td>active</td>"]);

        // Vendor zones: operator applies (validated), staff decides once.
        op.post(
            "/manage/vendor",
            &[("name", "de"), ("client_type", "ntp"), ("description", "x")],
        )
        .await
        .assert(
            StatusCode::UNPROCESSABLE_ENTITY,
            &["country or continent zone"],
        );
        op.post(
            "/manage/vendor",
            &[
                ("name", "Bad_Name"),
                ("client_type", "nope"),
                ("description", " "),
            ],
        )
        .await
        .assert(
            StatusCode::UNPROCESSABLE_ENTITY,
            &[
                "lower-case letters",
                "kind of client",
                "Describe the product",
            ],
        );
        let ok = op
            .post(
                "/manage/vendor",
                &[
                    ("name", "acme-os"),
                    ("client_type", "sntp"),
                    ("description", "Acme routers"),
                ],
            )
            .await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER);
        op.get(ok.location()).await.assert(
            StatusCode::OK,
            &["Your application is sent; staff will review it.", "acme-os"],
        );
        op.post(
            "/manage/vendor",
            &[
                ("name", "acme-os"),
                ("client_type", "ntp"),
                ("description", "again"),
            ],
        )
        .await
        .assert(StatusCode::UNPROCESSABLE_ENTITY, &["already taken"]);
        op.get("/manage/vendor")
            .await
            .assert(StatusCode::OK, &["acme-os", "pending"]);
        staff
            .get("/staff/vendor-zones")
            .await
            .assert(StatusCode::OK, &["acme-os", "Acme routers", "Approve"]);
        let vz: i64 = sqlx::query_scalar("SELECT id FROM vendor_zones WHERE name = 'acme-os'")
            .fetch_one(&app.db.pool)
            .await
            .expect("vz");
        staff
            .post(
                &format!("/staff/vendor-zones/{vz}/decide"),
                &[("decision", "maybe")],
            )
            .await
            .assert(StatusCode::BAD_REQUEST, &[]);
        assert_eq!(
            staff
                .post(
                    &format!("/staff/vendor-zones/{vz}/decide"),
                    &[("decision", "approve")]
                )
                .await
                .status,
            StatusCode::SEE_OTHER
        );
        staff
            .post(
                &format!("/staff/vendor-zones/{vz}/decide"),
                &[("decision", "reject")],
            )
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
        op.get("/manage/vendor")
            .await
            .assert(StatusCode::OK, &["approved"]);

        // Accounts and the audit log.
        assert_eq!(staff.get("/staff").await.location(), "/staff/accounts");
        staff
            .get("/staff/accounts")
            .await
            .assert(StatusCode::OK, &["vendor@example.net", "staff@example.net"]);
        staff.get("/staff/audit").await.assert(
            StatusCode::OK,
            &[
                "account.signup",
                "monitor.create",
                "monitor.state",
                "vendor.apply",
                "vendor.decide",
                "staff@example.net",
                "vendor@example.net",
            ],
        );
    })
    .await;
}

/// A query the database refuses is a plain 500 page; the database out of
/// reach (here its pool closed) a 503 that says to try again; neither
/// shows the database's words.
#[tokio::test]
async fn database_errors_show_a_plain_page() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.get("/").await.assert(StatusCode::OK, &[]);
        // The news page reads a table that is gone.
        sqlx::query("DROP TABLE news_texts")
            .execute(&app.db.pool)
            .await
            .expect("drop");
        let r = c.get("/news").await;
        r.assert(
            StatusCode::INTERNAL_SERVER_ERROR,
            &["Something went wrong", "Nothing was changed"],
        );
        assert!(
            !r.body.to_lowercase().contains("sqlx") && !r.body.contains("news_texts"),
            "no internals leak: {}",
            r.body
        );
        app.db.pool.close().await;
        let r = c.get("/").await;
        r.assert(
            StatusCode::SERVICE_UNAVAILABLE,
            &["The database cannot be reached", "Nothing was changed"],
        );
        assert_eq!(
            r.headers.get("retry-after").map(|v| v.as_bytes()),
            Some(&b"30"[..])
        );
        assert!(
            !r.body.to_lowercase().contains("sqlx") && !r.body.contains("closed"),
            "no internals leak: {}",
            r.body
        );
    })
    .await;
}

#[tokio::test]
async fn expired_invites_and_past_deletions() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.signup("old@example.net").await;
        c.post("/manage/users/invite", &[("email", "late@example.net")])
            .await;
        let link = web_support::mailed_link(&app.db, "late@example.net", "/invite/").await;
        sqlx::query("UPDATE invites SET expires_at = $1")
            .bind(now() - 1)
            .execute(&app.db.pool)
            .await
            .expect("expire");
        app.client()
            .get(&link)
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
        c.get("/manage/users")
            .await
            .assert(StatusCode::OK, &["expired"]);

        // A server whose deletion date has passed is gone from lists and counts.
        let id = c.add_server("9.9.9.10", "at").await;
        sqlx::query("UPDATE servers SET deletion_on = $1, score = 20, score_ts = $1 WHERE id = $2")
            .bind(now() - 60)
            .bind(id)
            .execute(&app.db.pool)
            .await
            .expect("delete");
        assert!(!c.get("/manage").await.body.contains("9.9.9.10"));
        c.get("/zone/at")
            .await
            .assert(StatusCode::OK, &["<td>Registered</td><td>0</td><td>0</td>"]);
        c.get("/scores/9.9.9.10")
            .await
            .assert(StatusCode::OK, &["deleted"]);
        c.post(&format!("/manage/servers/{id}/undelete"), &[])
            .await
            .assert(StatusCode::NOT_FOUND, &[]);
    })
    .await;
}

/// With a GeoIP database, a new server's country comes from its address
/// (GeoIP's GB is the pool's uk); the operator may still override it.
#[tokio::test]
async fn geoip_places_new_servers() {
    web_support::for_each_engine_with_geo(false, true, |app| async move {
        let mut c = app.client();
        c.signup("geo@example.net").await;
        for address in ["85.214.1.1", "81.2.69.7"] {
            let r = c
                .post(
                    "/manage/servers",
                    &[("address", address), ("zone", ""), ("netspeed", "10000")],
                )
                .await;
            assert!(
                r.status == StatusCode::SEE_OTHER || r.status == StatusCode::FOUND,
                "{address} added without choosing a zone: {} {}",
                r.status,
                r.body
            );
        }
        let list = c.get("/manage").await;
        list.assert(
            StatusCode::OK,
            &["85.214.1.1", "de, europe, @", "81.2.69.7", "uk, europe, @"],
        );
        // An address GeoIP does not know still needs a country.
        c.post(
            "/manage/servers",
            &[("address", "9.9.9.9"), ("zone", ""), ("netspeed", "10000")],
        )
        .await
        .assert(StatusCode::UNPROCESSABLE_ENTITY, &["choose its country"]);
    })
    .await;
}

/// Simulated NTP servers on loopback addresses, all on one UDP port (the
/// join check asks every server on the same port).
async fn responders_on_one_port(
    servers: &[(&str, timepool::shared::ntp::responder::Behaviour)],
) -> (Vec<timepool::shared::ntp::responder::Responder>, u16) {
    use timepool::shared::ntp::responder::Responder;
    for _ in 0..100 {
        let first_addr = std::net::SocketAddr::new(servers[0].0.parse().expect("ip"), 0);
        let Ok(first) = Responder::start(first_addr, servers[0].1).await else {
            continue;
        };
        let port = first.local_addr().port();
        let mut started = vec![first];
        for (address, behaviour) in &servers[1..] {
            let addr = std::net::SocketAddr::new(address.parse().expect("ip"), port);
            match Responder::start(addr, *behaviour).await {
                Ok(responder) => started.push(responder),
                Err(_) => break,
            }
        }
        if started.len() == servers.len() {
            return (started, port);
        }
    }
    panic!("no UDP port free on all test addresses");
}

#[tokio::test]
async fn a_server_must_answer_the_time_before_it_joins() {
    use timepool::shared::ntp::responder::Behaviour;
    let good = Behaviour::Offset {
        offset: 0.002,
        stratum: 2,
    };
    let (responders, port) = responders_on_one_port(&[
        ("127.0.0.61", good),
        ("127.0.0.62", Behaviour::Silent),
        (
            "127.0.0.63",
            Behaviour::Offset {
                offset: 0.0,
                stratum: 0,
            },
        ),
        (
            "127.0.0.64",
            Behaviour::Offset {
                offset: 0.0,
                stratum: 6,
            },
        ),
        (
            "127.0.0.65",
            Behaviour::Offset {
                offset: 30.0,
                stratum: 2,
            },
        ),
    ])
    .await;
    let responders = std::sync::Arc::new(responders);
    web_support::for_each_engine_configured(
        move |settings| {
            settings.allow_loopback = true;
            settings.join_check = Some(timepool::control::web::join_check::JoinCheck {
                port,
                samples: 1,
                timeout: std::time::Duration::from_millis(500),
            });
        },
        |app| {
            let responders = responders.clone();
            async move {
                let mut c = app.client();
                c.signup("joins@example.net").await;
                let add = |address: &'static str| {
                    vec![("address", address), ("zone", "de"), ("netspeed", "10000")]
                };
                for (address, reason) in [
                    ("127.0.0.62", "did not answer an NTP query"),
                    ("127.0.0.63", "answered with stratum 0"),
                    ("127.0.0.64", "answered with stratum 6"),
                    ("127.0.0.65", "is 30.0 seconds off"),
                ] {
                    let r = c.post("/manage/servers", &add(address)).await;
                    r.assert(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &[reason, &format!("value=\"{address}\"")],
                    );
                    assert!(
                        servers::get_by_address(&app.db, address)
                            .await
                            .expect("db")
                            .is_none(),
                        "{address} was added"
                    );
                }
                let r = c.post("/manage/servers", &add("127.0.0.61")).await;
                assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
                // The silent one fixed: trying again works.
                responders[1].set_behaviour(good);
                let r = c.post("/manage/servers", &add("127.0.0.62")).await;
                assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
                // Both engines run this test: the next one starts afresh.
                responders[1].set_behaviour(Behaviour::Silent);
            }
        },
    )
    .await;
}

#[tokio::test]
async fn an_unconfirmed_address_adds_no_servers_until_its_link_is_opened() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.signup_unconfirmed("new@example.net").await;
        c.get("/manage").await.assert(
            StatusCode::OK,
            &[
                "Confirm your address <strong>new@example.net</strong>",
                "Send the mail again",
            ],
        );
        c.post(
            "/manage/servers",
            &[
                ("address", "9.9.9.9"),
                ("zone", "de"),
                ("netspeed", "10000"),
            ],
        )
        .await
        .assert(
            StatusCode::UNPROCESSABLE_ENTITY,
            &["Confirm your address first", "value=\"9.9.9.9\""],
        );
        assert!(
            servers::get_by_address(&app.db, "9.9.9.9")
                .await
                .expect("db")
                .is_none()
        );
        // The mail of the sign-up is queued; asking again within five
        // minutes queues no second one.
        let queued = || async {
            timepool::control::db::mail::recent(&app.db, 10)
                .await
                .expect("queue")
                .iter()
                .filter(|m| m.kind == "verify")
                .count()
        };
        assert_eq!(queued().await, 1);
        let again = c.post("/manage/verify", &[]).await;
        assert_eq!(again.location(), "/manage?done=verification-sent");
        assert_eq!(queued().await, 1);
        // The mail: the link right under the line that asks to open it,
        // the site's name and a link back at the end.
        let mails = timepool::control::db::mail::recent(&app.db, 10)
            .await
            .expect("queue");
        let body = &mails
            .iter()
            .find(|m| m.kind == "verify")
            .expect("verify mail")
            .body;
        assert!(
            body.contains("open this link within 7 days:\nhttp://timepool.test/verify/"),
            "{body}"
        );
        assert!(
            body.ends_with("\n-- \npool.example.org\nhttp://timepool.test/\n"),
            "{body}"
        );
        // The link confirms the address, once.
        let link = web_support::mailed_link(&app.db, "new@example.net", "/verify/").await;
        let opened = c.get(&link).await;
        assert_eq!(opened.location(), "/manage?done=email-verified");
        let page = c.get(opened.location()).await;
        page.assert(StatusCode::OK, &["Your address is confirmed."]);
        assert!(!page.body.contains("Send the mail again"));
        assert_eq!(c.get(&link).await.status, StatusCode::NOT_FOUND);
        c.add_server("9.9.9.9", "de").await;
        // Opened without a login, it leads to the login page.
        let mut other = app.client();
        other.signup_unconfirmed("other@example.net").await;
        let link = web_support::mailed_link(&app.db, "other@example.net", "/verify/").await;
        let opened = app.client().get(&link).await;
        assert_eq!(opened.location(), "/login?done=email-verified");
        other.add_server("9.9.9.10", "de").await;
    })
    .await;
}

#[tokio::test]
async fn a_user_changes_their_password_and_their_address() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.signup("me@example.net").await;
        let mut elsewhere = app.client();
        elsewhere
            .post(
                "/login",
                &[
                    ("email", "me@example.net"),
                    ("password", "correct horse battery"),
                ],
            )
            .await;
        assert_eq!(elsewhere.get("/manage").await.status, StatusCode::OK);
        c.get("/manage/login").await.assert(
            StatusCode::OK,
            &[
                "Change the password",
                "Now: <strong>me@example.net</strong>.",
            ],
        );
        // The password: the current one first.
        let new = "another good password";
        c.post(
            "/manage/login/password",
            &[
                ("current", "not it at all"),
                ("password", new),
                ("password2", new),
            ],
        )
        .await
        .assert(
            StatusCode::UNPROCESSABLE_ENTITY,
            &["The password is wrong."],
        );
        let saved = c
            .post(
                "/manage/login/password",
                &[
                    ("current", "correct horse battery"),
                    ("password", new),
                    ("password2", new),
                ],
            )
            .await;
        assert_eq!(saved.location(), "/manage/login?done=saved");
        // This browser stays, the other session ended.
        assert_eq!(c.get("/manage").await.status, StatusCode::OK);
        assert_eq!(elsewhere.get("/manage").await.location(), "/login");
        let login = |email: &'static str, password: &'static str| {
            vec![("email", email), ("password", password)]
        };
        assert_eq!(
            app.client()
                .post("/login", &login("me@example.net", new))
                .await
                .status,
            StatusCode::SEE_OTHER
        );
        // The address: not one with a login, the password first, and it
        // changes only when the link mailed to the new address is opened.
        app.client().signup("taken@example.net").await;
        c.post(
            "/manage/login/email",
            &[("email", "taken@example.net"), ("current", new)],
        )
        .await
        .assert(StatusCode::UNPROCESSABLE_ENTITY, &["already has a login"]);
        c.post(
            "/manage/login/email",
            &[("email", "new@example.net"), ("current", "wrong one!")],
        )
        .await
        .assert(
            StatusCode::UNPROCESSABLE_ENTITY,
            &["The password is wrong.", "value=\"new@example.net\""],
        );
        c.post(
            "/manage/login/email",
            &[("email", "New@Example.net"), ("current", new)],
        )
        .await
        .assert(
            StatusCode::OK,
            &["A confirmation mail is on its way to new@example.net"],
        );
        assert_eq!(
            app.client()
                .post("/login", &login("me@example.net", new))
                .await
                .status,
            StatusCode::SEE_OTHER,
            "the old address works until the link is opened"
        );
        let link = web_support::mailed_link(&app.db, "new@example.net", "/verify/").await;
        assert_eq!(c.get(&link).await.location(), "/manage?done=email-verified");
        c.get("/manage/login")
            .await
            .assert(StatusCode::OK, &["Now: <strong>new@example.net</strong>."]);
        assert_eq!(
            app.client()
                .post("/login", &login("new@example.net", new))
                .await
                .status,
            StatusCode::SEE_OTHER
        );
        assert_eq!(
            app.client()
                .post("/login", &login("me@example.net", new))
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        let audit: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log ORDER BY id")
            .fetch_all(&app.db.pool)
            .await
            .expect("audit");
        for action in [
            "user.password.change",
            "user.email.change.request",
            "user.email.change",
        ] {
            assert!(
                audit.iter().any(|a| a == action),
                "{action} not in {audit:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn the_account_is_told_of_changes_each_user_in_their_language() {
    for_each_engine(false, |app| async move {
        let mut alice = app.client();
        alice.signup("alice@example.net").await;
        // Alice reads the site in German: her choice is stored.
        alice.get("/de/manage").await;
        let id = alice.add_server("9.9.9.9", "de").await;
        alice
            .post("/manage/users/invite", &[("email", "bob@example.net")])
            .await;
        let link = web_support::mailed_link(&app.db, "bob@example.net", "/invite/").await;
        let mut bob = app.client();
        let password = "bobs password 1";
        bob.post(&link, &[("password", password), ("password2", password)])
            .await;
        let mails_to = |to: &'static str, kind: &'static str| {
            let db = app.db.clone();
            async move {
                timepool::control::db::mail::recent(&db, 100)
                    .await
                    .expect("queue")
                    .into_iter()
                    .filter(|m| m.recipient == to && m.kind == kind)
                    .collect::<Vec<_>>()
            }
        };
        let later = timepool::control::timefmt::date(now() + 5 * 86_400);
        alice
            .post(&format!("/manage/servers/{id}/delete"), &[("on", &later)])
            .await;
        let (de, en) = (
            mails_to("alice@example.net", "server_deletion").await,
            mails_to("bob@example.net", "server_deletion").await,
        );
        assert_eq!((de.len(), en.len()), (1, 1));
        assert!(
            de[0].subject.contains("9.9.9.9 verlässt den Pool"),
            "{}",
            de[0].subject
        );
        assert!(
            de[0]
                .body
                .contains(&format!("http://timepool.test/de/manage/servers/{id}")),
            "{}",
            de[0].body
        );
        assert!(
            en[0].subject.contains("9.9.9.9 leaves the pool"),
            "{}",
            en[0].subject
        );
        assert!(
            en[0]
                .body
                .contains("alice@example.net scheduled the deletion")
        );
        assert!(
            en[0]
                .body
                .contains(&format!("http://timepool.test/manage/servers/{id}"))
        );
        alice
            .post(&format!("/manage/servers/{id}/undelete"), &[])
            .await;
        assert_eq!(
            mails_to("bob@example.net", "server_deletion_cancelled")
                .await
                .len(),
            1
        );
        // A vendor zone applied for, and decided by staff.
        alice
            .post(
                "/manage/vendor",
                &[
                    ("name", "acme-os"),
                    ("client_type", "sntp"),
                    ("description", "Routers"),
                ],
            )
            .await;
        let mut staff = web_support::staff_client(&app, "decides@example.org").await;
        let zone_id: i64 = sqlx::query_scalar("SELECT id FROM vendor_zones WHERE name = 'acme-os'")
            .fetch_one(&app.db.pool)
            .await
            .expect("zone");
        staff
            .post(
                &format!("/staff/vendor-zones/{zone_id}/decide"),
                &[("decision", "approve")],
            )
            .await;
        let vendor = mails_to("bob@example.net", "vendor_zone").await;
        let subjects: Vec<&str> = vendor.iter().map(|m| m.subject.as_str()).collect();
        assert!(
            subjects
                .iter()
                .any(|s| s.ends_with("vendor zone acme-os submitted")),
            "{subjects:?}"
        );
        assert!(
            subjects
                .iter()
                .any(|s| s.ends_with("vendor zone acme-os approved")),
            "{subjects:?}"
        );
        // Bob removed: he and Alice are told.
        let bob_id: i64 =
            sqlx::query_scalar("SELECT id FROM users WHERE email = 'bob@example.net'")
                .fetch_one(&app.db.pool)
                .await
                .expect("bob");
        alice
            .post(
                &format!("/manage/users/{bob_id}/remove"),
                &[("confirm", "yes")],
            )
            .await;
        let told = mails_to("bob@example.net", "user_removed").await;
        assert_eq!(told.len(), 1);
        assert!(
            told[0]
                .subject
                .ends_with("bob@example.net is no longer a user of the account")
        );
        assert_eq!(mails_to("alice@example.net", "user_removed").await.len(), 1);
    })
    .await;
}
