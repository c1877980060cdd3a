//! The monitor selector's job: a pass over every server every
//! `[selector] interval_secs` (web/README.md, "Monitoring: pairs and the
//! selector"). With several instances on one database only the holder of
//! the selector's lease runs it, so two passes never decide on the same
//! pairs at once; the rules are `control::monitor_selector`, the reading
//! and writing `db::pairs`.

use super::AppState;
use crate::control::db::{DbError, leases, pairs};

/// Runs a pass every interval until `stopping` turns true; gives the lease
/// up on the way out.
pub async fn run(state: AppState, instance: String, stopping: tokio::sync::watch::Receiver<bool>) {
    let interval = state.settings.selector.interval_secs.max(1);
    let every = std::time::Duration::from_secs(interval as u64);
    super::run_every(every, stopping, || async {
        match pass_if_leader(&state, &instance, interval).await {
            Ok(Some(report))
                if report.added + report.promoted + report.demoted + report.removed > 0 =>
            {
                tracing::info!(?report, "monitor selector: pass done")
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "monitor selector: pass failed; tried again at the next")
            }
        }
    })
    .await;
    if let Err(error) = leases::release(&state.db, pairs::SELECTOR_LEASE, &instance).await {
        tracing::warn!(%error, "monitor selector: could not give the lease up");
    }
}

/// One pass when this instance holds (or takes) the lease; None when
/// another instance does.
pub async fn pass_if_leader(
    state: &AppState,
    instance: &str,
    interval: i64,
) -> Result<Option<pairs::PassReport>, DbError> {
    // The lease outlives two intervals, so a holder that skips one pass
    // (a slow database) keeps it; each write of the pass renews it, and a
    // pass that lost it stops before its next write.
    let ttl_secs = interval * 3 + 30;
    if !leases::acquire(&state.db, pairs::SELECTOR_LEASE, instance, ttl_secs).await? {
        return Ok(None);
    }
    let fence = pairs::Fence {
        holder: instance.to_string(),
        ttl_secs,
    };
    let report = pairs::selector_pass_fenced(
        &state.db,
        &state.settings.selector,
        crate::control::db::now(),
        Some(&fence),
    )
    .await?;
    Ok(Some(report))
}
