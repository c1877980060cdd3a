//! Watching the snapshot file (when the snapshot comes from a file), the
//! GeoIP database and the cookie secret file for a change, and reloading
//! whichever changed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::state::{Shared, Source, reload_logged};
use crate::shared::file_version::{FileVersion, file_version};
use crate::shared::snapshot::signature::signature_path;

/// The snapshot file's version and its signature file's: a writer that
/// lands the signature after the bytes (rsync goes in name order) changes
/// the second after the first, and that must reload too.
fn snapshot_version(path: &Path) -> (Option<FileVersion>, Option<FileVersion>) {
    (file_version(path), file_version(&signature_path(path)))
}

/// Poll the snapshot, GeoIP and cookie secret files and reload whichever
/// changed. A bad file is logged once per change and what is in use keeps
/// serving.
pub(super) async fn watch_files(
    shared: Arc<Shared>,
    interval: Duration,
    ready: std::sync::mpsc::Sender<()>,
) {
    let snapshot_path = match &shared.source {
        Source::File(path) => Some(path.clone()),
        Source::Url(_) => None,
    };
    let mut snapshot_seen = snapshot_path.as_deref().map(snapshot_version);
    let mut geoip_seen = shared.geoip_path.as_deref().and_then(file_version);
    let mut cookies_seen = shared.cookie_secret_path.as_deref().and_then(file_version);
    // The files were just loaded: the first check is one interval away
    // (tokio's plain `interval` would tick at once).
    let period = interval.max(Duration::from_millis(50));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let _ = ready.send(());
    drop(ready);
    loop {
        ticker.tick().await;
        let current = snapshot_path.as_deref().map(snapshot_version);
        if current != snapshot_seen && current.is_some_and(|(bytes, _)| bytes.is_some()) {
            // Let a writer that is not renaming into place finish.
            tokio::time::sleep(Duration::from_millis(20)).await;
            snapshot_seen = snapshot_path.as_deref().map(snapshot_version);
            reload_logged(&shared).await;
        }
        let current = shared.geoip_path.as_deref().and_then(file_version);
        if current != geoip_seen && current.is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            geoip_seen = shared.geoip_path.as_deref().and_then(file_version);
            let reloading = shared.clone();
            let reload = move || {
                super::os::lower_this_thread_priority();
                reloading.reload_geoip()
            };
            match tokio::task::spawn_blocking(reload).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(
                    %error,
                    "GeoIP database rejected; still using the previous one"
                ),
                Err(error) => tracing::error!(%error, "GeoIP reload task failed"),
            }
        }
        let current = shared.cookie_secret_path.as_deref().and_then(file_version);
        if current != cookies_seen && current.is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            cookies_seen = shared.cookie_secret_path.as_deref().and_then(file_version);
            if let Err(error) = shared.reload_cookie_secrets() {
                tracing::error!(%error, "cookie secrets rejected; still using the previous ones");
            }
        }
    }
}
