//! Killed in the middle: SIGKILL, with no chance to clean up, of the web
//! app while a monitor agent's batches are applied and snapshots are
//! published, and of a DNS node while it pulls and writes its snapshot
//! cache, again and again at random moments, on SQLite and PostgreSQL.
//! After it all: every batch the agent checked is applied, each once (it
//! resends what was not acknowledged; no check logged twice); after each
//! kill the published snapshot and the node's cache are each whole and
//! signed by a line of their `FILE.sig`; killed writers leave no pile of
//! temporary files; and a node started with only its cache serves it.

mod support;
mod web_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{Ask, query, soa_serial, udp_exchange};
use timepool::shared::snapshot::signature::{
    PublicKey, read_signature_file, signature_path, verify_file_text,
};
use web_support::processes::{
    Agent, Started, free_port, logged_and_applied, pool_with_active_pairs, responders,
    snapshot_key_pair, timepool, unapplied,
};

/// Servers checked by the agent (each a responder on 127.0.1.N).
const SERVERS: u8 = 40;
/// Kills of the web app, and as many of the DNS node, per engine.
const KILLS: usize = 6;

/// A random pause: the kills land anywhere in the work.
fn pause(min_ms: u64, max_ms: u64) {
    std::thread::sleep(Duration::from_millis(rand::random_range(min_ms..max_ms)));
}

/// The snapshot at `path` is whole, valid and signed by a line of its
/// `FILE.sig` (when it exists yet); returns its serial.
fn check_signed_snapshot(path: &Path, key: &PublicKey, what: &str) -> Option<u32> {
    let bytes = std::fs::read(path).ok()?;
    let text = read_signature_file(path).expect("read FILE.sig");
    if let Err(error) = verify_file_text(&bytes, text.as_deref(), std::slice::from_ref(key)) {
        panic!(
            "{what}: {} and {} do not fit: {error}",
            path.display(),
            signature_path(path).display()
        );
    }
    let table = timepool::dns::zone::load_bytes(&bytes, what)
        .unwrap_or_else(|e| panic!("{what}: {} is not a whole snapshot: {e}", path.display()));
    Some(table.serial)
}

/// Temporary files a killed writer may leave beside `path`.
fn temporaries(path: &Path) -> usize {
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    std::fs::read_dir(path.parent().expect("dir"))
        .expect("read dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!(".{name}.tmp."))
        })
        .count()
}

struct Setup {
    dir: PathBuf,
    url: String,
    web_port: u16,
    key: PathBuf,
    public: PathBuf,
}

impl Setup {
    fn web(&self) -> Started {
        let mut cmd = timepool();
        cmd.arg("web")
            .args(["--listen", &format!("127.0.0.1:{}", self.web_port)])
            .args(["--database", &self.url])
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--config")
            .arg(self.dir.join("web.toml"))
            .args(["--allow-loopback", "--no-join-check"])
            .args([
                "--check-interval-secs",
                "1",
                "--testing-check-interval-secs",
                "1",
            ])
            .args(["--min-check-gap-secs", "0", "--zone-check-secs", "0.5"])
            // A killed builder's lease runs out soon, so the next one
            // publishes.
            .args(["--leader-lease-secs", "2"])
            .arg("--snapshot-out")
            .arg(self.dir.join("published.json"))
            .arg("--snapshot-signing-key")
            .arg(&self.key);
        Started::new(web_support::start_web_command(cmd).0)
    }

    /// A node following `url`, started on a port of its own choosing, and
    /// its DNS address.
    fn node(&self, url: &str) -> (Started, SocketAddr) {
        let mut command = timepool();
        command
            .arg("dns")
            .args(["--snapshot-url", url])
            .arg("--snapshot-cache")
            .arg(self.dir.join("cache.json"))
            .arg("--snapshot-public-key")
            .arg(&self.public)
            .args(["--snapshot-poll", "0.1", "--snapshot-timeout", "2"])
            .args(["--threads", "1"]);
        let (node, dns, _) = support::start_dns_node(command, &self.dir.join("node.log"));
        (Started::new(node), dns)
    }
}

#[test]
fn killed_processes_lose_nothing_and_leave_whole_files() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ntp_port = free_port();
    let _responders = runtime.block_on(responders(1, SERVERS, ntp_port, false));
    for (engine, url) in runtime.block_on(web_support::database_urls()) {
        eprintln!("--- engine: {engine}");
        killed_on(&runtime, engine, &url, ntp_port);
    }
}

fn killed_on(runtime: &tokio::runtime::Runtime, engine: &str, url: &str, ntp_port: u16) {
    let dir = std::env::temp_dir().join(format!("timepool-killed-{}-{engine}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (key, public, public_key) = snapshot_key_pair(&dir);
    // One selector pass at the start of each web app is enough: the
    // pairs are made here.
    std::fs::write(dir.join("web.toml"), "[selector]\ninterval_secs = 3600\n").expect("config");

    // The pool: servers in de, each with an active pair of one monitor.
    let (db, monitor_id, token) = runtime.block_on(async {
        let db = timepool::control::db::Db::connect(url).await.expect("db");
        let account: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (name, created_at) VALUES ('op', 0) RETURNING id",
        )
        .fetch_one(&db.pool)
        .await
        .expect("account");
        let (monitor_id, token) = pool_with_active_pairs(&db, account, 1, SERVERS).await;
        (db, monitor_id, token)
    });

    let setup = Setup {
        dir: dir.clone(),
        url: url.to_string(),
        web_port: free_port(),
        key,
        public,
    };
    let published = dir.join("published.json");
    let cache = dir.join("cache.json");
    let mut web = setup.web();

    // The agent, as in production: runs until SIGTERM, resends.
    let agent = Agent::spawn(setup.web_port, &token, ntp_port, 500);

    // The node following the web app, its cache written on every change;
    // started once there is a snapshot to pull (with neither that nor a
    // cache it refuses to start).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !published.exists() {
        assert!(Instant::now() < deadline, "no snapshot published");
        std::thread::sleep(Duration::from_millis(50));
    }
    let snapshot_url = format!("http://127.0.0.1:{}/api/v1/snapshot", setup.web_port);
    let (mut node, _) = setup.node(&snapshot_url);

    // Snapshots change all the time: one server's weight grows every
    // 50 ms, so the builder publishes and the node writes its cache as
    // often as they do.
    let stop_changes = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let changes = {
        let stop = stop_changes.clone();
        let db = db.clone();
        runtime.spawn(async move {
            let mut speed = 1000i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Never back to an earlier value: every build is new.
                speed += 1;
                let _ = sqlx::query("UPDATE servers SET netspeed = $1 WHERE address = '127.0.1.1'")
                    .bind(speed)
                    .execute(&db.pool)
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let mut serials = BTreeSet::new();
    for round in 0..KILLS {
        pause(1500, 3500);
        web.kill();
        let serial = check_signed_snapshot(&published, &public_key, "the published snapshot");
        eprintln!("kill {round}: web killed, published serial {serial:?}");
        serials.extend(serial);
        web = setup.web();
        pause(100, 900);
        node.kill();
        let serial = check_signed_snapshot(&cache, &public_key, "the node's cache");
        eprintln!("kill {round}: node killed, cache serial {serial:?}");
        node = setup.node(&snapshot_url).0;
    }

    assert!(
        serials.len() >= 2,
        "snapshots were published between the kills: {serials:?}"
    );

    // Let the agent catch up, then stop everything cleanly.
    pause(1500, 1600);
    stop_changes.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = runtime.block_on(changes);
    let checked = agent.checked();
    let tail = agent.stop();
    node.kill();
    web_support::sigterm_and_wait(web.take());

    // Every batch the agent checked is applied; every applied batch's
    // results are logged exactly once.
    assert!(
        checked.len() >= KILLS,
        "the agent checked only {} batches:\n{}",
        checked.len(),
        tail.join("\n")
    );
    let (unapplied, (rows, expected_rows)) = runtime.block_on(async {
        (
            unapplied(&db, &checked).await,
            logged_and_applied(&db, monitor_id).await,
        )
    });
    assert_eq!(
        unapplied,
        Vec::<i64>::new(),
        "batches checked but never applied:\n{}",
        tail.join("\n")
    );
    assert_eq!(rows, expected_rows, "each applied result logged once");
    eprintln!(
        "{engine}: {} batches checked and applied, {rows} results logged once, through {KILLS} kills of each",
        checked.len()
    );

    // Whole files, and no pile of temporaries from the killed writers.
    check_signed_snapshot(&published, &public_key, "the published snapshot");
    let cache_serial =
        check_signed_snapshot(&cache, &public_key, "the node's cache").expect("a cache");
    assert!(temporaries(&published) <= 1, "temporaries of the snapshot");
    assert!(temporaries(&cache) <= 1, "temporaries of the cache");

    // A node with only its cache (the control plane gone) serves it.
    let (mut alone, dns) = setup.node("http://127.0.0.1:1/api/v1/snapshot");
    let deadline = Instant::now() + Duration::from_secs(20);
    while udp_exchange(dns, &query("pool.ntp.org", 6, &Ask::default())).is_none() {
        assert!(
            Instant::now() < deadline,
            "the node did not start from its cache"
        );
    }
    assert_eq!(soa_serial(dns), cache_serial);
    alone.kill();
    runtime.block_on(db.pool.close());
    let _ = std::fs::remove_dir_all(&dir);
}
