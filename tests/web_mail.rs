//! Mail through a real SMTP server (Debian's python3-aiosmtpd, started
//! here on loopback, writing a Maildir): the password reset mail arrives
//! and its link works; with the SMTP server down, mails wait in the queue
//! and go out when it is back. An account's mails (invitation, deletion
//! scheduled and cancelled, bad-server alert, automatic removal) reach
//! every user and their links work.

mod web_support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use timepool::control::db::{mail, now};
use timepool::control::mail::{Sender, send_due};
use timepool::control::web::alerts;

const PYTHON: &str = "/usr/bin/python3";

/// aiosmtpd on 127.0.0.1:`port`, delivering into the Maildir `dir`.
struct SmtpServer {
    child: Child,
}

impl SmtpServer {
    fn start(port: u16, dir: &Path) -> SmtpServer {
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpServer { child }
    }
}

impl SmtpServer {
    /// tests/data/smtp_server.py: aiosmtpd with TLS ("starttls" or
    /// "smtps") and a login, delivering into the Maildir `dir`.
    fn start_tls(mode: &str, port: u16, cert: &Path, key: &Path, dir: &Path) -> SmtpServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/smtp_server.py");
        let child = Command::new(PYTHON)
            .arg(script)
            .args([mode, &port.to_string()])
            .args([cert, key, dir])
            .args([SMTP_USER, SMTP_PASSWORD])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the TLS SMTP server");
        let server = SmtpServer { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{mode} server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

const SMTP_USER: &str = "timepool";
const SMTP_PASSWORD: &str = "relay secret";

impl Drop for SmtpServer {
    fn drop(&mut self) {
        // Our own child, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether aiosmtpd is installed; without it the tests are skipped, unless
/// TIMEPOOL_SMTP_REQUIRED says they must run.
fn smtp_available() -> bool {
    let installed = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        assert!(
            !web_support::required("TIMEPOOL_SMTP_REQUIRED"),
            "python3-aiosmtpd is required but not installed"
        );
        eprintln!("SKIPPED: python3-aiosmtpd not installed (apt-get install python3-aiosmtpd)");
    }
    installed
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The messages in the Maildir, as text with quoted-printable undone.
fn mailbox(dir: &Path) -> Vec<String> {
    let mut mails = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let raw = std::fs::read_to_string(entry.path()).expect("mail file");
            mails.push(unquote_printable(&raw));
        }
    }
    mails
}

/// Enough quoted-printable for ASCII mails: soft breaks and `=XX`.
fn unquote_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(value) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn wait_for_mails(dir: &Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mails = mailbox(dir);
        if mails.len() >= count || Instant::now() > deadline {
            return mails;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_reset_mail_arrives_and_its_link_sets_a_new_password() {
    if !smtp_available() {
        return;
    }
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let dir: PathBuf = std::env::temp_dir().join(format!("timepool-mail-{}", std::process::id()));
    let configured = url.clone();
    web_support::for_each_engine_configured(
        move |settings| settings.smtp_url = Some(configured.clone()),
        |app| {
            let (url, dir) = (url.clone(), dir.clone());
            async move {
                let _ = std::fs::remove_dir_all(&dir);
                let smtp = SmtpServer::start(port, &dir);
                let sender = Sender::new(&url, "timepool test <noreply@pool.example.org>", None)
                    .expect("sender");
                let mut user = app.client();
                user.signup("forgot@example.net").await;
                // Unknown or known, the page says the same.
                for email in ["nobody@example.net", "forgot@example.net"] {
                    user.post("/reset", &[("email", email)]).await.assert(
                        StatusCode::OK,
                        &["a mail with a link to choose a new password is on its way"],
                    );
                }
                // Asking again at once sends no second mail.
                user.post("/reset", &[("email", "forgot@example.net")])
                    .await;
                // (The sign-up's address confirmation goes too.)
                let pass = send_due(&app.db, &sender, now()).await.expect("send");
                assert_eq!((pass.sent, pass.failed), (2, 0));
                let mails = wait_for_mails(&dir, 2);
                assert_eq!(mails.len(), 2, "{mails:?}");
                assert!(
                    mails
                        .iter()
                        .any(|m| m.contains("pool.example.org: confirm your address")),
                    "{mails:?}"
                );
                let text = mails
                    .iter()
                    .find(|m| m.contains("choose a new password"))
                    .expect("the reset mail");
                assert!(text.contains("To: forgot@example.net"), "{text}");
                assert!(
                    text.contains("pool.example.org: choose a new password"),
                    "{text}"
                );
                assert!(
                    text.contains("http://timepool.test/"),
                    "no link back: {text}"
                );
                let link = text
                    .split("http://timepool.test")
                    .find(|rest| rest.starts_with("/reset/"))
                    .and_then(|rest| rest.split_whitespace().next())
                    .expect("a reset link")
                    .to_string();
                // The text of a sent mail is not kept (it held the link).
                let kept = mail::recent(&app.db, 10).await.expect("queue");
                assert!(
                    kept.iter()
                        .all(|m| m.sent_at.is_some() && m.body.is_empty())
                );

                // The link: a new password, every session ended.
                user.get(&link)
                    .await
                    .assert(StatusCode::OK, &["Choose a new password"]);
                user.post(&link, &[("password", "short"), ("password2", "short")])
                    .await
                    .assert(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &["at least 10 characters"],
                    );
                let new_password = "a brand new password";
                let done = user
                    .post(
                        &link,
                        &[("password", new_password), ("password2", new_password)],
                    )
                    .await;
                assert_eq!(done.location(), "/login?done=password-changed");
                user.get(done.location())
                    .await
                    .assert(StatusCode::OK, &["Your password is changed"]);
                assert_eq!(user.get("/manage").await.location(), "/login");
                assert_eq!(
                    user.get(&link).await.status,
                    StatusCode::NOT_FOUND,
                    "used twice"
                );
                let login = |password: &'static str| {
                    vec![("email", "forgot@example.net"), ("password", password)]
                };
                assert_eq!(
                    app.client()
                        .post("/login", &login("correct horse battery"))
                        .await
                        .status,
                    StatusCode::UNAUTHORIZED
                );
                assert_eq!(
                    app.client()
                        .post("/login", &login(new_password))
                        .await
                        .status,
                    StatusCode::SEE_OTHER
                );

                // The SMTP server down: the mail waits, and goes when it is back.
                drop(smtp);
                let mut other = app.client();
                other.signup("later@example.net").await;
                other
                    .post("/reset", &[("email", "later@example.net")])
                    .await;
                let pass = send_due(&app.db, &sender, now()).await.expect("send");
                assert_eq!((pass.sent, pass.failed), (0, 2));
                let waiting = mail::recent(&app.db, 1).await.expect("queue");
                assert!(waiting[0].sent_at.is_none() && waiting[0].failed_at.is_none());
                assert_eq!(waiting[0].attempts, 1);
                assert!(waiting[0].last_error.is_some());
                assert!(waiting[0].next_attempt_at > now(), "tried again later");
                let _smtp = SmtpServer::start(port, &dir);
                // Not before its time...
                assert_eq!(
                    send_due(&app.db, &sender, now()).await.expect("send").sent,
                    0
                );
                // ...and then it goes.
                let pass = send_due(&app.db, &sender, now() + 3600)
                    .await
                    .expect("send");
                assert_eq!((pass.sent, pass.failed), (2, 0));
                let mails = wait_for_mails(&dir, 4);
                assert!(
                    mails.iter().any(|m| m.contains("To: later@example.net")),
                    "{mails:?}"
                );
                // Staff see the queue.
                let mut staff = web_support::staff_client(&app, "mailstaff@example.org").await;
                staff.get("/staff/mail").await.assert(
                    StatusCode::OK,
                    &[
                        "forgot@example.net",
                        "later@example.net",
                        "password_reset",
                        "0 waiting",
                    ],
                );
                // Sent mails are kept 90 days for staff, then pruned.
                let keep_from = now() - mail::KEEP_SECS;
                assert_eq!(mail::prune(&app.db, keep_from).await.expect("prune"), 0);
                // 90 days on, everything of this test is old.
                let gone = mail::prune(&app.db, now() + mail::KEEP_SECS)
                    .await
                    .expect("prune");
                assert!(gone >= 4, "{gone}");
                assert!(mail::recent(&app.db, 10).await.expect("queue").is_empty());
                let _ = std::fs::remove_dir_all(&dir);
            }
        },
    )
    .await;
}

/// The link to this site starting with `prefix` in a delivered mail.
fn link_in(text: &str, prefix: &str) -> String {
    text.split("http://timepool.test")
        .find(|rest| rest.starts_with(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {prefix} link in:\n{text}"))
        .to_string()
}

/// The delivered mails to `recipient` whose subject has `subject`.
fn delivered<'a>(mails: &'a [String], recipient: &str, subject: &str) -> Vec<&'a String> {
    mails
        .iter()
        .filter(|m| m.contains(&format!("To: {recipient}")) && m.contains(subject))
        .collect()
}

#[tokio::test]
async fn account_mails_arrive_at_every_user_and_their_links_work() {
    if !smtp_available() {
        return;
    }
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let dir: PathBuf =
        std::env::temp_dir().join(format!("timepool-mail-account-{}", std::process::id()));
    web_support::for_each_engine(true, |app| {
        let (url, dir) = (url.clone(), dir.clone());
        async move {
            let _ = std::fs::remove_dir_all(&dir);
            let _smtp = SmtpServer::start(port, &dir);
            let sender = Sender::new(&url, "timepool test <noreply@pool.example.org>", None)
                .expect("sender");
            let mut expected = 0;
            let mut deliver = async |count: usize| {
                expected += count;
                let pass = send_due(&app.db, &sender, now()).await.expect("send");
                assert_eq!((pass.sent, pass.failed), (count, 0));
                let mails = wait_for_mails(&dir, expected);
                assert_eq!(mails.len(), expected);
                mails
            };
            // The address confirmation, followed from the delivered mail.
            let mut alice = app.client();
            alice.signup_unconfirmed("alice@example.net").await;
            let mails = deliver(1).await;
            let confirm = delivered(&mails, "alice@example.net", "confirm your address");
            assert_eq!(confirm.len(), 1, "{mails:?}");
            let confirmed = alice.get(&link_in(confirm[0], "/verify/")).await;
            assert_eq!(confirmed.location(), "/manage?done=email-verified");
            // The invitation: its link, followed, makes Bob a user.
            alice
                .post("/manage/users/invite", &[("email", "bob@example.net")])
                .await;
            // Bob's invitation, and the account told.
            let mails = deliver(2).await;
            assert_eq!(
                delivered(&mails, "alice@example.net", "bob@example.net is invited").len(),
                1,
                "{mails:?}"
            );
            let invitation = delivered(&mails, "bob@example.net", "invit");
            assert_eq!(invitation.len(), 1, "{mails:?}");
            let link = link_in(invitation[0], "/invite/");
            let mut bob = app.client();
            bob.get(&link)
                .await
                .assert(StatusCode::OK, &["bob@example.net"]);
            let joined = bob
                .post(
                    &link,
                    &[
                        ("password", "bobs password"),
                        ("password2", "bobs password"),
                    ],
                )
                .await;
            assert_eq!(joined.status, StatusCode::SEE_OTHER, "{}", joined.body);

            // A deletion scheduled: both are told, the link is the server's page.
            let id = alice.add_server("127.0.0.61", "de").await;
            let later = timepool::control::timefmt::date(now() + 5 * 86_400);
            alice
                .post(&format!("/manage/servers/{id}/delete"), &[("on", &later)])
                .await;
            let mails = deliver(2).await;
            for user in ["alice@example.net", "bob@example.net"] {
                let told = delivered(&mails, user, "127.0.0.61 leaves the pool");
                assert_eq!(told.len(), 1, "{user}: {mails:?}");
                let page = link_in(told[0], "/manage/servers/");
                assert_eq!(page, format!("/manage/servers/{id}"));
            }
            bob.get(&format!("/manage/servers/{id}"))
                .await
                .assert(StatusCode::OK, &["Cancel the deletion"]);
            bob.post(&format!("/manage/servers/{id}/undelete"), &[])
                .await;
            let mails = deliver(2).await;
            assert_eq!(
                delivered(&mails, "alice@example.net", "stays in the pool").len(),
                1
            );

            // The server goes bad: an alert to both, with its score page.
            sqlx::query("UPDATE servers SET score = -20, score_ts = $1 WHERE id = $2")
                .bind(now())
                .bind(id)
                .execute(&app.db.pool)
                .await
                .expect("score");
            let t = now();
            alerts::pass(&app.state, t).await.expect("pass");
            let mails = deliver(2).await;
            for user in ["alice@example.net", "bob@example.net"] {
                let alert = delivered(&mails, user, "127.0.0.61 is not working well");
                assert_eq!(alert.len(), 1, "{user}: {mails:?}");
                let page = link_in(alert[0], "/scores/");
                app.client()
                    .get(&page)
                    .await
                    .assert(StatusCode::OK, &["127.0.0.61"]);
            }
            // 45 days on and still below 0: removed, both told.
            sqlx::query("UPDATE servers SET score = -3 WHERE id = $1")
                .bind(id)
                .execute(&app.db.pool)
                .await
                .expect("score");
            alerts::pass(&app.state, t + 45 * 86_400 + 1)
                .await
                .expect("pass");
            let mails = deliver(2).await;
            for user in ["alice@example.net", "bob@example.net"] {
                let removal = delivered(&mails, user, "127.0.0.61 is removed from the pool");
                assert_eq!(removal.len(), 1, "{user}: {mails:?}");
                let page = link_in(removal[0], "/manage/servers/");
                alice
                    .get(&page)
                    .await
                    .assert(StatusCode::OK, &["Cancel the deletion"]);
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    })
    .await;
}

/// A CA made here and a certificate for 127.0.0.1 signed by it, written
/// into `dir`: (CA, certificate, key) paths.
fn test_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "timepool test mail CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_pem = params.self_signed(&ca_key).expect("CA").pem();
    let issuer = Issuer::new(params, ca_key);
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("leaf params");
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_pem).expect("write CA");
    std::fs::write(&paths.1, cert.pem()).expect("write certificate");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    paths
}

#[tokio::test]
async fn mail_goes_over_starttls_and_smtps_with_a_login_and_waits_when_the_login_is_wrong() {
    if !smtp_available() {
        return;
    }
    let dir: PathBuf =
        std::env::temp_dir().join(format!("timepool-mail-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (ca, cert, key) = test_certificates(&dir);
    let from = "timepool test <noreply@pool.example.org>";
    // The CA needs TLS to check.
    assert!(Sender::new("smtp://127.0.0.1:25", from, Some(&ca)).is_err());
    let (_, url) = web_support::database_urls().await.remove(0);
    let db = timepool::control::db::Db::connect(&url).await.expect("db");
    for (mode, scheme, query) in [
        ("starttls", "smtp", "?tls=required"),
        ("smtps", "smtps", ""),
    ] {
        let port = free_port();
        let maildir = dir.join(mode);
        let _smtp = SmtpServer::start_tls(mode, port, &cert, &key, &maildir);
        let recipient = format!("{mode}@example.net");
        let mut tx = db.begin().await.expect("tx");
        mail::enqueue(&mut tx, &recipient, "test", "over TLS", "a mail over TLS\n")
            .await
            .expect("queue");
        tx.commit().await.expect("commit");
        let url = |user: &str, password: &str| {
            let password = password.replace(' ', "%20");
            format!("{scheme}://{user}:{password}@127.0.0.1:{port}{query}")
        };
        // A wrong password, or a certificate the system does not know:
        // not sent, and waiting (a setup error drops no mail).
        let mut at = now();
        for sender in [
            Sender::new(&url(SMTP_USER, "wrong"), from, Some(&ca)).expect("sender"),
            Sender::new(&url(SMTP_USER, SMTP_PASSWORD), from, None).expect("sender"),
        ] {
            let pass = send_due(&db, &sender, at).await.expect("send");
            assert_eq!((pass.sent, pass.failed), (0, 1), "{mode}");
            let waiting = mail::recent(&db, 1).await.expect("queue");
            assert!(waiting[0].failed_at.is_none(), "{mode}: {waiting:?}");
            assert!(waiting[0].last_error.is_some());
            at += 6 * 3600;
        }
        // The right login and CA: it goes.
        let sender = Sender::new(&url(SMTP_USER, SMTP_PASSWORD), from, Some(&ca)).expect("sender");
        let pass = send_due(&db, &sender, at).await.expect("send");
        assert_eq!((pass.sent, pass.failed), (1, 0), "{mode}");
        let mails = wait_for_mails(&maildir, 1);
        assert!(
            mails.len() == 1 && mails[0].contains(&format!("To: {recipient}")),
            "{mode}: {mails:?}"
        );
        // A mail not sent within 5 days is given up, and says so.
        let mut tx = db.begin().await.expect("tx");
        mail::enqueue(&mut tx, &recipient, "test", "late", "too late\n")
            .await
            .expect("queue");
        tx.commit().await.expect("commit");
        let wrong = Sender::new(&url(SMTP_USER, "wrong"), from, Some(&ca)).expect("sender");
        let pass = send_due(&db, &wrong, now() + timepool::control::mail::GIVE_UP_SECS)
            .await
            .expect("send");
        assert_eq!((pass.sent, pass.failed), (0, 1));
        let given_up = mail::recent(&db, 1).await.expect("queue");
        assert!(given_up[0].failed_at.is_some(), "{given_up:?}");
        assert!(
            given_up[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("given up")),
            "{given_up:?}"
        );
    }
    db.pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(db_dir) = url
        .strip_prefix("sqlite://")
        .and_then(|rest| Path::new(rest.split('?').next()?).parent())
    {
        let _ = std::fs::remove_dir_all(db_dir);
    }
}
