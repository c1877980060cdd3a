//! The loop from the database to DNS answers, over HTTP: a control plane
//! (the web app in process, with its zone builder) and a DNS daemon
//! started with `--snapshot-url`. A server whose score drops below 10
//! leaves the answers without a restart; the daemon keeps serving when the
//! control plane stops, and starts again from its cache file while the
//! control plane is down. Its /metrics counts the queries. On SQLite and
//! PostgreSQL.

mod support;
mod web_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{Ask, metric, parse_reply, query, udp_exchange};
use timepool::control::db::Db;
use timepool::control::zone_builder::{self, BuildConfig, Schedule};
use timepool::dns::answer::AnswerConfig;
use timepool::dns::server::{DnsConfig, DnsServer, SnapshotSource, TcpSettings, UdpSettings};

fn dns_config(url: &str, cache: PathBuf) -> DnsConfig {
    DnsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 2,
        pin_workers: false,
        snapshot: SnapshotSource::Url {
            url: url.to_string(),
            cache: Some(cache),
            poll: Duration::from_millis(200),
            timeout: Duration::from_secs(2),
            client: Default::default(),
        },
        trust: Default::default(),
        geoip: None,
        reload_interval: Duration::from_millis(100),
        answer: AnswerConfig::default(),
        udp: UdpSettings {
            batch: 32,
            recv_buffer: None,
            send_buffer: None,
            ..UdpSettings::default()
        },
        tcp: TcpSettings {
            idle_timeout: Duration::from_secs(5),
            max_connections: 64,
            ..TcpSettings::default()
        },
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        cookie_secret_file: None,
        rrl: None,
        xdp: None,
    }
}

/// The A records of `de.pool.example.org`.
fn de_addresses(server: SocketAddr) -> BTreeSet<String> {
    let packet = query("de.pool.example.org", 1, &Ask::default());
    let reply = parse_reply(&udp_exchange(server, &packet).expect("an answer"));
    assert_eq!(reply.rcode, "NOERROR");
    reply.answer.iter().map(|rr| rr.data.clone()).collect()
}

fn set(addresses: &[&str]) -> BTreeSet<String> {
    addresses.iter().map(|a| a.to_string()).collect()
}

/// Ask until the answer is `expected` (a pull and a rebuild take a moment).
#[track_caller]
fn wait_for(server: SocketAddr, expected: &BTreeSet<String>) {
    let started = Instant::now();
    loop {
        let got = de_addresses(server);
        if &got == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still {got:?}, want {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn scrape(address: SocketAddr) -> String {
    support::metrics_page(address).expect("the node's metrics")
}

/// On SQLite and PostgreSQL (required by scripts/test.sh).
#[test]
fn dns_follows_the_control_plane_over_http() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (engine, url) in runtime.block_on(web_support::database_urls()) {
        eprintln!("--- engine: {engine}");
        follow(&runtime, &url, engine);
    }
}

fn follow(runtime: &tokio::runtime::Runtime, url: &str, engine: &str) {
    let dir = std::env::temp_dir().join(format!("timepool-follow-{}-{engine}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // The control plane: two healthy servers in de, the builder, the app.
    let (db, web, builder, web_address) = runtime.block_on(async {
        let db = Db::connect(url).await.expect("database");
        sqlx::query("INSERT INTO accounts (name, created_at) VALUES ('a', 0)")
            .execute(&db.pool)
            .await
            .unwrap();
        for address in ["192.0.2.1", "192.0.2.2"] {
            sqlx::query(
                "INSERT INTO servers (account_id, address, ip_version, geo_zone, netspeed,
                                      in_pool, score, score_ts, created_at)
                 VALUES (1, $1, 4, 'de', 1000, 1, 20, 1, 0)",
            )
            .bind(address)
            .execute(&db.pool)
            .await
            .unwrap();
        }
        let state =
            timepool::control::web::AppState::new(db.clone(), web_support::settings(url, false));
        let builder = tokio::spawn(zone_builder::run(
            db.clone(),
            BuildConfig::for_origin(
                "pool.example.org",
                Vec::new(),
                Some(dir.join("published.json")),
            ),
            state.snapshot.clone(),
            Schedule {
                check: Duration::from_millis(100),
                debounce: Duration::from_millis(50),
                rebuild: Duration::from_secs(60),
                lease: Duration::from_secs(15),
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let web_address = listener.local_addr().unwrap();
        let app = timepool::control::web::router(state);
        let web = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        (db, web, builder, web_address)
    });
    let snapshot_url = format!("http://{web_address}/api/v1/snapshot");
    // Wait for the first publish.
    let started = Instant::now();
    while ureq::get(&snapshot_url)
        .call()
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no snapshot published"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let cache = dir.join("cache.json");
    let dns = DnsServer::start(dns_config(&snapshot_url, cache.clone())).expect("dns starts");
    let address = dns.udp_addresses()[0];
    assert_eq!(de_addresses(address), set(&["192.0.2.1", "192.0.2.2"]));
    let first_serial = dns.shared().serial();
    assert!(cache.exists(), "the pulled snapshot is cached");

    // Score below 10: the next snapshot drops it, the daemon follows.
    runtime.block_on(async {
        sqlx::query("UPDATE servers SET score = 9.9 WHERE address = '192.0.2.2'")
            .execute(&db.pool)
            .await
            .unwrap();
    });
    wait_for(address, &set(&["192.0.2.1"]));
    assert!(dns.shared().serial() > first_serial);

    // Metrics count the queries answered so far.
    let metrics = dns.metrics_address().expect("metrics listening");
    let text = scrape(metrics);
    assert!(metric(&text, "timepool_dns_queries_total{rcode=\"NOERROR\"}") >= 2.0);
    assert!(metric(&text, "timepool_dns_queries_by_qtype_total{qtype=\"A\"}") >= 2.0);
    assert!(metric(&text, "timepool_dns_queries_by_name_total{kind=\"zone\"}") >= 2.0);
    assert!(metric(&text, "timepool_dns_udp_batches_total") >= 2.0);
    assert_eq!(
        metric(&text, "timepool_dns_snapshot_serial"),
        f64::from(dns.shared().serial())
    );
    // Answers per server: 192.0.2.2 was handed out before it left (counted
    // in the table since replaced); 20 more UDP queries and one over TCP
    // add exactly 21 to 192.0.2.1, the only server left.
    let by_server = "timepool_dns_answers_by_server_total{address=";
    assert!(metric(&text, &format!("{by_server}\"192.0.2.2\"}}")) >= 1.0);
    let before = metric(&text, &format!("{by_server}\"192.0.2.1\"}}"));
    for _ in 0..20 {
        assert_eq!(de_addresses(address), set(&["192.0.2.1"]));
    }
    let packet = query("de.pool.example.org", 1, &Ask::default());
    let reply = support::tcp_exchange(dns.tcp_addresses()[0], &packet).expect("TCP answer");
    assert_eq!(parse_reply(&reply).answer.len(), 1);
    let text = scrape(metrics);
    assert_eq!(
        metric(&text, &format!("{by_server}\"192.0.2.1\"}}")),
        before + 21.0
    );

    // The control plane stops: the daemon keeps serving the last snapshot.
    web.abort();
    builder.abort();
    runtime.block_on(async {
        let _ = web.await;
        let _ = builder.await;
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &scrape(metrics),
        "timepool_dns_reloads_total{result=\"failed\"}",
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "no failed pull counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(de_addresses(address), set(&["192.0.2.1"]));
    dns.shutdown();

    // A restart while the control plane is down starts from the cache.
    let dns = DnsServer::start(dns_config(&snapshot_url, cache)).expect("starts from the cache");
    assert_eq!(de_addresses(dns.udp_addresses()[0]), set(&["192.0.2.1"]));
    dns.shutdown();
    runtime.block_on(db.pool.close());
    let _ = std::fs::remove_dir_all(&dir);
}
