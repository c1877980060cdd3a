//! The pool's rules for bad servers (web/README.md, "Alerts and automatic
//! removal"), as pure functions: a server's state and the time in, what to
//! do about it out.
//!
//! - **Alert**: a server in the pool whose score is at or below
//!   `alert_score` (-15), and which is not due for deletion within
//!   `deletion_window` (16 days), gets a mail to every user of its account.
//!   It is not repeated until `repeat_after` (14 days) has passed since the
//!   last one, and then only if the score has not risen more than
//!   `repeat_rise` (10) since that mail: a server that is getting better
//!   is not nagged (the pool's rule).
//! - **Clear**: once the score is above `clear_score` (10) the alert state
//!   is forgotten; a later fall starts over.
//! - **Remove**: a server in the pool whose score is below `removal_score`
//!   (0), whose first alert is more than `removal_after_first` (45 days)
//!   old and whose last alert is more than `removal_after_last` (5 days)
//!   old, and which has no deletion scheduled, is scheduled for deletion
//!   `removal_delay` (2 days) out; the account is told.
//!
//! Architecture invariant: no I/O, no web or database types. `web::alerts`
//! runs these rules every `interval` and stores what they decide
//! (`db::alerts`).

use serde::Deserialize;

const DAY: i64 = 86_400;

/// The thresholds; the defaults are the pool's. Times are seconds.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRules {
    /// Seconds between two passes over the servers (the pool: 10 minutes).
    pub interval_secs: i64,
    /// A server at or below this score is alerted.
    pub alert_score: f64,
    /// No alert for a server whose deletion is due within this window.
    pub deletion_window_secs: i64,
    /// An alert is repeated only after this long...
    pub repeat_after_secs: i64,
    /// ...and only if the score has not risen more than this since.
    pub repeat_rise: f64,
    /// Above this score the alert state clears.
    pub clear_score: f64,
    /// A server below this score may be removed...
    pub removal_score: f64,
    /// ...once its first alert is older than this...
    pub removal_after_first_secs: i64,
    /// ...and its last alert older than this...
    pub removal_after_last_secs: i64,
    /// ...by scheduling its deletion this far out.
    pub removal_delay_secs: i64,
}

impl Default for AlertRules {
    fn default() -> AlertRules {
        AlertRules {
            interval_secs: 600,
            alert_score: -15.0,
            deletion_window_secs: 16 * DAY,
            repeat_after_secs: 14 * DAY,
            repeat_rise: 10.0,
            clear_score: 10.0,
            removal_score: 0.0,
            removal_after_first_secs: 45 * DAY,
            removal_after_last_secs: 5 * DAY,
            removal_delay_secs: 2 * DAY,
        }
    }
}

impl AlertRules {
    /// Checks the values make sense (from a config file).
    pub fn validated(self) -> Result<AlertRules, String> {
        let durations = [
            ("interval_secs", self.interval_secs, 1),
            ("deletion_window_secs", self.deletion_window_secs, 0),
            ("repeat_after_secs", self.repeat_after_secs, 0),
            ("removal_after_first_secs", self.removal_after_first_secs, 0),
            ("removal_after_last_secs", self.removal_after_last_secs, 0),
            ("removal_delay_secs", self.removal_delay_secs, 0),
        ];
        for (name, value, min) in durations {
            if value < min || value > 100 * 365 * DAY {
                return Err(format!(
                    "alerts.{name} must be {min}..={} s, got {value}",
                    100 * 365 * DAY
                ));
            }
        }
        let scores = [
            ("alert_score", self.alert_score),
            ("repeat_rise", self.repeat_rise),
            ("clear_score", self.clear_score),
            ("removal_score", self.removal_score),
        ];
        for (name, value) in scores {
            if !value.is_finite() {
                return Err(format!("alerts.{name} must be a number, got {value}"));
            }
        }
        if self.clear_score <= self.alert_score {
            return Err(format!(
                "alerts.clear_score ({}) must be above alerts.alert_score ({})",
                self.clear_score, self.alert_score
            ));
        }
        Ok(self)
    }
}

/// What is remembered of a server's alerts (the `server_alerts` row).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlertRecord {
    pub first_alert_at: i64,
    pub last_alert_at: i64,
    /// The score the last alert was sent at.
    pub last_score: f64,
}

/// A server as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerState {
    pub score: f64,
    pub in_pool: bool,
    pub deletion_on: Option<i64>,
    pub alert: Option<AlertRecord>,
}

/// What to do about one server now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    Nothing,
    /// Mail the account and remember the alert.
    Alert,
    /// Forget the alert state (the server is good again).
    Clear,
    /// Schedule the deletion at this time and tell the account.
    Remove {
        deletion_on: i64,
    },
}

/// The rules applied to one server at `now`.
pub fn decide(rules: &AlertRules, server: &ServerState, now: i64) -> Decision {
    if server.alert.is_some() && server.score > rules.clear_score {
        return Decision::Clear;
    }
    if !server.in_pool {
        return Decision::Nothing;
    }
    if let Some(alert) = server.alert
        && server.deletion_on.is_none()
        && server.score < rules.removal_score
        && now - alert.first_alert_at > rules.removal_after_first_secs
        && now - alert.last_alert_at > rules.removal_after_last_secs
    {
        return Decision::Remove {
            deletion_on: now + rules.removal_delay_secs,
        };
    }
    let deletion_due =
        matches!(server.deletion_on, Some(t) if t <= now + rules.deletion_window_secs);
    if server.score > rules.alert_score || deletion_due {
        return Decision::Nothing;
    }
    match server.alert {
        None => Decision::Alert,
        Some(alert)
            if now - alert.last_alert_at > rules.repeat_after_secs
                && server.score - alert.last_score <= rules.repeat_rise =>
        {
            Decision::Alert
        }
        Some(_) => Decision::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn bad(score: f64) -> ServerState {
        ServerState {
            score,
            in_pool: true,
            deletion_on: None,
            alert: None,
        }
    }

    fn alerted(score: f64, first_days: f64, last_days: f64, last_score: f64) -> ServerState {
        ServerState {
            alert: Some(AlertRecord {
                first_alert_at: NOW - (first_days * DAY as f64) as i64,
                last_alert_at: NOW - (last_days * DAY as f64) as i64,
                last_score,
            }),
            ..bad(score)
        }
    }

    /// (what, server, expected): each case one edge of the rules.
    #[test]
    fn the_rules_at_their_edges() {
        let rules = AlertRules::default();
        let remove = Decision::Remove {
            deletion_on: NOW + 2 * DAY,
        };
        let cases: Vec<(&str, ServerState, Decision)> = vec![
            ("score -15 is alerted", bad(-15.0), Decision::Alert),
            ("score -14.9 is not", bad(-14.9), Decision::Nothing),
            (
                "out of the pool: no alert",
                ServerState {
                    in_pool: false,
                    ..bad(-50.0)
                },
                Decision::Nothing,
            ),
            (
                "deletion due in 16 days: no alert",
                ServerState {
                    deletion_on: Some(NOW + 16 * DAY),
                    ..bad(-50.0)
                },
                Decision::Nothing,
            ),
            (
                "deletion due in 16 days and a second: alert",
                ServerState {
                    deletion_on: Some(NOW + 16 * DAY + 1),
                    ..bad(-50.0)
                },
                Decision::Alert,
            ),
            (
                "exactly 14 days since the last alert: not yet",
                alerted(-50.0, 14.0, 14.0, -50.0),
                Decision::Nothing,
            ),
            (
                "14 days and a second: repeated",
                alerted(-50.0, 14.0, 14.0 + 1.0 / DAY as f64, -50.0),
                Decision::Alert,
            ),
            (
                "score rose exactly 10 since: repeated",
                alerted(-40.0, 20.0, 20.0, -50.0),
                Decision::Alert,
            ),
            (
                "score rose 10.1 since: not repeated",
                alerted(-39.9, 20.0, 20.0, -50.0),
                Decision::Nothing,
            ),
            (
                "score 10 keeps the alert state",
                alerted(10.0, 3.0, 3.0, -50.0),
                Decision::Nothing,
            ),
            (
                "score above 10 clears it",
                alerted(10.1, 3.0, 3.0, -50.0),
                Decision::Clear,
            ),
            (
                "first alert 45 days and a second ago, last 5 days and a second: removed",
                alerted(-1.0, 45.0 + 1.0 / DAY as f64, 5.0 + 1.0 / DAY as f64, -50.0),
                remove,
            ),
            (
                "first alert exactly 45 days ago: kept",
                alerted(-1.0, 45.0, 5.0 + 1.0 / DAY as f64, -50.0),
                Decision::Nothing,
            ),
            (
                "last alert exactly 5 days ago: kept",
                alerted(-1.0, 46.0, 5.0, -50.0),
                Decision::Nothing,
            ),
            (
                "score 0 is not below 0: kept",
                alerted(0.0, 46.0, 6.0, -50.0),
                Decision::Nothing,
            ),
            (
                "a deletion already scheduled: not again",
                ServerState {
                    deletion_on: Some(NOW + 30 * DAY),
                    ..alerted(-50.0, 46.0, 6.0, -50.0)
                },
                Decision::Nothing,
            ),
        ];
        for (what, server, expected) in cases {
            assert_eq!(decide(&rules, &server, NOW), expected, "{what}");
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let good = AlertRules::default();
        assert_eq!(good.validated(), Ok(good));
        let cases = [
            AlertRules {
                interval_secs: 0,
                ..good
            },
            AlertRules {
                clear_score: -20.0,
                ..good
            },
            AlertRules {
                repeat_rise: f64::NAN,
                ..good
            },
            AlertRules {
                removal_delay_secs: -1,
                ..good
            },
        ];
        for rules in cases {
            assert!(rules.validated().is_err(), "{rules:?}");
        }
    }
}
