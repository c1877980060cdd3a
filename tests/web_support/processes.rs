//! The real binaries under test: a guard that kills a process the test
//! started when the test ends early, the monitor agent with the batches it
//! logged as checked, NTP responders on loopback, a pool whose servers are
//! those responders, and the checks that every checked batch was applied
//! once.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use sqlx::Row;
use timepool::control::db::Db;
use timepool::shared::ntp::responder::{Behaviour, Responder};

/// A free TCP port on 127.0.0.1 (bound, noted, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The `timepool` binary of this build.
pub fn timepool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_timepool"))
}

/// A snapshot signing key pair made by `timepool admin gen-snapshot-key`
/// in `dir`: the private key's file, the public key's file and the key.
pub fn snapshot_key_pair(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    timepool::shared::snapshot::signature::PublicKey,
) {
    let (key, public) = (dir.join("snapshot.key"), dir.join("snapshot.pub"));
    let status = timepool()
        .args(["admin", "gen-snapshot-key"])
        .arg(&key)
        .arg(&public)
        .stdout(Stdio::null())
        .status()
        .expect("gen-snapshot-key");
    assert!(status.success(), "gen-snapshot-key: {status}");
    let public_key = timepool::shared::snapshot::signature::PublicKey::read_file(&public)
        .expect("the public key");
    (key, public, public_key)
}

/// A process this test started, killed (SIGKILL, by its handle) when the
/// test ends early; `take` it to stop it another way.
pub struct Started(Option<Child>);

impl Started {
    pub fn new(child: Child) -> Started {
        Started(Some(child))
    }

    pub fn get(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }

    pub fn take(&mut self) -> Child {
        self.0.take().expect("running")
    }

    /// SIGKILL now, and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `timepool monitor` as in production (runs until SIGTERM, resends what
/// was not acknowledged), one sample per check, logging each batch it
/// checked.
pub struct Agent {
    pub process: Started,
    checked: Arc<Mutex<BTreeSet<i64>>>,
    reader: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Agent {
    pub fn spawn(web_port: u16, token: &str, ntp_port: u16, timeout_ms: u32) -> Agent {
        let mut child = timepool()
            .args(["monitor", "--api", &format!("http://127.0.0.1:{web_port}")])
            .args(["--token", token, "--retry-ms", "50", "--batch-size", "500"])
            .args(["--samples", "1", "--sample-gap-ms", "0"])
            .args(["--timeout-ms", &timeout_ms.to_string()])
            .args(["--ntp-port", &ntp_port.to_string()])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn timepool monitor");
        let checked = Arc::new(Mutex::new(BTreeSet::new()));
        let stderr = child.stderr.take().expect("stderr");
        let reader = {
            let checked = checked.clone();
            std::thread::spawn(move || {
                let mut log = Vec::new();
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("batch checked")
                        && let Some(id) = line
                            .split("batch_id=")
                            .nth(1)
                            .and_then(|rest| rest.split_whitespace().next())
                            .and_then(|id| id.parse::<i64>().ok())
                    {
                        checked.lock().expect("checked").insert(id);
                    }
                    log.push(line);
                }
                log
            })
        };
        Agent {
            process: Started::new(child),
            checked,
            reader: Some(reader),
        }
    }

    /// The batches it logged as checked so far.
    pub fn checked(&self) -> BTreeSet<i64> {
        self.checked.lock().expect("checked").clone()
    }

    /// SIGTERM (it sends what it holds first) and its log.
    pub fn stop(mut self) -> Vec<String> {
        super::sigterm_and_wait(self.process.take());
        self.reader
            .take()
            .map(|reader| reader.join().expect("agent log"))
            .unwrap_or_default()
    }
}

/// NTP responders on 127.0.`net`.1 ..= 127.0.`net`.`count` at `port`, a
/// clock at offset 0; the last one `Silent` when asked (its checks take
/// the agent's whole timeout).
pub async fn responders(net: u8, count: u8, port: u16, last_silent: bool) -> Vec<Responder> {
    let mut all = Vec::new();
    for n in 1..=count {
        let behaviour = if last_silent && n == count {
            Behaviour::Silent
        } else {
            Behaviour::Offset {
                offset: 0.0,
                stratum: 2,
            }
        };
        let at = SocketAddr::from(([127, 0, net, n], port));
        all.push(Responder::start(at, behaviour).await.expect("responder"));
    }
    all
}

/// Servers 127.0.`net`.N of `account` in de with score 20, and an active
/// monitor whose pairs with them all are active at score 20 (so they stay
/// in DNS while it checks them): its id and token.
pub async fn pool_with_active_pairs(db: &Db, account: i64, net: u8, count: u8) -> (i64, String) {
    for n in 1..=count {
        sqlx::query(
            "INSERT INTO servers (account_id, address, ip_version, geo_zone, netspeed,
                                  score, score_ts, created_at)
             VALUES ($1, $2, 4, 'de', 1000, 20, 1, 0)",
        )
        .bind(account)
        .bind(format!("127.0.{net}.{n}"))
        .execute(&db.pool)
        .await
        .expect("server");
    }
    let (monitor_id, token) = super::active_monitor(db, "agent").await;
    let now = timepool::control::db::now();
    timepool::control::db::pairs::selector_pass(db, &Default::default(), now)
        .await
        .expect("selector");
    sqlx::query("UPDATE server_scores SET status = 'active', good_points = 100, score = 20")
        .execute(&db.pool)
        .await
        .expect("active pairs");
    (monitor_id, token)
}

/// Of `ids`, the batches not applied.
pub async fn unapplied(db: &Db, ids: &BTreeSet<i64>) -> Vec<i64> {
    let mut out = Vec::new();
    for id in ids {
        let applied: Option<i64> =
            sqlx::query("SELECT applied_at FROM monitor_batches WHERE id = $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .expect("batch")
                .try_get("applied_at")
                .expect("applied_at");
        if applied.is_none() {
            out.push(*id);
        }
    }
    out
}

/// The monitor's check rows in the log, and how many its applied batches
/// hold: equal when each result was logged exactly once.
pub async fn logged_and_applied(db: &Db, monitor_id: i64) -> (i64, i64) {
    let applied: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM monitor_batch_servers bs
         JOIN monitor_batches b ON b.id = bs.batch_id
         WHERE b.monitor_id = $1 AND b.applied_at IS NOT NULL",
    )
    .bind(monitor_id)
    .fetch_one(&db.pool)
    .await
    .expect("applied results");
    let logged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM score_log WHERE monitor_id = $1")
        .bind(monitor_id)
        .fetch_one(&db.pool)
        .await
        .expect("logged results");
    (logged, applied)
}
