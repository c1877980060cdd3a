//! TLS between the planes, with a test CA made here (rcgen): `timepool
//! web` (the real binary) serves HTTPS; a DNS node follows it and a
//! monitor agent reports to it over HTTPS, trusting the test CA through
//! `--ca-file`; a certificate from another CA, or for another name, is
//! refused; a certificate file replaced on disk is served from the next
//! connection; and the agent will not send its token over plain HTTP to
//! another machine.

mod support;
mod web_support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::temp_dir;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use support::{Ask, parse_reply, query, udp_exchange};
use timepool::dns::server::follow::Follower;
use timepool::dns::server::{DnsConfig, DnsServer, PullClient, SnapshotSource, SnapshotTrust};
use timepool::monitor::agent::MonitorArgs;
use web_support::{sigterm_and_wait, start_web};

const BIN: &str = env!("CARGO_BIN_EXE_timepool");

/// A certificate authority made for the test.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses):
    /// (certificate PEM, key PEM).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Replace a file as a certificate renewal does (write aside, rename).
fn replace(path: &Path, text: &str) {
    let temp = path.with_extension("new");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// The certificate the server presents on a new connection (a plain
/// rustls client that trusts `ca_pem`).
fn presented_certificate(port: u16, ca_pem: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    while connection.is_handshaking() {
        connection.complete_io(&mut socket).unwrap();
    }
    connection.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn pull(url: &str, ca_file: Option<&Path>) -> Result<(), String> {
    let client = PullClient {
        ca_file: ca_file.map(Path::to_path_buf),
        ..PullClient::default()
    };
    let follower = Follower::new(url, None, Duration::from_secs(5), &client)?;
    follower
        .fetch(&SnapshotTrust::default(), None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn node_config(url: &str, ca_file: &Path) -> DnsConfig {
    support::loopback_dns_config(
        SnapshotSource::Url {
            url: url.to_string(),
            cache: None,
            poll: Duration::from_millis(200),
            timeout: Duration::from_secs(5),
            client: PullClient {
                ca_file: Some(ca_file.to_path_buf()),
                node_name: Some("ns-tls".into()),
                node_token: None,
            },
        },
        SnapshotTrust::default(),
    )
}

fn admin(args: &[&str]) -> String {
    let output = std::process::Command::new(BIN)
        .arg("admin")
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn agent_args(api: &str, token: &str, ca_file: Option<PathBuf>) -> MonitorArgs {
    MonitorArgs {
        api: api.to_string(),
        token: token.to_string(),
        ca_file,
        insecure_http: false,
        batch_size: 10,
        concurrency: 4,
        samples: 1,
        sample_gap_ms: 10,
        timeout_ms: 200,
        max_unsent_results: 100,
        retry_ms: 100,
        // Nothing listens there: the check is a timeout, reported.
        ntp_port: support::free_udp_and_tcp_port(),
        max_batches: 1,
        references: Vec::new(),
        max_clock_offset_ms: 10.0,
        self_check_retry_ms: 1000,
    }
}

/// Result batches applied so far, read from the database.
fn applied_batches(runtime: &tokio::runtime::Runtime, url: &str) -> i64 {
    runtime.block_on(async {
        let db = timepool::control::db::Db::connect(url).await.unwrap();
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM monitor_batches WHERE applied_at IS NOT NULL")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        db.pool.close().await;
        sqlx::Row::get(&row, "n")
    })
}

#[test]
fn the_planes_talk_https_and_refuse_other_certificates() {
    let dir = temp_dir("planes");
    let ca = TestCa::new("timepool test CA");
    let other = TestCa::new("another CA");
    let (cert, key) = ca.leaf(&["127.0.0.1"]);
    let ca_file = dir.join("ca.pem");
    let other_ca_file = dir.join("other-ca.pem");
    let cert_file = dir.join("cert.pem");
    let key_file = dir.join("key.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    std::fs::write(&other_ca_file, &other.pem).unwrap();
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let data = dir.join("data");
    let url = format!("sqlite://{}/timepool.db?mode=rwc", data.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // A monitor and one server in DNS (score 20), on the database the
    // binary will use.
    let out = admin(&["create-monitor", "mon-tls", "--database", &url]);
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_string();
    runtime.block_on(async {
        let db = timepool::control::db::Db::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO accounts (name, created_at) VALUES ('a', 0)")
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO servers (account_id, address, ip_version, geo_zone, netspeed, in_pool, score, score_ts, created_at)
             VALUES (1, '127.0.0.9', 4, 'de', 1000, 1, 20, 1, 0)",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        db.pool.close().await;
    });

    let (web, port) = start_web(
        &[
            "--data-dir",
            &data.to_string_lossy(),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert_file.to_string_lossy(),
            "--tls-key",
            &key_file.to_string_lossy(),
            "--zone-check-secs",
            "0.2",
        ],
        &[],
    );
    let base = format!("https://127.0.0.1:{port}");
    let snapshot_url = format!("{base}/api/v1/snapshot");

    // The DNS node follows over HTTPS, trusting the test CA.
    let deadline = Instant::now() + Duration::from_secs(20);
    let node = loop {
        match DnsServer::start(node_config(&snapshot_url, &ca_file)) {
            Ok(node) => break node,
            Err(error) => {
                assert!(Instant::now() < deadline, "the node never started: {error}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let reply = parse_reply(
        &udp_exchange(
            node.udp_addresses()[0],
            &query("de.pool.ntp.org", 1, &Ask::default()),
        )
        .unwrap(),
    );
    assert_eq!(reply.answer.len(), 1);
    assert_eq!(reply.answer[0].data, "127.0.0.9");
    node.shutdown();

    // The agent reports over HTTPS.
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    runtime
        .block_on(timepool::monitor::agent::run_until(
            agent_args(&base, &token, Some(ca_file.clone())),
            stopped.clone(),
        ))
        .expect("the agent ran a batch over HTTPS");
    let applied = applied_batches(&runtime, &url);
    assert_eq!(applied, 1, "the batch's results were applied");

    // Another CA, or the system's roots: refused.
    let error = pull(&snapshot_url, Some(&other_ca_file)).unwrap_err();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    let error = pull(&snapshot_url, None).unwrap_err();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    let (stop, stopping) = tokio::sync::watch::channel(false);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let _ = stop.send(true);
    });
    runtime
        .block_on(timepool::monitor::agent::run_until(
            MonitorArgs {
                retry_ms: 10,
                ..agent_args(&base, &token, Some(other_ca_file.clone()))
            },
            stopping,
        ))
        .expect("an agent that cannot verify the server retries until stopped");
    assert_eq!(applied_batches(&runtime, &url), 1, "it sent nothing");
    assert!(pull(&snapshot_url, Some(&ca_file)).is_ok());

    // A renewed certificate: served from the next connection.
    assert_eq!(presented_certificate(port, &ca.pem), der_of(&cert));
    let (renewed, renewed_key) = ca.leaf(&["127.0.0.1"]);
    replace(&key_file, &renewed_key);
    replace(&cert_file, &renewed);
    assert_eq!(presented_certificate(port, &ca.pem), der_of(&renewed));
    assert!(pull(&snapshot_url, Some(&ca_file)).is_ok());

    // A certificate for another name: refused.
    let (wrong, wrong_key) = ca.leaf(&["wrong.example"]);
    replace(&key_file, &wrong_key);
    replace(&cert_file, &wrong);
    let error = pull(&snapshot_url, Some(&ca_file)).unwrap_err();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    sigterm_and_wait(web);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_agent_will_not_send_its_token_over_plain_http_to_another_machine() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    // Refused before any connection is made (192.0.2.1 is documentation
    // space; nothing is sent there).
    let error = runtime
        .block_on(timepool::monitor::agent::run_until(
            agent_args("http://192.0.2.1:8080", "secret-token", None),
            stopped,
        ))
        .unwrap_err();
    assert!(error.to_string().contains("clear text"), "{error}");
    // The binary says so and exits 1.
    let output = std::process::Command::new(BIN)
        .args([
            "monitor",
            "--api",
            "http://192.0.2.1:8080",
            "--token",
            "secret-token",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--insecure-http"), "{stderr}");
    // A node token is held to the same rule.
    let client = PullClient {
        node_token: Some("node-secret".into()),
        ..PullClient::default()
    };
    let refused = Follower::new(
        "http://192.0.2.1:8080/api/v1/snapshot",
        None,
        Duration::from_secs(1),
        &client,
    )
    .err()
    .expect("refused");
    assert!(refused.contains("clear text"), "{refused}");
}
