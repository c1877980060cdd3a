//! Signed snapshots as a following DNS node sees them. A stand-in control
//! plane (a small HTTP server in this test) serves whatever the test puts
//! there, so each attack of the review is one step: a tampered byte, no
//! signature, an unknown key, a replayed older serial (also at a restart,
//! against the cache), a TTL beyond the caps. The node refuses each with a
//! log line and a metric and keeps answering from the last good snapshot;
//! a rotated key is taken. The file source checks `FILE.sig` the same way,
//! and `check-snapshot --public-key` too.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::temp_dir;

use support::soa_serial;
use timepool::dns::server::{DnsConfig, DnsServer, PullClient, SnapshotSource, SnapshotTrust};
use timepool::shared::snapshot::signature::{PublicKey, SigningKey, write_key_pair};

/// A key pair written to `dir` as `name.key` / `name.pub`.
fn keys(dir: &Path, name: &str) -> (SigningKey, PublicKey, PathBuf) {
    let private_path = dir.join(format!("{name}.key"));
    let public_path = dir.join(format!("{name}.pub"));
    let public = write_key_pair(&private_path, &public_path).unwrap();
    (
        SigningKey::read_file(&private_path).unwrap(),
        public,
        public_path,
    )
}

/// The example snapshot with another serial.
fn snapshot(serial: u32) -> Vec<u8> {
    let mut document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(support::example_snapshot()).unwrap()).unwrap();
    document["serial"] = serial.into();
    serde_json::to_vec_pretty(&document).unwrap()
}

/// What the stand-in control plane serves now.
#[derive(Default)]
struct Served {
    body: Vec<u8>,
    signature: Option<String>,
    /// The request heads it received.
    requests: Vec<String>,
}

/// A control plane that serves `Served` to every GET, one connection at
/// a time (what a following node needs).
struct FakeControlPlane {
    address: SocketAddr,
    served: Arc<Mutex<Served>>,
}

impl FakeControlPlane {
    fn start() -> FakeControlPlane {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let served = Arc::new(Mutex::new(Served::default()));
        let state = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let end = line == "\r\n";
                    head.push_str(&line);
                    if end {
                        break;
                    }
                }
                let mut served = state.lock().unwrap();
                served.requests.push(head);
                let mut response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nETag: \"{}\"\r\nConnection: close\r\n",
                    served.body.len(),
                    served.requests.len()
                );
                if let Some(signature) = &served.signature {
                    response.push_str(&format!("X-Timepool-Signature: {signature}\r\n"));
                }
                response.push_str("\r\n");
                let _ = stream.write_all(response.as_bytes());
                let _ = stream.write_all(&served.body);
            }
        });
        FakeControlPlane { address, served }
    }

    fn url(&self) -> String {
        format!("http://{}/api/v1/snapshot", self.address)
    }

    fn serve(&self, body: Vec<u8>, signature: Option<String>) {
        let mut served = self.served.lock().unwrap();
        served.body = body;
        served.signature = signature;
    }

    fn requests(&self) -> usize {
        self.served.lock().unwrap().requests.len()
    }

    fn last_request(&self) -> String {
        self.served
            .lock()
            .unwrap()
            .requests
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

fn config(source: SnapshotSource, keys: Vec<PublicKey>) -> DnsConfig {
    support::loopback_dns_config(
        source,
        SnapshotTrust {
            keys,
            allow_serial_rollback: false,
        },
    )
}

fn following(url: &str, cache: &Path) -> SnapshotSource {
    SnapshotSource::Url {
        url: url.to_string(),
        cache: Some(cache.to_path_buf()),
        poll: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
        client: PullClient {
            node_name: Some("ns-test".into()),
            ..PullClient::default()
        },
    }
}

fn rejections(server: &DnsServer, reason: &str) -> f64 {
    let page = support::metrics_page(server.metrics_address().unwrap()).expect("metrics");
    support::metric(
        &page,
        &format!("timepool_dns_snapshot_rejections_total{{reason=\"{reason}\"}}"),
    )
}

/// Waits until the node has counted a rejection for `reason` (the pull
/// thread polls every 100 ms), then checks it still serves `serial`.
#[track_caller]
fn refused(server: &DnsServer, reason: &str, before: f64, serial: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while rejections(server, reason) <= before {
        assert!(Instant::now() < deadline, "no {reason} rejection counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        soa_serial(server.udp_addresses()[0]),
        serial,
        "after {reason}"
    );
}

#[track_caller]
fn wait_for_serial(server: &DnsServer, serial: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while soa_serial(server.udp_addresses()[0]) != serial {
        assert!(Instant::now() < deadline, "serial {serial} never served");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The node swaps a snapshot in first and writes its cache after, so the
/// cache is waited for (it is replaced atomically: old or new bytes).
#[track_caller]
fn wait_for_cache(cache: &Path, bytes: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read(cache).ok().as_deref() != Some(bytes) {
        assert!(
            Instant::now() < deadline,
            "{} never held the new snapshot",
            cache.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_following_node_takes_only_signed_newer_snapshots() {
    let dir = temp_dir("follow");
    let (key_a, public_a, _) = keys(&dir, "a");
    let (key_b, public_b, _) = keys(&dir, "b");
    let (key_c, _, _) = keys(&dir, "c");
    let control = FakeControlPlane::start();
    let first = snapshot(100);
    control.serve(first.clone(), Some(key_a.sign(&first)));
    let cache = dir.join("cache.json");
    // The node pins A and B (B: the next key, rotated in later).
    let node = DnsServer::start(config(
        following(&control.url(), &cache),
        vec![public_a.clone(), public_b.clone()],
    ))
    .expect("starts with a signed snapshot");
    let address = node.udp_addresses()[0];
    assert_eq!(soa_serial(address), 100);
    assert_eq!(
        std::fs::read(&cache).unwrap(),
        first,
        "the cache holds the bytes"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("cache.json.sig")).unwrap(),
        format!("{}\n", key_a.sign(&first)),
        "and their signature beside them"
    );
    let head = control.last_request().to_ascii_lowercase();
    assert!(head.contains("x-timepool-node: ns-test"), "{head}");
    assert!(head.contains("user-agent: timepool/"), "{head}");

    // One byte changed after signing.
    let next = snapshot(101);
    let mut tampered = next.clone();
    let at = tampered.iter().position(|&b| b == b'9').unwrap();
    tampered[at] = b'8';
    control.serve(tampered, Some(key_a.sign(&next)));
    refused(&node, "bad_signature", 0.0, 100);

    // No signature at all.
    control.serve(next.clone(), None);
    refused(&node, "unsigned", 0.0, 100);

    // Signed, but by a key the node does not pin.
    control.serve(next.clone(), Some(key_c.sign(&next)));
    refused(&node, "unknown_key", 0.0, 100);

    // A replayed older snapshot, properly signed.
    let old = snapshot(99);
    control.serve(old.clone(), Some(key_a.sign(&old)));
    refused(&node, "older_serial", 0.0, 100);
    let head = control.last_request().to_ascii_lowercase();
    assert!(head.contains("x-timepool-node-serial: 100"), "{head}");

    // Signed, newer, but a TTL of 68 years: the validator's cap.
    let mut document: serde_json::Value = serde_json::from_slice(&snapshot(102)).unwrap();
    document["origins"][0]["answer_ttl"] = 2_147_483_647u64.into();
    let pinning = serde_json::to_vec(&document).unwrap();
    control.serve(pinning.clone(), Some(key_a.sign(&pinning)));
    refused(&node, "invalid", 0.0, 100);

    // The rotated key: signed by B, newer: taken.
    let rotated = snapshot(103);
    control.serve(rotated.clone(), Some(key_b.sign(&rotated)));
    wait_for_serial(&node, 103);
    wait_for_cache(&cache, &rotated);
    node.shutdown();

    // A restart while the control plane replays an old (signed) snapshot:
    // the cache's serial is the floor; the node serves the cache.
    control.serve(old.clone(), Some(key_a.sign(&old)));
    let pulls = control.requests();
    let node = DnsServer::start(config(
        following(&control.url(), &cache),
        vec![public_a.clone(), public_b.clone()],
    ))
    .expect("starts from the cache");
    assert!(control.requests() > pulls, "it did ask the control plane");
    assert_eq!(soa_serial(node.udp_addresses()[0]), 103);
    assert!(rejections(&node, "older_serial") >= 1.0);
    node.shutdown();

    // A tampered cache is not used: with the control plane serving
    // nothing valid either, the node does not start.
    let mut bad_cache = std::fs::read(&cache).unwrap();
    let at = bad_cache.iter().position(|&b| b == b'4').unwrap();
    bad_cache[at] = b'5';
    std::fs::write(&cache, bad_cache).unwrap();
    control.serve(next.clone(), None);
    let error = DnsServer::start(config(
        following(&control.url(), &cache),
        vec![public_a.clone()],
    ))
    .err()
    .expect("no snapshot to start with");
    assert!(error.to_string().contains("not signed"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_snapshot_file_needs_its_signature_file() {
    let dir = temp_dir("file");
    let (key, public, public_path) = keys(&dir, "a");
    let path = dir.join("snapshot.json");
    let write = |serial: u32, signature: Option<String>| {
        let bytes = snapshot(serial);
        let signature = signature.unwrap_or_else(|| key.sign(&bytes));
        std::fs::write(dir.join("snapshot.json.sig"), format!("{signature}\n")).unwrap();
        let temp = dir.join("snapshot.tmp");
        std::fs::write(&temp, &bytes).unwrap();
        std::fs::rename(&temp, &path).unwrap();
    };
    write(7, None);
    let node = DnsServer::start(config(
        SnapshotSource::File(path.clone()),
        vec![public.clone()],
    ))
    .expect("a signed file");
    assert_eq!(soa_serial(node.udp_addresses()[0]), 7);
    // A new file whose signature is for other bytes: refused, 7 stays.
    write(8, Some(key.sign(&snapshot(9))));
    refused(&node, "bad_signature", 0.0, 7);
    write(9, None);
    wait_for_serial(&node, 9);
    // An older serial in a file is refused too.
    write(8, None);
    refused(&node, "older_serial", 0.0, 9);
    // A writer that lands the bytes before their signature (rsync goes in
    // name order): refused while the old signature sits beside them, taken
    // once the new signature follows.
    let bad_before = rejections(&node, "bad_signature");
    let bytes = snapshot(10);
    let temp = dir.join("snapshot.tmp");
    std::fs::write(&temp, &bytes).unwrap();
    std::fs::rename(&temp, &path).unwrap();
    refused(&node, "bad_signature", bad_before, 9);
    std::fs::write(
        dir.join("snapshot.json.sig"),
        format!("{}\n", key.sign(&bytes)),
    )
    .unwrap();
    wait_for_serial(&node, 10);
    node.shutdown();

    // check-snapshot --public-key checks FILE.sig first.
    let check = |file: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_timepool"))
            .arg("check-snapshot")
            .arg(file)
            .arg("--public-key")
            .arg(&public_path)
            .output()
            .unwrap()
    };
    let good = check(&path);
    assert!(good.status.success(), "{good:?}");
    assert!(String::from_utf8_lossy(&good.stdout).contains("signature good"));
    std::fs::remove_file(dir.join("snapshot.json.sig")).unwrap();
    let unsigned = check(&path);
    assert_eq!(unsigned.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unsigned.stdout).contains("not signed"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gen_snapshot_key_writes_a_private_key_only_its_owner_reads() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("genkey");
    let private = dir.join("snapshot.key");
    let public = dir.join("snapshot.pub");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_timepool"))
            .args(["admin", "gen-snapshot-key"])
            .arg(&private)
            .arg(&public)
            .output()
            .unwrap()
    };
    let output = run();
    assert!(output.status.success(), "{output:?}");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&private), 0o600);
    assert_eq!(mode(&public), 0o644);
    let key = SigningKey::read_file(&private).unwrap();
    let pinned = PublicKey::read_file(&public).unwrap();
    assert_eq!(key.id(), pinned.id());
    assert!(String::from_utf8_lossy(&output.stdout).contains(&key.id().to_string()));
    // Never over an existing key.
    let again = run();
    assert!(!again.status.success());
    assert_eq!(SigningKey::read_file(&private).unwrap().id(), key.id());
    let _ = std::fs::remove_dir_all(&dir);
}
