//! The `timepool web` and `timepool admin` commands as a user runs them:
//! config precedence, a real listener, graceful shutdown on SIGTERM, and the
//! admin commands (on SQLite, and PostgreSQL when TIMEPOOL_TEST_PG_URL is set).

mod web_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use timepool::control::db::Db;
use timepool::control::web::{Settings, WebArgs};

use web_support::{sigterm_and_wait, start_web};

const BIN: &str = env!("CARGO_BIN_EXE_timepool");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("timepool_cli_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn settings_merge_flags_over_file() {
    let dir = temp_dir("settings");
    let toml = dir.join("web.toml");
    std::fs::write(
        &toml,
        "listen = \"127.0.0.1:9999\"\norigin = \"file.example\"\nallow_loopback = true\n",
    )
    .expect("write");
    let from_file = Settings::resolve(&WebArgs {
        config: Some(toml.clone()),
        ..WebArgs::default()
    })
    .expect("resolve");
    assert_eq!(from_file.listen.port(), 9999);
    assert_eq!(from_file.origin, "file.example");
    assert!(from_file.allow_loopback);
    assert_eq!(from_file.counts_cache_secs, 10);
    // Unverified servers are capped at the pool's default netspeed unless
    // the rule is turned off.
    assert_eq!(from_file.unverified_netspeed_max, Some(10_000));
    assert!(from_file.database_url.starts_with("sqlite://data/"));
    let flags = WebArgs {
        config: Some(toml),
        origin: Some("Flag.Example.".into()),
        database: Some("postgres://x/y".into()),
        ..WebArgs::default()
    };
    let merged = Settings::resolve(&flags).expect("resolve");
    assert_eq!(
        Settings::resolve(&WebArgs {
            no_server_verification: true,
            ..WebArgs::default()
        })
        .expect("resolve")
        .unverified_netspeed_max,
        None
    );
    assert_eq!(merged.origin, "flag.example");
    assert_eq!(merged.database_url, "postgres://x/y");

    let json = dir.join("web.json");
    std::fs::write(
        &json,
        r#"{"origin": "json.example", "data_dir": "/var/lib/tp"}"#,
    )
    .expect("write");
    let from_json = Settings::resolve(&WebArgs {
        config: Some(json),
        ..WebArgs::default()
    })
    .expect("json");
    assert_eq!(from_json.origin, "json.example");
    assert_eq!(
        from_json.database_url,
        "sqlite:///var/lib/tp/timepool.db?mode=rwc"
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "colour = \"blue\"\n").expect("write");
    let err = Settings::resolve(&WebArgs {
        config: Some(bad),
        ..WebArgs::default()
    })
    .expect_err("unknown key refused");
    assert!(err.to_string().contains("colour"), "{err}");

    // The alert thresholds: the pool's by default, any of them from the
    // file's [alerts], refused with the key when wrong.
    assert_eq!(from_file.alerts, Default::default());
    let alerts = dir.join("alerts.toml");
    std::fs::write(
        &alerts,
        "[alerts]\ninterval_secs = 60\nalert_score = -20.0\n",
    )
    .expect("write");
    let with_alerts = Settings::resolve(&WebArgs {
        config: Some(alerts.clone()),
        ..WebArgs::default()
    })
    .expect("alerts");
    assert_eq!(with_alerts.alerts.interval_secs, 60);
    assert_eq!(with_alerts.alerts.alert_score, -20.0);
    assert_eq!(with_alerts.alerts.repeat_after_secs, 14 * 86_400);
    for (text, key) in [
        ("[alerts]\nrepeat_days = 3\n", "repeat_days"),
        ("[alerts]\nclear_score = -30.0\n", "clear_score"),
        ("[alerts]\ninterval_secs = 0\n", "interval_secs"),
    ] {
        std::fs::write(&alerts, text).expect("write");
        let err = Settings::resolve(&WebArgs {
            config: Some(alerts.clone()),
            ..WebArgs::default()
        })
        .expect_err(text);
        assert!(err.to_string().contains(key), "{text}: {err}");
    }
}

#[test]
fn the_selector_s_numbers_come_from_the_config_file() {
    let dir = std::env::temp_dir().join(format!("timepool-selector-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("selector.toml");
    std::fs::write(
        &file,
        "[selector]\npoints_to_active = 32\ninterval_secs = 30\n",
    )
    .expect("write");
    let settings = Settings::resolve(&WebArgs {
        config: Some(file.clone()),
        ..WebArgs::default()
    })
    .expect("selector");
    assert_eq!(settings.selector.points_to_active, 32);
    assert_eq!(settings.selector.interval_secs, 30);
    assert_eq!(
        settings.selector.target_active, 7,
        "the rest stay the pool's"
    );
    for (text, key) in [
        ("[selector]\npoints_to_testing = 70\n", "points_to_testing"),
        (
            "[selector]\nmin_globally_active_testing = 9\n",
            "min_globally_active_testing",
        ),
        (
            "[selector]\nmax_monitor_clock_offset_ms = 0.0\n",
            "max_monitor_clock_offset_ms",
        ),
        ("[selector]\ntargets = 3\n", "targets"),
    ] {
        std::fs::write(&file, text).expect("write");
        let err = Settings::resolve(&WebArgs {
            config: Some(file.clone()),
            ..WebArgs::default()
        })
        .expect_err(text);
        assert!(err.to_string().contains(key), "{text}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

#[test]
fn web_serves_and_stops_on_sigterm_with_flag_env_file_precedence() {
    let dir = temp_dir("serve");
    let config = dir.join("web.toml");
    std::fs::write(
        &config,
        "origin = \"file.example\"\nlisten = \"127.0.0.1:1\"\n",
    )
    .expect("write");
    let data = dir.join("data");
    let data_arg = data.to_string_lossy().to_string();
    let config_arg = config.to_string_lossy().to_string();

    // The environment beats the file (listen and origin).
    let (child, port) = start_web(
        &["--config", &config_arg, "--data-dir", &data_arg],
        &[
            ("TIMEPOOL_ORIGIN", "env.example"),
            ("TIMEPOOL_LISTEN", "127.0.0.1:0"),
        ],
    );
    let home = http_get(port, "/");
    assert!(home.starts_with("HTTP/1.1 200"), "{home}");
    assert!(home.contains("env.example"), "env origin used");
    assert!(http_get(port, "/nowhere").starts_with("HTTP/1.1 404"));
    sigterm_and_wait(child);
    assert!(
        data.join("timepool.db").exists(),
        "SQLite database created in the data dir"
    );

    // A flag beats the environment.
    let (child, port) = start_web(
        &[
            "--config",
            &config_arg,
            "--data-dir",
            &data_arg,
            "--origin",
            "flag.example",
            "--listen",
            "127.0.0.1:0",
        ],
        &[("TIMEPOOL_ORIGIN", "env.example")],
    );
    assert!(http_get(port, "/use").contains("0.flag.example"));
    sigterm_and_wait(child);
}

fn admin(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .arg("admin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn admin");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("admin output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn admin_commands_create_staff_users_and_monitors() {
    for (engine, url) in web_support::database_urls().await {
        eprintln!("--- engine: {engine}");
        let (ok, out, err) = admin(
            &[
                "create-user",
                "--staff",
                "Root@Example.net",
                "--database",
                &url,
            ],
            None,
        );
        assert!(ok, "{out}{err}");
        let password = out
            .lines()
            .find_map(|l| l.strip_prefix("password: "))
            .expect("generated password printed")
            .to_string();
        assert_eq!(password.len(), 20);

        let (ok, _, err) = admin(
            &[
                "create-user",
                "--staff",
                "root@example.net",
                "--database",
                &url,
            ],
            None,
        );
        assert!(!ok && err.contains("already has a login"), "{err}");
        let (ok, _, err) = admin(&["create-user", "nobody", "--database", &url], None);
        assert!(!ok && err.contains("email"), "{err}");

        let (ok, out, err) = admin(
            &[
                "create-user",
                "--password-stdin",
                "op@example.net",
                "--database",
                &url,
            ],
            Some("a good long password\n"),
        );
        assert!(ok, "{out}{err}");
        assert!(!out.contains("password:"), "no password printed when given");
        let (ok, _, err) = admin(
            &[
                "create-user",
                "--password-stdin",
                "op2@example.net",
                "--database",
                &url,
            ],
            Some("short\n"),
        );
        assert!(!ok && err.contains("at least"), "{err}");

        let (ok, out, err) = admin(&["create-monitor", "mon-cli", "--database", &url], None);
        assert!(ok, "{out}{err}");
        let token = out
            .lines()
            .find_map(|l| l.strip_prefix("token: "))
            .expect("token printed")
            .to_string();
        let (ok, _, err) = admin(&["create-monitor", "mon-cli", "--database", &url], None);
        assert!(!ok && err.contains("exists"), "{err}");

        // The results, read back: roles, the token hash, the audit lines, and a working login.
        let db = Db::connect(&url).await.expect("connect");
        let found = timepool::control::db::monitors::by_token(&db, &token)
            .await
            .expect("query")
            .expect("monitor by token");
        assert_eq!(
            (found.name.as_str(), found.state.as_str()),
            ("mon-cli", "candidate")
        );
        let (user, hash) = timepool::control::db::accounts::find_login(&db, "root@example.net")
            .await
            .expect("q")
            .expect("root");
        assert!(user.is_staff());
        assert!(hash.starts_with("$argon2id$"));
        assert!(timepool::control::web::session::verify_password(
            &password, &hash
        ));
        let (op, op_hash) = timepool::control::db::accounts::find_login(&db, "op@example.net")
            .await
            .expect("q")
            .expect("op");
        assert!(!op.is_staff());
        assert!(timepool::control::web::session::verify_password(
            "a good long password",
            &op_hash
        ));
        let audit = timepool::control::db::audit::recent(&db, 10)
            .await
            .expect("audit");
        assert!(
            audit
                .iter()
                .any(|e| e.actor == "cli" && e.action == "monitor.create")
        );
        assert!(
            audit
                .iter()
                .any(|e| e.actor == "cli" && e.action == "user.create")
        );
        db.pool.close().await;
    }
}
