//! The pool's scoring (web/README.md, "Scoring") and the monitors' promotion
//! rules, as pure functions: results in, scores out.
//!
//! Architecture invariant: no I/O, no web or database types. The ingest API
//! (src/db/ingest.rs) feeds it and stores what it returns; the DNS path never
//! imports it.

use crate::shared::monitor_protocol::ReportedError;

/// Per (server, monitor): `score = score * DECAY + step`, so a long run of
/// +1 tends to 1 / (1 - 0.95) = 20 and of -5 to -100.
pub const DECAY: f64 = 0.95;

/// The score a (server, monitor) pair starts from. The pool starts at -5;
/// timepool starts at 0, like a new server's own score, so a good server
/// is not held back by a penalty it never earned (a documented choice:
/// web/README.md, "Decisions").
pub const NEW_PAIR_SCORE: f64 = 0.0;

/// What one check found, as the monitor reported it.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckInput<'a> {
    /// `None` when the server answered normally.
    pub error: Option<&'a str>,
    /// Server minus monitor clock, seconds.
    pub offset: Option<f64>,
    pub stratum: Option<i64>,
}

/// The kinds of error scoring tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    NoResponse,
    KodRate,
    /// KoD DENY or RSTR: the server refuses the monitor.
    KodRefused,
    Other,
}

impl ErrorKind {
    /// Classifies the monitor protocol's error text
    /// (`shared::monitor_protocol`).
    pub fn classify(error: &str) -> ErrorKind {
        match ReportedError::parse(error) {
            ReportedError::Timeout => ErrorKind::NoResponse,
            ReportedError::Kod("RATE") => ErrorKind::KodRate,
            ReportedError::Kod("DENY" | "RSTR") => ErrorKind::KodRefused,
            ReportedError::Kod(_) | ReportedError::Other(_) => ErrorKind::Other,
        }
    }
}

/// A check's step and the cap applied after it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub step: f64,
    /// The score after the step is at most this.
    pub cap: Option<f64>,
}

const fn step(step: f64) -> Step {
    Step { step, cap: None }
}

const fn capped(step: f64, cap: f64) -> Step {
    Step {
        step,
        cap: Some(cap),
    }
}

/// The step of one check (web/README.md, "Scoring"), in the order the rules are
/// listed there: errors first, then stratum 0, then the offset bands.
pub fn step_for(check: &CheckInput) -> Step {
    if let Some(error) = check.error {
        return match ErrorKind::classify(error) {
            ErrorKind::NoResponse => step(-5.0),
            ErrorKind::KodRate => step(-3.5),
            ErrorKind::KodRefused => capped(-10.0, -50.0),
            ErrorKind::Other => step(-4.0),
        };
    }
    let (Some(offset), Some(stratum)) = (check.offset, check.stratum) else {
        // A reply without the numbers it must carry is an error too.
        return step(-4.0);
    };
    if stratum == 0 {
        return capped(-2.0, 5.0);
    }
    let o = offset.abs();
    if o > 3.0 {
        capped(-4.0, -20.0)
    } else if stratum >= 8 {
        step(-4.0)
    } else if o > 0.75 {
        step(-2.0)
    } else if o > 0.1 {
        step(-2.308 * o + 0.731)
    } else if o > 0.025 {
        step(-6.667 * o + 1.167)
    } else {
        step(1.0)
    }
}

/// The pair's score after a step: decay, add, then the cap.
pub fn next_score(previous: f64, step: Step) -> f64 {
    let score = previous * DECAY + step.step;
    match step.cap {
        Some(cap) => score.min(cap),
        None => score,
    }
}

/// Monitor states that count for scores (paused and deleted monitors do not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MonitorState {
    Candidate,
    Testing,
    Active,
}

impl MonitorState {
    pub fn parse(state: &str) -> Option<MonitorState> {
        match state {
            "candidate" => Some(MonitorState::Candidate),
            "testing" => Some(MonitorState::Testing),
            "active" => Some(MonitorState::Active),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MonitorState::Candidate => "candidate",
            MonitorState::Testing => "testing",
            MonitorState::Active => "active",
        }
    }
}

/// A monitor's latest score for a server.
#[derive(Clone, Copy, Debug)]
pub struct LatestScore {
    pub state: MonitorState,
    pub score: f64,
    /// When it was measured, unix seconds.
    pub ts: i64,
}

/// The windows of the server score, widest last: the first that holds any
/// score decides. Each level also admits the states of the levels before it
/// (web/README.md: active within 20 min; else active+testing within 45 min;
/// else candidates, with the others, within 2 h).
pub const SERVER_SCORE_WINDOWS: &[(MonitorState, i64)] = &[
    (MonitorState::Active, 20 * 60),
    (MonitorState::Testing, 45 * 60),
    (MonitorState::Candidate, 2 * 60 * 60),
];

/// The server's score: the lower median of the monitors' recent scores, or
/// None when no monitor has a recent score (the score is then left as it is).
pub fn server_score(latest: &[LatestScore], now: i64) -> Option<f64> {
    for &(lowest_state, window) in SERVER_SCORE_WINDOWS {
        let mut scores: Vec<f64> = latest
            .iter()
            .filter(|l| l.state >= lowest_state && l.ts >= now - window)
            .map(|l| l.score)
            .collect();
        if let Some(median) = lower_median(&mut scores) {
            return Some(median);
        }
    }
    None
}

/// The median; of two middle values the lower one.
pub fn lower_median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[(values.len() - 1) / 2])
}

// Monitor promotion. A monitor earns trust one batch at a time: a batch is
// healthy when at least HEALTHY_BATCH_SHARE of its results are good data
// points for the monitor (the server answered and the offset is within
// GOOD_OFFSET): a monitor with a broken network sees timeouts everywhere, one
// with a wrong clock sees large offsets everywhere, while a few bad servers
// do not spoil a batch. PROMOTE_TO_TESTING healthy batches in a row move a
// candidate to testing, PROMOTE_TO_ACTIVE more move it to active (the pool's
// 9 and 32 data points, counted in batches). An unhealthy batch moves the
// monitor one state down and starts the count again. Batches with fewer than
// MIN_RESULTS_FOR_HEALTH results say nothing and change nothing.

pub const GOOD_OFFSET: f64 = 0.1;
pub const HEALTHY_BATCH_SHARE: f64 = 0.75;
pub const MIN_RESULTS_FOR_HEALTH: usize = 10;
pub const PROMOTE_TO_TESTING: i64 = 9;
pub const PROMOTE_TO_ACTIVE: i64 = 32;

/// Whether a result is a good data point for the monitor that made it.
pub fn is_good_data_point(check: &CheckInput) -> bool {
    check.error.is_none() && check.offset.is_some_and(|o| o.abs() <= GOOD_OFFSET)
}

/// Whether a batch with `good` good data points out of `total` is healthy;
/// None when it is too small to say.
pub fn batch_is_healthy(good: usize, total: usize) -> Option<bool> {
    if total < MIN_RESULTS_FOR_HEALTH {
        return None;
    }
    Some(good as f64 >= HEALTHY_BATCH_SHARE * total as f64)
}

/// The monitor's state and healthy-batch streak after a batch.
pub fn next_monitor_state(state: MonitorState, streak: i64, healthy: bool) -> (MonitorState, i64) {
    if !healthy {
        let down = match state {
            MonitorState::Active => MonitorState::Testing,
            MonitorState::Testing | MonitorState::Candidate => MonitorState::Candidate,
        };
        return (down, 0);
    }
    let streak = streak + 1;
    match state {
        MonitorState::Candidate if streak >= PROMOTE_TO_TESTING => (MonitorState::Testing, 0),
        MonitorState::Testing if streak >= PROMOTE_TO_ACTIVE => (MonitorState::Active, 0),
        _ => (state, streak),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(offset: f64, stratum: i64) -> CheckInput<'static> {
        CheckInput {
            error: None,
            offset: Some(offset),
            stratum: Some(stratum),
        }
    }

    fn err(error: &'static str) -> CheckInput<'static> {
        CheckInput {
            error: Some(error),
            ..CheckInput::default()
        }
    }

    /// The step table: (what was seen, expected step, expected cap).
    #[test]
    fn steps_at_every_boundary() {
        let linear_low = |o: f64| -6.667 * o + 1.167;
        let linear_high = |o: f64| -2.308 * o + 0.731;
        let cases: &[(&str, CheckInput, f64, Option<f64>)] = &[
            ("no response", err("timeout"), -5.0, None),
            ("KoD RATE", err("kod:RATE"), -3.5, None),
            ("KoD DENY", err("kod:DENY"), -10.0, Some(-50.0)),
            ("KoD RSTR", err("kod:RSTR"), -10.0, Some(-50.0)),
            ("other error", err("stratum 16 above 10"), -4.0, None),
            ("network error", err("network: send"), -4.0, None),
            ("reply without numbers", CheckInput::default(), -4.0, None),
            ("stratum 0", ok(0.0, 0), -2.0, Some(5.0)),
            ("stratum 0 beats offset", ok(10.0, 0), -2.0, Some(5.0)),
            ("0 ms", ok(0.0, 2), 1.0, None),
            ("25 ms", ok(0.025, 2), 1.0, None),
            ("-25 ms", ok(-0.025, 2), 1.0, None),
            ("25.001 ms", ok(0.025001, 2), linear_low(0.025001), None),
            ("50 ms", ok(0.05, 2), linear_low(0.05), None),
            ("100 ms", ok(0.1, 2), linear_low(0.1), None),
            ("-100 ms", ok(-0.1, 2), linear_low(0.1), None),
            ("100.001 ms", ok(0.100001, 2), linear_high(0.100001), None),
            ("200 ms", ok(0.2, 2), linear_high(0.2), None),
            ("750 ms", ok(0.75, 2), linear_high(0.75), None),
            ("750.001 ms", ok(0.750001, 2), -2.0, None),
            ("-2 s", ok(-2.0, 2), -2.0, None),
            ("3 s", ok(3.0, 2), -2.0, None),
            ("3.001 s", ok(3.001, 2), -4.0, Some(-20.0)),
            ("-5 s", ok(-5.0, 2), -4.0, Some(-20.0)),
            ("5 s at stratum 9", ok(5.0, 9), -4.0, Some(-20.0)),
            ("stratum 7", ok(0.0, 7), 1.0, None),
            ("stratum 8", ok(0.0, 8), -4.0, None),
            ("stratum 8, 200 ms", ok(0.2, 8), -4.0, None),
            ("stratum 10", ok(0.0, 10), -4.0, None),
        ];
        for (name, input, want_step, want_cap) in cases {
            let got = step_for(input);
            assert!(
                (got.step - want_step).abs() < 1e-9,
                "{name}: step {} want {want_step}",
                got.step
            );
            assert_eq!(got.cap, *want_cap, "{name}: cap");
        }
        // The bands meet (nearly) where they join.
        assert!((linear_low(0.025) - 1.0).abs() < 0.001);
        assert!((linear_low(0.1) - linear_high(0.1)).abs() < 0.001);
        assert!((linear_high(0.75) - -1.0).abs() < 0.001);
    }

    #[test]
    fn decay_and_caps() {
        let cases: &[(&str, f64, CheckInput, f64)] = &[
            ("good from zero", 0.0, ok(0.0, 2), 1.0),
            ("good from 10", 10.0, ok(0.0, 2), 10.5),
            ("at the natural top", 20.0, ok(0.0, 2), 20.0),
            ("timeout from 10", 10.0, err("timeout"), 4.5),
            ("RATE from 10", 10.0, err("kod:RATE"), 6.0),
            ("DENY from 10 capped", 10.0, err("kod:DENY"), -50.0),
            (
                "DENY from -100 under the cap",
                -100.0,
                err("kod:DENY"),
                -105.0,
            ),
            ("RSTR from 0 capped", 0.0, err("kod:RSTR"), -50.0),
            ("stratum 0 from 20 capped", 20.0, ok(0.0, 0), 5.0),
            ("stratum 0 from 0 under the cap", 0.0, ok(0.0, 0), -2.0),
            ("5 s from 20 capped", 20.0, ok(5.0, 2), -20.0),
            ("5 s from -50 under the cap", -50.0, ok(5.0, 2), -51.5),
            ("stratum 8 no cap", 20.0, ok(0.0, 8), 15.0),
        ];
        for (name, previous, input, want) in cases {
            let got = next_score(*previous, step_for(input));
            assert!((got - want).abs() < 1e-9, "{name}: {got} want {want}");
        }
        // Twenty good checks from a new pair: 20 * (1 - 0.95^20) = 12.83.
        let mut score = NEW_PAIR_SCORE;
        for _ in 0..20 {
            score = next_score(score, step_for(&ok(0.001, 2)));
        }
        assert!((score - 12.830).abs() < 0.001, "{score}");
    }

    #[test]
    fn lower_median_on_ties() {
        let cases: &[(&[f64], Option<f64>)] = &[
            (&[], None),
            (&[3.0], Some(3.0)),
            (&[5.0, 1.0], Some(1.0)),
            (&[5.0, 1.0, 3.0], Some(3.0)),
            (&[4.0, 1.0, 3.0, 2.0], Some(2.0)),
            (&[-1.0, -1.0, 7.0, 7.0], Some(-1.0)),
        ];
        for (values, want) in cases {
            let mut v = values.to_vec();
            assert_eq!(lower_median(&mut v), *want, "{values:?}");
        }
    }

    #[test]
    fn server_score_by_monitor_state_and_age() {
        use MonitorState::*;
        let now = 100_000;
        let at = |state, score, age: i64| LatestScore {
            state,
            score,
            ts: now - age,
        };
        let cases: &[(&str, Vec<LatestScore>, Option<f64>)] = &[
            ("nothing", vec![], None),
            (
                "active within 20 min win over everything else",
                vec![
                    at(Active, 10.0, 60),
                    at(Active, 12.0, 1200),
                    at(Active, 14.0, 300),
                    at(Testing, -50.0, 10),
                    at(Candidate, -50.0, 10),
                ],
                Some(12.0),
            ),
            (
                "an active score of 20 min + 1 s is too old",
                vec![at(Active, 10.0, 1201), at(Testing, 4.0, 100)],
                Some(4.0),
            ),
            (
                "active and testing within 45 min, lower median",
                vec![
                    at(Active, 10.0, 2000),
                    at(Testing, 4.0, 2700),
                    at(Candidate, -50.0, 10),
                ],
                Some(4.0),
            ),
            (
                "then all within 2 h",
                vec![
                    at(Active, 10.0, 2701),
                    at(Candidate, -3.0, 7200),
                    at(Testing, 6.0, 5000),
                ],
                Some(6.0),
            ),
            (
                "nothing within 2 h",
                vec![at(Active, 10.0, 7201), at(Candidate, 5.0, 9000)],
                None,
            ),
            (
                "candidates alone",
                vec![at(Candidate, 1.0, 10), at(Candidate, 2.0, 20)],
                Some(1.0),
            ),
        ];
        for (name, latest, want) in cases {
            assert_eq!(server_score(latest, now), *want, "{name}");
        }
    }

    #[test]
    fn monitor_promotion_and_demotion() {
        use MonitorState::*;
        let mut state = (Candidate, 0);
        for _ in 0..PROMOTE_TO_TESTING - 1 {
            state = next_monitor_state(state.0, state.1, true);
        }
        assert_eq!(state, (Candidate, PROMOTE_TO_TESTING - 1));
        state = next_monitor_state(state.0, state.1, true);
        assert_eq!(state, (Testing, 0));
        for _ in 0..PROMOTE_TO_ACTIVE {
            state = next_monitor_state(state.0, state.1, true);
        }
        assert_eq!(state, (Active, 0));
        assert_eq!(next_monitor_state(Active, 5, true), (Active, 6));
        assert_eq!(next_monitor_state(Active, 5, false), (Testing, 0));
        assert_eq!(next_monitor_state(Testing, 30, false), (Candidate, 0));
        assert_eq!(next_monitor_state(Candidate, 3, false), (Candidate, 0));

        assert_eq!(batch_is_healthy(0, 0), None);
        assert_eq!(batch_is_healthy(9, 9), None, "too small to judge");
        assert_eq!(batch_is_healthy(8, 10), Some(true));
        assert_eq!(batch_is_healthy(7, 10), Some(false));
        assert!(is_good_data_point(&ok(0.1, 2)));
        assert!(!is_good_data_point(&ok(0.2, 2)));
        assert!(!is_good_data_point(&err("timeout")));
    }
}
