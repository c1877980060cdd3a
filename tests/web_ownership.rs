//! Owners, members and verified servers (web/README.md, "Owners, members
//! and verified servers"), on SQLite and PostgreSQL: what a member may not
//! do, the last owner, the netspeed cap of unverified servers, verification
//! by a real HTTP request from 127.0.0.x to the one-time URL, staff
//! approval, and an address claimed from another account.

mod web_support;

use std::net::SocketAddr;

use axum::http::StatusCode;
use timepool::control::db::{Db, mail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use web_support::{Client, TestApp};

const PASSWORD: &str = "correct horse battery";

async fn user_id(db: &Db, email: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(&db.pool)
        .await
        .expect("user")
}

/// The kinds and recipients of the queued mails of `kind`.
async fn told(db: &Db, kind: &str) -> Vec<String> {
    let mut to: Vec<String> = mail::recent(db, 1000)
        .await
        .expect("queue")
        .into_iter()
        .filter(|m| m.kind == kind)
        .map(|m| m.recipient)
        .collect();
    to.sort();
    to
}

async fn join(app: &TestApp, inviter: &mut Client, email: &str) -> Client {
    let r = inviter
        .post("/manage/users/invite", &[("email", email)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "invite {email}: {}", r.body);
    let link = web_support::mailed_link(&app.db, email, "/invite/").await;
    let mut client = app.client();
    let existing = client.get(&link).await.body.contains("already has a login");
    let joined = if existing {
        client.post(&link, &[("password", PASSWORD)]).await
    } else {
        client
            .post(&link, &[("password", PASSWORD), ("password2", PASSWORD)])
            .await
    };
    assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", joined.body);
    client
}

#[tokio::test]
async fn members_do_not_manage_users_and_the_last_owner_stays() {
    web_support::for_each_engine(true, |app| async move {
        let db = &app.db;
        let mut alice = app.client();
        alice.signup("alice@example.net").await;
        let mut bob = join(&app, &mut alice, "bob@example.net").await;
        assert_eq!(told(db, "user_invited").await, ["alice@example.net"]);
        let users = alice.get("/manage/users").await;
        users.assert(StatusCode::OK, &["owner", "member", "Make an owner"]);
        let (alice_id, bob_id) = (
            user_id(db, "alice@example.net").await,
            user_id(db, "bob@example.net").await,
        );

        // A member neither invites, nor removes, nor changes roles.
        let page = bob.get("/manage/users").await;
        page.assert(
            StatusCode::OK,
            &["Only an owner of the account invites users."],
        );
        assert!(!page.body.contains("Make an owner"), "{}", page.body);
        bob.post("/manage/users/invite", &[("email", "eve@example.net")])
            .await
            .assert(
                StatusCode::FORBIDDEN,
                &["Only an owner of the account can do this."],
            );
        bob.post(
            &format!("/manage/users/{alice_id}/remove"),
            &[("confirm", "yes")],
        )
        .await
        .assert(StatusCode::FORBIDDEN, &["Only an owner"]);
        bob.post(
            &format!("/manage/users/{bob_id}/role"),
            &[("role", "owner")],
        )
        .await
        .assert(StatusCode::FORBIDDEN, &["Only an owner"]);
        alice
            .post("/manage/users/invite", &[("email", "carol@example.net")])
            .await;
        let users = alice.get("/manage/users").await;
        let invite = users
            .body
            .split("/manage/invites/")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("an open invite")
            .to_string();
        bob.post(&format!("/manage/invites/{invite}/revoke"), &[])
            .await
            .assert(StatusCode::FORBIDDEN, &["Only an owner"]);

        // A member may leave; everyone is told.
        bob.post(&format!("/manage/users/{bob_id}/remove"), &[])
            .await
            .assert(StatusCode::OK, &["Leave this account?"]);
        let left = bob
            .post(
                &format!("/manage/users/{bob_id}/remove"),
                &[("confirm", "yes")],
            )
            .await;
        assert_eq!(left.location(), "/manage/no-account");
        assert_eq!(
            told(db, "user_left").await,
            ["alice@example.net", "bob@example.net"]
        );

        // Back as a member, Bob is made an owner; then he may invite and
        // make Alice a member.
        let mut bob = join(&app, &mut alice, "bob@example.net").await;
        let made = alice
            .post(
                &format!("/manage/users/{bob_id}/role"),
                &[("role", "owner")],
            )
            .await;
        assert_eq!(made.location(), "/manage/users?done=saved");
        assert_eq!(
            told(db, "user_role").await,
            ["alice@example.net", "bob@example.net"]
        );
        bob.post("/manage/users/invite", &[("email", "dave@example.net")])
            .await
            .assert(
                StatusCode::OK,
                &["An invitation is mailed to dave@example.net."],
            );
        bob.post(
            &format!("/manage/users/{alice_id}/role"),
            &[("role", "member")],
        )
        .await;
        // Bob is the last owner now: he can neither leave, nor be made a
        // member, nor be removed by Alice (a member).
        bob.post(
            &format!("/manage/users/{bob_id}/remove"),
            &[("confirm", "yes")],
        )
        .await
        .assert(
            StatusCode::CONFLICT,
            &["The last owner of an account can neither be removed nor leave it"],
        );
        bob.post(
            &format!("/manage/users/{bob_id}/role"),
            &[("role", "member")],
        )
        .await
        .assert(
            StatusCode::CONFLICT,
            &["The last owner of an account stays an owner"],
        );
        alice
            .post(
                &format!("/manage/users/{bob_id}/remove"),
                &[("confirm", "yes")],
            )
            .await
            .assert(StatusCode::FORBIDDEN, &["Only an owner"]);
        bob.post(&format!("/manage/users/{bob_id}/role"), &[("role", "king")])
            .await
            .assert(StatusCode::BAD_REQUEST, &["an owner or a member"]);
        let roles: Vec<(String, String)> = sqlx::query_as(
            "SELECT email, account_role FROM users WHERE removed_at IS NULL ORDER BY email",
        )
        .fetch_all(&db.pool)
        .await
        .expect("roles");
        assert_eq!(
            roles,
            [
                ("alice@example.net".to_string(), "member".to_string()),
                ("bob@example.net".to_string(), "owner".to_string())
            ]
        );
    })
    .await;
}

/// The app on a real loopback listener (the peer address is the real one).
async fn serve(app: &TestApp) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let address = listener.local_addr().expect("address");
    let service = app
        .router
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, service).await;
    });
    address
}

/// GET `path` from the source address `from` (a 127.0.0.x of the
/// loopback): (status, body).
async fn get_from(server: SocketAddr, from: &str, path: &str) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("source"))
        .expect("bind the source address");
    let mut stream = socket.connect(server).await.expect("connect");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: timepool.test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The path of the verification URL on a page.
fn verification_path(body: &str) -> String {
    body.split("http://timepool.test")
        .find(|rest| rest.starts_with("/verify-server/"))
        .and_then(|rest| {
            rest.split(|c: char| c == '<' || c == '\'' || c.is_whitespace())
                .next()
        })
        .unwrap_or_else(|| panic!("no verification URL in:\n{body}"))
        .to_string()
}

async fn add(client: &mut Client, address: &str, netspeed: &str) -> web_support::Response {
    client
        .post(
            "/manage/servers",
            &[("address", address), ("zone", "de"), ("netspeed", netspeed)],
        )
        .await
}

#[tokio::test]
async fn servers_are_verified_from_their_address_and_claimed_the_same_way() {
    web_support::for_each_engine_configured(
        |settings| {
            settings.allow_loopback = true;
            settings.unverified_netspeed_max = Some(10_000);
        },
        |app| async move {
            let db = &app.db;
            let server = serve(&app).await;
            let mut carol = app.client();
            carol.signup("carol@example.net").await;

            // Unverified: at most 10 Mbit, and one at a time.
            add(&mut carol, "127.0.0.81", "1000000").await.assert(
                StatusCode::UNPROCESSABLE_ENTITY,
                &["Until a server is verified its netspeed is at most 10 Mbit"],
            );
            let added = add(&mut carol, "127.0.0.81", "10000").await;
            assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
            let id = web_support::server_id_in(&carol.get("/manage").await.body, "127.0.0.81")
                .expect("listed");
            add(&mut carol, "127.0.0.82", "10000").await.assert(
                StatusCode::UNPROCESSABLE_ENTITY,
                &["Verify or remove your unverified servers first (127.0.0.81)"],
            );
            let settings = format!("/manage/servers/{id}");
            carol
                .post(&settings, &[("zone", "de"), ("netspeed", "25000")])
                .await
                .assert(StatusCode::UNPROCESSABLE_ENTITY, &["at most 10 Mbit"]);
            let lowered = carol
                .post(&settings, &[("zone", "de"), ("netspeed", "3000")])
                .await;
            assert_eq!(lowered.status, StatusCode::SEE_OTHER, "lowering is fine");

            // The one-time URL, fetched from elsewhere, then from the server.
            let page = carol.post(&format!("{settings}/verify"), &[]).await;
            page.assert(
                StatusCode::OK,
                &["curl -4 --interface 127.0.0.81 'http://timepool.test/verify-server/"],
            );
            let path = verification_path(&page.body);
            let (status, body) = get_from(server, "127.0.0.99", &path).await;
            assert_eq!(status, 403, "{body}");
            assert!(
                body.contains("came from 127.0.0.99, not from 127.0.0.81"),
                "{body}"
            );
            let (status, body) = get_from(server, "127.0.0.81", &path).await;
            assert_eq!((status, body.trim()), (200, "127.0.0.81 is verified."));
            let (status, _) = get_from(server, "127.0.0.81", &path).await;
            assert_eq!(status, 404, "used once");
            carol
                .get(&settings)
                .await
                .assert(StatusCode::OK, &["Verified"]);
            let raised = carol
                .post(&settings, &[("zone", "de"), ("netspeed", "1000000")])
                .await;
            assert_eq!(raised.status, StatusCode::SEE_OTHER, "{}", raised.body);
            let added = add(&mut carol, "127.0.0.82", "10000").await;
            assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);

            // Staff may verify instead.
            let mut staff = web_support::staff_client(&app, "staff@example.org").await;
            let list = staff.get("/staff/servers").await;
            list.assert(StatusCode::OK, &["127.0.0.82", "carol@example.net"]);
            let other = web_support::server_id_in(&carol.get("/manage").await.body, "127.0.0.82")
                .expect("listed");
            let done = staff
                .post(&format!("/staff/servers/{other}/verify"), &[])
                .await;
            assert_eq!(done.status, StatusCode::SEE_OTHER);
            assert!(
                !staff
                    .get("/staff/servers")
                    .await
                    .body
                    .contains("127.0.0.82")
            );

            // Dan runs 127.0.0.81 now: he claims it from Carol's account.
            let mut dan = app.client();
            dan.signup("dan@example.net").await;
            add(&mut dan, "127.0.0.81", "10000").await.assert(
                StatusCode::UNPROCESSABLE_ENTITY,
                &[
                    "127.0.0.81 is registered by another account",
                    "Claim 127.0.0.81",
                ],
            );
            // Garbage or an address nobody registered: refused plainly.
            dan.post("/manage/claims", &[("address", &"x".repeat(300))])
                .await
                .assert(StatusCode::BAD_REQUEST, &["This is not an IP address."]);
            dan.post("/manage/claims", &[("address", "127.0.0.77")])
                .await
                .assert(StatusCode::NOT_FOUND, &[]);
            let page = dan
                .post("/manage/claims", &[("address", "127.0.0.81")])
                .await;
            page.assert(
                StatusCode::OK,
                &["is registered by another account. If you run it"],
            );
            let path = verification_path(&page.body);
            let (status, _) = get_from(server, "127.0.0.82", &path).await;
            assert_eq!(status, 403);
            let (status, body) = get_from(server, "127.0.0.81", &path).await;
            assert_eq!(
                (status, body.trim()),
                (200, "127.0.0.81 is verified and now in your account.")
            );
            assert!(dan.get("/manage").await.body.contains("127.0.0.81"));
            assert!(!carol.get("/manage").await.body.contains("127.0.0.81"));
            assert_eq!(told(db, "server_claimed_away").await, ["carol@example.net"]);
            assert_eq!(told(db, "server_claimed").await, ["dan@example.net"]);
            let audit: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'server.claim'")
                    .fetch_one(&db.pool)
                    .await
                    .expect("audit");
            assert_eq!(audit, 1);
        },
    )
    .await;
}
