//! The DNS daemon's moving parts: UDP workers, the TCP listener, and the
//! reload of the zone table (from a file, or pulled from a control plane
//! by `follow`), and the `/metrics` endpoint (`metrics`).
//!
//! Architecture invariant: the server moves bytes between sockets and
//! [`crate::answer`]; it decides no answer itself. It knows nothing of the
//! database or the web layer; it only reads snapshots (files or HTTP
//! bodies) through `snapshot::load_bytes`.

pub mod follow;
pub mod metrics;
pub mod tcp;
pub mod udp;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::answer::AnswerConfig;
use crate::geo::{GeoError, GeoTable};
use crate::snapshot::{self, SnapshotError};
use crate::zone::ZoneTable;

pub use follow::SnapshotSource;
pub use tcp::TcpSettings;
pub use udp::UdpSettings;

/// Everything the daemon needs to start.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    pub listen: Vec<SocketAddr>,
    /// UDP workers per listen address.
    pub threads: usize,
    /// Pin UDP worker i to CPU i (modulo the CPUs this process may use).
    pub pin_workers: bool,
    pub snapshot: SnapshotSource,
    /// The MaxMind database; `None`: every client gets the global zone.
    pub geoip: Option<PathBuf>,
    /// How often the snapshot (and GeoIP) file is checked for a change.
    pub reload_interval: Duration,
    pub answer: AnswerConfig,
    pub udp: UdpSettings,
    pub tcp: TcpSettings,
    /// Serve Prometheus metrics at `http://ADDR/metrics`; `None`: off.
    pub metrics_listen: Option<SocketAddr>,
}

/// Counters off the UDP answer path (sends that failed, TCP, reloads):
/// Relaxed atomics. Query counts are per worker (`metrics`).
#[derive(Debug, Default)]
pub struct Counters {
    pub dropped: AtomicU64,
    pub send_errors: AtomicU64,
    pub tcp_connections: AtomicU64,
    pub tcp_refused: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
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
    source: Source,
    geoip_path: Option<PathBuf>,
    /// When the table in use was swapped in (unix seconds).
    pub loaded_at: AtomicU64,
    /// When a pull from the control plane last succeeded (200 or 304; unix
    /// seconds; 0 = never or not following one).
    pub last_pull_ok: AtomicU64,
}

/// The snapshot source as the running daemon holds it.
enum Source {
    File(PathBuf),
    Url(follow::Follower),
}

/// Why a reload kept the table in use.
#[derive(Debug)]
pub enum ReloadError {
    Snapshot(SnapshotError),
    Fetch(follow::FetchError),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Snapshot(error) => write!(f, "{error}"),
            ReloadError::Fetch(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for ReloadError {}

fn unix_now() -> u64 {
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
        match GeoTable::open(path) {
            Ok(table) => {
                tracing::info!(file = %path.display(), database = table.description(), "GeoIP database loaded");
                self.geo.store(Arc::new(table));
                self.counters.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.counters
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    /// Swap a validated table in and log the serial change.
    fn swap_in(&self, table: ZoneTable, from: &str) -> u32 {
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
        // `old` is dropped here, on the reload thread, not on a worker (a
        // worker still holding a guard drops its copy after its batch).
        serial
    }

    /// Read, validate and swap in the snapshot: the file again, or a pull
    /// from the control plane. On error the table in use is kept and the
    /// error returned (the caller logs it).
    pub fn reload(&self) -> Result<u32, ReloadError> {
        match &self.source {
            Source::File(path) => match snapshot::load_file(path) {
                Ok(table) => Ok(self.swap_in(table, &path.display().to_string())),
                Err(error) => {
                    self.counters
                        .reload_failures
                        .fetch_add(1, Ordering::Relaxed);
                    Err(ReloadError::Snapshot(error))
                }
            },
            Source::Url(follower) => match follower.fetch() {
                Ok(follow::Fetched::NotModified) => {
                    self.last_pull_ok.store(unix_now(), Ordering::Relaxed);
                    Ok(self.serial())
                }
                Ok(follow::Fetched::New { bytes, table }) => {
                    let serial = self.swap_in(*table, follower.url());
                    self.last_pull_ok.store(unix_now(), Ordering::Relaxed);
                    follower.write_cache(&bytes);
                    Ok(serial)
                }
                Err(error) => {
                    self.counters
                        .reload_failures
                        .fetch_add(1, Ordering::Relaxed);
                    Err(ReloadError::Fetch(error))
                }
            },
        }
    }

    /// Whether the snapshot is pulled from a control plane.
    pub fn follows_url(&self) -> bool {
        matches!(self.source, Source::Url(_))
    }

    pub fn serial(&self) -> u32 {
        self.table.load().serial
    }
}

/// A running DNS daemon.
pub struct DnsServer {
    shared: Arc<Shared>,
    metrics_address: Option<SocketAddr>,
    udp_addresses: Vec<SocketAddr>,
    tcp_addresses: Vec<SocketAddr>,
    workers: Vec<JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl DnsServer {
    /// Load the snapshot, bind every socket, start the workers. Fails
    /// without serving anything if the snapshot is bad or a bind fails.
    pub fn start(config: DnsConfig) -> Result<DnsServer, StartError> {
        let (table, source, pulled_at_start) = initial_snapshot(&config.snapshot)?;
        tracing::info!(
            serial = table.serial,
            servers = table.servers.len(),
            zones = table.zones.len(),
            "zone snapshot loaded"
        );
        let geo = match &config.geoip {
            Some(path) => {
                let geo = GeoTable::open(path).map_err(StartError::Geo)?;
                tracing::info!(file = %path.display(), database = geo.description(), "GeoIP database loaded");
                geo
            }
            None => {
                tracing::warn!("no GeoIP database: every client is served the global zone");
                GeoTable::empty()
            }
        };
        let shared = Arc::new(Shared {
            table: ArcSwap::from_pointee(table),
            geo: ArcSwap::from_pointee(geo),
            geoip_path: config.geoip.clone(),
            answer_config: config.answer.clone(),
            stopping: AtomicBool::new(false),
            counters: Counters::default(),
            worker_counters: (0..config.listen.len() * config.threads.max(1) + 1)
                .map(|_| metrics::WorkerCounters::default())
                .collect(),
            server_answers: metrics::ServerAnswers::new(
                config.listen.len() * config.threads.max(1),
            ),
            loaded_at: AtomicU64::new(unix_now()),
            last_pull_ok: AtomicU64::new(match &source {
                Source::Url(_) if pulled_at_start => unix_now(),
                _ => 0,
            }),
            source,
        });
        raise_open_file_limit();
        let threads = config.threads.max(1);
        let mut udp_sockets = Vec::new();
        let mut udp_addresses = Vec::new();
        let mut tcp_listeners = Vec::new();
        let mut tcp_addresses = Vec::new();
        for &address in &config.listen {
            let (sockets, listener) =
                bind_udp_and_tcp(address, threads, &config.udp).map_err(StartError::Io)?;
            let bound = sockets[0].local_addr().map_err(StartError::Io)?;
            tcp_addresses.push(listener.local_addr().map_err(StartError::Io)?);
            udp_addresses.push(bound);
            udp_sockets.extend(sockets);
            tcp_listeners.push(listener);
        }

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("timepool-tcp")
            .enable_all()
            .build()
            .map_err(StartError::Io)?;
        // The TCP accept loops and the file watcher say when they are set
        // up; start returns after that (and after the UDP workers), so
        // nothing of their setup runs while the daemon already serves.
        let (tasks_ready_tx, tasks_ready_rx) = std::sync::mpsc::channel::<()>();
        let mut tasks_started = 0usize;
        for listener in tcp_listeners {
            let listener = {
                let _guard = runtime.enter();
                tokio::net::TcpListener::from_std(listener).map_err(StartError::Io)?
            };
            runtime.spawn(tcp::serve(
                listener,
                shared.clone(),
                config.tcp,
                tasks_ready_tx.clone(),
            ));
            tasks_started += 1;
        }
        runtime.spawn(watch_files(
            shared.clone(),
            config.reload_interval,
            tasks_ready_tx.clone(),
        ));
        tasks_started += 1;
        let mut metrics_address = None;
        if let Some(address) = config.metrics_listen {
            let listener = {
                let _guard = runtime.enter();
                runtime
                    .block_on(tokio::net::TcpListener::bind(address))
                    .map_err(|e| {
                        StartError::Io(io::Error::new(
                            e.kind(),
                            format!("cannot bind --metrics-listen {address}: {e}"),
                        ))
                    })?
            };
            let bound = listener.local_addr().map_err(StartError::Io)?;
            tracing::info!(address = %bound, "metrics at http://{bound}/metrics");
            metrics_address = Some(bound);
            runtime.spawn(metrics::serve(listener, shared.clone()));
        }
        let mut workers = Vec::new();
        if let SnapshotSource::Url { poll, .. } = &config.snapshot {
            let shared = shared.clone();
            let poll = *poll;
            workers.push(
                std::thread::Builder::new()
                    .name("timepool-follow".into())
                    .spawn(move || follow_control_plane(&shared, poll))
                    .map_err(StartError::Io)?,
            );
        }

        let cpus = allowed_cpus();
        // Start returns once every worker is ready (its buffers and
        // per-thread state set up), so serving never waits on a late thread
        // and nothing is allocated after start on the UDP path.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let worker_count = udp_sockets.len();
        for (i, socket) in udp_sockets.into_iter().enumerate() {
            let ready_tx = ready_tx.clone();
            let shared = shared.clone();
            let settings = config.udp;
            let cpu = (config.pin_workers && !cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let handle = std::thread::Builder::new()
                .name(format!("timepool-udp-{i}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to_cpu(cpu);
                    }
                    let mut responder = udp::DnsResponder::new(shared.clone(), i);
                    let response_size = usize::from(shared.answer_config.edns_max_payload);
                    udp::run_worker(
                        socket,
                        &mut responder,
                        &shared.stopping,
                        &shared.counters,
                        settings,
                        response_size,
                        i,
                        move || {
                            let _ = ready_tx.send(());
                        },
                    )
                })
                .map_err(StartError::Io)?;
            workers.push(handle);
        }
        drop(ready_tx);
        drop(tasks_ready_tx);
        for _ in 0..tasks_started {
            if tasks_ready_rx
                .recv_timeout(Duration::from_secs(30))
                .is_err()
            {
                tracing::warn!("a TCP or watcher task was not ready after 30 s; serving anyway");
                break;
            }
        }
        for _ in 0..worker_count {
            if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
                tracing::warn!("a UDP worker was not ready after 30 s; serving anyway");
                break;
            }
        }
        for address in &udp_addresses {
            tracing::info!(%address, workers = threads, "listening on UDP and TCP");
        }
        Ok(DnsServer {
            shared,
            metrics_address,
            udp_addresses,
            tcp_addresses,
            workers,
            runtime: Some(runtime),
        })
    }

    pub fn udp_addresses(&self) -> &[SocketAddr] {
        &self.udp_addresses
    }

    pub fn tcp_addresses(&self) -> &[SocketAddr] {
        &self.tcp_addresses
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Run a future on the daemon's runtime (the binary waits for signals
    /// this way).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> Option<F::Output> {
        self.runtime
            .as_ref()
            .map(|runtime| runtime.block_on(future))
    }

    /// Stop the workers and the TCP listener and wait for them.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Why the daemon could not start.
#[derive(Debug)]
pub enum StartError {
    Snapshot(SnapshotError),
    Geo(GeoError),
    Io(io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Snapshot(error) => write!(f, "{error}"),
            StartError::Geo(error) => write!(f, "{error}"),
            StartError::Io(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// What identifies a version of the snapshot file: a rename gives a new
/// inode, a rewrite a new modification time or length.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileVersion {
    inode: u64,
    length: u64,
    modified: Option<SystemTime>,
}

fn file_version(path: &std::path::Path) -> Option<FileVersion> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileVersion {
        inode: metadata.ino(),
        length: metadata.len(),
        modified: metadata.modified().ok(),
    })
}

/// Poll the snapshot and GeoIP files and reload whichever changed. A bad
/// file is logged once per change and the table in use keeps serving.
async fn watch_files(shared: Arc<Shared>, interval: Duration, ready: std::sync::mpsc::Sender<()>) {
    let snapshot_path = match &shared.source {
        Source::File(path) => Some(path.clone()),
        Source::Url(_) => None,
    };
    let mut snapshot_seen = snapshot_path.as_deref().and_then(file_version);
    let mut geoip_seen = shared.geoip_path.as_deref().and_then(file_version);
    // The files were just loaded: the first check is one interval away
    // (tokio's plain `interval` would tick at once).
    let period = interval.max(Duration::from_millis(50));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let _ = ready.send(());
    drop(ready);
    loop {
        ticker.tick().await;
        let current = snapshot_path.as_deref().and_then(file_version);
        if current != snapshot_seen && current.is_some() {
            // Let a writer that is not renaming into place finish.
            tokio::time::sleep(Duration::from_millis(20)).await;
            snapshot_seen = snapshot_path.as_deref().and_then(file_version);
            let reloading = shared.clone();
            match tokio::task::spawn_blocking(move || reloading.reload()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!(
                    %error,
                    serial = shared.serial(),
                    "snapshot rejected; still serving the previous one"
                ),
                Err(error) => tracing::error!(%error, "snapshot reload task failed"),
            }
        }
        let current = shared.geoip_path.as_deref().and_then(file_version);
        if current != geoip_seen && current.is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            geoip_seen = shared.geoip_path.as_deref().and_then(file_version);
            let reloading = shared.clone();
            match tokio::task::spawn_blocking(move || reloading.reload_geoip()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(
                    %error,
                    "GeoIP database rejected; still using the previous one"
                ),
                Err(error) => tracing::error!(%error, "GeoIP reload task failed"),
            }
        }
    }
}

/// The first table and the running source. Following a URL, the start
/// pulls once; when that fails it loads the cache file, so a node can
/// start while the control plane is down. The flag says whether the pull
/// succeeded.
fn initial_snapshot(source: &SnapshotSource) -> Result<(ZoneTable, Source, bool), StartError> {
    match source {
        SnapshotSource::File(path) => {
            let table = snapshot::load_file(path).map_err(StartError::Snapshot)?;
            Ok((table, Source::File(path.clone()), false))
        }
        SnapshotSource::Url {
            url,
            cache,
            timeout,
            ..
        } => {
            let follower = follow::Follower::new(url, cache.clone(), *timeout);
            match follower.fetch() {
                Ok(follow::Fetched::New { bytes, table }) => {
                    follower.write_cache(&bytes);
                    Ok((*table, Source::Url(follower), true))
                }
                Ok(follow::Fetched::NotModified) => Err(StartError::Io(io::Error::other(format!(
                    "{url}: 304 without a conditional request"
                )))),
                Err(error) => {
                    let Some(cache) = cache else {
                        return Err(StartError::Io(io::Error::other(format!(
                            "cannot pull the snapshot and no --snapshot-cache: {error}"
                        ))));
                    };
                    tracing::warn!(%error, cache = %cache.display(), "control plane unreachable at start; serving the cached snapshot");
                    let table = snapshot::load_file(cache).map_err(StartError::Snapshot)?;
                    Ok((table, Source::Url(follower), false))
                }
            }
        }
    }
}

/// The follower thread: pull every `poll` until the daemon stops. Failures
/// are logged when they start (and every 20th after), recovery once.
fn follow_control_plane(shared: &Shared, poll: Duration) {
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

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is a plain bit set; zero is a valid value, and
    // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: as above; the set names one CPU and applies to this thread.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if result != 0 {
        tracing::warn!(cpu, error = %io::Error::last_os_error(), "cannot pin UDP worker");
    }
}

/// Run the benchmark's null reflector on `address` until `stopping` is set:
/// the same sockets and recvmmsg/sendmmsg loop as the DNS workers, echoing
/// each query with QR set. Returns the address bound.
pub fn start_reflector(
    address: SocketAddr,
    threads: usize,
    settings: UdpSettings,
    stopping: Arc<AtomicBool>,
) -> io::Result<(SocketAddr, Vec<JoinHandle<()>>)> {
    let sockets = udp::bind_sockets(address, threads.max(1), &settings)?;
    let bound = sockets[0].local_addr()?;
    let counters = Arc::new(Counters::default());
    let mut workers = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let stopping = stopping.clone();
        let counters = counters.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("timepool-reflect-{i}"))
                .spawn(move || {
                    udp::run_worker(
                        socket,
                        &mut udp::Reflector,
                        &stopping,
                        &counters,
                        settings,
                        udp::MAX_QUERY_SIZE,
                        i,
                        || {},
                    )
                })?,
        );
    }
    Ok((bound, workers))
}

/// Bind the UDP sockets and the TCP listener of one listen address, on one
/// port. With port 0 the kernel picks a free UDP port, and that port may be
/// taken for TCP (by another listener or a client's ephemeral connection):
/// then try another pick rather than fail, a few times.
fn bind_udp_and_tcp(
    address: SocketAddr,
    threads: usize,
    settings: &UdpSettings,
) -> std::io::Result<(Vec<std::net::UdpSocket>, std::net::TcpListener)> {
    const EPHEMERAL_ATTEMPTS: usize = 20;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sockets = udp::bind_sockets(address, threads, settings)?;
        let bound = sockets[0].local_addr()?;
        match tcp::bind_listener(bound) {
            Ok(listener) => return Ok((sockets, listener)),
            Err(error)
                if address.port() == 0
                    && error.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < EPHEMERAL_ATTEMPTS =>
            {
                continue;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Raise the soft limit on open files to the hard limit: every TCP
/// connection is a descriptor, and the usual soft limit of 1024 would cap
/// the connection limit below what the operator configured.
fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a
    // live, initialised rlimit.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!(error = %io::Error::last_os_error(), "cannot raise the open file limit");
            }
        }
    }
}
