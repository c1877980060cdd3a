//! The DNS daemon's moving parts: UDP workers, the TCP listener, and the
//! reload of the zone table.
//!
//! Architecture invariant: the server moves bytes between sockets and
//! [`crate::answer`]; it decides no answer itself. It knows nothing of the
//! database or the web layer; it only reads snapshot files.

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
    pub snapshot: PathBuf,
    /// The MaxMind database; `None`: every client gets the global zone.
    pub geoip: Option<PathBuf>,
    /// How often the snapshot (and GeoIP) file is checked for a change.
    pub reload_interval: Duration,
    pub answer: AnswerConfig,
    pub udp: UdpSettings,
    pub tcp: TcpSettings,
}

/// Counters shared by the workers. Relaxed atomics on separate counters;
/// per-worker counters come with the metrics work.
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
    snapshot_path: PathBuf,
    geoip_path: Option<PathBuf>,
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

    /// Read, validate and swap in the snapshot file. On error the table in
    /// use is kept and the error returned (the caller logs it).
    pub fn reload(&self) -> Result<u32, SnapshotError> {
        match snapshot::load_file(&self.snapshot_path) {
            Ok(table) => {
                let serial = table.serial;
                let old = self.table.swap(Arc::new(table));
                self.counters.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    old_serial = old.serial,
                    serial,
                    file = %self.snapshot_path.display(),
                    "zone snapshot loaded"
                );
                // `old` is dropped here, on the reload thread, not on a
                // worker (a worker still holding a guard drops its copy
                // after its batch).
                Ok(serial)
            }
            Err(error) => {
                self.counters
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    pub fn serial(&self) -> u32 {
        self.table.load().serial
    }
}

/// A running DNS daemon.
pub struct DnsServer {
    shared: Arc<Shared>,
    udp_addresses: Vec<SocketAddr>,
    tcp_addresses: Vec<SocketAddr>,
    workers: Vec<JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl DnsServer {
    /// Load the snapshot, bind every socket, start the workers. Fails
    /// without serving anything if the snapshot is bad or a bind fails.
    pub fn start(config: DnsConfig) -> Result<DnsServer, StartError> {
        let table = snapshot::load_file(&config.snapshot).map_err(StartError::Snapshot)?;
        tracing::info!(
            serial = table.serial,
            file = %config.snapshot.display(),
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
            snapshot_path: config.snapshot.clone(),
        });
        raise_open_file_limit();
        let threads = config.threads.max(1);
        let mut udp_sockets = Vec::new();
        let mut udp_addresses = Vec::new();
        let mut tcp_listeners = Vec::new();
        let mut tcp_addresses = Vec::new();
        for &address in &config.listen {
            let sockets =
                udp::bind_sockets(address, threads, &config.udp).map_err(StartError::Io)?;
            let bound = sockets[0].local_addr().map_err(StartError::Io)?;
            // TCP on the same port as UDP, also when the port was 0.
            let listener = tcp::bind_listener(bound).map_err(StartError::Io)?;
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
        for listener in tcp_listeners {
            let listener = {
                let _guard = runtime.enter();
                tokio::net::TcpListener::from_std(listener).map_err(StartError::Io)?
            };
            runtime.spawn(tcp::serve(listener, shared.clone(), config.tcp));
        }
        runtime.spawn(watch_files(shared.clone(), config.reload_interval));

        let cpus = allowed_cpus();
        let mut workers = Vec::new();
        for (i, socket) in udp_sockets.into_iter().enumerate() {
            let shared = shared.clone();
            let settings = config.udp;
            let cpu = (config.pin_workers && !cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let handle = std::thread::Builder::new()
                .name(format!("timepool-udp-{i}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to_cpu(cpu);
                    }
                    let mut responder = udp::DnsResponder::new(shared.clone());
                    let response_size = usize::from(shared.answer_config.edns_max_payload);
                    udp::run_worker(
                        socket,
                        &mut responder,
                        &shared.stopping,
                        &shared.counters,
                        settings,
                        response_size,
                        i,
                    )
                })
                .map_err(StartError::Io)?;
            workers.push(handle);
        }
        for address in &udp_addresses {
            tracing::info!(%address, workers = threads, "listening on UDP and TCP");
        }
        Ok(DnsServer {
            shared,
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
async fn watch_files(shared: Arc<Shared>, interval: Duration) {
    let mut snapshot_seen = file_version(&shared.snapshot_path);
    let mut geoip_seen = shared.geoip_path.as_deref().and_then(file_version);
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(50)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let current = file_version(&shared.snapshot_path);
        if current != snapshot_seen && current.is_some() {
            // Let a writer that is not renaming into place finish.
            tokio::time::sleep(Duration::from_millis(20)).await;
            snapshot_seen = file_version(&shared.snapshot_path);
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
                    )
                })?,
        );
    }
    Ok((bound, workers))
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
