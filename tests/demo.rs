//! `timepool demo` as a library: the whole loop with every real part.
//! Simulated servers are registered, the selector pairs them with three
//! monitor agents (one with its clock 50 ms off, which submits nothing and
//! says why), the agents check them through the ingest API, the scores cross 10, the zone builder publishes, and the
//! DNS daemon (following `/api/v1/snapshot`) answers with the healthy ones
//! and never with the bad ones. Then a healthy server goes 5 s off: its
//! score drops, the next snapshot leaves it out and the DNS daemon stops
//! handing it out, with no restart.

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use support::{Ask, parse_reply, query, udp_exchange};
use timepool::demo::{Demo, DemoConfig};
use timepool::shared::ntp::responder::Behaviour;

/// Every address in the answers of `name` (A and AAAA, asked a few times so
/// the weighted sampling shows every server of a small zone), located in
/// Germany by ECS for the geo names.
fn answered(dns: SocketAddr, name: &str) -> BTreeSet<IpAddr> {
    let mut seen = BTreeSet::new();
    for qtype in [1u16, 28] {
        for _ in 0..8 {
            let ask = Ask {
                subnet: Some((24, "85.214.1.0".parse().unwrap())),
                ..Ask::edns(1232)
            };
            let Some(bytes) = udp_exchange(dns, &query(name, qtype, &ask)) else {
                continue;
            };
            let reply = parse_reply(&bytes);
            for record in reply.answer {
                if let Ok(address) = record.data.parse::<IpAddr>() {
                    seen.insert(address);
                }
            }
        }
    }
    seen
}

fn metric(address: SocketAddr, name: &str) -> Option<f64> {
    support::metric_value(&support::metrics_page(address)?, name)
}

#[test]
fn the_demo_closes_the_loop_from_monitors_to_dns() {
    let dir = std::env::temp_dir().join(format!("timepool-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = DemoConfig {
        data_dir: dir.clone(),
        reset: false,
        web_listen: "127.0.0.1:0".parse().unwrap(),
        dns_listen: "127.0.0.1:0".parse().unwrap(),
        dns_metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        check_interval_secs: 2,
        ntp_port: None,
    };
    let mut demo = Demo::start(config.clone()).expect("the demo starts");
    let dns = demo.dns_address;
    let servers = demo.servers();
    let healthy_de: BTreeSet<IpAddr> = servers
        .iter()
        .filter(|s| s.expected_in_dns && s.zone == "de")
        .map(|s| s.address)
        .collect();
    let never: BTreeSet<IpAddr> = servers
        .iter()
        .filter(|s| !s.expected_in_dns)
        .map(|s| s.address)
        .collect();
    assert!(healthy_de.len() >= 5 && never.len() == 5);
    assert!(demo.banner().contains("alice@example.org"));

    // Until every healthy German server is handed out, no bad one ever is.
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut seen_de = BTreeSet::new();
    loop {
        for name in ["pool.ntp.org", "de.pool.ntp.org", "2.pool.ntp.org"] {
            let got = answered(dns, name);
            let bad: Vec<_> = got.intersection(&never).collect();
            assert!(bad.is_empty(), "{name} handed out bad servers {bad:?}");
            // (AAAA only in 2.* names: the IPv6 server shows there.)
            seen_de.extend(got);
        }
        if healthy_de.is_subset(&seen_de) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "healthy German servers not all in DNS: seen {seen_de:?}, want {healthy_de:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let global = answered(dns, "us.pool.ntp.org");
    assert!(!global.is_empty() && global.is_disjoint(&never));

    // Three monitors: two checking, paired with the servers; the third's
    // clock is off its reference, and the API says so.
    let monitors: serde_json::Value =
        ureq::get(format!("http://{}/api/v1/monitors", demo.web_address))
            .call()
            .expect("GET /api/v1/monitors")
            .body_mut()
            .read_json()
            .expect("monitors JSON");
    let monitors = monitors.as_array().expect("a list");
    assert_eq!(monitors.len(), 3, "{monitors:?}");
    for monitor in monitors {
        let skewed = monitor["name"] == "demo-monitor-3";
        assert_eq!(
            monitor["self_check"]["ok"],
            serde_json::Value::Bool(!skewed),
            "{monitor}"
        );
        let paired = monitor["pairs"]["active"].as_i64().unwrap_or(0)
            + monitor["pairs"]["testing"].as_i64().unwrap_or(0);
        assert!(paired > 0, "{monitor}");
    }

    // Both sides' metrics saw it.
    let web_metrics = demo.web_address;
    assert!(metric(web_metrics, "timepool_ingest_results_total").unwrap_or(0.0) > 100.0);
    assert!(
        metric(web_metrics, "timepool_snapshot_servers{family=\"ipv4\"}").unwrap_or(0.0) >= 20.0
    );
    let dns_metrics = demo.dns_metrics_address.unwrap();
    assert!(
        metric(dns_metrics, "timepool_dns_queries_total{rcode=\"NOERROR\"}").unwrap_or(0.0) > 10.0
    );

    // A healthy German server goes 5 s off: its score is capped at -20 at
    // the next check, the next snapshot leaves it out, DNS stops giving it.
    let going_bad = *healthy_de.iter().find(|a| a.is_ipv4()).unwrap();
    assert!(demo.set_behaviour(
        going_bad,
        Behaviour::Offset {
            offset: 5.0,
            stratum: 2
        }
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut absent_in_a_row = 0;
    while absent_in_a_row < 3 {
        let got = answered(dns, "de.pool.ntp.org");
        assert!(!got.is_empty(), "the other German servers still answer");
        absent_in_a_row = if got.contains(&going_bad) {
            0
        } else {
            absent_in_a_row + 1
        };
        assert!(
            Instant::now() < deadline,
            "{going_bad} still handed out a minute after it went bad"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    demo.stop();

    // A second run reuses the data: same logins, scores kept, so the
    // healthy servers are in DNS from the first snapshot.
    let demo = Demo::start(config).expect("the demo starts again");
    assert!(!demo.fresh);
    let got = answered(demo.dns_address, "de.pool.ntp.org");
    assert!(!got.is_empty() && got.is_disjoint(&never), "{got:?}");
    assert!(!got.contains(&going_bad));
    demo.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
