//! The web app's guards against bad clients, in process, on SQLite and
//! PostgreSQL: CSRF tokens bound to the session, cross-site posts,
//! `__Host-` cookies, no caching of private pages, body limits and field
//! checks before any hashing, the login limit per network with
//! X-Forwarded-For only from trusted proxies, inert CSV cells, and the DNS
//! nodes page. (The listener's own guards, TLS and memory are in
//! web_hardening.rs and tls.rs, against the real binary.)

mod web_support;

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use timepool::control::db::scores::{self, Check};
use timepool::control::db::{monitors, nodes, now, servers};
use web_support::{for_each_engine, for_each_engine_configured, staff_client};

fn set_cookie_lines(response: &web_support::Response) -> Vec<String> {
    response
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn csrf_tokens_are_bound_to_the_session_and_rotate_at_login() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        let token = c.csrf_token().await;
        let cookie = c.cookies.get("tp_csrf").cloned().expect("browser cookie");
        assert_eq!(token.len(), 64);
        assert_ne!(token, cookie, "the token is not the cookie's value");
        let fields = [
            ("email", "bound@example.net"),
            ("password", "long enough pw"),
            ("password2", "long enough pw"),
        ];

        // A planted cookie with a matching field (the old double submit)
        // is refused: the token is an HMAC the attacker cannot compute.
        let mut planted = app.client();
        let forged = "ab".repeat(32);
        planted.cookies.insert("tp_csrf".into(), forged.clone());
        let mut with_forged = fields.to_vec();
        with_forged.push(("csrf", &forged));
        planted
            .post_raw("/signup", &with_forged)
            .await
            .assert(StatusCode::FORBIDDEN, &["Form expired"]);

        // Another browser's valid token does not work with this cookie.
        let mut other = app.client();
        let others_token = other.csrf_token().await;
        let mut with_others = fields.to_vec();
        with_others.push(("csrf", &others_token));
        c.post_raw("/signup", &with_others)
            .await
            .assert(StatusCode::FORBIDDEN, &[]);

        // Its own token works; the login changes the token.
        let mut with_own = fields.to_vec();
        with_own.push(("csrf", &token));
        let signed_up = c.post_raw("/signup", &with_own).await;
        assert_eq!(
            signed_up.status,
            StatusCode::SEE_OTHER,
            "{}",
            signed_up.body
        );
        assert!(
            set_cookie_lines(&signed_up)
                .iter()
                .any(|line| line.starts_with("tp_csrf=")),
            "a new browser cookie at login"
        );
        let after = c.csrf_token().await;
        assert_ne!(after, token, "the token rotates at login");
        c.post_raw("/logout", &[("csrf", &token)])
            .await
            .assert(StatusCode::FORBIDDEN, &[]);
        let out = c.post("/logout", &[]).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
    })
    .await;
}

#[tokio::test]
async fn cross_site_posts_are_refused_before_anything_runs() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        let fields = [
            ("email", "site@example.net"),
            ("password", "long enough pw"),
            ("password2", "long enough pw"),
        ];
        for headers in [
            &[("sec-fetch-site", "cross-site")][..],
            &[("sec-fetch-site", "same-site")][..],
            &[
                ("host", "pool.example.org"),
                ("origin", "https://evil.example"),
            ][..],
            &[("host", "pool.example.org"), ("origin", "null")][..],
        ] {
            c.post_with("/signup", &fields, headers)
                .await
                .assert(StatusCode::FORBIDDEN, &["another site"]);
        }
        assert!(
            timepool::control::db::accounts::find_login(&app.db, "site@example.net")
                .await
                .unwrap()
                .is_none(),
            "nothing was created"
        );
        let same = [
            ("host", "pool.example.org"),
            ("origin", "https://pool.example.org"),
            ("sec-fetch-site", "same-origin"),
        ];
        let ok = c.post_with("/signup", &fields, &same).await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    })
    .await;
}

#[tokio::test]
async fn cookies_are_host_only_and_secure_over_https() {
    for_each_engine_configured(
        |settings| settings.secure_cookies = true,
        |app| async move {
            let mut c = app.client();
            let first = c.get("/").await;
            let lines = set_cookie_lines(&first);
            let browser = lines
                .iter()
                .find(|l| l.starts_with("__Host-tp_csrf="))
                .unwrap_or_else(|| panic!("{lines:?}"));
            for part in ["; Path=/", "; Secure", "; HttpOnly", "SameSite=Lax"] {
                assert!(browser.contains(part), "{browser}");
            }
            assert!(!browser.contains("Domain"), "{browser}");
            let signup = c
                .post(
                    "/signup",
                    &[
                        ("email", "host@example.net"),
                        ("password", "long enough pw"),
                        ("password2", "long enough pw"),
                    ],
                )
                .await;
            assert_eq!(signup.status, StatusCode::SEE_OTHER, "{}", signup.body);
            let session = set_cookie_lines(&signup)
                .into_iter()
                .find(|l| l.starts_with("__Host-tp_session="))
                .expect("host-only session cookie");
            assert!(session.contains("; Secure") && !session.contains("Domain"));
            c.get("/manage")
                .await
                .assert(StatusCode::OK, &["host@example.net"]);
            // The plain cookie name means nothing here.
            let mut plain = app.client();
            let value = c.cookies.get("__Host-tp_session").cloned().unwrap();
            plain.cookies.insert("tp_session".into(), value);
            assert_eq!(plain.get("/manage").await.location(), "/login");
        },
    )
    .await;
}

#[tokio::test]
async fn pages_with_tokens_are_not_cached() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.signup("cache@example.net").await;
        let invite = c
            .post("/manage/users/invite", &[("email", "friend@example.net")])
            .await;
        invite.assert(StatusCode::OK, &["An invitation is mailed"]);
        assert_eq!(invite.headers["cache-control"], "no-store");
        let users = c.get("/manage/users").await;
        assert_eq!(users.headers["cache-control"], "no-store");
        let path = web_support::mailed_link(&app.db, "friend@example.net", "/invite/").await;
        let accept = app.client().get(&path).await;
        assert_eq!(accept.status, StatusCode::OK, "{path}");
        assert_eq!(accept.headers["cache-control"], "no-store");
        // A public page, once the browser has its cookie, may be cached.
        c.get("/zone/de").await;
        let public = c.get("/zone/de").await;
        assert!(public.headers.get("cache-control").is_none());
    })
    .await;
}

#[tokio::test]
async fn big_bodies_and_long_fields_are_refused_before_hashing() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        let hashes = || app.state.hasher.done.load(Ordering::Relaxed);
        let megabyte = "a".repeat(1024 * 1024) + "@example.net";
        let huge = c
            .post(
                "/login",
                &[("email", &megabyte), ("password", "whatever pw")],
            )
            .await;
        assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
        let long = "b".repeat(300) + "@example.net";
        c.post("/login", &[("email", &long), ("password", "whatever pw")])
            .await
            .assert(
                StatusCode::UNPROCESSABLE_ENTITY,
                &["does not look like an email", &long],
            );
        let long_password = "p".repeat(2000);
        c.post(
            "/login",
            &[("email", "x@example.net"), ("password", &long_password)],
        )
        .await
        .assert(StatusCode::UNPROCESSABLE_ENTITY, &[]);
        c.post(
            "/signup",
            &[
                ("email", &long),
                ("password", "long enough pw"),
                ("password2", "long enough pw"),
            ],
        )
        .await
        .assert(StatusCode::UNPROCESSABLE_ENTITY, &[]);
        assert_eq!(hashes(), 0, "nothing was hashed for those");
        // A plausible login is checked (against a dummy hash).
        c.post(
            "/login",
            &[("email", "x@example.net"), ("password", "whatever pw")],
        )
        .await
        .assert(StatusCode::UNAUTHORIZED, &[]);
        assert_eq!(hashes(), 1);
        // The ingest API takes a batch far larger than a form.
        let results = (0..200)
            .map(|i| format!(r#"{{"server":"192.0.2.{i}","ts":1,"offset":null,"rtt":null,"stratum":null,"leap":null,"error":"timeout"}}"#))
            .collect::<Vec<_>>()
            .join(",");
        let body = format!(r#"{{"batch_id":1,"results":[{results}]}}"#);
        assert!(body.len() > 16 * 1024);
        let ingest = c
            .request_with(
                "POST",
                "/api/v1/monitor/results",
                Some(body),
                &[("authorization", "Bearer nope")],
            )
            .await;
        assert_eq!(ingest.status, StatusCode::UNAUTHORIZED, "not 413");
    })
    .await;
}

/// A login from `peer` with this X-Forwarded-For.
async fn attempt(
    c: &mut web_support::Client,
    peer: &str,
    forwarded: &str,
    password: &str,
) -> StatusCode {
    c.post_with(
        "/login",
        &[("email", "limit@example.net"), ("password", password)],
        &[("x-test-peer", peer), ("x-forwarded-for", forwarded)],
    )
    .await
    .status
}

#[tokio::test]
async fn the_login_limit_counts_networks_and_believes_only_trusted_proxies() {
    for_each_engine_configured(
        |settings| settings.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()],
        |app| async move {
            let mut c = app.client();
            c.signup("limit@example.net").await;
            c.post("/logout", &[]).await;
            // A stranger's X-Forwarded-For is ignored: rotating it does
            // not escape the limit of its own address.
            for i in 0..5 {
                let status = attempt(
                    &mut c,
                    "198.51.100.7:1000",
                    &format!("203.0.113.{i}"),
                    "wrong pw 1",
                )
                .await;
                assert_eq!(status, StatusCode::UNAUTHORIZED);
            }
            assert_eq!(
                attempt(&mut c, "198.51.100.8:1000", "203.0.113.77", "wrong pw 1").await,
                StatusCode::TOO_MANY_REQUESTS,
                "same /24 as the peer, whatever the header says"
            );
            // Each failure is in the audit log, and the one that started
            // the lockout once (not the refused try after it).
            let count = |action: &'static str| {
                let db = app.db.clone();
                async move {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM audit_log WHERE action = $1 AND target = 'login:limit@example.net'",
                    )
                    .bind(action)
                    .fetch_one(&db.pool)
                    .await
                    .expect("audit");
                    n
                }
            };
            assert_eq!(count("login.failed").await, 5);
            assert_eq!(count("login.lockout").await, 1);
            // Through the trusted proxy the forwarded address counts.
            assert_eq!(
                attempt(
                    &mut c,
                    "10.0.0.1:1000",
                    "192.0.2.10",
                    "correct horse battery"
                )
                .await,
                StatusCode::SEE_OTHER,
                "another network may still log in"
            );
            c.post("/logout", &[]).await;
            for _ in 0..5 {
                let status = attempt(&mut c, "10.0.0.1:1000", "192.0.2.10", "wrong pw 2").await;
                assert_eq!(status, StatusCode::UNAUTHORIZED);
            }
            assert_eq!(
                attempt(
                    &mut c,
                    "10.0.0.1:1000",
                    "192.0.2.99",
                    "correct horse battery"
                )
                .await,
                StatusCode::TOO_MANY_REQUESTS,
                "the client's /24 is limited"
            );
            assert_eq!(
                attempt(
                    &mut c,
                    "10.0.0.1:1000",
                    "2001:db8:1:2::1",
                    "correct horse battery"
                )
                .await,
                StatusCode::SEE_OTHER
            );
        },
    )
    .await;
}

#[tokio::test]
async fn csv_cells_that_look_like_formulas_are_inert() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        c.signup("csv@example.net").await;
        c.add_server("8.8.8.8", "de").await;
        let server = servers::get_by_address(&app.db, "8.8.8.8")
            .await
            .unwrap()
            .unwrap();
        let mut tx = app.db.begin().await.unwrap();
        let (monitor_id, _) = monitors::create(&mut tx, "@SUM(1)").await.unwrap();
        for (i, error) in [
            "=HYPERLINK(\"http://evil.example\",\"click\")",
            "+1",
            "-2+3",
            "\tcmd",
        ]
        .iter()
        .enumerate()
        {
            scores::record_check(
                &mut tx,
                &Check {
                    server_id: server.id,
                    monitor_id,
                    ts: now() - 100 + i as i64,
                    offset: Some(-0.25),
                    rtt: Some(0.02),
                    stratum: Some(2),
                    leap: Some(0),
                    error: Some(error.to_string()),
                    step: -1.0,
                    score: -1.0,
                    good_point: false,
                },
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        let csv = c.get("/scores/8.8.8.8/log").await;
        assert_eq!(csv.status, StatusCode::OK);
        let body = &csv.body;
        assert!(
            body.contains("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\""),
            "{body}"
        );
        assert!(body.contains(",'@SUM(1),"), "{body}");
        assert!(
            body.contains(",'+1\n") && body.contains(",'-2+3\n"),
            "{body}"
        );
        assert!(body.contains(",'\tcmd\n"), "{body}");
        assert!(body.contains(",-0.25,"), "numbers stay numbers: {body}");
        for line in body.lines().skip(1) {
            for cell in line.split(',') {
                assert!(
                    !cell.starts_with(['=', '+', '@', '\t']),
                    "live formula cell {cell:?} in {line}"
                );
            }
        }
    })
    .await;
}

async fn pull_snapshot(c: &mut web_support::Client, headers: &[(&str, &str)]) -> StatusCode {
    c.request_with("GET", "/api/v1/snapshot", None, headers)
        .await
        .status
}

#[tokio::test]
async fn the_nodes_page_shows_where_each_dns_node_stands() {
    for_each_engine(false, |app| async move {
        let db = &app.db;
        // Publishes: 100 long ago, 200 twenty minutes ago, 300 a minute ago.
        for (serial, age) in [(100i64, 7200), (200, 1200), (300, 60)] {
            sqlx::query(
                "INSERT INTO snapshots (serial, published_at, content_hash) VALUES ($1, $2, 'x')",
            )
            .bind(serial)
            .bind(now() - age)
            .execute(&db.pool)
            .await
            .unwrap();
        }
        let mut tx = db.begin().await.unwrap();
        let token = nodes::create(&mut tx, "ns1.example").await.unwrap();
        tx.commit().await.unwrap();
        let mut pull = app.client();
        let bearer = format!("Bearer {token}");
        // The registered node, current.
        let status = pull_snapshot(
            &mut pull,
            &[
                ("authorization", &bearer),
                ("x-timepool-node-serial", "300"),
                ("user-agent", "timepool/9.9.9"),
                ("x-test-peer", "198.51.100.53:4000"),
            ],
        )
        .await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "nothing to serve yet, but recorded"
        );
        // Someone without the token using its name changes nothing.
        pull_snapshot(
            &mut pull,
            &[
                ("x-timepool-node", "ns1.example"),
                ("x-timepool-node-serial", "100"),
            ],
        )
        .await;
        // A wrong token is refused.
        let refused = pull_snapshot(&mut pull, &[("authorization", "Bearer nope")]).await;
        assert_eq!(refused, StatusCode::UNAUTHORIZED);
        // An unregistered node, twenty minutes behind.
        pull_snapshot(
            &mut pull,
            &[
                ("x-timepool-node", "ns2.example"),
                ("x-timepool-node-serial", "100"),
            ],
        )
        .await;
        // A name that is not a name is not recorded.
        pull_snapshot(&mut pull, &[("x-timepool-node", "<script>")]).await;

        let mut operator = app.client();
        operator.signup("op@nodes.example").await;
        assert_eq!(
            operator.get("/staff/nodes.json").await.status,
            StatusCode::FORBIDDEN
        );
        let mut staff = staff_client(&app, "staff@nodes.example").await;
        let json = staff.get("/staff/nodes.json").await;
        assert_eq!(json.status, StatusCode::OK, "{}", json.body);
        let doc: serde_json::Value = serde_json::from_str(&json.body).unwrap();
        let list = doc["nodes"].as_array().unwrap();
        assert_eq!(list.len(), 2, "{doc}");
        let ns1 = &list[0];
        assert_eq!(ns1["name"], "ns1.example");
        assert_eq!(ns1["registered"], true);
        assert_eq!(ns1["serial"], 300);
        assert_eq!(ns1["version"], "timepool/9.9.9");
        assert_eq!(ns1["last_address"], "198.51.100.53");
        assert_eq!(ns1["behind_secs"], 0);
        assert_eq!(ns1["flagged"], false);
        let ns2 = &list[1];
        assert_eq!(ns2["name"], "ns2.example");
        assert_eq!(ns2["registered"], false);
        assert!(ns2["behind_secs"].as_i64().unwrap() >= 1200, "{ns2}");
        assert_eq!(ns2["flagged"], true);
        let page = staff.get("/staff/nodes").await;
        page.assert(
            StatusCode::OK,
            &["ns1.example", "ns2.example", "20 min behind", "current"],
        );
    })
    .await;
}

#[tokio::test]
async fn node_tokens_can_be_required() {
    for_each_engine_configured(
        |settings| settings.require_node_tokens = true,
        |app| async move {
            let mut c = app.client();
            let anonymous = c
                .request_with(
                    "GET",
                    "/api/v1/snapshot",
                    None,
                    &[("x-timepool-node", "ns9")],
                )
                .await;
            assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
            let mut tx = app.db.begin().await.unwrap();
            let token = nodes::create(&mut tx, "ns9").await.unwrap();
            tx.commit().await.unwrap();
            let bearer = format!("Bearer {token}");
            let known = c
                .request_with(
                    "GET",
                    "/api/v1/snapshot",
                    None,
                    &[("authorization", &bearer)],
                )
                .await;
            assert_eq!(
                known.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "authorized; nothing published yet"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn unregistered_node_names_are_bounded() {
    for_each_engine(false, |app| async move {
        let db = &app.db;
        let mut tx = db.begin().await.unwrap();
        for i in 0..nodes::MAX_UNREGISTERED {
            sqlx::query(
                "INSERT INTO dns_nodes (name, created_at, last_pull_at) VALUES ($1, 0, $2)",
            )
            .bind(format!("flood-{i}"))
            .bind(now())
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        let pull = |name: &'static str| nodes::Pull {
            name,
            registered: false,
            address: "192.0.2.1",
            serial: Some(1),
            version: None,
            at: now(),
        };
        assert!(
            !nodes::record_pull(db, &pull("newcomer")).await.unwrap(),
            "full"
        );
        // A name silent for over a week makes room.
        sqlx::query("UPDATE dns_nodes SET last_pull_at = $1 WHERE name = 'flood-7'")
            .bind(now() - 8 * 86_400)
            .execute(&db.pool)
            .await
            .unwrap();
        assert!(nodes::record_pull(db, &pull("newcomer")).await.unwrap());
        // Known names are always updated.
        assert!(nodes::record_pull(db, &pull("flood-8")).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn one_network_trying_many_emails_is_limited() {
    for_each_engine(false, |app| async move {
        let mut c = app.client();
        let per_network = timepool::control::web::session::LoginLimit::PER_NETWORK;
        for i in 0..per_network {
            let status = c
                .post_with(
                    "/login",
                    &[
                        ("email", &format!("victim{i}@example.net")),
                        ("password", "a guess"),
                    ],
                    &[("x-test-peer", &format!("198.51.100.{}:1000", i % 200))],
                )
                .await
                .status;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let from = |peer: &'static str| [("x-test-peer", peer)];
        let next = c
            .post_with(
                "/login",
                &[("email", "fresh@example.net"), ("password", "a guess")],
                &from("198.51.100.250:1000"),
            )
            .await;
        assert_eq!(
            next.status,
            StatusCode::TOO_MANY_REQUESTS,
            "the /24 is limited"
        );
        let elsewhere = c
            .post_with(
                "/login",
                &[("email", "fresh@example.net"), ("password", "a guess")],
                &from("203.0.113.9:1000"),
            )
            .await;
        assert_eq!(
            elsewhere.status,
            StatusCode::UNAUTHORIZED,
            "other networks are not"
        );
    })
    .await;
}
