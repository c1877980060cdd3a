//! The bad-server job: every `AlertRules::interval_secs` (10 minutes) it
//! applies the pool's rules (`control::alert_rules`) to the servers that
//! are bad or were alerted, and mails the account's users: an alert with
//! the score, the latest results and the score page, or the notice of an
//! automatic removal with the link to cancel it.
//!
//! Every instance runs it; the writes in `db::alerts` are conditional on
//! the state the decision was made from, so a server is alerted (or
//! removed) once whichever instance gets there first, and the mail is
//! queued in the same transaction as the state it records.

use std::collections::HashMap;

use super::AppState;
use super::i18n::{self, tr, trf};
use super::mails::{self, Change, Recipients};
use crate::control::alert_rules::{Decision, decide};
use crate::control::db::alerts::{self, Candidate};
use crate::control::db::audit::{self, Actor};
use crate::control::db::scores::{self, LogEntry, LogQuery};
use crate::control::db::{DbError, accounts};
use crate::control::timefmt;

/// How many of the latest results an alert lists.
const RESULTS_IN_ALERT: usize = 8;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub alerted: usize,
    pub cleared: usize,
    pub removed: usize,
    /// Servers whose action failed (logged); the next pass tries again.
    pub failed: usize,
}

/// Runs a pass every interval until `stopping` turns true.
pub async fn run(state: AppState, stopping: tokio::sync::watch::Receiver<bool>) {
    let every = std::time::Duration::from_secs(state.settings.alerts.interval_secs.max(1) as u64);
    super::run_every(every, stopping, || async {
        match pass(&state, crate::control::db::now()).await {
            Ok(report) if report != PassReport::default() => {
                tracing::info!(?report, "bad-server alerts: pass done")
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "bad-server alerts: pass failed; tried again at the next")
            }
        }
    })
    .await
}

/// One pass over the servers at `now` (a test passes its own clock).
pub async fn pass(state: &AppState, now: i64) -> Result<PassReport, DbError> {
    let rules = &state.settings.alerts;
    let mut report = PassReport::default();
    let mut recipients: HashMap<i64, Recipients> = HashMap::new();
    for candidate in alerts::candidates(&state.db, rules.alert_score, now).await? {
        let decision = decide(rules, &candidate.state, now);
        if decision == Decision::Nothing {
            continue;
        }
        if let std::collections::hash_map::Entry::Vacant(entry) =
            recipients.entry(candidate.account_id)
        {
            entry.insert(accounts::mail_recipients(&state.db, candidate.account_id).await?);
        }
        let to = &recipients[&candidate.account_id];
        match act(state, &candidate, decision, to, now).await {
            Ok(false) => {}
            Ok(true) => match decision {
                Decision::Alert => report.alerted += 1,
                Decision::Clear => report.cleared += 1,
                Decision::Remove { .. } => report.removed += 1,
                Decision::Nothing => {}
            },
            Err(error) => {
                report.failed += 1;
                tracing::warn!(%error, server = candidate.address, ?decision, "bad-server alerts: action failed");
            }
        }
    }
    Ok(report)
}

/// Carries out one decision; false when the state had changed meanwhile
/// (another instance, an operator) and nothing was done.
async fn act(
    state: &AppState,
    candidate: &Candidate,
    decision: Decision,
    recipients: &Recipients,
    now: i64,
) -> Result<bool, DbError> {
    let server = &candidate.state;
    let mut tx = state.db.begin().await?;
    let done = match decision {
        Decision::Nothing => false,
        Decision::Clear => match &server.alert {
            Some(previous) => alerts::clear(&mut tx, candidate.server_id, previous).await?,
            None => false,
        },
        Decision::Alert => {
            let results = latest_results(state, candidate.server_id).await?;
            let recorded = alerts::record_alert(
                &mut tx,
                candidate.server_id,
                server.alert.as_ref(),
                server.score,
                now,
            )
            .await?;
            if recorded {
                let first = server.alert.map_or(now, |a| a.first_alert_at);
                alert_mail(&mut tx, state, candidate, &results, first, recipients).await?;
            }
            recorded
        }
        Decision::Remove { deletion_on } => {
            let scheduled =
                alerts::schedule_removal(&mut tx, candidate.server_id, deletion_on).await?;
            if scheduled {
                let first = server.alert.map_or(now, |a| a.first_alert_at);
                removal_mail(&mut tx, state, candidate, first, deletion_on, recipients).await?;
                audit::record(
                    &mut tx,
                    &Actor {
                        user_id: None,
                        name: "pool rules".to_string(),
                    },
                    "server.delete.auto",
                    &format!("server:{} {}", candidate.server_id, candidate.address),
                    &format!(
                        "score {:.1}, first alert {}; deletion on {}",
                        server.score,
                        timefmt::rfc3339(first),
                        timefmt::rfc3339(deletion_on)
                    ),
                )
                .await?;
            }
            scheduled
        }
    };
    tx.commit().await?;
    Ok(done)
}

/// The monitors' latest checks of a server, newest first.
async fn latest_results(state: &AppState, server_id: i64) -> Result<Vec<LogEntry>, DbError> {
    let query = LogQuery {
        limit: 4 * RESULTS_IN_ALERT as i64,
        since: None,
        monitor_id: None,
    };
    let mut entries = scores::log(&state.db, server_id, &query).await?;
    entries.retain(|e| e.monitor_id.is_some());
    entries.truncate(RESULTS_IN_ALERT);
    Ok(entries)
}

/// One result as a line of the mail: "2026-12-04 10:20 UTC  monitor: ...".
fn result_line(entry: &LogEntry) -> String {
    let language = i18n::current();
    let what = match (&entry.error, entry.offset) {
        (Some(error), _) => trf("error: {error}", &[("error", error.clone())]),
        (None, Some(offset)) => trf(
            "offset {offset} ms",
            &[("offset", language.fixed(offset * 1000.0, 1))],
        ),
        (None, None) => tr("no result").to_string(),
    };
    format!(
        "{}  {}: {what} ({})",
        timefmt::human(entry.ts),
        entry.monitor_name.as_deref().unwrap_or("?"),
        trf(
            "score {score}",
            &[("score", language.fixed(entry.score, 1))]
        )
    )
}

async fn alert_mail(
    tx: &mut crate::control::db::Tx,
    state: &AppState,
    candidate: &Candidate,
    results: &[LogEntry],
    first_alert_at: i64,
    recipients: &Recipients,
) -> Result<(), DbError> {
    let rules = &state.settings.alerts;
    let page = format!("/scores/{}", candidate.address);
    let values = || {
        let language = i18n::current();
        [
            ("address", candidate.address.clone()),
            ("score", language.fixed(candidate.state.score, 1)),
            ("good", language.fixed(rules.clear_score, 0)),
            ("bad", language.fixed(rules.removal_score, 0)),
            (
                "days",
                language.integer(rules.removal_after_first_secs / 86_400),
            ),
            ("date", language.date(first_alert_at)),
        ]
    };
    let text = || {
        let values = values();
        let mut paragraphs = vec![trf(
            "The pool's monitors find your server {address} not working well: its score is {score}. Servers are handed to clients only above {good}.",
            &values,
        )];
        if results.is_empty() {
            paragraphs.push(tr("No results from the monitors yet.").to_string());
        } else {
            let lines: Vec<String> = results.iter().map(result_line).collect();
            paragraphs.push(format!(
                "{}\n{}",
                tr("The latest results:"),
                lines.join("\n")
            ));
        }
        paragraphs.push(trf(
            "A server whose score stays below {bad} is removed from the pool automatically, {days} days after its first alert ({date}). Its scores and the monitors' results:",
            &values,
        ));
        paragraphs.join("\n\n")
    };
    mails::tell(
        tx,
        state,
        recipients,
        &Change {
            kind: "server_alert",
            subject: &|| trf("{address} is not working well (score {score})", &values()),
            text: &text,
            link: Some(&page),
        },
    )
    .await
}

async fn removal_mail(
    tx: &mut crate::control::db::Tx,
    state: &AppState,
    candidate: &Candidate,
    first_alert_at: i64,
    deletion_on: i64,
    recipients: &Recipients,
) -> Result<(), DbError> {
    let page = format!("/manage/servers/{}", candidate.server_id);
    let values = || {
        let language = i18n::current();
        [
            ("address", candidate.address.clone()),
            ("score", language.fixed(candidate.state.score, 1)),
            ("first", language.date(first_alert_at)),
            ("when", timefmt::human(deletion_on)),
        ]
    };
    mails::tell(
        tx,
        state,
        recipients,
        &Change {
            kind: "server_removal",
            subject: &|| trf("{address} is removed from the pool on {when}", &values()),
            text: &|| {
                trf(
                    "Your server {address} has had a bad score since {first} (now {score}). By the pool's rules it is scheduled for deletion: it leaves the pool on {when}. If it works again, cancel the deletion on its page:",
                    &values(),
                )
            },
            link: Some(&page),
        },
    )
    .await
}
