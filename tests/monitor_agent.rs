//! The monitoring agent end to end: real chronyd (Debian's chrony) and the
//! project's test responder serve NTP on 127.0.0.x, the web app runs in
//! process on 127.0.0.1:0, and the agent checks them through the ingest API.
//! The scores must move as web/README.md ("Scoring") says.
//!
//! chronyd runs with -x (never touches the clock), in the foreground, with
//! its own config, pid and drift files in a temp dir, and stops with the
//! test. Without chronyd the test prints a note and skips, unless
//! TIMEPOOL_CHRONY_REQUIRED=1.

mod web_support;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::Row;
use timepool::control::db::Db;
use timepool::control::web::{AppState, router};
use timepool::monitor::agent::MonitorArgs;
use timepool::shared::ntp::KissCode;
use timepool::shared::ntp::responder::{Behaviour, Responder};

const HEALTHY: &str = "127.0.0.2";
const RATE_LIMITED: &str = "127.0.0.3";
const STOPPED: &str = "127.0.0.4";
const PLUS_200_MS: &str = "127.0.0.5";
const PLUS_5_S: &str = "127.0.0.6";
const DENIES: &str = "127.0.0.7";

fn chronyd_path() -> Option<PathBuf> {
    ["/usr/sbin/chronyd", "/usr/bin/chronyd", "/sbin/chronyd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A port free on every test address (UDP).
fn common_free_port() -> u16 {
    for _ in 0..200 {
        let Ok(first) = UdpSocket::bind("127.0.0.2:0") else {
            continue;
        };
        let Ok(addr) = first.local_addr() else {
            continue;
        };
        let port = addr.port();
        let all_free = [RATE_LIMITED, STOPPED, PLUS_200_MS, PLUS_5_S, DENIES]
            .iter()
            .all(|ip| UdpSocket::bind((*ip, port)).is_ok());
        if all_free {
            return port;
        }
    }
    panic!("no UDP port free on all of 127.0.0.2..7");
}

/// A chronyd serving time from its local clock; killed on drop.
struct Chronyd {
    child: Option<Child>,
    dir: PathBuf,
}

/// What chronyd counted of its NTP requests (`chronyc serverstats`).
#[derive(Clone, Copy, Debug, PartialEq)]
struct NtpCounts {
    received: u64,
    dropped: u64,
}

impl Chronyd {
    fn start(binary: &Path, ip: &str, port: u16, extra: &str) -> Option<Chronyd> {
        let dir = std::env::temp_dir().join(format!(
            "timepool-chronyd-{}-{ip}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("chronyd dir");
        // chronyd refuses a command socket in a directory others can use.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chronyd dir mode");
        let config = format!(
            "port {port}\nbindaddress {ip}\nallow 127.0.0.0/8\nlocal stratum 3\ncmdport 0\n\
             bindcmdaddress {dir}/chronyd.sock\n\
             pidfile {dir}/chronyd.pid\ndriftfile {dir}/drift\n{extra}\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("chrony.conf"), config).expect("chrony.conf");
        let child = Command::new(binary)
            .args(["-x", "-d", "-u", "root", "-f"])
            .arg(dir.join("chrony.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("chronyd.log")).expect("log"))
            .spawn()
            .expect("start chronyd");
        let mut chronyd = Chronyd {
            child: Some(child),
            dir,
        };
        // It exits at once on a config it does not accept (e.g. an option of
        // a newer chrony); the caller then tries without it.
        std::thread::sleep(Duration::from_millis(400));
        if let Some(child) = chronyd.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let log = std::fs::read_to_string(chronyd.dir.join("chronyd.log")).unwrap_or_default();
            eprintln!("chronyd on {ip}:{port} exited ({status}): {log}");
            chronyd.child = None;
            return None;
        }
        Some(chronyd)
    }

    /// Wait (up to 20 s) until it answers an SNTP request.
    async fn wait_until_answering(&self, ip: &str, port: u16) {
        use timepool::shared::ntp::client::{CheckConfig, check};
        let server = SocketAddr::new(ip.parse().expect("ip"), port);
        let config = CheckConfig {
            samples: 1,
            gap: Duration::ZERO,
            timeout: Duration::from_millis(500),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while check(server, &config).await.is_err() {
            if std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("chronyd.log")).unwrap_or_default();
                panic!("chronyd on {server} never answered in 20 s; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The NTP requests it received and dropped (rate limited), read
    /// through its command socket with chronyc (of the same package).
    fn ntp_counts(&self) -> NtpCounts {
        let socket = self.dir.join("chronyd.sock");
        let out = Command::new("chronyc")
            .arg("-h")
            .arg(&socket)
            .args(["-c", "serverstats"])
            .output()
            .expect("run chronyc");
        let text = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<u64> = text
            .trim()
            .split(',')
            .map(|f| {
                f.parse()
                    .unwrap_or_else(|_| panic!("chronyc serverstats: {text:?}"))
            })
            .collect();
        assert!(fields.len() >= 2, "chronyc serverstats: {text:?}");
        NtpCounts {
            received: fields[0],
            dropped: fields[1],
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Only the process this test started, by its handle.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Chronyd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn agent_args(api: &str, token: &str, ntp_port: u16) -> MonitorArgs {
    MonitorArgs {
        api: api.to_string(),
        token: token.to_string(),
        ca_file: None,
        insecure_http: false,
        batch_size: 100,
        concurrency: 8,
        samples: 3,
        sample_gap_ms: 150,
        // Generous: a loaded CI machine may be slow to schedule chronyd.
        timeout_ms: 1500,
        max_unsent_results: 1000,
        retry_ms: 100,
        ntp_port,
        max_batches: 1,
        references: Vec::new(),
        max_clock_offset_ms: 10.0,
        self_check_retry_ms: 100,
    }
}

/// The web app on a free loopback port over a fresh database at `url`:
/// the database, the API's base URL and the server's task.
async fn serve_api(url: &str) -> (Db, String, tokio::task::JoinHandle<()>) {
    let db = Db::connect(url).await.expect("connect");
    let app = router(AppState::new(db.clone(), web_support::settings(url, true)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind web");
    let api = format!("http://{}", listener.local_addr().expect("addr"));
    let web = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    (db, api, web)
}

async fn operator_account(db: &Db) -> i64 {
    sqlx::query("INSERT INTO accounts (name, created_at) VALUES ('op', 0) RETURNING id")
        .fetch_one(&db.pool)
        .await
        .expect("account")
        .try_get("id")
        .expect("id")
}

/// An active monitor, and a selector pass that pairs it with the servers
/// (as candidates); returns its id and token.
async fn paired_monitor(db: &Db, name: &str) -> (i64, String) {
    let (monitor_id, token) = web_support::active_monitor(db, name).await;
    timepool::control::db::pairs::selector_pass(
        db,
        &Default::default(),
        timepool::control::db::now(),
    )
    .await
    .expect("selector");
    (monitor_id, token)
}

/// The latest check of each server by the monitor: (error, step, pair score, server score).
async fn latest(db: &Db, address: &str) -> (Option<String>, f64, f64, f64) {
    let row = sqlx::query(
        "SELECT l.error, l.step, l.score, s.score AS server_score FROM score_log l
         JOIN servers s ON s.id = l.server_id
         WHERE s.address = $1 AND l.monitor_id IS NOT NULL ORDER BY l.id DESC LIMIT 1",
    )
    .bind(address)
    .fetch_one(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("no check of {address}: {e}"));
    (
        row.try_get("error").expect("error"),
        row.try_get("step").expect("step"),
        row.try_get("score").expect("score"),
        row.try_get("server_score").expect("server score"),
    )
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_checks_chronyd_and_responders_through_the_api() {
    let Some(chronyd) = chronyd_path() else {
        if std::env::var("TIMEPOOL_CHRONY_REQUIRED").as_deref() == Ok("1") {
            panic!("chronyd not installed and TIMEPOOL_CHRONY_REQUIRED=1 (apt-get install chrony)");
        }
        eprintln!(
            "NOTE: chronyd not installed; skipping the chronyd integration test (apt-get install chrony)"
        );
        return;
    };
    let port = common_free_port();
    let healthy = Chronyd::start(&chronyd, HEALTHY, port, "").expect("healthy chronyd");
    // On a loaded machine chronyd may take a moment before it answers; the
    // agent's round must not race its start.
    healthy.wait_until_answering(HEALTHY, port).await;
    // chrony >= 4.4 answers rate-limited clients with KoD RATE when asked
    // to (`kod`); older ones (Debian 12 has 4.3) drop them instead.
    let (rate_limited, sends_kod) = match Chronyd::start(
        &chronyd,
        RATE_LIMITED,
        port,
        "ratelimit interval 3 burst 1 leak 4 kod 1",
    ) {
        Some(chronyd) => (chronyd, true),
        None => (
            Chronyd::start(
                &chronyd,
                RATE_LIMITED,
                port,
                "ratelimit interval 3 burst 1 leak 4",
            )
            .expect("rate-limiting chronyd"),
            false,
        ),
    };
    let mut stopped = Chronyd::start(&chronyd, STOPPED, port, "").expect("chronyd to stop");
    stopped.stop();
    let ip_port = |ip: &str| SocketAddr::new(ip.parse().expect("ip"), port);
    let _plus_200 = Responder::start(
        ip_port(PLUS_200_MS),
        Behaviour::Offset {
            offset: 0.2,
            stratum: 2,
        },
    )
    .await
    .expect("responder");
    let _plus_5 = Responder::start(
        ip_port(PLUS_5_S),
        Behaviour::Offset {
            offset: 5.0,
            stratum: 2,
        },
    )
    .await
    .expect("responder");
    let _denies = Responder::start(ip_port(DENIES), Behaviour::Kod(KissCode::Deny))
        .await
        .expect("responder");

    for (engine, url) in web_support::database_urls().await {
        eprintln!("--- engine: {engine}");
        let (db, api, web) = serve_api(&url).await;

        let account = operator_account(&db).await;
        for ip in [
            HEALTHY,
            RATE_LIMITED,
            STOPPED,
            PLUS_200_MS,
            PLUS_5_S,
            DENIES,
        ] {
            sqlx::query("INSERT INTO servers (account_id, address, ip_version, netspeed, created_at) VALUES ($1, $2, 4, 1000, 0)")
                .bind(account).bind(ip).execute(&db.pool).await.expect("server");
        }
        // An active monitor, paired with the servers by the selector.
        let (monitor_id, token) = paired_monitor(&db, "agent").await;

        // Round 1: every pair starts at 0, so each score is the step.
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let limited_before = rate_limited.ntp_counts();
        timepool::monitor::agent::run_until(agent_args(&api, &token, port), stop_rx)
            .await
            .expect("agent round 1");
        let limited_after = rate_limited.ntp_counts();

        let first_batch: i64 = sqlx::query("SELECT MAX(id) AS id FROM monitor_batches")
            .fetch_one(&db.pool)
            .await
            .expect("batch")
            .try_get("id")
            .expect("id");
        let (error, step, score, server) = latest(&db, HEALTHY).await;
        assert_eq!(error, None, "healthy chronyd");
        assert_eq!((step, score, server), (1.0, 1.0, 1.0));
        // What the rate-limited chronyd did with the agent's requests
        // decides the one right result: chronyd counts each request and
        // each it limited. Its limiter lets a random few through (leak), so
        // the outcome differs from run to run, never the rule.
        let (error, step, _, _) = latest(&db, RATE_LIMITED).await;
        let received = limited_after.received - limited_before.received;
        let dropped = limited_after.dropped - limited_before.dropped;
        eprintln!(
            "rate-limited chronyd: {received} requests, {dropped} limited; error {error:?}, step {step}"
        );
        assert!(received >= 1, "the agent asked the rate-limited chronyd");
        if sends_kod && error.as_deref() == Some("kod:RATE") {
            // chrony >= 4.4: a limited request gets KoD RATE, which ends
            // the check at once.
            assert_eq!(step, -3.5);
        } else if dropped == received {
            // Every request limited, and chrony 4.3 drops them: no reply.
            assert_eq!((error.as_deref(), step), (Some("timeout"), -5.0));
        } else {
            // At least one reply: a healthy measurement.
            assert_eq!((error.as_deref(), step), (None, 1.0));
        }
        let (error, step, score, _) = latest(&db, STOPPED).await;
        assert_eq!(
            (error.as_deref(), step, score),
            (Some("timeout"), -5.0, -5.0)
        );
        let (error, step, _, _) = latest(&db, PLUS_200_MS).await;
        assert_eq!(error, None);
        let want = -2.308 * 0.2 + 0.731;
        assert!(
            close(step, want, 0.01),
            "+200 ms: step {step}, want about {want}"
        );
        let (error, step, score, _) = latest(&db, PLUS_5_S).await;
        assert_eq!(
            (error, step, score),
            (None, -4.0, -20.0),
            "+5 s: capped at -20"
        );
        let (error, step, score, _) = latest(&db, DENIES).await;
        assert_eq!(
            (error.as_deref(), step, score),
            (Some("kod:DENY"), -10.0, -50.0)
        );

        // Round 2, ten minutes later (moved back in time here): decay and caps.
        sqlx::query("UPDATE server_scores SET score_ts = score_ts - 600")
            .execute(&db.pool)
            .await
            .expect("age");
        sqlx::query("UPDATE servers SET last_issued_at = NULL")
            .execute(&db.pool)
            .await
            .expect("age");
        sqlx::query("UPDATE server_scores SET last_issued_at = NULL")
            .execute(&db.pool)
            .await
            .expect("age");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let agent = tokio::spawn(timepool::monitor::agent::run_until(
            agent_args(&api, &token, port),
            stop_rx,
        ));
        // SIGTERM's effect while the batch is in flight: it still finishes
        // and is sent. The stop comes once the batch is issued and before
        // it is applied (its checks take over a second: the stopped
        // server's timeout), and the batch is applied after.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let in_flight: i64 = loop {
            let row =
                sqlx::query("SELECT id, applied_at FROM monitor_batches ORDER BY id DESC LIMIT 1")
                    .fetch_one(&db.pool)
                    .await
                    .expect("batch");
            let id: i64 = row.try_get("id").expect("id");
            let applied: Option<i64> = row.try_get("applied_at").expect("applied");
            if id != first_batch {
                assert_eq!(applied, None, "stopped while batch {id} is in flight");
                break id;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no second batch in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let _ = stop_tx.send(true);
        agent.await.expect("join").expect("agent round 2");
        let applied: Option<i64> =
            sqlx::query("SELECT applied_at FROM monitor_batches WHERE id = $1")
                .bind(in_flight)
                .fetch_one(&db.pool)
                .await
                .expect("batch")
                .try_get("applied_at")
                .expect("applied");
        assert!(
            applied.is_some(),
            "the batch in flight was finished and sent"
        );

        let (_, _, score, server) = latest(&db, HEALTHY).await;
        assert!(
            close(score, 1.95, 1e-9) && close(server, 1.95, 1e-9),
            "healthy: {score} {server}"
        );
        let (_, _, score, _) = latest(&db, STOPPED).await;
        assert!(close(score, -9.75, 1e-9), "stopped: {score}");
        let (_, _, score, _) = latest(&db, PLUS_5_S).await;
        assert!(close(score, -23.0, 1e-9), "+5 s: {score}");
        let (_, _, score, _) = latest(&db, DENIES).await;
        assert!(close(score, -57.5, 1e-9), "DENY: {score}");
        let (_, _, score, _) = latest(&db, PLUS_200_MS).await;
        assert!(close(score, want * 1.95, 0.02), "+200 ms: {score}");

        // A replayed batch changes nothing.
        let last: i64 = sqlx::query("SELECT last_batch_id FROM monitors WHERE id = $1")
            .bind(monitor_id)
            .fetch_one(&db.pool)
            .await
            .expect("m")
            .try_get("last_batch_id")
            .expect("last");
        let rows_before: i64 = sqlx::query("SELECT COUNT(*) AS n FROM score_log")
            .fetch_one(&db.pool)
            .await
            .expect("n")
            .try_get("n")
            .expect("n");
        let replay = serde_json::json!({"batch_id": last, "results": [{"server": HEALTHY, "ts": timepool::control::db::now(), "offset": 0.0, "rtt": 0.001, "stratum": 3, "leap": 0}]});
        let url = format!("{api}/api/v1/monitor/results");
        let auth = format!("Bearer {token}");
        let status = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(&replay)
                .map(|r| r.status().as_u16())
        })
        .await
        .expect("join")
        .expect("replay request");
        assert_eq!(status, 409);
        let rows_after: i64 = sqlx::query("SELECT COUNT(*) AS n FROM score_log")
            .fetch_one(&db.pool)
            .await
            .expect("n")
            .try_get("n")
            .expect("n");
        assert_eq!(rows_before, rows_after);

        web.abort();
        db.pool.close().await;
    }
    drop(healthy);
    drop(rate_limited);
}

/// The agent checks its own clock first: against a reference 50 ms ahead
/// it submits nothing, reports itself not ok (with why), and the server's
/// score does not move; with the reference back at 0 its checks resume.
#[tokio::test]
async fn a_monitor_with_its_clock_off_submits_nothing_until_it_is_back() {
    let port = common_free_port();
    let server_ip = "127.0.77.1";
    let _server = Responder::start(
        SocketAddr::new(server_ip.parse().expect("ip"), port),
        Behaviour::Offset {
            offset: 0.0,
            stratum: 2,
        },
    )
    .await
    .expect("server responder");
    let reference = Responder::start(
        "127.0.77.2:0".parse().expect("addr"),
        Behaviour::Offset {
            offset: 0.05,
            stratum: 1,
        },
    )
    .await
    .expect("reference responder");

    for (engine, url) in web_support::database_urls().await {
        eprintln!("--- engine: {engine}");
        reference.set_behaviour(Behaviour::Offset {
            offset: 0.05,
            stratum: 1,
        });
        let (db, api, web) = serve_api(&url).await;
        let account = operator_account(&db).await;
        sqlx::query("INSERT INTO servers (account_id, address, ip_version, netspeed, created_at, score) VALUES ($1, $2, 4, 1000, 0, 7.5)")
            .bind(account).bind(server_ip).execute(&db.pool).await.expect("server");
        // An active monitor, paired with the servers by the selector.
        let (monitor_id, token) = paired_monitor(&db, "skewed").await;
        let mut args = agent_args(&api, &token, port);
        args.references = vec![reference.local_addr().to_string()];

        // 50 ms off: the agent reports not ok and checks nothing.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let agent = tokio::spawn(timepool::monitor::agent::run_until(args.clone(), stop_rx));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let detail = loop {
            let row =
                sqlx::query("SELECT self_check_ok, self_check_detail FROM monitors WHERE id = $1")
                    .bind(monitor_id)
                    .fetch_one(&db.pool)
                    .await
                    .expect("monitor");
            if row.try_get::<Option<i64>, _>("self_check_ok").expect("ok") == Some(0) {
                break row
                    .try_get::<String, _>("self_check_detail")
                    .expect("detail");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no self-check reported in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            detail.contains("median offset +50.") && detail.contains("limit 10.0 ms"),
            "{detail}"
        );
        // A few more self-checks (every 100 ms here) while it stays off.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = stop_tx.send(true);
        agent.await.expect("join").expect("agent");
        let count = |sql: &'static str| {
            let db = db.clone();
            async move {
                sqlx::query(sql)
                    .fetch_one(&db.pool)
                    .await
                    .expect("count")
                    .try_get::<i64, _>("n")
                    .expect("n")
            }
        };
        assert_eq!(
            count("SELECT COUNT(*) AS n FROM monitor_batches").await,
            0,
            "no batch asked for"
        );
        assert_eq!(
            count("SELECT COUNT(*) AS n FROM score_log").await,
            0,
            "nothing submitted"
        );
        let score: f64 = sqlx::query("SELECT score FROM servers")
            .fetch_one(&db.pool)
            .await
            .expect("s")
            .try_get("score")
            .expect("score");
        assert_eq!(score, 7.5, "the server's score did not move");

        // The reference back at 0: a batch is checked and scored.
        reference.set_behaviour(Behaviour::Offset {
            offset: 0.0,
            stratum: 1,
        });
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        timepool::monitor::agent::run_until(args, stop_rx)
            .await
            .expect("agent round 2");
        assert_eq!(
            count("SELECT COUNT(*) AS n FROM score_log WHERE monitor_id IS NOT NULL").await,
            1,
            "the check is scored"
        );
        let ok: Option<i64> = sqlx::query("SELECT self_check_ok FROM monitors WHERE id = $1")
            .bind(monitor_id)
            .fetch_one(&db.pool)
            .await
            .expect("m")
            .try_get("self_check_ok")
            .expect("ok");
        assert_eq!(ok, Some(1));

        // The clock goes off while a batch is being checked: the batch's
        // results are dropped and the failure is reported.
        sqlx::query("UPDATE server_scores SET last_issued_at = NULL")
            .execute(&db.pool)
            .await
            .expect("due again");
        sqlx::query("UPDATE servers SET last_issued_at = NULL")
            .execute(&db.pool)
            .await
            .expect("due again");
        let batches_before = count("SELECT COUNT(*) AS n FROM monitor_batches").await;
        let logged_before = count("SELECT COUNT(*) AS n FROM score_log").await;
        let mut args = agent_args(&api, &token, port);
        args.references = vec![reference.local_addr().to_string()];
        args.max_batches = 0;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let agent = tokio::spawn(timepool::monitor::agent::run_until(args, stop_rx));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while count("SELECT COUNT(*) AS n FROM monitor_batches").await == batches_before {
            assert!(
                std::time::Instant::now() < deadline,
                "no batch issued in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The batch is out (its check takes 3 samples 150 ms apart): the
        // reference jumps 50 ms before the agent's check after it.
        reference.set_behaviour(Behaviour::Offset {
            offset: 0.05,
            stratum: 1,
        });
        loop {
            let ok: Option<i64> = sqlx::query("SELECT self_check_ok FROM monitors WHERE id = $1")
                .bind(monitor_id)
                .fetch_one(&db.pool)
                .await
                .expect("m")
                .try_get("self_check_ok")
                .expect("ok");
            if ok == Some(0) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the failure was not reported in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop_tx.send(true);
        agent.await.expect("join").expect("agent round 3");
        assert_eq!(
            count("SELECT COUNT(*) AS n FROM monitor_batches WHERE applied_at IS NOT NULL").await,
            1,
            "the batch checked before the failure was not submitted"
        );
        assert_eq!(
            count("SELECT COUNT(*) AS n FROM score_log").await,
            logged_before,
            "nothing scored"
        );
        web.abort();
        db.pool.close().await;
    }
}

/// A TCP proxy in front of the API that the test can take down: while
/// down it cuts every connection it carries and closes each new one at
/// once, as a control plane that is gone. Returns its base URL, the
/// switch and the count of connections it turned away.
async fn switchable_proxy(
    upstream: &str,
) -> (
    String,
    tokio::sync::watch::Sender<bool>,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let upstream: SocketAddr = upstream
        .trim_start_matches("http://")
        .parse()
        .expect("upstream address");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let base = format!("http://{}", listener.local_addr().expect("proxy address"));
    let (switch, up) = tokio::sync::watch::channel(true);
    let refused = std::sync::Arc::new(AtomicU64::new(0));
    let counting = refused.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut up = up.clone();
            if !*up.borrow_and_update() {
                counting.fetch_add(1, Ordering::Relaxed);
                drop(inbound);
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let went_down = async {
                    while *up.borrow_and_update() {
                        if up.changed().await.is_err() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = went_down => {}
                }
            });
        }
    });
    (base, switch, refused)
}

/// Results checked while the API is down are kept and delivered once it
/// is back: the batch is taken, the API goes away while its servers are
/// checked, the agent's sends are turned away, and after the API returns
/// the batch is applied once, with the check times of before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_checked_while_the_api_is_down_are_delivered_when_it_is_back() {
    use std::sync::atomic::Ordering;
    const ANSWERS: &str = "127.0.0.8";
    const SILENT: &str = "127.0.0.9";
    let port = common_free_port();
    let at = |ip: &str| SocketAddr::new(ip.parse().expect("ip"), port);
    let _answers = Responder::start(
        at(ANSWERS),
        Behaviour::Offset {
            offset: 0.0,
            stratum: 2,
        },
    )
    .await
    .expect("responder");
    // A server that never answers keeps the batch's checks going for a
    // few seconds: the time to take the API away.
    let _silent = Responder::start(at(SILENT), Behaviour::Silent)
        .await
        .expect("responder");
    for (engine, url) in web_support::database_urls().await {
        eprintln!("--- engine: {engine}");
        let (db, api, web) = serve_api(&url).await;
        let account = operator_account(&db).await;
        for ip in [ANSWERS, SILENT] {
            sqlx::query("INSERT INTO servers (account_id, address, ip_version, netspeed, created_at) VALUES ($1, $2, 4, 1000, 0)")
                .bind(account).bind(ip).execute(&db.pool).await.expect("server");
        }
        let (_, token) = paired_monitor(&db, "agent").await;
        let (proxied, switch, refused) = switchable_proxy(&api).await;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // Running until stopped, as in production (a test's one batch
        // would end it after a single try to send).
        let agent = tokio::spawn(timepool::monitor::agent::run_until(
            MonitorArgs {
                retry_ms: 50,
                max_batches: 0,
                ..agent_args(&proxied, &token, port)
            },
            stop_rx,
        ));
        // The batch is taken: down goes the API.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let batch: i64 = loop {
            let row = sqlx::query("SELECT MAX(id) AS id FROM monitor_batches")
                .fetch_one(&db.pool)
                .await
                .expect("batch");
            if let Some(id) = row.try_get::<Option<i64>, _>("id").expect("id") {
                break id;
            }
            assert!(std::time::Instant::now() < deadline, "no batch taken");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        switch.send_replace(false);
        let went_down = timepool::control::db::now();
        // The agent finishes its checks and tries to send, again and again.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while refused.load(Ordering::Relaxed) < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the agent never tried to send while the API was down"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let applied = |db: Db| async move {
            sqlx::query("SELECT applied_at FROM monitor_batches WHERE id = $1")
                .bind(batch)
                .fetch_one(&db.pool)
                .await
                .expect("batch")
                .try_get::<Option<i64>, _>("applied_at")
                .expect("applied_at")
        };
        assert_eq!(applied(db.clone()).await, None, "nothing got through");
        let came_back = timepool::control::db::now();
        switch.send_replace(true);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while applied(db.clone()).await.is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the batch was not delivered once the API was back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop_tx.send(true);
        agent.await.expect("join").expect("the agent stops");
        // Once: a check row per server, timed before the API came back.
        let rows = sqlx::query(
            "SELECT l.ts FROM score_log l JOIN monitors m ON m.id = l.monitor_id WHERE m.name = 'agent'",
        )
        .fetch_all(&db.pool)
        .await
        .expect("log");
        assert_eq!(rows.len(), 2, "one check per server, applied once");
        for row in rows {
            let ts: i64 = row.try_get("ts").expect("ts");
            assert!(
                ts <= came_back,
                "checked at {ts}, before the API came back at {came_back}"
            );
            assert!(ts + 60 >= went_down, "checked in this batch");
        }
        let (error, _, _, _) = latest(&db, SILENT).await;
        assert_eq!(error.as_deref(), Some("timeout"));
        let (error, _, _, _) = latest(&db, ANSWERS).await;
        assert_eq!(error, None);
        web.abort();
        db.pool.close().await;
    }
}

/// The binary: with the API down it keeps retrying (with backoff), and
/// SIGTERM stops it cleanly.
#[test]
fn the_binary_retries_while_the_api_is_down_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_timepool"))
        .args([
            "monitor",
            "--api",
            &format!("http://127.0.0.1:{port}"),
            "--token",
            "t",
            "--retry-ms",
            "50",
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn timepool monitor");
    let stderr = child.stderr.take().expect("stderr");
    let mut retries = 0;
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if line.contains("cannot get a batch; will retry") {
            retries += 1;
            if retries == 3 {
                break;
            }
        }
    }
    assert_eq!(retries, 3, "the agent should log its retries");
    // Keep reading stderr so the agent's last log lines have somewhere to go.
    let drain =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    web_support::sigterm_and_wait(child);
    let rest = drain.join().expect("stderr");
    assert!(rest.contains("monitor stopped"), "{rest}");
}
