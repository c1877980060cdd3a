//! Two `timepool web` processes on one PostgreSQL database (the tests'
//! cluster: TIMEPOOL_TEST_PG_URL; skipped without it): exactly one builds
//! and publishes; both serve the same signed bytes and ETag; a login made
//! through one works through the other, and so do the CSRF token and the
//! login limit; when the publisher is killed (SIGKILL), the other takes
//! over within the lease and publishes.

mod web_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use timepool::control::db::Db;
use timepool::shared::snapshot::signature::{PublicKey, verify};
use web_support::{Browser, HttpResponse, http, sigterm_and_wait, start_web};

const BIN: &str = env!("CARGO_BIN_EXE_timepool");

/// Seconds of the zone builder's lease in this test.
const LEASE_SECS: u64 = 3;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("timepool-inst-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn metric(port: u16, name: &str) -> f64 {
    let text = http(port, "GET", "/metrics", &[], None).text();
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn snapshot(port: u16) -> HttpResponse {
    http(port, "GET", "/api/v1/snapshot", &[], None)
}

fn serial(response: &HttpResponse) -> u32 {
    response
        .header("x-timepool-serial")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A child process killed if the test fails before stopping it.
struct Running(Option<Child>);

impl Running {
    fn take(&mut self) -> Child {
        self.0.take().expect("still running")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start(database: &str, data: &Path, key: &Path) -> (Child, u16) {
    start_web(
        &[
            "--database",
            database,
            "--data-dir",
            &data.to_string_lossy(),
            "--listen",
            "127.0.0.1:0",
            "--zone-check-secs",
            "0.2",
            "--leader-lease-secs",
            &LEASE_SECS.to_string(),
            "--snapshot-signing-key",
            &key.to_string_lossy(),
        ],
        &[],
    )
}

#[test]
fn two_instances_on_one_postgresql() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(database) = runtime.block_on(async {
        web_support::database_urls()
            .await
            .into_iter()
            .find(|(engine, _)| *engine == "postgres")
            .map(|(_, url)| url)
    }) else {
        eprintln!("skipped: TIMEPOOL_TEST_PG_URL is not set (scripts/pg-test-cluster.sh start)");
        return;
    };
    let dir = temp_dir("pg");
    let key = dir.join("snapshot.key");
    let public = dir.join("snapshot.pub");
    let generated = Command::new(BIN)
        .args(["admin", "gen-snapshot-key"])
        .arg(&key)
        .arg(&public)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    let mut admin = Command::new(BIN)
        .args([
            "admin",
            "create-user",
            "--password-stdin",
            "both@example.net",
            "--database",
            &database,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    admin
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery\n")
        .unwrap();
    assert!(admin.wait().unwrap().success());
    let db = runtime.block_on(async {
        let db = Db::connect(&database).await.unwrap();
        sqlx::query("INSERT INTO accounts (name, created_at) VALUES ('servers', 0)")
            .execute(&db.pool)
            .await
            .unwrap();
        for address in ["192.0.2.1", "192.0.2.2"] {
            sqlx::query(
                "INSERT INTO servers (account_id, address, ip_version, geo_zone, netspeed, in_pool, score, score_ts, created_at)
                 VALUES ((SELECT MAX(id) FROM accounts), $1, 4, 'de', 1000, 1, 20, 1, 0)",
            )
            .bind(address)
            .execute(&db.pool)
            .await
            .unwrap();
        }
        db
    });

    let (a, port_a) = start(&database, &dir.join("a"), &key);
    let (b, port_b) = start(&database, &dir.join("b"), &key);
    let mut instances = [Running(Some(a)), Running(Some(b))];
    let ports = [port_a, port_b];

    // Both serve the same signed bytes and ETag; one of them publishes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (first_a, first_b) = loop {
        let (from_a, from_b) = (snapshot(port_a), snapshot(port_b));
        if from_a.status == 200 && from_b.status == 200 && serial(&from_a) == serial(&from_b) {
            break (from_a, from_b);
        }
        assert!(Instant::now() < deadline, "the instances never agreed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(first_a.body, first_b.body, "same bytes");
    assert_eq!(first_a.header("etag"), first_b.header("etag"), "same ETag");
    let signature = first_a.header("x-timepool-signature").map(str::to_string);
    assert_eq!(signature.as_deref(), first_b.header("x-timepool-signature"));
    let pinned = PublicKey::read_file(&public).unwrap();
    verify(
        &first_a.body,
        signature.as_deref(),
        std::slice::from_ref(&pinned),
    )
    .expect("signed");
    let leaders = || {
        (
            metric(port_a, "timepool_zone_builder_leader "),
            metric(port_b, "timepool_zone_builder_leader "),
        )
    };
    let (leader_a, leader_b) = leaders();
    assert_eq!(leader_a + leader_b, 1.0, "exactly one builds");
    let (leader, survivor) = if leader_a == 1.0 { (0, 1) } else { (1, 0) };
    let (leader_port, survivor_port) = (ports[leader], ports[survivor]);
    assert!(metric(leader_port, "timepool_snapshots_published_total ") >= 1.0);
    assert_eq!(
        metric(survivor_port, "timepool_snapshots_published_total "),
        0.0,
        "the other never publishes"
    );

    // A login through one works through the other, and so does its form.
    let mut browser = Browser::new(port_a);
    let login = browser.post(
        "/login",
        &[
            ("email", "both@example.net"),
            ("password", "correct horse battery"),
        ],
        None,
    );
    assert_eq!(login.status, 303);
    let mut elsewhere = browser.at(port_b);
    let manage = elsewhere.get("/manage");
    assert_eq!(manage.status, 200);
    assert!(manage.text().contains("both@example.net"));
    let token_from_b = elsewhere.csrf_token();
    let logout = browser.post("/logout", &[], Some(token_from_b));
    assert_eq!(logout.status, 303, "B's token is good on A");
    // The login limit holds across instances.
    let mut guesser = Browser::new(port_a);
    for _ in 0..5 {
        let r = guesser.post(
            "/login",
            &[("email", "both@example.net"), ("password", "a wrong guess")],
            None,
        );
        assert_eq!(r.status, 401);
    }
    let r = guesser.at(port_b).post(
        "/login",
        &[
            ("email", "both@example.net"),
            ("password", "correct horse battery"),
        ],
        None,
    );
    assert_eq!(r.status, 429, "limited on the other instance too");

    // The publisher dies without a word; the content changes; the other
    // takes the lease once it expires and publishes.
    let before = serial(&snapshot(survivor_port));
    let mut killed = instances[leader].take();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let killed_at = Instant::now();
    runtime.block_on(async {
        sqlx::query("UPDATE servers SET score = 5 WHERE address = '192.0.2.2'")
            .execute(&db.pool)
            .await
            .unwrap();
    });
    let deadline = killed_at + Duration::from_secs(LEASE_SECS + 15);
    let published = loop {
        let now = snapshot(survivor_port);
        if serial(&now) > before {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "no new snapshot {:?} after the leader died",
            killed_at.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "the leader was killed; the other instance published serial {} {:.1} s later (lease {LEASE_SECS} s)",
        serial(&published),
        killed_at.elapsed().as_secs_f64()
    );
    assert!(!String::from_utf8_lossy(&published.body).contains("192.0.2.2"));
    verify(
        &published.body,
        published.header("x-timepool-signature"),
        &[pinned],
    )
    .expect("signed by the new leader");
    assert_eq!(metric(survivor_port, "timepool_zone_builder_leader "), 1.0);
    sigterm_and_wait(instances[survivor].take());
    runtime.block_on(db.pool.close());
    let _ = std::fs::remove_dir_all(&dir);
}
