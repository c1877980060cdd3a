//! Snapshot validation: every problem is reported with its JSON path, and
//! `timepool check-snapshot` prints them and exits 1.

mod support;

use serde_json::{Value, json};
use timepool::dns::zone::load_bytes;
use timepool::shared::snapshot::SnapshotError;

fn example() -> Value {
    serde_json::from_slice(&std::fs::read(support::example_snapshot()).unwrap()).unwrap()
}

fn problems(document: &Value) -> Vec<String> {
    match load_bytes(&serde_json::to_vec(document).unwrap(), "test") {
        Ok(_) => Vec::new(),
        Err(SnapshotError::Invalid { problems, .. }) => {
            problems.iter().map(|p| p.to_string()).collect()
        }
        Err(other) => vec![other.to_string()],
    }
}

/// Apply `edit` to the example and expect exactly these problem paths.
fn check(what: &str, edit: impl FnOnce(&mut Value), expected_paths: &[&str]) {
    let mut document = example();
    edit(&mut document);
    let found = problems(&document);
    let paths: Vec<&str> = found
        .iter()
        .map(|p| p.split(": ").next().unwrap())
        .collect();
    assert_eq!(paths, expected_paths, "{what}: {found:#?}");
}

#[test]
fn the_example_is_valid() {
    let table = load_bytes(&serde_json::to_vec(&example()).unwrap(), "example").expect("valid");
    assert!(table.servers.len() >= 60);
    let v6 = table.servers.iter().filter(|s| s.is_v6).count();
    assert!(v6 > 0 && v6 < table.servers.len(), "IPv4 and IPv6");
    assert!(table.zone_id("uk").is_some());
    assert_eq!(table.resolve_zone_name("gb"), table.zone_id("uk"));
    assert_eq!(table.resolve_zone_name("debian"), table.zone_id("@"));
}

#[test]
fn every_problem_is_reported_with_its_path() {
    check("version", |d| d["version"] = json!(2), &["$.version"]);
    check("serial", |d| d["serial"] = json!(0), &["$.serial"]);
    check("serial type", |d| d["serial"] = json!("1"), &["$.serial"]);
    check("unknown field", |d| d["extra"] = json!(1), &["$.extra"]);
    check(
        "origin name",
        |d| d["origins"][0]["name"] = json!("bad..name"),
        &["$.origins[0].name"],
    );
    check(
        "max_hosts",
        |d| d["origins"][0]["max_hosts"] = json!(0),
        &["$.origins[0].max_hosts"],
    );
    check(
        "ns empty",
        |d| d["origins"][0]["ns"] = json!([]),
        &["$.origins[0].ns"],
    );
    check(
        "too many ns",
        |d| {
            let names: Vec<String> = (0..17).map(|i| format!("ns{i}.example.net")).collect();
            d["origins"][0]["ns"] = json!(names);
        },
        &["$.origins[0].ns"],
    );
    check(
        "soa field",
        |d| d["origins"][0]["soa"]["retry"] = json!(-1),
        &["$.origins[0].soa.retry"],
    );
    check(
        "address",
        |d| d["servers"][3]["address"] = json!("300.1.2.3"),
        &["$.servers[3].address"],
    );
    check(
        "weight",
        |d| d["servers"][5]["weight"] = json!(0),
        &["$.servers[5].weight"],
    );
    check(
        "duplicate id",
        |d| {
            let servers = d["servers"].as_array_mut().unwrap();
            servers.push(json!({"id": servers[0]["id"], "address": "192.0.2.250", "weight": 1}));
        },
        &["$.servers[70].id"],
    );
    check(
        "duplicate address",
        |d| d["servers"][1]["address"] = d["servers"][0]["address"].clone(),
        &["$.servers[1].address"],
    );
    check(
        "unknown server",
        |d| d["zones"]["de"]["servers"][0] = json!(99999),
        &["$.zones.de.servers[0]"],
    );
    check(
        "unknown parent",
        |d| d["zones"]["de"]["parent"] = json!("mars"),
        &["$.zones.de.parent"],
    );
    check(
        "no global zone",
        |d| {
            d["zones"].as_object_mut().unwrap().remove("@");
        },
        &[
            "$.zones",
            "$.zones.africa.parent",
            "$.zones.antarctica.parent",
            "$.zones.asia.parent",
            "$.zones.europe.parent",
            "$.zones.north-america.parent",
            "$.zones.oceania.parent",
            "$.zones.south-america.parent",
            "$.aliases.debian",
        ],
    );
    check(
        "alias target",
        |d| d["aliases"]["gb"] = json!("xx"),
        &["$.aliases.gb"],
    );
    check(
        "alias over a zone",
        |d| d["aliases"]["de"] = json!("fr"),
        &["$.aliases.de"],
    );
    check(
        "numeric zone",
        |d| d["zones"]["42"] = json!({"parent": "@", "servers": []}),
        &["$.zones.42"],
    );
    check(
        "numbered outside zone",
        |d| {
            let foreign = d["zones"]["us"]["servers"][0].clone();
            d["zones"]["de"]["numbered"][0]
                .as_array_mut()
                .unwrap()
                .push(foreign);
        },
        &["$.zones.de.numbered[0][4]"],
    );
    check(
        "parent loop",
        |d| {
            d["zones"]["europe"]["parent"] = json!("de");
        },
        &[
            "$.zones.de.parent",
            "$.zones.europe.parent",
            "$.zones.fr.parent",
            "$.zones.nl.parent",
            "$.zones.uk.parent",
        ],
    );
    // TTLs are capped (zones/README.md, "TTL limits"): the review's
    // 2 147 483 647 would pin resolvers for 68 years.
    check(
        "ttls beyond the caps",
        |d| {
            let origin = &mut d["origins"][0];
            origin["answer_ttl"] = json!(2_147_483_647u64);
            origin["ns_ttl"] = json!(172_801);
            origin["soa"]["ttl"] = json!(86_401);
            origin["soa"]["minimum"] = json!(86_401);
            origin["soa"]["refresh"] = json!(86_401);
            origin["soa"]["retry"] = json!(86_401);
            origin["soa"]["expire"] = json!(2_419_201);
        },
        &[
            "$.origins[0].soa.refresh",
            "$.origins[0].soa.retry",
            "$.origins[0].soa.expire",
            "$.origins[0].soa.minimum",
            "$.origins[0].soa.ttl",
            "$.origins[0].ns_ttl",
            "$.origins[0].answer_ttl",
        ],
    );
    check(
        "ttls at the caps",
        |d| {
            let origin = &mut d["origins"][0];
            origin["answer_ttl"] = json!(timepool::shared::snapshot::MAX_ANSWER_TTL);
            origin["ns_ttl"] = json!(timepool::shared::snapshot::MAX_NS_TTL);
            origin["soa"]["ttl"] = json!(timepool::shared::snapshot::MAX_SOA_TTL);
            origin["soa"]["expire"] = json!(timepool::shared::snapshot::MAX_SOA_EXPIRE);
        },
        &[],
    );
    // Several problems at once: all of them.
    check(
        "many",
        |d| {
            d["serial"] = json!(-5);
            d["servers"][0]["weight"] = json!("fast");
            d["origins"][0]["answer_ttl"] = json!(1u64 << 40);
        },
        &["$.serial", "$.origins[0].answer_ttl", "$.servers[0].weight"],
    );
}

#[test]
fn check_snapshot_prints_problems_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("timepool-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    let mut document = example();
    document["serial"] = json!(0);
    document["zones"]["de"]["parent"] = json!("mars");
    std::fs::write(&bad, serde_json::to_vec(&document).unwrap()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_timepool"))
        .arg("check-snapshot")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("$.serial: 0 is out of range"), "{stdout}");
    assert!(
        stdout.contains("$.zones.de.parent: no zone is named \"mars\""),
        "{stdout}"
    );

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_timepool"))
        .arg("check-snapshot")
        .arg(support::example_snapshot())
        .output()
        .unwrap();
    assert!(output.status.success());
    std::fs::write(&bad, b"{not json").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_timepool"))
        .arg("check-snapshot")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("line 1 column 2"));
    let _ = std::fs::remove_dir_all(dir);
}
