//! Following a control plane: `timepool dns --snapshot-url URL` pulls the
//! snapshot over HTTP with If-None-Match and validates it with the same
//! `zone::load_bytes` as a file ([`Follower::fetch`]); the pull thread
//! ([`follow_control_plane`]) hands a new table to `Shared::reload`, which
//! swaps it in and then keeps its bytes in a cache file (replaced
//! atomically) so the daemon can start while the control plane is down
//! ([`initial_snapshot`]). When the control plane is unreachable or sends
//! something invalid, the daemon keeps serving the last good snapshot.
//!
//! Blocking HTTP (ureq, no TLS: the control plane is reached over a
//! private network or a local proxy) on its own thread, off the workers.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::StartError;
use super::state::{Shared, Source};
use crate::dns::zone::{self, ZoneTable};
use crate::shared::snapshot::SnapshotError;

/// Largest snapshot body accepted (a pool-sized snapshot is a few MB).
const MAX_SNAPSHOT_BYTES: u64 = 256 * 1024 * 1024;

/// Where the snapshot comes from.
#[derive(Clone, Debug)]
pub enum SnapshotSource {
    /// A file, reloaded when it changes and on SIGHUP.
    File(PathBuf),
    /// A control plane's `GET /api/v1/snapshot`, polled every `poll`.
    Url {
        url: String,
        /// The last good snapshot, for starting while the URL is down.
        cache: Option<PathBuf>,
        poll: Duration,
        /// Timeout of one whole request.
        timeout: Duration,
    },
}

/// Why a pull failed.
#[derive(Debug)]
pub enum FetchError {
    Http(String),
    Status(u16),
    Snapshot(SnapshotError),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Http(error) => write!(f, "{error}"),
            FetchError::Status(status) => write!(f, "HTTP status {status}"),
            FetchError::Snapshot(error) => write!(f, "{error}"),
        }
    }
}

/// What a pull brought.
pub enum Fetched {
    /// 304: the snapshot held is current.
    NotModified,
    /// A new, valid snapshot; its bytes (for the cache) and table.
    New {
        bytes: Vec<u8>,
        table: Box<ZoneTable>,
    },
}

/// The HTTP side of following: the agent and the ETag of what is held.
pub struct Follower {
    url: String,
    cache: Option<PathBuf>,
    agent: ureq::Agent,
    etag: Mutex<Option<String>>,
}

impl Follower {
    pub fn new(url: &str, cache: Option<PathBuf>, timeout: Duration) -> Follower {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Follower {
            url: url.to_string(),
            cache,
            agent,
            etag: Mutex::new(None),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn cache(&self) -> Option<&Path> {
        self.cache.as_deref()
    }

    /// One conditional GET. A new snapshot is validated here; the caller
    /// swaps it in and then keeps its bytes with [`Follower::write_cache`].
    pub fn fetch(&self) -> Result<Fetched, FetchError> {
        let etag = self.etag.lock().ok().and_then(|held| held.clone());
        let mut request = self.agent.get(&self.url);
        if let Some(etag) = &etag {
            request = request.header("If-None-Match", etag);
        }
        let mut response = request
            .call()
            .map_err(|e| FetchError::Http(format!("{}: {e}", self.url)))?;
        let status = response.status().as_u16();
        if status == 304 {
            return Ok(Fetched::NotModified);
        }
        if status != 200 {
            return Err(FetchError::Status(status));
        }
        let new_etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_SNAPSHOT_BYTES)
            .read_to_vec()
            .map_err(|e| FetchError::Http(format!("{}: reading the body: {e}", self.url)))?;
        let table = zone::load_bytes(&bytes, &self.url).map_err(FetchError::Snapshot)?;
        // Remember the tag only once the snapshot proved valid: a bad one
        // is fetched again (and rejected again) rather than skipped by 304.
        if let Ok(mut held) = self.etag.lock() {
            *held = new_etag;
        }
        Ok(Fetched::New {
            bytes,
            table: Box::new(table),
        })
    }

    /// Keep the bytes of a snapshot that was swapped in, for the next
    /// start. A failed write is logged; serving goes on.
    pub fn write_cache(&self, bytes: &[u8]) {
        if let Some(cache) = &self.cache
            && let Err(error) = crate::shared::atomic_file::write(cache, bytes)
        {
            tracing::warn!(%error, "cannot write the snapshot cache");
        }
    }
}

/// The first table and the running source. Following a URL, the start
/// pulls once; when that fails it loads the cache file, so a node can
/// start while the control plane is down. The flag says whether the pull
/// succeeded.
pub(super) fn initial_snapshot(
    source: &SnapshotSource,
) -> Result<(ZoneTable, Source, bool), StartError> {
    match source {
        SnapshotSource::File(path) => {
            let table = zone::load_file(path).map_err(StartError::Snapshot)?;
            Ok((table, Source::File(path.clone()), false))
        }
        SnapshotSource::Url {
            url,
            cache,
            timeout,
            ..
        } => {
            let follower = Follower::new(url, cache.clone(), *timeout);
            match follower.fetch() {
                Ok(Fetched::New { bytes, table }) => {
                    follower.write_cache(&bytes);
                    Ok((*table, Source::Url(follower), true))
                }
                Ok(Fetched::NotModified) => Err(StartError::Io(io::Error::other(format!(
                    "{url}: 304 without a conditional request"
                )))),
                Err(error) => {
                    let Some(cache) = cache else {
                        return Err(StartError::Io(io::Error::other(format!(
                            "cannot pull the snapshot and no --snapshot-cache: {error}"
                        ))));
                    };
                    tracing::warn!(%error, cache = %cache.display(), "control plane unreachable at start; serving the cached snapshot");
                    let table = zone::load_file(cache).map_err(StartError::Snapshot)?;
                    Ok((table, Source::Url(follower), false))
                }
            }
        }
    }
}

/// The follower thread: pull every `poll` until the daemon stops. Failures
/// are logged when they start (and every 20th after), recovery once.
pub(super) fn follow_control_plane(shared: &Shared, poll: Duration) {
    let step = Duration::from_millis(50);
    let mut failures = 0u64;
    while !shared.stopping.load(Ordering::Relaxed) {
        let mut waited = Duration::ZERO;
        while waited < poll && !shared.stopping.load(Ordering::Relaxed) {
            std::thread::sleep(step.min(poll - waited));
            waited += step;
        }
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        match shared.reload() {
            Ok(_) => {
                if failures > 0 {
                    tracing::info!(
                        failures,
                        serial = shared.serial(),
                        "control plane reachable again"
                    );
                }
                failures = 0;
            }
            Err(error) => {
                if failures.is_multiple_of(20) {
                    tracing::warn!(%error, serial = shared.serial(), failures, "cannot pull the snapshot; still serving the last good one");
                }
                failures += 1;
            }
        }
    }
}
