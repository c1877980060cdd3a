//! What the daemon's threads and tasks share: the zone and GeoIP tables
//! and the cookie secrets (swapped whole on reload), the answer and rate
//! limiting settings, the stop flag and the counters; and the reload
//! itself (read, validate, swap, or keep the table in use).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use super::trust::{Rejection, Rejections, SnapshotTrust};
use super::{follow, metrics};
use crate::dns::answer::AnswerConfig;
use crate::dns::cookie::CookieSecrets;
use crate::dns::rrl::RrlSettings;
use crate::dns::zone::ZoneTable;
use crate::shared::geo::{GeoError, GeoTable};

/// Counters off the UDP path (TCP, reloads): Relaxed atomics. The UDP
/// workers count everything of theirs, failed sends included, in their own
/// slots (`metrics`).
#[derive(Debug, Default)]
pub struct Counters {
    pub dropped: AtomicU64,
    pub tcp_connections: AtomicU64,
    pub tcp_refused: AtomicU64,
    /// TCP connections closed at accept: their client had
    /// `--tcp-max-per-client` open.
    pub tcp_refused_per_client: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// Snapshots refused by the trust rules or the validator, by reason.
    pub rejections: Rejections,
}

/// What the workers share: the current zone table (swapped whole on
/// reload), the answer settings and the stop flag.
pub struct Shared {
    pub table: ArcSwap<ZoneTable>,
    pub geo: ArcSwap<GeoTable>,
    pub answer_config: AnswerConfig,
    pub stopping: AtomicBool,
    pub counters: Counters,
    /// One slot per UDP worker, then one for the TCP tasks (metrics).
    pub worker_counters: Box<[metrics::WorkerCounters]>,
    /// Answers per server address (UDP workers' arrays, TCP and retired).
    pub server_answers: metrics::ServerAnswers,
    /// The AF_XDP sockets' frame counters (`--xdp`), one per queue.
    pub xdp_queues: Box<[super::xdp::worker::XdpQueue]>,
    pub(super) source: Source,
    /// What a snapshot must be to be taken (keys, serial floor).
    pub(super) trust: SnapshotTrust,
    pub(super) geoip_path: Option<PathBuf>,
    /// When the table in use was swapped in (unix seconds).
    pub loaded_at: AtomicU64,
    /// When a pull from the control plane last succeeded (200 or 304; unix
    /// seconds; 0 = never or not following one).
    pub last_pull_ok: AtomicU64,
    /// The DNS cookie secrets (swapped whole when their file changes).
    pub cookies: ArcSwap<CookieSecrets>,
    pub(super) cookie_secret_path: Option<PathBuf>,
    /// Response rate limiting for UDP; `None`: off.
    pub rrl: Option<RrlSettings>,
    /// Held through a whole reload: the pull thread, SIGHUP and the file
    /// watcher may each start one, and two at once could both pass the
    /// serial check and swap in the older last, or write the cache file
    /// at the same time.
    pub(super) reload_lock: Mutex<()>,
}

/// The snapshot source as the running daemon holds it.
pub(super) enum Source {
    File(PathBuf),
    Url(follow::Follower),
}

/// Why a reload kept the table in use.
#[derive(Debug)]
pub enum ReloadError {
    Rejected(Rejection),
    Fetch(follow::FetchError),
}

impl ReloadError {
    /// The snapshot came but was refused (signature, content, serial),
    /// as opposed to not coming at all.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            ReloadError::Rejected(_) | ReloadError::Fetch(follow::FetchError::Rejected(_))
        )
    }
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Rejected(error) => write!(f, "{error}"),
            ReloadError::Fetch(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for ReloadError {}

/// Free a table just swapped out here, on the reload thread, rather than on
/// the UDP worker that happens to let go of it last: freeing tens of MB
/// takes a worker's time from its queries. A worker holds a table for one
/// batch (microseconds), so this waits for that; a holder that keeps it
/// longer (a TCP answer being written) frees it itself.
fn free_on_this_thread<T>(old: Arc<T>) {
    let deadline = Instant::now() + Duration::from_millis(200);
    let mut old = old;
    loop {
        match Arc::try_unwrap(old) {
            Ok(unshared) => {
                drop(unshared);
                return;
            }
            Err(shared) if Instant::now() < deadline => {
                old = shared;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(shared) => {
                drop(shared);
                return;
            }
        }
    }
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Shared {
    /// Read and flatten the GeoIP database again and swap it in. On error
    /// the table in use is kept.
    pub fn reload_geoip(&self) -> Result<(), GeoError> {
        let Some(path) = &self.geoip_path else {
            return Ok(());
        };
        let table = self.count_reload(GeoTable::open(path))?;
        tracing::info!(file = %path.display(), database = table.description(), "GeoIP database loaded");
        free_on_this_thread(self.geo.swap(Arc::new(table)));
        crate::shared::process::return_freed_memory();
        Ok(())
    }

    /// Count a file reload's result in `reloads` or `reload_failures`.
    fn count_reload<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        let counter = match &result {
            Ok(_) => &self.counters.reloads,
            Err(_) => &self.counters.reload_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Read the cookie secret file again and swap the secrets in. On error
    /// the secrets in use are kept.
    pub fn reload_cookie_secrets(&self) -> Result<(), String> {
        let Some(path) = &self.cookie_secret_path else {
            return Ok(());
        };
        let secrets = self.count_reload(CookieSecrets::from_file(path))?;
        tracing::info!(
            file = %path.display(),
            previous = secrets.previous.is_some(),
            "DNS cookie secrets loaded"
        );
        self.cookies.store(Arc::new(secrets));
        Ok(())
    }

    /// Swap a validated table in and log the serial change.
    pub(super) fn swap_in(&self, table: ZoneTable, from: &str) -> u32 {
        let serial = table.serial;
        let old = self.table.swap(Arc::new(table));
        self.loaded_at.store(unix_now(), Ordering::Relaxed);
        self.counters.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            old_serial = old.serial,
            serial,
            from,
            "zone snapshot loaded"
        );
        // Then the parse's temporaries and the old table go back to the
        // system.
        free_on_this_thread(old);
        crate::shared::process::return_freed_memory();
        serial
    }

    /// Read, check and swap in the snapshot: the file again, or a pull
    /// from the control plane. On error the table in use is kept and the
    /// error returned (the caller logs it); a refused snapshot is counted
    /// by reason.
    pub fn reload(&self) -> Result<u32, ReloadError> {
        // A panic in an earlier reload left nothing half-done that the
        // lock guards (the table is swapped whole), so a poisoned lock is
        // taken as it is.
        let _one_at_a_time = self
            .reload_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let outcome = match &self.source {
            Source::File(path) => {
                let source = path.display().to_string();
                self.trust
                    .accept_file(path)
                    .and_then(|table| {
                        self.trust
                            .check_serial(&source, table.serial, self.serial())
                            .map(|()| table)
                    })
                    .map(|table| self.swap_in(table, &source))
                    .map_err(ReloadError::Rejected)
            }
            Source::Url(follower) => match follower.fetch(&self.trust, Some(self.serial())) {
                Ok(follow::Fetched::NotModified) => {
                    self.last_pull_ok.store(unix_now(), Ordering::Relaxed);
                    Ok(self.serial())
                }
                Ok(follow::Fetched::New {
                    bytes,
                    signature,
                    etag,
                    table,
                }) => {
                    self.last_pull_ok.store(unix_now(), Ordering::Relaxed);
                    match self
                        .trust
                        .check_serial(follower.url(), table.serial, self.serial())
                    {
                        Ok(()) => {
                            let serial = self.swap_in(*table, follower.url());
                            follower.accepted(etag);
                            follower.write_cache(&bytes, signature.as_deref());
                            Ok(serial)
                        }
                        Err(rejection) => Err(ReloadError::Rejected(rejection)),
                    }
                }
                Err(error) => Err(ReloadError::Fetch(error)),
            },
        };
        if let Err(error) = &outcome {
            self.counters
                .reload_failures
                .fetch_add(1, Ordering::Relaxed);
            match error {
                ReloadError::Rejected(rejection)
                | ReloadError::Fetch(follow::FetchError::Rejected(rejection)) => {
                    self.counters.rejections.count(rejection)
                }
                ReloadError::Fetch(_) => {}
            }
        }
        outcome
    }

    /// Whether the snapshot is pulled from a control plane.
    pub fn follows_url(&self) -> bool {
        matches!(self.source, Source::Url(_))
    }

    pub fn serial(&self) -> u32 {
        self.table.load().serial
    }

    /// Failed writes of the snapshot cache (0 when there is none).
    pub fn cache_write_failures(&self) -> u64 {
        match &self.source {
            Source::Url(follower) => follower.cache_failures.count(),
            Source::File(_) => 0,
        }
    }
}

/// Reload the snapshot on a blocking thread and log a rejection (SIGHUP
/// and the file watcher both do this; the pull thread calls `reload`
/// itself and logs by its own rules).
pub async fn reload_logged(shared: &Arc<Shared>) {
    let reloading = shared.clone();
    let reload = move || {
        super::os::lower_this_thread_priority();
        reloading.reload()
    };
    match tokio::task::spawn_blocking(reload).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::error!(
            %error,
            serial = shared.serial(),
            "snapshot rejected; still serving the previous one"
        ),
        Err(error) => tracing::error!(%error, "snapshot reload task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread::{self, ThreadId};

    /// Tells on which thread it was freed.
    struct Table(mpsc::Sender<ThreadId>);

    impl Drop for Table {
        fn drop(&mut self) {
            let _ = self.0.send(thread::current().id());
        }
    }

    #[test]
    fn a_swapped_out_table_is_freed_on_the_reload_thread_not_the_worker() {
        let (freed_on, freed) = mpsc::channel();
        let table = Arc::new(Table(freed_on));
        // A worker in the middle of a batch still holds the old table.
        let held = Arc::clone(&table);
        let worker = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            drop(held);
        });
        free_on_this_thread(table);
        assert_eq!(freed.recv().expect("freed"), thread::current().id());
        worker.join().expect("worker");
    }
}
