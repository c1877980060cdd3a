//! The database goes away under a running control plane, and comes back.
//! A PostgreSQL cluster of this test's own (scripts/pg-test-cluster.sh with
//! its own state file) is stopped while the real web app serves pages,
//! a monitor agent sends batches and a DNS node follows the snapshot:
//! pages and the API answer 503 with a clear message, at once (no hang),
//! and change nothing; the node keeps serving the last snapshot; the web
//! app stays up. With the database started again, everything recovers
//! without a restart: pages answer, and every batch the agent checked,
//! those checked while the database was down included, is applied once.

mod support;
mod web_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::{Ask, query, udp_exchange};
use web_support::processes::{
    Agent, Started, free_port, logged_and_applied, pool_with_active_pairs, responders, timepool,
    unapplied,
};
use web_support::{Browser, csrf_in};

/// Servers checked by the agent (each a responder on 127.0.2.N).
const SERVERS: u8 = 10;

/// A PostgreSQL cluster of this test alone; stopped and removed on drop.
struct OwnCluster {
    state: PathBuf,
    url: String,
}

impl OwnCluster {
    fn script(state: &Path, command: &str) -> std::process::Output {
        Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/pg-test-cluster.sh"
        ))
        .arg(command)
        .env("TIMEPOOL_PG_STATE", state)
        .output()
        .expect("run scripts/pg-test-cluster.sh")
    }

    /// None (with a note) where PostgreSQL is not installed, unless the
    /// run requires it.
    fn start(dir: &Path) -> Option<OwnCluster> {
        let state = dir.join("pg.state");
        let out = OwnCluster::script(&state, "start");
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                !web_support::required("TIMEPOOL_PG_REQUIRED"),
                "TIMEPOOL_PG_REQUIRED=1 but no PostgreSQL cluster could be made: {why}"
            );
            eprintln!("NOTE: no PostgreSQL ({why}); skipping the database-down test");
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let url = text
            .trim()
            .strip_prefix("export TIMEPOOL_TEST_PG_URL=")
            .expect("the script's export line")
            .to_string();
        Some(OwnCluster { state, url })
    }

    fn pause(&self) {
        let out = OwnCluster::script(&self.state, "pause");
        assert!(out.status.success(), "pause: {out:?}");
    }

    fn resume(&self) {
        let out = OwnCluster::script(&self.state, "resume");
        assert!(out.status.success(), "resume: {out:?}");
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = OwnCluster::script(&self.state, "stop");
    }
}

fn still_running(child: &mut Child, what: &str) {
    if let Ok(Some(status)) = child.try_wait() {
        panic!("{what} exited while the database was down: {status}");
    }
}

#[test]
fn the_control_plane_rides_out_a_database_outage() {
    let dir = std::env::temp_dir().join(format!("timepool-dbdown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let Some(cluster) = OwnCluster::start(&dir) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ntp_port = free_port();
    // The last server never answers: each batch's checks take the agent's
    // timeout, the time to take the database away.
    let _responders = runtime.block_on(responders(2, SERVERS, ntp_port, true));

    // The pool, an operator's login, a monitor with active pairs.
    let url = cluster.url.clone();
    let (db, server_id, monitor_id, token) = runtime.block_on(async {
        let db = timepool::control::db::Db::connect(&url).await.expect("db");
        let hash =
            timepool::control::web::session::hash_password("operator password 1").expect("hash");
        let mut tx = db.begin().await.expect("tx");
        let user = timepool::control::db::accounts::create_account_with_user(
            &mut tx,
            "op@example.net",
            &hash,
            "operator",
        )
        .await
        .expect("user");
        timepool::control::db::accounts::mark_verified(&mut tx, user.id)
            .await
            .expect("verified");
        tx.commit().await.expect("commit");
        let account: i64 = sqlx::query_scalar("SELECT account_id FROM users WHERE id = $1")
            .bind(user.id)
            .fetch_one(&db.pool)
            .await
            .expect("account");
        let (monitor_id, token) = pool_with_active_pairs(&db, account, 2, SERVERS).await;
        let server_id: i64 = sqlx::query_scalar("SELECT MIN(id) FROM servers")
            .fetch_one(&db.pool)
            .await
            .expect("server id");
        (db, server_id, monitor_id, token)
    });

    let web_port = free_port();
    let mut web_command = timepool();
    web_command
        .arg("web")
        .args(["--listen", &format!("127.0.0.1:{web_port}")])
        .args(["--database", &cluster.url])
        .arg("--data-dir")
        .arg(&dir)
        .args(["--allow-loopback", "--no-join-check"])
        .args([
            "--check-interval-secs",
            "1",
            "--testing-check-interval-secs",
            "1",
        ])
        .args(["--min-check-gap-secs", "0", "--zone-check-secs", "0.5"])
        .args(["--leader-lease-secs", "2"]);
    let mut web = Started::new(web_support::start_web_command(web_command).0);
    // The first snapshot published before a node asks for it.
    let snapshot = "/api/v1/snapshot";
    let deadline = Instant::now() + Duration::from_secs(30);
    while web_support::http(web_port, "GET", snapshot, &[], None).status != 200 {
        assert!(Instant::now() < deadline, "no snapshot published");
        std::thread::sleep(Duration::from_millis(50));
    }

    let agent = Agent::spawn(web_port, &token, ntp_port, 2000);

    let mut command = timepool();
    command
        .arg("dns")
        .args([
            "--snapshot-url",
            &format!("http://127.0.0.1:{web_port}/api/v1/snapshot"),
        ])
        .args(["--snapshot-poll", "0.2", "--threads", "1"]);
    let (node, dns, _) = support::start_dns_node(command, &dir.join("node.log"));
    let mut node = Started::new(node);
    // The pool's SOA from the snapshot served (the servers here are
    // loopback addresses, which a snapshot never hands out).
    let answers = || {
        udp_exchange(dns, &query("pool.ntp.org", 6, &Ask::default()))
            .map(|reply| support::parse_reply(&reply))
            .is_some_and(|reply| reply.rcode == "NOERROR" && !reply.answer.is_empty())
    };
    let wait = |what: &str, done: &mut dyn FnMut() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("the node answers", &mut || answers());
    eprintln!("node answers");
    wait("a batch is checked", &mut || !agent.checked().is_empty());

    // Logged in, the form's token in hand.
    let mut browser = Browser::new(web_port);
    let token_before = browser.csrf_token();
    let login = browser.post(
        "/login",
        &[
            ("email", "op@example.net"),
            ("password", "operator password 1"),
        ],
        Some(token_before),
    );
    assert_eq!(login.status, 303, "login: {}", login.text());
    let page = format!("/manage/servers/{server_id}");
    let form = browser.get(&page);
    assert_eq!(form.status, 200);
    let csrf = csrf_in(&form.text()).expect("the form's token");

    // Down it goes, while the agent checks a batch just issued.
    let latest_batch = || {
        runtime.block_on(async {
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM monitor_batches")
                .fetch_one(&db.pool)
                .await
                .expect("latest batch")
        })
    };
    let before = latest_batch();
    wait("a new batch is issued", &mut || latest_batch() != before);
    eprintln!("logged in, a batch issued; pausing the database");
    cluster.pause();
    let down_since = Instant::now();
    let mut statuses = Vec::new();
    for round in 0..2 {
        let started = Instant::now();
        let shown = browser.get("/manage");
        statuses.push(shown.status);
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(10),
            "a page took {elapsed:?} with the database down"
        );
        {
            assert_eq!(shown.status, 503, "{}", shown.text());
            assert!(
                shown.text().contains("The database cannot be reached"),
                "{}",
                shown.text()
            );
            assert!(shown.header("retry-after").is_some());
        }
        let saved = browser.post(
            &page,
            &[("zone", "de"), ("netspeed", "10000")],
            Some(csrf.clone()),
        );
        assert_eq!(saved.status, 503, "a form with the database down");
        let api = web_support::http(
            web_port,
            "GET",
            "/api/v1/monitor/batch?limit=5",
            &[("Authorization", &format!("Bearer {token}"))],
            None,
        );
        assert_eq!(api.status, 503, "the ingest API: {}", api.text());
        assert!(answers(), "the node answers while the database is down");
        still_running(web.get(), "the web app");
        still_running(node.get(), "the DNS node");
        eprintln!("round {round}: {:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("pages with the database down: {statuses:?}");
    let checked_while_down = agent.checked().len();

    // Back again: no restart of anything.
    cluster.resume();
    eprintln!("the database was down for {:?}", down_since.elapsed());
    wait("pages answer again", &mut || {
        browser.get("/manage").status == 200
    });
    let saved = browser.post(
        &page,
        &[("zone", "de"), ("netspeed", "10000")],
        Some(csrf.clone()),
    );
    assert_eq!(
        saved.status,
        303,
        "the form after the outage: {}",
        saved.text()
    );

    // Every batch checked (those during the outage too) is applied, once.
    wait("the agent's batches are applied", &mut || {
        runtime
            .block_on(unapplied(&db, &agent.checked()))
            .is_empty()
    });
    let checked = agent.checked();
    let log = agent.stop();
    let (logged, applied) = runtime.block_on(logged_and_applied(&db, monitor_id));
    assert_eq!(logged, applied, "each result logged once");
    assert!(
        log.iter().any(|l| l.contains("cannot send results")),
        "the agent was refused while the database was down"
    );
    eprintln!(
        "{} batches checked ({checked_while_down} by the end of the outage), all applied once",
        checked.len()
    );
    drop(node);
    web_support::sigterm_and_wait(web.take());
    runtime.block_on(db.pool.close());
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
