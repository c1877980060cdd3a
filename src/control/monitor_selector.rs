//! The monitor selector (web/README.md, "Monitoring: pairs and the
//! selector"): which monitors watch a server, as a pure function. The
//! pool's monitor v4 rules (ntppool/monitor, `selector/`), written anew:
//!
//! - each (server, monitor) pair is a candidate, testing or active (or
//!   paused by staff, which the selector leaves alone);
//! - targets: 7 active and 5 testing pairs per server, more testing while
//!   active ones are short, at least 4 of the testing ones from globally
//!   active monitors;
//! - constraints: never a monitor in the server's /24 (/48) or of the
//!   server's account; at most 2 monitors of one account; at most one
//!   active or testing monitor per /20 (/44);
//! - promotion by the pair's own results: 9 good data points to testing,
//!   60 to active, healthy pairs (mean step >= 0) first, then the lowest
//!   round trip;
//! - a pair that breaks a constraint (a newer rule, a monitor that moved)
//!   steps down one state per pass, one pair per pass;
//! - a server with no active pair may use a monitor that breaks the
//!   constraints when no other will do (better any monitor than none).
//!
//! Architecture invariant: no I/O, no database or web types: pairs and
//! monitors in, changes out (`db::pairs` reads and writes them).

use std::cmp::Ordering;
use std::net::IpAddr;

/// The selector's numbers (the config file's `[selector]`). The defaults
/// are the pool's; a demo runs the same rules with fewer points to earn.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectorRules {
    /// Seconds between two passes over every server.
    pub interval_secs: i64,
    pub target_active: usize,
    pub target_testing: usize,
    /// Testing pairs that must come from globally active monitors.
    pub min_globally_active_testing: usize,
    /// Good data points a candidate needs to become testing.
    pub points_to_testing: i64,
    /// Good data points a testing pair needs to become active.
    pub points_to_active: i64,
    /// Active or testing monitors of one account per server.
    pub max_per_account: usize,
    /// Candidates kept beyond the active and testing targets (the reserve
    /// that replaces a pair that goes bad).
    pub spare_candidates: usize,
    /// A testing or active pair with no result for this long is unhealthy
    /// (its monitor is gone or cannot reach the server).
    pub stale_after: i64,
    /// Promotions per server and pass (twice this while the server has no
    /// active pair).
    pub max_promotions: usize,
    /// A candidate not promoted for this long gives its place to a monitor
    /// not yet tried for the server, when one is waiting (so a new monitor
    /// gets pairs in a full pool, and every monitor gets its turn).
    pub candidate_rotation_secs: i64,
    /// The most a monitor's clock may be off its references (its
    /// self-check) for its results to count, in milliseconds; a monitor
    /// may hold itself to less, never to more.
    pub max_monitor_clock_offset_ms: f64,
}

impl Default for SelectorRules {
    fn default() -> SelectorRules {
        SelectorRules {
            interval_secs: 60,
            target_active: 7,
            target_testing: 5,
            min_globally_active_testing: 4,
            points_to_testing: 9,
            points_to_active: 60,
            max_per_account: 2,
            spare_candidates: 2,
            stale_after: 2 * 60 * 60,
            max_promotions: 2,
            candidate_rotation_secs: 24 * 60 * 60,
            max_monitor_clock_offset_ms: 10.0,
        }
    }
}

impl SelectorRules {
    /// Checks the values make sense (from a config file).
    pub fn validated(self) -> Result<SelectorRules, String> {
        if !(self.max_monitor_clock_offset_ms > 0.0 && self.max_monitor_clock_offset_ms <= 1000.0) {
            return Err(
                "selector.max_monitor_clock_offset_ms must be more than 0 and at most 1000".into(),
            );
        }
        if self.interval_secs < 1 {
            return Err("selector.interval_secs must be at least 1".into());
        }
        if self.target_active == 0 {
            return Err("selector.target_active must be at least 1".into());
        }
        if self.min_globally_active_testing > self.target_testing {
            return Err(format!(
                "selector.min_globally_active_testing ({}) must not exceed selector.target_testing ({})",
                self.min_globally_active_testing, self.target_testing
            ));
        }
        if self.points_to_testing < 1 || self.points_to_active < self.points_to_testing {
            return Err(format!(
                "selector.points_to_testing ({}) must be at least 1 and at most selector.points_to_active ({})",
                self.points_to_testing, self.points_to_active
            ));
        }
        if self.max_per_account == 0
            || self.max_promotions == 0
            || self.stale_after < 60
            || self.candidate_rotation_secs < 60
        {
            return Err(
                "selector.max_per_account and max_promotions must be at least 1, stale_after and candidate_rotation_secs at least 60 s"
                    .into(),
            );
        }
        Ok(self)
    }

    /// The testing target: more while active pairs are short.
    pub fn testing_target(&self, active: usize) -> usize {
        self.target_testing + self.target_active.saturating_sub(active)
    }
}

/// A pair's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PairStatus {
    Candidate,
    Testing,
    Active,
    /// Set and lifted by staff; the selector never touches it.
    Paused,
}

impl PairStatus {
    pub const ALL: [PairStatus; 4] = [
        PairStatus::Active,
        PairStatus::Testing,
        PairStatus::Candidate,
        PairStatus::Paused,
    ];

    pub fn parse(text: &str) -> Option<PairStatus> {
        match text {
            "candidate" => Some(PairStatus::Candidate),
            "testing" => Some(PairStatus::Testing),
            "active" => Some(PairStatus::Active),
            "paused" => Some(PairStatus::Paused),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PairStatus::Candidate => "candidate",
            PairStatus::Testing => "testing",
            PairStatus::Active => "active",
            PairStatus::Paused => "paused",
        }
    }

    /// One state down (a candidate leaves the server).
    fn down(self) -> Option<PairStatus> {
        match self {
            PairStatus::Active => Some(PairStatus::Testing),
            PairStatus::Testing => Some(PairStatus::Candidate),
            PairStatus::Candidate | PairStatus::Paused => None,
        }
    }
}

/// A monitor's own state across the pool (`monitors.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GlobalState {
    /// Stored as "candidate": new, earning trust (the pool's "pending").
    Pending,
    Testing,
    Active,
    Paused,
    Deleted,
}

impl GlobalState {
    pub fn parse(text: &str) -> Option<GlobalState> {
        match text {
            "candidate" => Some(GlobalState::Pending),
            "testing" => Some(GlobalState::Testing),
            "active" => Some(GlobalState::Active),
            "paused" => Some(GlobalState::Paused),
            "deleted" => Some(GlobalState::Deleted),
            _ => None,
        }
    }

    /// The highest pair state a monitor in this state may hold: only a
    /// globally active monitor is active for a server, a pending one is a
    /// candidate at most (it earns its global promotion by those checks).
    fn highest_pair_status(self) -> Option<PairStatus> {
        match self {
            GlobalState::Active => Some(PairStatus::Active),
            GlobalState::Testing => Some(PairStatus::Testing),
            GlobalState::Pending => Some(PairStatus::Candidate),
            GlobalState::Paused | GlobalState::Deleted => None,
        }
    }
}

/// A monitor as the selector sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorInfo {
    pub id: i64,
    pub state: GlobalState,
    pub ip: Option<IpAddr>,
    pub account_id: Option<i64>,
}

/// The server being selected for.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerInfo {
    pub id: i64,
    pub ip: Option<IpAddr>,
    pub account_id: i64,
}

/// A pair as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub monitor_id: i64,
    pub status: PairStatus,
    pub good_points: i64,
    /// Recent mean step; None before the first result.
    pub avg_step: Option<f64>,
    /// Recent mean round trip in seconds; None before the first answer.
    pub avg_rtt: Option<f64>,
    /// When its latest result was measured.
    pub last_result: Option<i64>,
    /// When it got its state.
    pub status_since: i64,
}

/// One change the selector makes to a pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub monitor_id: i64,
    /// None: a new pair.
    pub from: Option<PairStatus>,
    /// None: the pair is removed.
    pub to: Option<PairStatus>,
    pub reason: String,
}

/// Why a monitor may not watch a server (or not as active or testing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    SameNetwork(&'static str),
    SameAccount,
    AccountLimit(i64),
    NetworkDiversity(&'static str),
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::SameNetwork(prefix) => write!(f, "in the server's {prefix}"),
            Violation::SameAccount => write!(f, "run by the server's own account"),
            Violation::AccountLimit(account) => write!(
                f,
                "account {account} already has the most monitors allowed on this server"
            ),
            Violation::NetworkDiversity(prefix) => {
                write!(f, "another active or testing monitor is in its {prefix}")
            }
        }
    }
}

/// Whether two addresses share the first `v4` bits (IPv4) or `v6` bits
/// (IPv6); addresses of different families never do.
pub fn same_prefix(a: IpAddr, b: IpAddr, v4: u32, v6: u32) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - v4).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - v6).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// The rules that hold whatever else watches the server.
fn hard_violation(server: &ServerInfo, monitor: &MonitorInfo) -> Option<Violation> {
    if let (Some(s), Some(m)) = (server.ip, monitor.ip)
        && same_prefix(s, m, 24, 48)
    {
        return Some(Violation::SameNetwork(if s.is_ipv4() {
            "/24"
        } else {
            "/48"
        }));
    }
    if monitor.account_id == Some(server.account_id) {
        return Some(Violation::SameAccount);
    }
    None
}

/// All rules, for `monitor` as active or testing beside `kept` (the other
/// active and testing monitors).
fn violation(
    rules: &SelectorRules,
    server: &ServerInfo,
    monitor: &MonitorInfo,
    kept: &[&MonitorInfo],
) -> Option<Violation> {
    if let Some(hard) = hard_violation(server, monitor) {
        return Some(hard);
    }
    if let Some(account) = monitor.account_id {
        let same = kept
            .iter()
            .filter(|k| k.id != monitor.id && k.account_id == Some(account))
            .count();
        if same >= rules.max_per_account {
            return Some(Violation::AccountLimit(account));
        }
    }
    if let Some(ip) = monitor.ip {
        let crowded = kept
            .iter()
            .filter(|k| k.id != monitor.id)
            .filter_map(|k| k.ip)
            .any(|other| same_prefix(ip, other, 20, 44));
        if crowded {
            return Some(Violation::NetworkDiversity(if ip.is_ipv4() {
                "/20"
            } else {
                "/44"
            }));
        }
    }
    None
}

/// A pair with its monitor, as a pass works on it.
#[derive(Clone, Debug)]
struct Working<'a> {
    pair: &'a Pair,
    monitor: &'a MonitorInfo,
    status: PairStatus,
    healthy: bool,
}

/// How good a pair looks, best first: healthy ones, then the pool's
/// priority (round trip weighted by how far the mean step is below +1),
/// then the most points; ties by monitor id.
fn rank(a: &Working, b: &Working) -> Ordering {
    fn priority(w: &Working) -> f64 {
        match (w.pair.avg_rtt, w.pair.avg_step) {
            (Some(rtt), Some(step)) => rtt * (1.0 + 2.0 * (1.0 - step.min(1.0))),
            _ => f64::INFINITY,
        }
    }
    b.healthy
        .cmp(&a.healthy)
        .then(priority(a).total_cmp(&priority(b)))
        .then(b.pair.good_points.cmp(&a.pair.good_points))
        .then(a.monitor.id.cmp(&b.monitor.id))
}

/// A stable spread of new candidates over the monitors: the same server
/// and monitor always give the same number, different servers different
/// orders (so every monitor gets its share).
fn spread(server_id: i64, monitor_id: i64) -> u64 {
    let mut x = (server_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (monitor_id as u64);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x
}

/// The changes one pass makes to one server's pairs. `monitors` is every
/// monitor of the pool, sorted by id; `pairs` the server's pairs.
pub fn select(
    rules: &SelectorRules,
    server: &ServerInfo,
    pairs: &[Pair],
    monitors: &[MonitorInfo],
    now: i64,
) -> Vec<Change> {
    let mut changes = Vec::new();
    debug_assert!(monitors.windows(2).all(|w| w[0].id < w[1].id));
    let monitor_of = |id: i64| {
        monitors
            .binary_search_by_key(&id, |m| m.id)
            .ok()
            .map(|i| &monitors[i])
    };

    // 1. The monitor's own state first: a paused, deleted or unknown
    //    monitor leaves; one whose global state fell keeps its pairs at
    //    most at the state it allows. Staff-paused pairs are left alone.
    let mut working: Vec<Working> = Vec::new();
    for pair in pairs {
        if pair.status == PairStatus::Paused {
            // Left alone, unless its monitor is gone for good.
            let gone = monitor_of(pair.monitor_id).is_none_or(|m| m.state == GlobalState::Deleted);
            if gone {
                changes.push(Change {
                    monitor_id: pair.monitor_id,
                    from: Some(PairStatus::Paused),
                    to: None,
                    reason: "the monitor is deleted".into(),
                });
            }
            continue;
        }
        let Some(monitor) = monitor_of(pair.monitor_id) else {
            changes.push(Change {
                monitor_id: pair.monitor_id,
                from: Some(pair.status),
                to: None,
                reason: "the monitor no longer exists".into(),
            });
            continue;
        };
        let Some(highest) = monitor.state.highest_pair_status() else {
            changes.push(Change {
                monitor_id: pair.monitor_id,
                from: Some(pair.status),
                to: None,
                reason: format!("the monitor is {:?}", monitor.state).to_lowercase(),
            });
            continue;
        };
        let mut status = pair.status;
        if status > highest {
            changes.push(Change {
                monitor_id: pair.monitor_id,
                from: Some(status),
                to: Some(highest),
                reason: format!(
                    "the monitor is globally {}",
                    match monitor.state {
                        GlobalState::Pending => "pending",
                        _ => "testing",
                    }
                ),
            });
            status = highest;
        }
        // Heard from lately (or newly in its state): a monitor that went
        // away, or cannot reach the server any more, is not healthy.
        let fresh = pair
            .last_result
            .unwrap_or(pair.status_since)
            .max(pair.status_since)
            >= now - rules.stale_after;
        working.push(Working {
            pair,
            monitor,
            status,
            healthy: fresh && pair.avg_step.is_some_and(|s| s >= 0.0),
        });
    }
    working.sort_by(|a, b| b.status.cmp(&a.status).then(rank(a, b)));

    let count = |working: &[Working], status: PairStatus| {
        working.iter().filter(|w| w.status == status).count()
    };
    let had_active = count(&working, PairStatus::Active) > 0;

    // 2. Constraints over what watches the server now, best first: a pair
    //    that breaks one beside the better ones steps down one state; only
    //    the worst such pair, and only one per pass, so coverage never
    //    drops all at once. Only while a pair that keeps the rules is
    //    active: until then the server has no pair to spare (the waiver).
    let mut kept: Vec<&MonitorInfo> = Vec::new();
    let mut legal_active = false;
    let mut worst: Option<(usize, Violation, bool)> = None;
    for (i, w) in working.iter().enumerate() {
        if w.status == PairStatus::Candidate {
            continue;
        }
        match violation(rules, server, w.monitor, &kept) {
            None => {
                kept.push(w.monitor);
                legal_active |= w.status == PairStatus::Active;
            }
            // A monitor the hard rules forbid goes before one that only
            // crowds the others; among equals the worst ranked.
            Some(v) => {
                let hard = hard_violation(server, w.monitor).is_some();
                if worst
                    .as_ref()
                    .is_none_or(|(_, _, worst_hard)| hard || !worst_hard)
                {
                    worst = Some((i, v, hard));
                }
            }
        }
    }
    if legal_active {
        if let Some((i, v, _)) = worst {
            let w = &mut working[i];
            let to = w.status.down();
            changes.push(Change {
                monitor_id: w.monitor.id,
                from: Some(w.status),
                to,
                reason: format!("phased out one step: {v}"),
            });
            if let Some(to) = to {
                w.status = to;
            }
        }
        // A candidate the hard rules forbid leaves (it is not watching
        // for the server's score, so all may go at once).
        let mut i = 0;
        while i < working.len() {
            let w = &working[i];
            if w.status == PairStatus::Candidate
                && let Some(v) = hard_violation(server, w.monitor)
            {
                changes.push(Change {
                    monitor_id: w.monitor.id,
                    from: Some(PairStatus::Candidate),
                    to: None,
                    reason: format!("removed: {v}"),
                });
                working.remove(i);
            } else {
                i += 1;
            }
        }
    }

    // 3. Over the targets: the worst active steps down to testing, the
    //    worst testing to candidate (one each per pass).
    let mut demoted = 0usize;
    if count(&working, PairStatus::Active) > rules.target_active {
        demote_worst(
            &mut working,
            &mut changes,
            PairStatus::Active,
            "more active pairs than the target",
        );
        demoted += 1;
    }

    // 4. An unhealthy active pair gives way when a healthy testing pair
    //    has earned its place (one per pass).
    let ready_for_active = |w: &Working| {
        w.status == PairStatus::Testing
            && w.healthy
            && w.monitor.state == GlobalState::Active
            && w.pair.good_points >= rules.points_to_active
    };
    if demoted == 0
        && working
            .iter()
            .any(|w| w.status == PairStatus::Active && !w.healthy)
        && count(&working, PairStatus::Active) >= rules.target_active
        && pick_best(rules, server, &working, had_active, ready_for_active)
            .is_some_and(|(_, waived)| waived.is_none())
    {
        demote_worst(
            &mut working,
            &mut changes,
            PairStatus::Active,
            "unhealthy, a better testing pair replaces it",
        );
    }

    let budget = if had_active {
        rules.max_promotions
    } else {
        rules.max_promotions * 2
    };

    // 5. Testing -> active: the best healthy testing pairs with enough
    //    points, within the rules (waived, last, when no active pair).
    let mut promoted = 0usize;
    while count(&working, PairStatus::Active) < rules.target_active && promoted < budget {
        let pick = pick_best(rules, server, &working, had_active, ready_for_active);
        let Some((i, waived)) = pick else { break };
        let reason = with_waiver(
            format!("{} good data points, healthy", working[i].pair.good_points),
            waived,
        );
        step(&mut working, &mut changes, i, PairStatus::Active, reason);
        promoted += 1;
    }

    // 6. Candidate -> testing: the best healthy candidates with enough
    //    points, globally active monitors first until the testing pairs
    //    hold enough of them.
    let active_now = count(&working, PairStatus::Active);
    let testing_target = rules.testing_target(active_now);
    let mut promoted_testing = 0usize;
    while count(&working, PairStatus::Testing) < testing_target && promoted_testing < budget {
        let globally_active_testing = working
            .iter()
            .filter(|w| w.status == PairStatus::Testing && w.monitor.state == GlobalState::Active)
            .count();
        let need_global = globally_active_testing < rules.min_globally_active_testing;
        let eligible = |w: &Working| {
            w.status == PairStatus::Candidate
                && w.healthy
                && w.monitor.state >= GlobalState::Testing
                && w.pair.good_points >= rules.points_to_testing
        };
        let mut pick = None;
        if need_global {
            pick = pick_best(rules, server, &working, had_active, |w| {
                eligible(w) && w.monitor.state == GlobalState::Active
            });
        }
        if pick.is_none() {
            pick = pick_best(rules, server, &working, had_active, eligible);
        }
        let Some((i, waived)) = pick else { break };
        let reason = with_waiver(
            format!("{} good data points, healthy", working[i].pair.good_points),
            waived,
        );
        step(&mut working, &mut changes, i, PairStatus::Testing, reason);
        promoted_testing += 1;
    }

    // 6b. An unhealthy testing pair gives way to a candidate that has
    //     earned its place, when the testing pairs are full (one per pass).
    let ready_for_testing = |w: &Working| {
        w.status == PairStatus::Candidate
            && w.healthy
            && w.monitor.state >= GlobalState::Testing
            && w.pair.good_points >= rules.points_to_testing
    };
    if count(&working, PairStatus::Testing) >= testing_target
        && working
            .iter()
            .any(|w| w.status == PairStatus::Testing && !w.healthy)
        && pick_best(rules, server, &working, had_active, ready_for_testing)
            .is_some_and(|(_, waived)| waived.is_none())
    {
        let worst = working
            .iter()
            .enumerate()
            .filter(|(_, w)| w.status == PairStatus::Testing && !w.healthy)
            .max_by(|(_, a), (_, b)| rank(a, b))
            .map(|(i, _)| i);
        if let Some(i) = worst {
            let w = &mut working[i];
            changes.push(Change {
                monitor_id: w.monitor.id,
                from: Some(PairStatus::Testing),
                to: Some(PairStatus::Candidate),
                reason: "unhealthy, a better candidate replaces it".into(),
            });
            w.status = PairStatus::Candidate;
        }
    }

    // 7. Bootstrap: a server with no active and no testing pair takes its
    //    best candidates as testing whatever their points (better any
    //    monitor than none).
    if count(&working, PairStatus::Active) == 0 && count(&working, PairStatus::Testing) == 0 {
        let mut taken = 0usize;
        while taken < budget && count(&working, PairStatus::Testing) < testing_target {
            let pick = pick_best(rules, server, &working, false, |w| {
                w.status == PairStatus::Candidate && w.monitor.state >= GlobalState::Testing
            });
            let Some((i, waived)) = pick else { break };
            let reason = with_waiver(
                "the server has no active or testing pair".to_string(),
                waived,
            );
            step(&mut working, &mut changes, i, PairStatus::Testing, reason);
            taken += 1;
        }
    }

    // 8. Too many testing pairs (active ones arrived): the worst steps down.
    let testing_target = rules.testing_target(count(&working, PairStatus::Active));
    if count(&working, PairStatus::Testing) > testing_target {
        demote_worst(
            &mut working,
            &mut changes,
            PairStatus::Testing,
            "more testing pairs than the target",
        );
    }

    // 9. New candidates, enough to fill the targets and a spare few: the
    //    monitors not yet paired, in networks and accounts not yet
    //    watching the server first, spread by a stable hash. A monitor the
    //    hard rules forbid only when no other is left and the server has
    //    no active pair.
    let room = rules.target_active + rules.target_testing + rules.spare_candidates;
    let paired: std::collections::HashSet<i64> = pairs.iter().map(|p| p.monitor_id).collect();
    // A monitor waits for a place when step 9 would take it: not paired,
    // and not forbidden by the hard rules.
    let waiting = monitors.iter().any(|m| {
        m.state.highest_pair_status().is_some()
            && !paired.contains(&m.id)
            && hard_violation(server, m).is_none()
    });
    // 8b. Candidates beyond the room leave, the worst first (pairs from
    //     before the selector, or of monitors that left the others); and
    //     one candidate that had its chance for a day gives its place to a
    //     monitor not yet tried here, when one waits.
    let candidates_by_worst = |working: &[Working]| -> Vec<usize> {
        let mut found: Vec<usize> = (0..working.len())
            .filter(|&i| working[i].status == PairStatus::Candidate)
            .collect();
        found.sort_by(|&a, &b| rank(&working[b], &working[a]));
        found
    };
    let excess = working.len().saturating_sub(room);
    let mut leaving: Vec<(usize, &'static str)> = candidates_by_worst(&working)
        .into_iter()
        .take(excess)
        .map(|i| (i, "more candidates than the server needs"))
        .collect();
    if leaving.is_empty() && waiting {
        let rotated = candidates_by_worst(&working).into_iter().find(|&i| {
            // A candidate since then, not one demoted in this pass.
            working[i].pair.status == PairStatus::Candidate
                && working[i].pair.status_since < now - rules.candidate_rotation_secs
        });
        if let Some(i) = rotated {
            leaving.push((
                i,
                "a candidate for a day without promotion: another monitor's turn",
            ));
        }
    }
    leaving.sort_by_key(|l| std::cmp::Reverse(l.0));
    for (i, why) in leaving {
        let w = working.remove(i);
        changes.push(Change {
            monitor_id: w.monitor.id,
            from: Some(PairStatus::Candidate),
            to: None,
            reason: why.to_string(),
        });
    }

    let wanted = room.saturating_sub(working.len());
    if wanted > 0 {
        let paired = |id: i64| paired.contains(&id);
        let watching: Vec<&MonitorInfo> = working.iter().map(|w| w.monitor).collect();
        // Sort keys computed once: (breaks a hard rule, crowds the
        // watchers, globally below active, spread).
        let mut fresh: Vec<(bool, bool, bool, u64, &MonitorInfo)> = monitors
            .iter()
            .filter(|m| m.state.highest_pair_status().is_some() && !paired(m.id))
            .map(|m| {
                (
                    hard_violation(server, m).is_some(),
                    violation(rules, server, m, &watching).is_some(),
                    m.state != GlobalState::Active,
                    spread(server.id, m.id),
                    m,
                )
            })
            .collect();
        fresh.sort_by_key(|f| (f.0, f.1, f.2, f.3, f.4.id));
        let legal = fresh.iter().filter(|f| !f.0).count();
        for (hard, _, _, _, monitor) in fresh.into_iter().take(wanted) {
            if hard && (had_active || legal > 0 || !working.is_empty()) {
                break;
            }
            changes.push(Change {
                monitor_id: monitor.id,
                from: None,
                to: Some(PairStatus::Candidate),
                reason: if hard {
                    format!(
                        "new candidate, rules waived ({}): no other monitor can watch the server",
                        hard_violation(server, monitor)
                            .map(|v| v.to_string())
                            .unwrap_or_default()
                    )
                } else {
                    "new candidate".to_string()
                },
            });
        }
    }
    merge_per_pair(changes)
}

/// One change per pair: a pair that moved twice in a pass (capped by its
/// monitor's state, then phased out) is written as one move with both
/// reasons, so the changes can be applied as a set; a pair moved back to
/// where it started is left out.
fn merge_per_pair(changes: Vec<Change>) -> Vec<Change> {
    let mut merged: Vec<Change> = Vec::with_capacity(changes.len());
    for change in changes {
        match merged
            .iter_mut()
            .find(|m| m.monitor_id == change.monitor_id)
        {
            Some(earlier) => {
                earlier.to = change.to;
                earlier.reason = format!("{}; then {}", earlier.reason, change.reason);
            }
            None => merged.push(change),
        }
    }
    merged.retain(|c| c.from != c.to);
    merged
}

/// Pair `i` moves to `to`, with the reason.
fn step(
    working: &mut [Working],
    changes: &mut Vec<Change>,
    i: usize,
    to: PairStatus,
    reason: String,
) {
    let w = &mut working[i];
    changes.push(Change {
        monitor_id: w.monitor.id,
        from: Some(w.status),
        to: Some(to),
        reason,
    });
    w.status = to;
}

fn with_waiver(reason: String, waived: Option<Violation>) -> String {
    match waived {
        None => reason,
        Some(v) => format!("{reason}; rules waived ({v}): the server has no active pair"),
    }
}

/// The best pair `eligible` allows that keeps the rules beside the active
/// and testing pairs; when none does and the server had no active pair,
/// the best that breaks them (and which rule it breaks).
fn pick_best(
    rules: &SelectorRules,
    server: &ServerInfo,
    working: &[Working],
    had_active: bool,
    eligible: impl Fn(&Working) -> bool,
) -> Option<(usize, Option<Violation>)> {
    let kept: Vec<&MonitorInfo> = working
        .iter()
        .filter(|w| matches!(w.status, PairStatus::Active | PairStatus::Testing))
        .map(|w| w.monitor)
        .collect();
    let mut best_legal: Option<usize> = None;
    let mut best_waived: Option<(usize, Violation)> = None;
    for (i, w) in working.iter().enumerate() {
        if !eligible(w) {
            continue;
        }
        match violation(rules, server, w.monitor, &kept) {
            None => {
                if best_legal.is_none_or(|b| rank(w, &working[b]) == Ordering::Less) {
                    best_legal = Some(i);
                }
            }
            Some(v) => {
                if best_waived
                    .as_ref()
                    .is_none_or(|(b, _)| rank(w, &working[*b]) == Ordering::Less)
                {
                    best_waived = Some((i, v));
                }
            }
        }
    }
    match (best_legal, best_waived) {
        (Some(i), _) => Some((i, None)),
        (None, Some((i, v))) if !had_active => Some((i, Some(v))),
        _ => None,
    }
}

/// The worst pair in `status` steps down one state.
fn demote_worst(working: &mut [Working], changes: &mut Vec<Change>, status: PairStatus, why: &str) {
    let worst = working
        .iter()
        .enumerate()
        .filter(|(_, w)| w.status == status)
        .max_by(|(_, a), (_, b)| rank(a, b))
        .map(|(i, _)| i);
    if let Some(i) = worst {
        let w = &mut working[i];
        let to = status.down();
        changes.push(Change {
            monitor_id: w.monitor.id,
            from: Some(status),
            to,
            reason: why.to_string(),
        });
        if let Some(to) = to {
            w.status = to;
        }
    }
}
