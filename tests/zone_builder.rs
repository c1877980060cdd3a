//! The zone builder from the database (zones/README.md, "Zone building") and
//! `GET /api/v1/snapshot`, on SQLite and (with TIMEPOOL_TEST_PG_URL) on
//! PostgreSQL. Servers are inserted with SQL: the rules under test are the
//! builder's, not the forms'.

mod web_support;

use std::collections::BTreeSet;
use std::io::Read;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use timepool::control::db::{Db, now};
use timepool::control::zone_builder::{
    BuildConfig, BuildOutcome, SnapshotStore, build_and_publish,
};
use tower::ServiceExt;
use web_support::for_each_engine;

const DAY: i64 = 86_400;

/// One server row; `None` fields take the defaults of a healthy server.
#[derive(Clone)]
struct Row {
    address: String,
    netspeed: i64,
    score: f64,
    in_pool: i64,
    geo_zone: Option<&'static str>,
    zone_override: Option<&'static str>,
    deletion_on: Option<i64>,
}

fn healthy(address: &str, zone: &'static str) -> Row {
    Row {
        address: address.to_string(),
        netspeed: 1000,
        score: 20.0,
        in_pool: 1,
        geo_zone: Some(zone),
        zone_override: None,
        deletion_on: None,
    }
}

async fn account(db: &Db) -> i64 {
    sqlx::query("INSERT INTO accounts (name, created_at) VALUES ('test', 0) RETURNING id")
        .fetch_one(&db.pool)
        .await
        .map(|row| sqlx::Row::get::<i64, _>(&row, 0))
        .expect("account")
}

async fn insert(db: &Db, account: i64, row: &Row) -> i64 {
    let version = if row.address.contains(':') { 6 } else { 4 };
    let inserted = sqlx::query(
        "INSERT INTO servers (account_id, address, ip_version, geo_zone, zone_override,
                              netspeed, in_pool, score, score_ts, created_at, deletion_on)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 0, $9) RETURNING id",
    )
    .bind(account)
    .bind(&row.address)
    .bind(version)
    .bind(row.geo_zone)
    .bind(row.zone_override)
    .bind(row.netspeed)
    .bind(row.in_pool)
    .bind(row.score)
    .bind(row.deletion_on)
    .fetch_one(&db.pool)
    .await
    .expect("insert server");
    sqlx::Row::get::<i64, _>(&inserted, 0)
}

async fn set_score(db: &Db, id: i64, score: f64) {
    sqlx::query("UPDATE servers SET score = $1 WHERE id = $2")
        .bind(score)
        .bind(id)
        .execute(&db.pool)
        .await
        .expect("update score");
}

fn config() -> BuildConfig {
    BuildConfig::for_origin("pool.example.org", vec!["ns1.example.org".into()], None)
}

/// Build, check the published bytes load, and return the document.
async fn build(db: &Db, store: &SnapshotStore) -> (BuildOutcome, Value) {
    let outcome = build_and_publish(db, &config(), store, now())
        .await
        .expect("build");
    let current = store.current().expect("a snapshot in memory");
    timepool::shared::snapshot::parse(&current.bytes, "test").expect("valid");
    (
        outcome,
        serde_json::from_slice(&current.bytes).expect("json"),
    )
}

fn ids(value: &Value) -> BTreeSet<u64> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn eligibility_follows_design_section_4() {
    for_each_engine(false, |app| async move {
        let db = &app.db;
        let account = account(db).await;
        let t = now();
        let good = insert(db, account, &healthy("192.0.2.1", "de")).await;
        let exactly_ten = insert(
            db,
            account,
            &Row {
                score: 10.0,
                ..healthy("192.0.2.2", "de")
            },
        )
        .await;
        let below = insert(
            db,
            account,
            &Row {
                score: 9.99,
                ..healthy("192.0.2.3", "de")
            },
        )
        .await;
        let monitor_only = insert(
            db,
            account,
            &Row {
                netspeed: 0,
                ..healthy("192.0.2.4", "de")
            },
        )
        .await;
        let out_of_pool = insert(
            db,
            account,
            &Row {
                in_pool: 0,
                ..healthy("192.0.2.5", "de")
            },
        )
        .await;
        let deleted_soon = insert(
            db,
            account,
            &Row {
                deletion_on: Some(t + 14 * DAY - 60),
                ..healthy("192.0.2.6", "de")
            },
        )
        .await;
        let deleted_later = insert(
            db,
            account,
            &Row {
                deletion_on: Some(t + 14 * DAY + 3600),
                ..healthy("192.0.2.7", "de")
            },
        )
        .await;
        let v6 = insert(db, account, &healthy("2001:db8::1", "de")).await;
        let british = insert(db, account, &healthy("198.51.100.1", "gb")).await;
        let moved = insert(
            db,
            account,
            &Row {
                zone_override: Some("fr"),
                ..healthy("198.51.100.2", "de")
            },
        )
        .await;
        let nowhere = insert(
            db,
            account,
            &Row {
                geo_zone: None,
                ..healthy("203.0.113.9", "de")
            },
        )
        .await;

        let store = SnapshotStore::default();
        let (_, doc) = build(db, &store).await;
        let served: BTreeSet<u64> = doc["servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["id"].as_u64())
            .collect();
        let expected: BTreeSet<u64> = [
            good,
            exactly_ten,
            deleted_later,
            v6,
            british,
            moved,
            nowhere,
        ]
        .iter()
        .map(|&id| id as u64)
        .collect();
        assert_eq!(served, expected, "{}", app.engine);
        for left_out in [below, monitor_only, out_of_pool, deleted_soon] {
            assert!(!served.contains(&(left_out as u64)));
        }
        // Hierarchy: de, europe and @; gb is uk; the override wins.
        let de = ids(&doc["zones"]["de"]["servers"]);
        assert_eq!(
            de,
            [good, exactly_ten, deleted_later, v6]
                .iter()
                .map(|&i| i as u64)
                .collect()
        );
        assert_eq!(doc["zones"]["de"]["parent"], "europe");
        assert!(ids(&doc["zones"]["europe"]["servers"]).contains(&(british as u64)));
        assert_eq!(ids(&doc["zones"]["uk"]["servers"]), [british as u64].into());
        assert_eq!(ids(&doc["zones"]["fr"]["servers"]), [moved as u64].into());
        assert_eq!(ids(&doc["zones"]["@"]["servers"]), expected);
        assert_eq!(doc["aliases"]["gb"], "uk");
        // IPv6 as an IPv6 address (the daemon answers it as AAAA); weight = netspeed.
        let v6_entry = doc["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == v6)
            .unwrap();
        assert_eq!(v6_entry["address"], "2001:db8::1");
        assert_eq!(v6_entry["weight"], 1000);
    })
    .await;
}

#[tokio::test]
async fn numbered_labels_small_and_large_zones() {
    for_each_engine(false, |app| async move {
        let db = &app.db;
        let account = account(db).await;
        // 11 in nl (N < 16: every label gets all), 21 in de (dealt: counts
        // 6, 5, 5, 5, equal weights).
        let mut nl = BTreeSet::new();
        for i in 0..11 {
            nl.insert(
                insert(db, account, &healthy(&format!("192.0.2.{}", 10 + i), "nl")).await as u64,
            );
        }
        let mut de = BTreeSet::new();
        for i in 0..21 {
            de.insert(
                insert(
                    db,
                    account,
                    &healthy(&format!("198.51.100.{}", 10 + i), "de"),
                )
                .await as u64,
            );
        }
        let store = SnapshotStore::default();
        let (_, doc) = build(db, &store).await;
        for label in doc["zones"]["nl"]["numbered"].as_array().unwrap() {
            assert_eq!(ids(label), nl, "{}", app.engine);
        }
        let labels = doc["zones"]["de"]["numbered"].as_array().unwrap();
        assert_eq!(labels.len(), 4);
        let mut dealt = BTreeSet::new();
        let mut sizes = Vec::new();
        for label in labels {
            sizes.push(label.as_array().unwrap().len());
            dealt.extend(ids(label));
        }
        assert_eq!(dealt, de, "every server dealt");
        assert_eq!(sizes, vec![6, 5, 5, 5]);
    })
    .await;
}

#[tokio::test]
async fn vendor_aliases_and_serials() {
    for_each_engine(false, |app| async move {
        let db = &app.db;
        let account = account(db).await;
        let a = insert(db, account, &healthy("192.0.2.1", "de")).await;
        insert(db, account, &healthy("192.0.2.2", "de")).await;
        for (name, status) in [("debian", "approved"), ("pending-vendor", "pending"), ("nope", "rejected")] {
            sqlx::query(
                "INSERT INTO vendor_zones (name, client_type, description, status, account_id, created_at)
                 VALUES ($1, 'ntp', 'x', $2, $3, 0)",
            )
            .bind(name)
            .bind(status)
            .bind(account)
            .execute(&db.pool)
            .await
            .expect("vendor zone");
        }
        let store = SnapshotStore::default();
        let (first, doc) = build(db, &store).await;
        let BuildOutcome::Published(serial) = first else { panic!("first build publishes") };
        assert_eq!(doc["aliases"]["debian"], "@");
        assert!(doc["aliases"].get("pending-vendor").is_none());
        assert!(doc["aliases"].get("nope").is_none());
        // Unchanged content: same serial, same bytes; a score change that
        // keeps the server eligible changes nothing either.
        let bytes = store.current().unwrap().bytes.clone();
        set_score(db, a, 15.0).await;
        let (second, _) = build(db, &store).await;
        assert_eq!(second, BuildOutcome::Unchanged(serial), "{}", app.engine);
        assert_eq!(store.current().unwrap().bytes, bytes);
        // A fresh process (empty store) renders the same bytes.
        let fresh = SnapshotStore::default();
        let (third, _) = build(db, &fresh).await;
        assert_eq!(third, BuildOutcome::Unchanged(serial));
        assert_eq!(fresh.current().unwrap().bytes, bytes);
        // Dropping below 10: new content, a larger serial.
        set_score(db, a, 9.5).await;
        let (fourth, doc) = build(db, &store).await;
        let BuildOutcome::Published(next) = fourth else { panic!("a change publishes") };
        assert!(next > serial);
        assert_eq!(doc["serial"], next);
        assert!(!ids(&doc["zones"]["de"]["servers"]).contains(&(a as u64)));
    })
    .await;
}

#[tokio::test]
async fn publish_writes_the_file_atomically_and_build_zones_reuses_it() {
    for_each_engine(false, |app| async move {
        let db = &app.db;
        let account = account(db).await;
        insert(db, account, &healthy("192.0.2.1", "de")).await;
        let dir =
            std::env::temp_dir().join(format!("timepool-zb-{}-{}", std::process::id(), app.engine));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("snapshot.json");
        let config = BuildConfig {
            out: Some(out.clone()),
            ..config()
        };
        let store = SnapshotStore::default();
        let serial = build_and_publish(db, &config, &store, now())
            .await
            .unwrap()
            .serial();
        let table = timepool::shared::snapshot::read_file(&out).expect("published file loads");
        assert_eq!(table.serial, serial);
        // Removed file: the next (unchanged) build writes it again.
        std::fs::remove_file(&out).unwrap();
        let again = build_and_publish(db, &config, &store, now()).await.unwrap();
        assert_eq!(again, BuildOutcome::Unchanged(serial));
        assert_eq!(
            timepool::shared::snapshot::read_file(&out).unwrap().serial,
            serial
        );
        // Only the file is in the directory (no temporary left over).
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // An output directory that does not exist: an error and no serial recorded.
        let bad = BuildConfig {
            out: Some(dir.join("missing/snapshot.json")),
            ..config.clone()
        };
        sqlx::query("UPDATE servers SET netspeed = 2000")
            .execute(&db.pool)
            .await
            .unwrap();
        assert!(build_and_publish(db, &bad, &store, now()).await.is_err());
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM snapshots")
            .fetch_one(&db.pool)
            .await
            .map(|row| sqlx::Row::get(&row, 0))
            .unwrap();
        assert_eq!(count, 1, "a failed write records no serial");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

async fn get_snapshot(
    router: &axum::Router,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().uri("/api/v1/snapshot");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

#[tokio::test]
async fn snapshot_endpoint_etag_304_and_gzip() {
    for (engine, url) in web_support::database_urls().await {
        let db = Db::connect(&url).await.expect("connect");
        let state =
            timepool::control::web::AppState::new(db.clone(), web_support::settings(&url, false));
        let router = timepool::control::web::router(state.clone());
        // Nothing published yet.
        let (status, _, _) = get_snapshot(&router, &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{engine}");

        let account = account(&db).await;
        insert(&db, account, &healthy("192.0.2.1", "de")).await;
        let outcome = build_and_publish(&db, &config(), &state.snapshot, now())
            .await
            .unwrap();
        let (status, headers, body) = get_snapshot(&router, &[]).await;
        assert_eq!(status, StatusCode::OK);
        let etag = headers[header::ETAG].to_str().unwrap().to_string();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "strong ETag: {etag}"
        );
        assert_eq!(
            headers["x-timepool-serial"].to_str().unwrap(),
            outcome.serial().to_string()
        );
        let table = timepool::shared::snapshot::parse(&body, "endpoint").expect("valid body");
        assert_eq!(table.serial, outcome.serial());

        let (status, headers, body) = get_snapshot(&router, &[("if-none-match", &etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        assert_eq!(headers[header::ETAG].to_str().unwrap(), etag);
        let (status, _, _) = get_snapshot(&router, &[("if-none-match", "\"other\"")]).await;
        assert_eq!(status, StatusCode::OK);

        let (status, headers, gzipped) =
            get_snapshot(&router, &[("accept-encoding", "br, gzip")]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        let gzip_etag = headers[header::ETAG].to_str().unwrap().to_string();
        assert_ne!(gzip_etag, etag);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gzipped[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, body_of(&router).await);
        assert!(gzipped.len() < plain.len());
        let (status, _, _) = get_snapshot(
            &router,
            &[("accept-encoding", "gzip"), ("if-none-match", &gzip_etag)],
        )
        .await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);

        // The metrics page counts the route and shows the serial.
        let response = router
            .clone()
            .oneshot(
                Request::builder()
                    .uri("/metrics")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let text = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(
            text.contains(
                "timepool_web_requests_total{route=\"/api/v1/snapshot\",status=\"304\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!("timepool_snapshot_serial {}", outcome.serial())),
            "{text}"
        );
        db.pool.close().await;
    }
    let _ = timepool::control::zone_builder::Schedule::default();
}

async fn body_of(router: &axum::Router) -> Vec<u8> {
    get_snapshot(router, &[]).await.2
}

/// How many A records `name` gets from `table` (its rcode must be
/// NOERROR).
fn addresses_of(table: &timepool::dns::zone::ZoneTable, name: &str) -> usize {
    use timepool::dns::answer::{AnswerConfig, Client, Context, Transport, respond};
    let geo = timepool::shared::geo::GeoTable::empty();
    let config = AnswerConfig::default();
    let cookies = timepool::dns::cookie::CookieSecrets::single([1; 16]);
    let ctx = Context {
        table,
        geo: &geo,
        config: &config,
        cookies: &cookies,
        now: 0,
    };
    let client = Client {
        source: "198.51.100.1".parse().unwrap(),
        transport: Transport::Udp,
    };
    let builder = domain::base::MessageBuilder::new_vec();
    let mut question = builder.question();
    let qname: domain::base::Name<Vec<u8>> = name.parse().expect("a name");
    question
        .push((qname, domain::base::iana::Rtype::A))
        .expect("question");
    let packet = question.finish();
    let mut out = vec![0u8; 512];
    let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(1);
    let length = respond(&ctx, &packet, client, &mut rng, &mut out).expect("a response");
    let reply = domain::base::Message::from_octets(out[..length].to_vec()).expect("parses");
    assert_eq!(reply.header().rcode().to_string(), "NOERROR", "{name}");
    reply.header_counts().ancount().into()
}

/// The pool names in a page: every `[0-9a-z.-]+.pool.example.org`.
fn names_in(page: &str) -> BTreeSet<String> {
    let suffix = ".pool.example.org";
    let mut names = BTreeSet::new();
    for (at, _) in page.match_indices(suffix) {
        let start = page[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
            .map_or(0, |i| i + 1);
        if start < at {
            names.insert(format!("{}{suffix}", &page[start..at]));
        }
    }
    names
}

#[tokio::test]
async fn every_name_the_site_advertises_answers() {
    for_each_engine(false, |app| async move {
        // One server in the whole pool: every other zone is empty.
        let account = account(&app.db).await;
        insert(&app.db, account, &healthy("192.0.2.1", "de")).await;
        let state =
            timepool::control::web::AppState::new(app.db.clone(), web_support::settings("", false));
        build_and_publish(&app.db, &config(), &state.snapshot, now())
            .await
            .expect("published");
        let published = state.snapshot.current().expect("a snapshot");
        let table = timepool::dns::zone::load_bytes(&published.bytes, "published").expect("loads");
        let mut client = app.client();
        // Every zone with a page: the world, the continents, every country
        // (the list on /api/v1/zones has only those with servers).
        let mut zones = vec!["global".to_string()];
        zones.extend(
            timepool::shared::zones::Continent::ALL
                .iter()
                .map(|c| c.zone_name().to_string()),
        );
        zones.extend(
            timepool::control::zone_tree::all_countries()
                .iter()
                .map(|c| c.zone.to_string()),
        );
        let listed: Value = serde_json::from_str(&client.get("/api/v1/zones").await.body).unwrap();
        for row in listed["zones"].as_array().expect("zones") {
            let zone = row["zone"].as_str().expect("zone").replace('@', "global");
            assert!(zones.contains(&zone), "{zone} listed");
        }
        let mut checked = 0;
        for zone in &zones {
            let api: Value =
                serde_json::from_str(&client.get(&format!("/api/v1/zones/{zone}")).await.body)
                    .unwrap();
            let names: Vec<&str> = api["names"]
                .as_array()
                .unwrap_or_else(|| panic!("names of {zone}: {api}"))
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(names.len(), 5, "{zone}: {names:?}");
            for name in names {
                assert!(addresses_of(&table, name) >= 1, "{name} has an address");
                checked += 1;
            }
        }
        // The zone pages show the same names, for a country without
        // servers (Antarctica's `aq`) too; `gb` is `uk`'s alias.
        for name in ["gb.pool.example.org", "0.gb.pool.example.org"] {
            assert!(addresses_of(&table, name) >= 1, "{name}");
        }
        for page in [
            "/zone/aq",
            "/zone/antarctica",
            "/zone/uk",
            "/zone/de",
            "/zone/@",
        ] {
            let names = names_in(&client.get(page).await.body);
            assert!(!names.is_empty(), "names on {page}");
            for name in names {
                assert!(addresses_of(&table, &name) >= 1, "{name} on {page}");
            }
        }
        assert!(checked > 1200, "{checked} names checked");
    })
    .await;
}

#[tokio::test]
async fn a_score_ramp_scales_weights_with_the_score() {
    for_each_engine(false, |app| async move {
        let db = &app.db;
        let account = account(db).await;
        let mut ids = Vec::new();
        for (address, score) in [("192.0.2.1", 9.0), ("192.0.2.2", 12.5), ("192.0.2.3", 20.0)] {
            let row = Row {
                netspeed: 100_000,
                score,
                ..healthy(address, "de")
            };
            ids.push(insert(db, account, &row).await as u64);
        }
        let weights = |document: &Value| -> Vec<(u64, u64)> {
            document["servers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["id"].as_u64().unwrap(), s["weight"].as_u64().unwrap()))
                .collect()
        };
        // The pool's switch: full weight from 10, nothing below.
        let (_, plain) = build(db, &SnapshotStore::default()).await;
        assert_eq!(weights(&plain), vec![(ids[1], 100_000), (ids[2], 100_000)]);
        // 10:15: half way up at 12.5; 9 stays out.
        let ramped = BuildConfig {
            score_ramp: Some("10:15".parse().unwrap()),
            ..config()
        };
        let store = SnapshotStore::default();
        build_and_publish(db, &ramped, &store, now())
            .await
            .expect("build");
        let document: Value = serde_json::from_slice(&store.current().unwrap().bytes).unwrap();
        assert_eq!(
            weights(&document),
            vec![(ids[1], 50_000), (ids[2], 100_000)],
            "{}",
            app.engine
        );
        // Below 10 with a ramp from 5: in DNS, with a fraction.
        let low = BuildConfig {
            score_ramp: Some("5:15".parse().unwrap()),
            ..config()
        };
        let store = SnapshotStore::default();
        build_and_publish(db, &low, &store, now())
            .await
            .expect("build");
        let document: Value = serde_json::from_slice(&store.current().unwrap().bytes).unwrap();
        assert_eq!(
            weights(&document),
            vec![(ids[0], 40_000), (ids[1], 75_000), (ids[2], 100_000)]
        );
    })
    .await;
}
