//! Following a control plane: `timepool dns --snapshot-url URL` pulls the
//! snapshot over HTTPS (or HTTP) with If-None-Match and checks it by the
//! node's trust rules, signature first, then the same `zone::load_bytes`
//! as a file ([`Follower::fetch`]); the pull thread
//! ([`follow_control_plane`]) hands a new table to `Shared::reload`, which
//! swaps it in and then keeps its bytes and signature in a cache file
//! (replaced atomically, `FILE.sig` beside it) so the daemon can start
//! while the control plane is down ([`initial_snapshot`]); the cache is
//! checked like a pull, and its serial is the floor a pull at start must
//! reach. When the control plane is unreachable or sends something it
//! must not take, the daemon keeps serving the last good snapshot.
//!
//! Each pull says who is asking (`X-Timepool-Node`, the serial served,
//! the node token when one is configured): the control plane's nodes page.
//! Blocking HTTP (`shared::http_client`: ureq over rustls) on its own
//! thread, off the workers.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::StartError;
use super::state::{Shared, Source};
use super::trust::{Rejection, Rejections, SnapshotTrust};
use crate::dns::zone::ZoneTable;
use crate::shared::repeated_failure::RepeatedFailure;
use crate::shared::snapshot::{NODE_HEADER, NODE_SERIAL_HEADER, signature};

/// Largest snapshot accepted, counted after gzip is undone (a pool-sized
/// snapshot is a few MB; a small gzip body must not grow without bound).
const MAX_SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024;

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
        /// TLS roots and who this node says it is.
        client: PullClient,
    },
}

/// How a node pulls: the CA it trusts instead of the system's roots, and
/// its name and token for the control plane.
#[derive(Clone, Default)]
pub struct PullClient {
    pub ca_file: Option<PathBuf>,
    pub node_name: Option<String>,
    /// Sent as `Authorization: Bearer` (only over TLS or to loopback).
    pub node_token: Option<String>,
}

impl std::fmt::Debug for PullClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullClient")
            .field("ca_file", &self.ca_file)
            .field("node_name", &self.node_name)
            .field("node_token", &self.node_token.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

/// Why a pull failed.
#[derive(Debug)]
pub enum FetchError {
    Http(String),
    Status(u16),
    /// It came, but the node does not take it (signature, content).
    Rejected(Rejection),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Http(error) => write!(f, "{error}"),
            FetchError::Status(status) => write!(f, "HTTP status {status}"),
            FetchError::Rejected(rejection) => write!(f, "{rejection}"),
        }
    }
}

/// What a pull brought.
pub enum Fetched {
    /// 304: the snapshot held is current.
    NotModified,
    /// A new snapshot that passed the signature and content checks (the
    /// serial is the caller's to check): its bytes and signature for the
    /// cache, its ETag to remember once it is in use, and its table.
    New {
        bytes: Vec<u8>,
        signature: Option<String>,
        etag: Option<String>,
        table: Box<ZoneTable>,
    },
}

/// The HTTP side of following: the agent and the ETag of what is held.
pub struct Follower {
    url: String,
    cache: Option<PathBuf>,
    agent: ureq::Agent,
    node_name: Option<String>,
    authorization: Option<String>,
    etag: Mutex<Option<String>>,
    /// Failed writes of the cache (a full disk): counted, logged once.
    pub cache_failures: RepeatedFailure,
}

impl Follower {
    /// A follower of `url`; fails on an unreadable `--ca-file`, or on a
    /// node token that would travel over plain HTTP to another machine.
    pub fn new(
        url: &str,
        cache: Option<PathBuf>,
        timeout: Duration,
        client: &PullClient,
    ) -> Result<Follower, String> {
        use crate::shared::http_client;
        http_client::check_url(
            "--snapshot-url",
            url,
            client.node_token.as_ref().map(|_| "node token"),
            false,
        )?;
        let roots = http_client::root_certs(client.ca_file.as_deref())?;
        Ok(Follower {
            url: url.to_string(),
            cache,
            agent: http_client::agent(timeout, roots),
            node_name: client.node_name.clone(),
            authorization: client.node_token.as_ref().map(|t| format!("Bearer {t}")),
            etag: Mutex::new(None),
            cache_failures: RepeatedFailure::default(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn cache(&self) -> Option<&Path> {
        self.cache.as_deref()
    }

    /// One conditional GET, saying which serial the node serves. A new
    /// snapshot is checked here (signature, content); the caller checks
    /// its serial, swaps it in, then calls [`Follower::accepted`] and
    /// [`Follower::write_cache`].
    pub fn fetch(
        &self,
        trust: &SnapshotTrust,
        serving: Option<u32>,
    ) -> Result<Fetched, FetchError> {
        use std::io::Read;
        let etag = self.etag.lock().ok().and_then(|held| held.clone());
        let mut request = self.agent.get(&self.url);
        if let Some(etag) = &etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(name) = &self.node_name {
            request = request.header(NODE_HEADER, name);
        }
        if let Some(serial) = serving {
            request = request.header(NODE_SERIAL_HEADER, serial.to_string());
        }
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
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
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("etag");
        let signature = header(signature::HEADER);
        // The reader undoes gzip; the bound counts what it hands out.
        let mut bytes = Vec::new();
        response
            .body_mut()
            .with_config()
            .reader()
            .take(MAX_SNAPSHOT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| FetchError::Http(format!("{}: reading the body: {e}", self.url)))?;
        if bytes.len() as u64 > MAX_SNAPSHOT_BYTES {
            return Err(FetchError::Http(format!(
                "{}: the snapshot is larger than {MAX_SNAPSHOT_BYTES} bytes",
                self.url
            )));
        }
        let table = trust
            .accept(&bytes, signature.as_deref(), &self.url)
            .map_err(FetchError::Rejected)?;
        Ok(Fetched::New {
            bytes,
            signature,
            etag,
            table: Box::new(table),
        })
    }

    /// Remember the ETag of the snapshot now served. Only then: a refused
    /// one is fetched again (and refused again) rather than skipped by 304.
    pub fn accepted(&self, etag: Option<String>) {
        if let Ok(mut held) = self.etag.lock() {
            *held = etag;
        }
    }

    /// Keep the bytes (and signature) of a snapshot that was swapped in,
    /// for the next start: the signature first, so a watcher of the
    /// snapshot file never sees the new bytes beside the old signature.
    /// A failed write is logged; serving goes on.
    pub fn write_cache(&self, bytes: &[u8], signature: Option<&str>) {
        let Some(cache) = &self.cache else { return };
        match signature::write_signed(cache, bytes, signature) {
            Ok(()) => {
                if self.cache_failures.succeeded() {
                    tracing::info!(cache = %cache.display(), "the snapshot cache is written again");
                }
            }
            Err(error) => {
                if self.cache_failures.failed(&error.to_string()) {
                    tracing::warn!(%error, "cannot write the snapshot cache; the previous one stays (said again only when the cause changes)");
                }
            }
        }
    }
}

/// The first table and the running source. Following a URL, the cache
/// (when there is one and it passes the trust rules) is read first: its
/// serial is the floor for the pull at start, which then replaces it if
/// it is at least as new; when the pull fails or is refused, the cache
/// serves, so a node can start while the control plane is down. The flag
/// says whether the pull succeeded.
pub(super) fn initial_snapshot(
    source: &SnapshotSource,
    trust: &SnapshotTrust,
    rejections: &Rejections,
) -> Result<(ZoneTable, Source, bool), StartError> {
    match source {
        SnapshotSource::File(path) => {
            let table = trust.accept_file(path).map_err(|rejection| {
                rejections.count(&rejection);
                StartError::Io(io::Error::other(rejection.to_string()))
            })?;
            Ok((table, Source::File(path.clone()), false))
        }
        SnapshotSource::Url {
            url,
            cache,
            timeout,
            client,
            ..
        } => {
            let follower = Follower::new(url, cache.clone(), *timeout, client)
                .map_err(|e| StartError::Io(io::Error::other(e)))?;
            let cached = cache
                .as_deref()
                .filter(|path| path.exists())
                .and_then(|path| match trust.accept_file(path) {
                    Ok(table) => Some(table),
                    Err(rejection) => {
                        rejections.count(&rejection);
                        tracing::warn!(%rejection, "the snapshot cache is not usable");
                        None
                    }
                });
            let floor = cached.as_ref().map(|table| table.serial);
            let pulled = follower.fetch(trust, floor).and_then(|fetched| {
                if let (Fetched::New { table, .. }, Some(floor)) = (&fetched, floor) {
                    trust
                        .check_serial(url, table.serial, floor)
                        .map_err(FetchError::Rejected)?;
                }
                Ok(fetched)
            });
            match (pulled, cached) {
                (
                    Ok(Fetched::New {
                        bytes,
                        signature,
                        etag,
                        table,
                    }),
                    _,
                ) => {
                    follower.accepted(etag);
                    follower.write_cache(&bytes, signature.as_deref());
                    Ok((*table, Source::Url(follower), true))
                }
                (Ok(Fetched::NotModified), _) => Err(StartError::Io(io::Error::other(format!(
                    "{url}: 304 without a conditional request"
                )))),
                (Err(error), cached) => {
                    if let FetchError::Rejected(rejection) = &error {
                        rejections.count(rejection);
                    }
                    let Some(table) = cached else {
                        return Err(StartError::Io(io::Error::other(match cache {
                            Some(cache) => format!(
                                "cannot pull the snapshot and no usable cache in {}: {error}",
                                cache.display()
                            ),
                            None => {
                                format!("cannot pull the snapshot and no --snapshot-cache: {error}")
                            }
                        })));
                    };
                    tracing::warn!(%error, serial = table.serial, "no snapshot pulled at start; serving the cached one");
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
                    if error.is_rejection() {
                        tracing::error!(%error, serial = shared.serial(), failures, "snapshot refused; still serving the last good one");
                    } else {
                        tracing::warn!(%error, serial = shared.serial(), failures, "cannot pull the snapshot; still serving the last good one");
                    }
                }
                failures += 1;
            }
        }
    }
}
