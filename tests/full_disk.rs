//! A full disk under the real binaries: the web app's published snapshot
//! and a DNS node's cache each on a small tmpfs of their own that the test
//! fills. A write that does not fit leaves the old file whole and signed
//! by its `FILE.sig`; the failure is counted in a metric and logged once
//! however often it repeats; the node keeps serving the snapshot it
//! pulled; with space back, both files are written again, by themselves.
//! Needs root for mount(8) (CI runs as root); skipped with a note
//! elsewhere unless TIMEPOOL_MOUNT_REQUIRED=1. (There is no stats spool
//! yet to fill.)

mod support;
mod web_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Ask, query, soa_serial, udp_exchange};
use timepool::shared::snapshot::signature::{PublicKey, read_signature_file, verify_file_text};
use web_support::processes::{
    Started, free_port, pool_with_active_pairs, snapshot_key_pair, timepool,
};

/// A tmpfs mounted by this test, unmounted on drop.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs"])
            .arg(path)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(SmallDisk {
                path: path.to_path_buf(),
            }),
            other => {
                assert!(
                    !web_support::required("TIMEPOOL_MOUNT_REQUIRED"),
                    "TIMEPOOL_MOUNT_REQUIRED=1 but a tmpfs cannot be mounted: {other:?}"
                );
                eprintln!("NOTE: cannot mount a tmpfs (not root?): skipping the full-disk test");
                None
            }
        }
    }

    /// Takes every byte left.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.path.join("filler")).expect("filler");
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        // The last partial block too.
        while file.write_all(&[0]).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.path.join("filler")).expect("remove filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// The file is whole, valid and signed by a line of its `FILE.sig`: its
/// bytes and serial.
fn whole(path: &Path, key: &PublicKey) -> (Vec<u8>, u32) {
    let bytes = std::fs::read(path).expect("the file is there");
    let text = read_signature_file(path).expect("FILE.sig");
    verify_file_text(&bytes, text.as_deref(), std::slice::from_ref(key))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let table = timepool::dns::zone::load_bytes(&bytes, "test").expect("a whole snapshot");
    (bytes, table.serial)
}

fn metric(port: u16, name: &str) -> f64 {
    let page = support::metrics_page(([127, 0, 0, 1], port).into()).expect("metrics");
    support::metric(&page, name)
}

fn count_lines(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

fn wait(what: &str, done: &mut dyn FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_disk_keeps_the_old_files_and_says_so_once() {
    let dir = std::env::temp_dir().join(format!("timepool-fulldisk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let Some(web_disk) = SmallDisk::mount(&dir.join("web")) else {
        return;
    };
    let node_disk = SmallDisk::mount(&dir.join("node")).expect("a second tmpfs");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (key, public, public_key) = snapshot_key_pair(&dir);
    let url = format!("sqlite://{}/timepool.db?mode=rwc", dir.display());
    let db = runtime.block_on(async {
        let db = timepool::control::db::Db::connect(&url).await.expect("db");
        let account: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (name, created_at) VALUES ('op', 0) RETURNING id",
        )
        .fetch_one(&db.pool)
        .await
        .expect("account");
        pool_with_active_pairs(&db, account, 3, 5).await;
        db
    });
    // A change the builder publishes: the first server's weight grows.
    let mut speed = 1000;
    let mut change = || {
        speed += 1;
        runtime.block_on(async {
            sqlx::query("UPDATE servers SET netspeed = $1 WHERE address = '127.0.3.1'")
                .bind(speed)
                .execute(&db.pool)
                .await
                .expect("change");
        });
    };

    let web_port = free_port();
    let web_log = dir.join("web.log");
    let published = dir.join("web/published.json");
    let mut web = Started::new(
        timepool()
            .arg("web")
            .args(["--listen", &format!("127.0.0.1:{web_port}")])
            .args(["--database", &url])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--allow-loopback", "--no-join-check"])
            .args(["--zone-check-secs", "0.5", "--leader-lease-secs", "2"])
            .arg("--snapshot-out")
            .arg(&published)
            .arg("--snapshot-signing-key")
            .arg(&key)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&web_log).expect("web log"))
            .spawn()
            .expect("spawn timepool web"),
    );
    wait("the web app published", &mut || published.exists());

    let node_log = dir.join("node.log");
    let cache = dir.join("node/cache.json");
    let mut command = timepool();
    command
        .arg("dns")
        .args([
            "--snapshot-url",
            &format!("http://127.0.0.1:{web_port}/api/v1/snapshot"),
        ])
        .arg("--snapshot-cache")
        .arg(&cache)
        .arg("--snapshot-public-key")
        .arg(&public)
        .args(["--snapshot-poll", "0.1", "--threads", "1"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1");
    let (node, dns, metrics) = support::start_dns_node(command, &node_log);
    let mut node = Started::new(node);
    let metrics = metrics.expect("metrics address logged");
    let serving =
        || udp_exchange(dns, &query("pool.ntp.org", 6, &Ask::default())).map(|_| soa_serial(dns));
    wait("the node serves and keeps a cache", &mut || {
        serving().is_some() && cache.exists()
    });

    // The node's disk full: new snapshots are served, the cache stays.
    let (cached, cached_serial) = whole(&cache, &public_key);
    node_disk.fill();
    for _ in 0..3 {
        let before = serving().expect("serving");
        change();
        wait("the node takes the next snapshot", &mut || {
            serving().is_some_and(|serial| serial > before)
        });
    }
    let failures = metric(metrics.port(), "timepool_dns_cache_write_failures_total");
    assert!(failures >= 3.0, "cache write failures counted: {failures}");
    assert_eq!(
        whole(&cache, &public_key),
        (cached, cached_serial),
        "the old cache stays"
    );
    assert_eq!(
        count_lines(&node_log, "cannot write the snapshot cache"),
        1,
        "logged once for {failures} failures"
    );
    node_disk.free();
    let before = serving().expect("serving");
    change();
    wait("the cache is written again", &mut || {
        std::fs::read(&cache).is_ok() && whole(&cache, &public_key).1 > before
    });
    assert_eq!(
        count_lines(&node_log, "the snapshot cache is written again"),
        1
    );

    // The web app's disk full: the published file stays, nothing new is
    // published (the file and the database move together).
    let (kept, kept_serial) = whole(&published, &public_key);
    let failed_before = metric(web_port, "timepool_snapshot_build_failures_total");
    web_disk.fill();
    change();
    wait("a failed publish is counted", &mut || {
        metric(web_port, "timepool_snapshot_build_failures_total") >= failed_before + 3.0
    });
    change();
    wait("more failed publishes", &mut || {
        metric(web_port, "timepool_snapshot_build_failures_total") >= failed_before + 5.0
    });
    assert_eq!(
        whole(&published, &public_key),
        (kept, kept_serial),
        "the old file stays"
    );
    assert_eq!(
        serving(),
        Some(kept_serial),
        "the node serves the last snapshot published"
    );
    assert_eq!(
        count_lines(&web_log, "zone snapshot not published"),
        1,
        "logged once"
    );
    web_disk.free();
    wait("publishing resumes", &mut || {
        whole(&published, &public_key).1 > kept_serial
    });
    wait("the node follows", &mut || {
        serving().is_some_and(|serial| serial > kept_serial)
    });
    assert_eq!(
        count_lines(&web_log, "zone snapshots are published again"),
        1
    );
    node.kill();
    web.kill();
    drop((web_disk, node_disk));
    let _ = std::fs::remove_dir_all(&dir);
}
