//! The monitor selector's rules (web/README.md, "Monitoring: pairs and the
//! selector") as a table of cases through one helper: each constraint at
//! its edge, promotion at 9 and 60 good data points, the phase-out of a
//! pair that became illegal, the waiver when no pair is active, the
//! per-account limit.

use timepool::control::monitor_selector::{
    GlobalState, MonitorInfo, Pair, PairStatus, SelectorRules, ServerInfo, same_prefix, select,
};

const NOW: i64 = 1_000_000;

use GlobalState::{Active as GActive, Paused as GPaused, Pending, Testing as GTesting};
use PairStatus::{Active, Candidate, Paused, Testing};

/// A monitor: (id, global state, address, account).
type M = (i64, GlobalState, &'static str, Option<i64>);
/// A pair: (monitor id, state, good points, mean step, mean RTT in ms).
type P = (i64, PairStatus, i64, f64, f64);
/// A change: (monitor id, from, to, words the reason must hold).
type C = (i64, Option<PairStatus>, Option<PairStatus>, &'static str);

struct Case {
    name: &'static str,
    /// The server's address and account.
    server: (&'static str, i64),
    monitors: Vec<M>,
    pairs: Vec<P>,
    want: Vec<C>,
}

fn check(case: Case) {
    check_aged(case, 86_400, 60);
}

/// `check` with the pairs in their state for `state_age` seconds and their
/// latest result `result_age` seconds old.
fn check_aged(case: Case, state_age: i64, result_age: i64) {
    let rules = SelectorRules::default();
    let server = ServerInfo {
        id: 42,
        ip: Some(case.server.0.parse().expect("server ip")),
        account_id: case.server.1,
    };
    let mut monitors: Vec<MonitorInfo> = case
        .monitors
        .iter()
        .map(|&(id, state, ip, account_id)| MonitorInfo {
            id,
            state,
            ip: (!ip.is_empty()).then(|| ip.parse().expect("monitor ip")),
            account_id,
        })
        .collect();
    monitors.sort_by_key(|m| m.id);
    let pairs: Vec<Pair> = case
        .pairs
        .iter()
        .map(|&(monitor_id, status, good_points, step, rtt_ms)| Pair {
            monitor_id,
            status,
            good_points,
            avg_step: Some(step),
            avg_rtt: Some(rtt_ms / 1000.0),
            last_result: Some(NOW - result_age),
            status_since: NOW - state_age,
        })
        .collect();
    let mut got = select(&rules, &server, &pairs, &monitors, NOW);
    // Compared as sets: the order of changes within one pass does not matter.
    got.sort_by_key(|c| c.monitor_id);
    let mut want = case.want;
    want.sort_by_key(|w| w.0);
    let got_moves: Vec<(i64, Option<PairStatus>, Option<PairStatus>)> =
        got.iter().map(|c| (c.monitor_id, c.from, c.to)).collect();
    let want_moves: Vec<(i64, Option<PairStatus>, Option<PairStatus>)> = want
        .iter()
        .map(|&(id, from, to, _)| (id, from, to))
        .collect();
    assert_eq!(got_moves, want_moves, "{}: {got:#?}", case.name);
    for (change, (_, _, _, words)) in got.iter().zip(&want) {
        assert!(
            change.reason.contains(words),
            "{}: monitor {} reason {:?} should hold {words:?}",
            case.name,
            change.monitor_id,
            change.reason
        );
    }
}

/// `n` good active pairs of monitors 100.. in distinct networks and
/// accounts, and the monitors themselves.
fn active_pairs(n: i64) -> (Vec<M>, Vec<P>) {
    const IPS: [&str; 8] = [
        "10.1.0.1", "10.2.0.1", "10.3.0.1", "10.4.0.1", "10.5.0.1", "10.6.0.1", "10.7.0.1",
        "10.8.0.1",
    ];
    let monitors = (0..n)
        .map(|i| (100 + i, GActive, IPS[i as usize], Some(100 + i)))
        .collect();
    let pairs = (0..n)
        .map(|i| (100 + i, Active, 500, 0.9, 20.0 + i as f64))
        .collect();
    (monitors, pairs)
}

fn with(mut base: (Vec<M>, Vec<P>), monitors: Vec<M>, pairs: Vec<P>) -> (Vec<M>, Vec<P>) {
    base.0.extend(monitors);
    base.1.extend(pairs);
    base
}

#[test]
fn the_selectors_rules() {
    let cases = vec![
        {
            Case {
                name: "a new server gets candidates: never its /24, /48 or own account; the next /24 is fine",
                server: ("192.0.2.10", 1),
                monitors: vec![
                    (1, GActive, "192.0.2.200", Some(2)),  // its /24
                    (2, GActive, "198.51.100.1", Some(1)), // its account
                    (3, GActive, "192.0.3.1", Some(3)),    // the next /24
                    (4, GTesting, "2001:db8::1", Some(4)),
                    (5, Pending, "203.0.113.9", None),
                    (6, GPaused, "203.0.113.10", None),
                ],
                pairs: vec![],
                want: vec![
                    (3, None, Some(Candidate), "new candidate"),
                    (4, None, Some(Candidate), "new candidate"),
                    (5, None, Some(Candidate), "new candidate"),
                ],
            }
        },
        Case {
            name: "IPv6: its /48 is refused, the next /48 is fine",
            server: ("2001:db8:1::10", 1),
            monitors: vec![
                (1, GActive, "2001:db8:1:ffff::1", Some(2)),
                (2, GActive, "2001:db8:2::1", Some(3)),
            ],
            pairs: vec![],
            want: vec![(2, None, Some(Candidate), "new candidate")],
        },
        Case {
            name: "waiver: no monitor keeps the rules, so the forbidden ones watch",
            server: ("192.0.2.10", 1),
            monitors: vec![
                (1, GActive, "192.0.2.200", Some(2)),
                (2, GActive, "198.51.100.1", Some(1)),
            ],
            pairs: vec![],
            want: vec![
                (
                    1,
                    None,
                    Some(Candidate),
                    "rules waived (in the server's /24)",
                ),
                (
                    2,
                    None,
                    Some(Candidate),
                    "rules waived (run by the server's own account)",
                ),
            ],
        },
        Case {
            name: "bootstrap: no active or testing pair, the best candidates test whatever their points",
            server: ("192.0.2.10", 1),
            monitors: vec![
                (1, GActive, "203.0.113.1", Some(2)),
                (2, GActive, "198.51.100.1", Some(3)),
                (3, Pending, "198.18.0.1", Some(4)),
            ],
            pairs: vec![
                (1, Candidate, 0, 0.5, 80.0),
                (2, Candidate, 0, 0.5, 30.0),
                (3, Candidate, 50, 1.0, 5.0),
            ],
            want: vec![
                (
                    2,
                    Some(Candidate),
                    Some(Testing),
                    "no active or testing pair",
                ),
                (
                    1,
                    Some(Candidate),
                    Some(Testing),
                    "no active or testing pair",
                ),
            ],
        },
        {
            let (monitors, pairs) = with(
                active_pairs(1),
                vec![
                    (1, GActive, "203.0.113.1", Some(2)),
                    (2, GActive, "198.51.100.1", Some(3)),
                ],
                vec![(1, Candidate, 8, 1.0, 10.0), (2, Candidate, 9, 1.0, 90.0)],
            );
            Case {
                name: "candidate to testing at 9 good data points, not 8",
                server: ("192.0.2.10", 1),
                monitors,
                pairs,
                want: vec![(2, Some(Candidate), Some(Testing), "9 good data points")],
            }
        },
        {
            let (monitors, pairs) = with(
                active_pairs(1),
                vec![
                    (1, GActive, "203.0.113.1", Some(2)),
                    (2, GActive, "198.51.100.1", Some(3)),
                ],
                vec![(1, Testing, 59, 1.0, 10.0), (2, Testing, 60, 1.0, 90.0)],
            );
            Case {
                name: "testing to active at 60 good data points, not 59",
                server: ("192.0.2.10", 1),
                monitors,
                pairs,
                want: vec![(2, Some(Testing), Some(Active), "60 good data points")],
            }
        },
        {
            let (monitors, pairs) = with(
                active_pairs(1),
                vec![
                    (1, GActive, "203.0.113.1", Some(2)),
                    (2, GTesting, "198.51.100.1", Some(3)),
                    (3, Pending, "198.18.0.1", Some(4)),
                ],
                vec![
                    (1, Candidate, 40, -0.1, 10.0),
                    (2, Testing, 80, 1.0, 10.0),
                    (3, Candidate, 40, 1.0, 10.0),
                ],
            );
            Case {
                name: "no promotion for an unhealthy pair, a globally testing monitor to active, a pending one to testing",
                server: ("192.0.2.10", 1),
                monitors,
                pairs,
                want: vec![],
            }
        },
        {
            let (monitors, pairs) = with(
                active_pairs(1),
                vec![
                    (11, GActive, "203.0.113.1", Some(5)),
                    (12, GActive, "198.51.100.1", Some(5)),
                    (13, GActive, "198.18.0.1", Some(5)),
                    (14, GActive, "198.18.64.1", Some(6)),
                ],
                vec![
                    (11, Testing, 20, 1.0, 10.0),
                    (12, Testing, 20, 1.0, 10.0),
                    (13, Candidate, 20, 1.0, 1.0),
                    (14, Candidate, 20, 1.0, 50.0),
                ],
            );
            Case {
                name: "at most 2 monitors of one account: the third waits, another account's goes",
                server: ("192.0.2.10", 1),
                monitors,
                pairs,
                want: vec![(14, Some(Candidate), Some(Testing), "good data points")],
            }
        },
        {
            let (monitors, pairs) = with(
                active_pairs(1),
                vec![
                    (1, GActive, "198.51.96.1", Some(2)),
                    (2, GActive, "198.51.111.1", Some(3)), // 198.51.96.0/20
                    (3, GActive, "198.51.112.1", Some(4)), // the next /20
                ],
                vec![
                    (1, Active, 500, 1.0, 10.0),
                    (2, Candidate, 20, 1.0, 1.0),
                    (3, Candidate, 20, 1.0, 50.0),
                ],
            );
            Case {
                name: "one active or testing monitor per /20: the same /20 waits, the next goes",
                server: ("192.0.2.10", 1),
                monitors,
                pairs,
                want: vec![(3, Some(Candidate), Some(Testing), "good data points")],
            }
        },
        {
            let (monitors, pairs) = with(
                active_pairs(2),
                vec![
                    (1, GActive, "198.51.100.1", Some(1)), // now of the server's account
                    (2, GActive, "10.1.0.9", Some(9)),     // now in monitor 100's /20
                ],
                vec![(1, Active, 500, 1.0, 5.0), (2, Active, 500, 1.0, 1.0)],
            );
            Case {
                name: "pairs that became illegal step down one state, one per pass, a forbidden one before a crowded one",
                server: ("192.0.2.10", 1),
                monitors,
                pairs,
                want: vec![(
                    1,
                    Some(Active),
                    Some(Testing),
                    "phased out one step: run by the server's own account",
                )],
            }
        },
        Case {
            name: "a server with no legal active pair keeps its illegal one",
            server: ("192.0.2.10", 1),
            monitors: vec![(1, GActive, "198.51.100.1", Some(1))],
            pairs: vec![(1, Active, 500, 1.0, 5.0)],
            want: vec![],
        },
        Case {
            name: "waiver: no active pair and no legal one ready, an illegal testing pair becomes active",
            server: ("192.0.2.10", 1),
            monitors: vec![
                (1, GActive, "198.51.100.1", Some(1)),
                (2, GActive, "203.0.113.1", Some(2)),
            ],
            pairs: vec![(1, Testing, 60, 1.0, 5.0), (2, Testing, 10, 1.0, 5.0)],
            want: vec![(
                1,
                Some(Testing),
                Some(Active),
                "rules waived (run by the server's own account)",
            )],
        },
        {
            let (monitors, pairs) = active_pairs(8);
            Case {
                name: "more active pairs than 7: the worst steps down",
                server: ("192.0.2.10", 1),
                monitors,
                pairs,
                want: vec![(
                    107,
                    Some(Active),
                    Some(Testing),
                    "more active pairs than the target",
                )],
            }
        },
        {
            let (monitors, pairs) = with(
                active_pairs(1),
                vec![
                    (1, GPaused, "203.0.113.1", Some(2)),
                    (2, GActive, "198.51.100.1", Some(3)),
                ],
                vec![(1, Testing, 60, 1.0, 5.0), (2, Paused, 60, 1.0, 5.0)],
            );
            Case {
                name: "a paused monitor leaves at once; a pair paused by staff is left alone",
                server: ("192.0.2.10", 1),
                monitors,
                pairs,
                want: vec![(1, Some(Testing), None, "the monitor is paused")],
            }
        },
        {
            let (monitors, pairs) = with(
                active_pairs(7),
                vec![
                    (21, GTesting, "10.21.0.1", Some(21)),
                    (22, GTesting, "10.22.0.1", Some(22)),
                    (23, GTesting, "10.23.0.1", Some(23)),
                    (24, GTesting, "10.24.0.1", Some(24)),
                    (1, GTesting, "203.0.113.1", Some(2)),
                    (2, GActive, "198.51.100.1", Some(3)),
                ],
                vec![
                    (21, Testing, 30, 1.0, 5.0),
                    (22, Testing, 30, 1.0, 5.0),
                    (23, Testing, 30, 1.0, 5.0),
                    (24, Testing, 30, 1.0, 5.0),
                    (1, Candidate, 30, 1.0, 1.0),
                    (2, Candidate, 30, 1.0, 90.0),
                ],
            );
            Case {
                name: "one testing slot left: a globally active monitor's candidate before a closer globally testing one",
                server: ("192.0.2.10", 1),
                monitors,
                pairs,
                want: vec![(2, Some(Candidate), Some(Testing), "good data points")],
            }
        },
    ];
    for case in cases {
        check(case);
    }
}

/// A full server: 7 active, 5 testing, 2 candidates (monitors 100..,
/// 200.., 300..), and one monitor (9) not yet tried for it.
fn full_server() -> (Vec<M>, Vec<P>) {
    let mut base = active_pairs(7);
    for i in 0..5 {
        let ip: &'static str = [
            "10.31.0.1",
            "10.32.0.1",
            "10.33.0.1",
            "10.34.0.1",
            "10.35.0.1",
        ][i];
        base.0
            .push((200 + i as i64, GActive, ip, Some(200 + i as i64)));
        base.1.push((200 + i as i64, Testing, 30, 1.0, 30.0));
    }
    for (i, ip) in ["10.41.0.1", "10.42.0.1"].into_iter().enumerate() {
        base.0
            .push((300 + i as i64, GActive, ip, Some(300 + i as i64)));
        base.1
            .push((300 + i as i64, Candidate, 3, 0.5, 40.0 + i as f64));
    }
    base.0.push((9, GActive, "10.50.0.1", Some(9)));
    base
}

#[test]
fn candidates_rotate_and_stale_pairs_are_not_promoted() {
    // A candidate for a day and a second gives its place to a monitor not
    // yet tried; a day exactly, not yet.
    let (monitors, pairs) = full_server();
    check_aged(
        Case {
            name: "rotation after a day",
            server: ("192.0.2.10", 1),
            monitors,
            pairs,
            want: vec![
                (301, Some(Candidate), None, "another monitor's turn"),
                (9, None, Some(Candidate), "new candidate"),
            ],
        },
        86_401,
        60,
    );
    let (monitors, pairs) = full_server();
    check_aged(
        Case {
            name: "no rotation within a day",
            server: ("192.0.2.10", 1),
            monitors,
            pairs,
            want: vec![],
        },
        86_400,
        60,
    );
    // The only monitor waiting is the server's own account's: it would
    // never be taken, so nobody gives their place.
    let (mut monitors, pairs) = full_server();
    monitors.retain(|m| m.0 != 9);
    monitors.push((9, GActive, "10.50.0.1", Some(1)));
    check_aged(
        Case {
            name: "no rotation for a monitor the rules forbid",
            server: ("192.0.2.10", 1),
            monitors,
            pairs,
            want: vec![],
        },
        86_401,
        60,
    );
    // Candidates beyond the room leave, the worst first.
    let (mut monitors, mut pairs) = full_server();
    monitors.push((310, GActive, "10.60.0.1", Some(310)));
    pairs.push((310, Candidate, 0, 0.1, 99.0));
    check(Case {
        name: "more candidates than the room",
        server: ("192.0.2.10", 1),
        monitors,
        pairs,
        want: vec![(
            310,
            Some(Candidate),
            None,
            "more candidates than the server needs",
        )],
    });
    // A candidate with enough points but no result for over 2 h is not
    // promoted; within 2 h it is.
    let promote = || {
        with(
            active_pairs(1),
            vec![(1, GActive, "203.0.113.1", Some(2))],
            vec![(1, Candidate, 20, 1.0, 10.0)],
        )
    };
    let (monitors, pairs) = promote();
    check_aged(
        Case {
            name: "stale: 2 h and a second",
            server: ("192.0.2.10", 1),
            monitors,
            pairs,
            want: vec![],
        },
        86_400,
        7_201,
    );
    let (monitors, pairs) = promote();
    check_aged(
        Case {
            name: "fresh: 2 h",
            server: ("192.0.2.10", 1),
            monitors,
            pairs,
            want: vec![(1, Some(Candidate), Some(Testing), "20 good data points")],
        },
        86_400,
        7_200,
    );
}

#[test]
fn prefixes_at_their_edges() {
    let ip = |s: &str| s.parse().expect("ip");
    let cases = [
        ("192.0.2.1", "192.0.2.254", 24, true),
        ("192.0.2.1", "192.0.3.1", 24, false),
        ("198.51.96.1", "198.51.111.255", 20, true),
        ("198.51.96.1", "198.51.112.0", 20, false),
        ("2001:db8:1::1", "2001:db8:1:ffff::2", 48, true),
        ("2001:db8:1::1", "2001:db8:2::1", 48, false),
        ("2001:db8:10::1", "2001:db8:1f::1", 44, true),
        ("2001:db8:10::1", "2001:db8:20::1", 44, false),
        ("192.0.2.1", "::ffff:192.0.2.1", 24, false),
    ];
    for (a, b, bits, want) in cases {
        let v6_bits = if a.contains(':') { bits } else { 128 };
        let v4_bits = if a.contains(':') { 32 } else { bits };
        assert_eq!(
            same_prefix(ip(a), ip(b), v4_bits, v6_bits),
            want,
            "{a} {b} /{bits}"
        );
    }
}
