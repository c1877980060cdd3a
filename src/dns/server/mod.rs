//! The DNS daemon's moving parts. This file starts and stops them
//! ([`DnsServer`]); each of the others has one job:
//!
//! - `state`: what they share (the tables behind arc-swap, counters) and
//!   the reload: read, validate, swap, or keep the table in use;
//! - `udp`: the UDP workers (SO_REUSEPORT, recvmmsg/sendmmsg batches);
//! - `tcp`: DNS over TCP on tokio;
//! - `watch`: the snapshot and GeoIP files, reloaded when they change;
//! - `trust`: what a snapshot must be to be taken: signed by a pinned
//!   key, valid, not older than the one served;
//! - `follow`: pulling the snapshot from a control plane (`--snapshot-url`);
//! - `metrics`: per-worker counters and the `/metrics` endpoint;
//! - `os`: CPU affinity and the open-file limit;
//! - `reflector`: the benchmark's null reflector on the same UDP loop.
//! - `xdp`: the AF_XDP fast path for UDP (`--xdp`): the program, its
//!   sockets and their workers, answering through the same responder.
//!
//! Architecture invariant: the server moves bytes between sockets and
//! [`crate::dns::answer`]; it decides no answer itself. It knows nothing
//! of the database or the web layer; it reads snapshots (files or HTTP
//! bodies) only through `trust`, which checks them with
//! `dns::zone::load_bytes`.

pub mod follow;
pub mod metrics;
mod os;
pub mod reflector;
pub mod state;
pub mod tcp;
pub mod trust;
pub mod udp;
mod watch;
pub mod xdp;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::dns::answer::AnswerConfig;
use crate::dns::cookie::CookieSecrets;
use crate::dns::rrl::RrlSettings;
use crate::shared::geo::{GeoError, GeoTable};
use crate::shared::snapshot::SnapshotError;

pub use follow::{PullClient, SnapshotSource};
pub use os::raise_open_file_limit;
pub use state::{Counters, ReloadError, Shared, reload_logged};
pub use tcp::TcpSettings;
pub use trust::SnapshotTrust;
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
    /// Which snapshots are taken: pinned keys, the serial rule.
    pub trust: SnapshotTrust,
    /// The MaxMind database; `None`: every client gets the global zone.
    pub geoip: Option<PathBuf>,
    /// How often the snapshot (and GeoIP) file is checked for a change.
    pub reload_interval: Duration,
    pub answer: AnswerConfig,
    pub udp: UdpSettings,
    pub tcp: TcpSettings,
    /// Serve Prometheus metrics at `http://ADDR/metrics`; `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// The DNS cookie secrets' file (reloaded when it changes); `None`: a
    /// random secret of this process.
    pub cookie_secret_file: Option<PathBuf>,
    /// Response rate limiting for UDP; `None`: off.
    pub rrl: Option<RrlSettings>,
    /// Serve UDP through AF_XDP on these interfaces (`--xdp`); `None`:
    /// sockets only.
    pub xdp: Option<xdp::XdpSettings>,
}

/// A running DNS daemon.
pub struct DnsServer {
    shared: Arc<Shared>,
    metrics_address: Option<SocketAddr>,
    udp_addresses: Vec<SocketAddr>,
    tcp_addresses: Vec<SocketAddr>,
    workers: Vec<JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    /// The XDP programs' links (their sockets went to the workers):
    /// dropped after the workers stop, which detaches the programs.
    _xdp_interfaces: Vec<xdp::XdpInterface>,
}

impl DnsServer {
    /// Load the snapshot, bind every socket, start the workers. Fails
    /// without serving anything if the snapshot is bad or a bind fails.
    pub fn start(config: DnsConfig) -> Result<DnsServer, StartError> {
        let counters = Counters::default();
        let (table, source, pulled_at_start) =
            follow::initial_snapshot(&config.snapshot, &config.trust, &counters.rejections)?;
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
        let cookies = match &config.cookie_secret_file {
            Some(path) => {
                let secrets = CookieSecrets::from_file(path).map_err(StartError::Config)?;
                warn_if_readable_by_others(path);
                secrets
            }
            None => CookieSecrets::random(),
        };
        if let Some(rrl) = &config.rrl {
            rrl.validate().map_err(StartError::Config)?;
        }
        let mut answer_config = config.answer.clone();
        answer_config.started_at = state::unix_now();
        os::raise_open_file_limit();
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
        let mut xdp_interfaces = match &config.xdp {
            Some(settings) => start_xdp(settings, &udp_addresses, &answer_config)?,
            None => Vec::new(),
        };
        let xdp_sockets: Vec<(String, u32, xdp::socket::XdpSocket)> = (xdp_interfaces.iter_mut())
            .flat_map(|interface| {
                let name = interface.name.clone();
                std::mem::take(&mut interface.sockets)
                    .into_iter()
                    .map(move |(queue, socket)| (name.clone(), queue, socket))
            })
            .collect();
        // Slots: the UDP workers', the XDP workers', then the TCP tasks'.
        let udp_worker_count = udp_sockets.len();
        let answering_workers = udp_worker_count + xdp_sockets.len();
        let xdp_queues = (xdp_sockets.iter())
            .map(|(interface, queue, socket)| {
                Ok(xdp::worker::XdpQueue {
                    interface: interface.clone(),
                    queue: *queue,
                    counters: xdp::worker::XdpCounters::default(),
                    statistics: socket.statistics_handle()?,
                })
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(StartError::Io)?;
        let shared = Arc::new(Shared {
            table: ArcSwap::from_pointee(table),
            geo: ArcSwap::from_pointee(geo),
            geoip_path: config.geoip.clone(),
            answer_config,
            stopping: AtomicBool::new(false),
            counters,
            worker_counters: (0..answering_workers + 1)
                .map(|_| metrics::WorkerCounters::default())
                .collect(),
            server_answers: metrics::ServerAnswers::new(answering_workers),
            xdp_queues: xdp_queues.into_boxed_slice(),
            loaded_at: AtomicU64::new(state::unix_now()),
            last_pull_ok: AtomicU64::new(match &source {
                state::Source::Url(_) if pulled_at_start => state::unix_now(),
                _ => 0,
            }),
            source,
            cookies: ArcSwap::from_pointee(cookies),
            cookie_secret_path: config.cookie_secret_file.clone(),
            rrl: config.rrl.clone(),
            trust: config.trust.clone(),
            reload_lock: std::sync::Mutex::new(()),
        });

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
        runtime.spawn(watch::watch_files(
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
                    .spawn(move || {
                        os::lower_this_thread_priority();
                        follow::follow_control_plane(&shared, poll)
                    })
                    .map_err(StartError::Io)?,
            );
        }

        let cpus = os::allowed_cpus();
        // Start returns once every worker is ready (its buffers and
        // per-thread state set up), so serving never waits on a late thread
        // and nothing is allocated after start on the UDP path.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let worker_count = answering_workers;
        // A client prefix can reach every worker of its address family, on
        // every listen address: they share its rate limit.
        let family_workers =
            |v6: bool| threads * (config.listen.iter()).filter(|a| a.is_ipv6() == v6).count();
        for (i, socket) in udp_sockets.into_iter().enumerate() {
            let sharing = family_workers(socket.local_addr().is_ok_and(|a| a.is_ipv6()));
            let ready_tx = ready_tx.clone();
            let shared = shared.clone();
            let settings = config.udp;
            let cpu = (config.pin_workers && !cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let handle = std::thread::Builder::new()
                .name(format!("timepool-udp-{i}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        os::pin_to_cpu(cpu);
                    }
                    let mut responder = udp::DnsResponder::new(shared.clone(), i, sharing);
                    let worker = udp::Worker {
                        socket,
                        stopping: &shared.stopping,
                        settings,
                        response_size: usize::from(shared.answer_config.edns_max_payload),
                        index: i,
                    };
                    udp::run_worker(worker, &mut responder, move || {
                        let _ = ready_tx.send(());
                    })
                })
                .map_err(StartError::Io)?;
            workers.push(handle);
        }
        // One worker per AF_XDP socket (per queue of each interface). A
        // client's datagrams reach every queue of its interface (the
        // sender's hash picks one per flow): those workers share its rate
        // limit.
        for (j, (interface, queue, mut socket)) in xdp_sockets.into_iter().enumerate() {
            let slot = udp_worker_count + j;
            let sharing = (shared.xdp_queues.iter())
                .filter(|q| q.interface == interface)
                .count();
            let ready_tx = ready_tx.clone();
            let shared = shared.clone();
            let cpu = (config.pin_workers && !cpus.is_empty()).then(|| cpus[slot % cpus.len()]);
            let handle = std::thread::Builder::new()
                .name(format!("timepool-xdp-{j}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        os::pin_to_cpu(cpu);
                    }
                    let mut responder = udp::DnsResponder::new(shared.clone(), slot, sharing);
                    let Some(counters) = shared.xdp_queues.get(j).map(|q| &q.counters) else {
                        return;
                    };
                    tracing::debug!(interface, queue, "AF_XDP worker serving");
                    xdp::worker::serve(
                        &mut socket,
                        &mut responder,
                        counters,
                        &shared.stopping,
                        move || {
                            let _ = ready_tx.send(());
                        },
                    );
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
            _xdp_interfaces: xdp_interfaces,
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

/// Attach the XDP program to `--xdp`'s interfaces, or say why not: a
/// refusal stops the start, unless `--xdp-fallback` asks to serve on the
/// sockets (already bound) alone.
fn start_xdp(
    settings: &xdp::XdpSettings,
    udp_addresses: &[SocketAddr],
    answer: &AnswerConfig,
) -> Result<Vec<xdp::XdpInterface>, StartError> {
    if usize::from(answer.edns_max_payload) > xdp::MAX_PAYLOAD {
        return Err(StartError::Config(format!(
            "--xdp sends unfragmented frames of 1514 bytes: --edns-max-payload {} must be at most {}",
            answer.edns_max_payload,
            xdp::MAX_PAYLOAD
        )));
    }
    let attached = xdp::setup::attach_all(settings, udp_addresses).and_then(|interfaces| {
        // A reply of --edns-max-payload bytes must fit the MTU (IPv6 and
        // UDP headers): XDP replies are never fragmented.
        let largest = usize::from(answer.edns_max_payload) + 48;
        match interfaces.iter().find(|i| (i.mtu as usize) < largest) {
            Some(small) => Err(format!(
                "--xdp {}: its MTU {} cannot carry replies of --edns-max-payload {} (at most {})",
                small.name,
                small.mtu,
                answer.edns_max_payload,
                (small.mtu as usize).saturating_sub(48)
            )),
            None => Ok(interfaces),
        }
    });
    match attached {
        Ok(interfaces) => {
            for interface in &interfaces {
                tracing::info!(
                    interface = interface.name,
                    ifindex = interface.ifindex,
                    mode = interface.mode,
                    queues = interface.sockets.len(),
                    copy = interface.sockets.iter().any(|(_, s)| s.copy_mode),
                    "serving UDP through AF_XDP"
                );
            }
            Ok(interfaces)
        }
        Err(error) if settings.fallback => {
            tracing::warn!("{error}; --xdp-fallback: serving UDP on sockets only");
            Ok(Vec::new())
        }
        Err(error) => Err(StartError::Config(format!(
            "{error}; give --xdp-fallback to serve on sockets instead"
        ))),
    }
}

/// Why the daemon could not start.
#[derive(Debug)]
pub enum StartError {
    Snapshot(SnapshotError),
    Geo(GeoError),
    Io(io::Error),
    /// A setting or a settings file is wrong (the text names it).
    Config(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Snapshot(error) => write!(f, "{error}"),
            StartError::Geo(error) => write!(f, "{error}"),
            StartError::Io(error) => write!(f, "{error}"),
            StartError::Config(error) => write!(f, "{error}"),
        }
    }
}

/// A secret file anyone on the host can read is worth a warning: with the
/// secret, anyone can make cookies that pass the rate limiter.
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", metadata.permissions().mode() & 0o777),
            "the cookie secret file is readable by others; chmod 600 it"
        );
    }
}

impl std::error::Error for StartError {}

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
        match tcp::bind_listener(bound, settings.freebind) {
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
