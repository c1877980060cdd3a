//! The `timepool` command: one binary, one subcommand per role.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod bench;

use timepool::answer::{AnswerConfig, NsidOption};
use timepool::server::{DnsConfig, DnsServer, SnapshotSource, TcpSettings, UdpSettings};
use timepool::snapshot::{self, SnapshotError};

#[derive(Parser)]
#[command(
    name = "timepool",
    version,
    about = "The serving system of a public NTP pool"
)]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TIMEPOOL_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the authoritative DNS daemon.
    Dns(DnsArgs),
    /// Run the control plane's web app.
    Web(timepool::web::WebArgs),
    /// Run a monitoring agent: check the servers the control plane hands
    /// out and report the results.
    Monitor(timepool::agent::MonitorArgs),
    /// The whole pool on this machine: the web app on SQLite, simulated NTP
    /// servers, two monitors, the zone builder and the DNS daemon with the
    /// bundled test GeoIP database.
    Demo(timepool::demo::DemoArgs),
    /// Staff tasks from the command line.
    Admin {
        #[command(subcommand)]
        command: timepool::web::admin::AdminCommand,
    },
    /// Build the zone snapshot from the database and publish it to a file
    /// (atomically; unchanged content keeps its serial). For cron.
    BuildZones(timepool::web::zonebuilder::BuildZonesArgs),
    /// Validate a snapshot file and print every problem with its JSON path.
    CheckSnapshot {
        /// The snapshot file (JSON, format v1).
        file: PathBuf,
    },
    /// Benchmarks: write a pool-sized snapshot of made-up servers in the
    /// countries of a GeoIP database, and a sample network per country.
    #[command(hide = true)]
    BenchSnapshot {
        #[arg(long)]
        geoip: PathBuf,
        #[arg(long, default_value_t = 3000)]
        servers: usize,
        /// Country zones (the countries of the database, by code).
        #[arg(long, default_value_t = 243)]
        countries: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// Where to write "COUNTRY IPV4/PREFIX IPV6/PREFIX" lines.
        #[arg(long)]
        clients: PathBuf,
    },
    /// Benchmark baseline: echo every UDP query with QR set, using the
    /// DNS workers' own recvmmsg/sendmmsg loop (scripts/bench-dns.sh).
    #[command(hide = true)]
    BenchReflector {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
}

#[derive(Args)]
struct DnsArgs {
    /// Address to serve UDP and TCP on; repeat for several (IPv4 and IPv6).
    #[arg(
        long,
        required = true,
        env = "TIMEPOOL_DNS_LISTEN",
        value_delimiter = ','
    )]
    listen: Vec<SocketAddr>,
    /// The zone snapshot file; reloaded when it changes and on SIGHUP.
    #[arg(
        long,
        env = "TIMEPOOL_SNAPSHOT",
        required_unless_present = "snapshot_url",
        conflicts_with = "snapshot_url"
    )]
    snapshot: Option<PathBuf>,
    /// Follow a control plane: poll its snapshot
    /// (http://HOST:PORT/api/v1/snapshot) with If-None-Match, swap on
    /// change, keep serving the last good one when it is unreachable.
    #[arg(long, env = "TIMEPOOL_SNAPSHOT_URL")]
    snapshot_url: Option<String>,
    /// With --snapshot-url: where to keep the last good snapshot (replaced
    /// atomically), loaded at start when the control plane is down.
    #[arg(long, env = "TIMEPOOL_SNAPSHOT_CACHE", requires = "snapshot_url")]
    snapshot_cache: Option<PathBuf>,
    /// With --snapshot-url: seconds between polls.
    #[arg(long, default_value_t = 3.0)]
    snapshot_poll: f64,
    /// With --snapshot-url: seconds a whole request may take.
    #[arg(long, default_value_t = 10.0)]
    snapshot_timeout: f64,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9153).
    #[arg(long, env = "TIMEPOOL_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// MaxMind GeoLite2/GeoIP2 Country or City database (.mmdb). Default:
    /// /var/lib/GeoIP/GeoLite2-Country.mmdb or
    /// /usr/share/GeoIP/GeoLite2-Country.mmdb when present; with none,
    /// every client is served the global zone. Reloaded when it changes.
    #[arg(long, env = "TIMEPOOL_GEOIP")]
    geoip: Option<PathBuf>,
    /// UDP worker threads per listen address (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Pin UDP worker i to CPU i.
    #[arg(long)]
    pin_workers: bool,
    /// Packets per recvmmsg/sendmmsg call.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// SO_RCVBUF of the UDP sockets, bytes (default: the system's).
    #[arg(long)]
    udp_recv_buffer: Option<usize>,
    /// SO_SNDBUF of the UDP sockets, bytes (default: the system's).
    #[arg(long)]
    udp_send_buffer: Option<usize>,
    /// Seconds between checks of the snapshot file for a change.
    #[arg(long, default_value_t = 1.0)]
    reload_interval: f64,
    /// Close a TCP connection idle for this many seconds.
    #[arg(long, default_value_t = 10.0)]
    tcp_idle_timeout: f64,
    /// TCP connections served at once.
    #[arg(long, default_value_t = 4096)]
    tcp_max_connections: usize,
    /// Answer to CH TXT id.server and hostname.bind (unset: REFUSED).
    #[arg(long, env = "TIMEPOOL_IDENTITY")]
    identity: Option<String>,
    /// Answer to CH TXT version.server and version.bind (unset: REFUSED).
    #[arg(long)]
    version_string: Option<String>,
    /// NSID (RFC 5001) sent to clients that ask for it.
    #[arg(long, env = "TIMEPOOL_NSID")]
    nsid: Option<String>,
    /// Smallest UDP payload size honoured (RFC 6891: values below 512 are 512).
    #[arg(long, default_value_t = 512)]
    edns_min_payload: u16,
    /// Largest UDP payload size used, whatever the client offers.
    #[arg(long, default_value_t = 1232)]
    edns_max_payload: u16,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints a table at start; the monitors' line per batch would
    // push it off the screen.
    let default_filter = match cli.command {
        Command::Demo(_) => "info,timepool::agent=warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_filter);
    match cli.command {
        Command::Dns(args) => run_dns(args),
        Command::Web(args) => run_async(timepool::web::run(args)),
        Command::Demo(args) => match timepool::demo::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("timepool demo: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Monitor(args) => run_async(timepool::agent::run(args)),
        Command::Admin { command } => run_async(timepool::web::admin::run_admin(command)),
        Command::BuildZones(args) => {
            run_async(timepool::web::zonebuilder::build_zones_command(args))
        }
        Command::CheckSnapshot { file } => check_snapshot(&file),
        Command::BenchSnapshot {
            geoip,
            servers,
            countries,
            seed,
            out,
            clients,
        } => match bench::write_snapshot(&geoip, servers, countries, seed, &out, &clients) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("timepool bench-snapshot: {error}");
                ExitCode::FAILURE
            }
        },
        Command::BenchReflector {
            listen,
            threads,
            batch,
        } => run_reflector(listen, threads, batch),
    }
}

/// Run a control-plane command on a tokio runtime.
fn run_async<E: std::fmt::Display>(
    command: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("timepool: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("timepool: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn check_snapshot(file: &std::path::Path) -> ExitCode {
    match snapshot::load_file(file) {
        Ok(table) => {
            println!(
                "{}: valid, serial {}, {} servers, {} zones, {} origin(s)",
                file.display(),
                table.serial,
                table.servers.len(),
                table.zones.len(),
                table.origins.len()
            );
            ExitCode::SUCCESS
        }
        Err(SnapshotError::Invalid { source, problems }) => {
            println!("{source}: {} problem(s)", problems.len());
            for problem in problems {
                println!("{problem}");
            }
            ExitCode::FAILURE
        }
        Err(error) => {
            println!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(value: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("{what}: {value} is not a duration"))
}

fn run_dns(args: DnsArgs) -> ExitCode {
    let config = match dns_config(args) {
        Ok(config) => config,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let server = match DnsServer::start(config) {
        Ok(server) => server,
        Err(error) => {
            tracing::error!("cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shared = server.shared().clone();
    let outcome = server.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut hangup), Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return Err("cannot install signal handlers".to_string());
        };
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the snapshot");
                    let reloading = shared.clone();
                    match tokio::task::spawn_blocking(move || reloading.reload()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => tracing::error!(%error, serial = shared.serial(), "snapshot rejected; still serving the previous one"),
                        Err(error) => tracing::error!(%error, "reload task failed"),
                    }
                }
                _ = terminate.recv() => return Ok(()),
                _ = interrupt.recv() => return Ok(()),
            }
        }
    });
    tracing::info!("stopping");
    server.shutdown();
    match outcome {
        Some(Err(message)) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

fn dns_config(args: DnsArgs) -> Result<DnsConfig, String> {
    if args.edns_min_payload > args.edns_max_payload {
        return Err(format!(
            "--edns-min-payload {} is above --edns-max-payload {}",
            args.edns_min_payload, args.edns_max_payload
        ));
    }
    if args.edns_max_payload < 512 {
        return Err("--edns-max-payload must be at least 512".into());
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let bytes = |text: Option<String>| text.map(|t| t.into_bytes().into_boxed_slice());
    let snapshot = match (args.snapshot, args.snapshot_url) {
        (_, Some(url)) => SnapshotSource::Url {
            url,
            cache: args.snapshot_cache,
            poll: seconds(args.snapshot_poll, "--snapshot-poll")?,
            timeout: seconds(args.snapshot_timeout, "--snapshot-timeout")?,
        },
        (Some(file), None) => SnapshotSource::File(file),
        (None, None) => return Err("give --snapshot FILE or --snapshot-url URL".into()),
    };
    Ok(DnsConfig {
        metrics_listen: args.metrics_listen,
        listen: args.listen,
        threads,
        pin_workers: args.pin_workers,
        snapshot,
        geoip: args.geoip.or_else(default_geoip),
        reload_interval: seconds(args.reload_interval, "--reload-interval")?,
        answer: AnswerConfig {
            identity: bytes(args.identity),
            version: bytes(args.version_string),
            nsid: args
                .nsid
                .map(|nsid| NsidOption::new(nsid.as_bytes()).map_err(|e| format!("--nsid: {e}")))
                .transpose()?,
            edns_min_payload: args.edns_min_payload,
            edns_max_payload: args.edns_max_payload,
        },
        udp: UdpSettings {
            batch: args.batch,
            recv_buffer: args.udp_recv_buffer,
            send_buffer: args.udp_send_buffer,
        },
        tcp: TcpSettings {
            idle_timeout: seconds(args.tcp_idle_timeout, "--tcp-idle-timeout")?,
            max_connections: args.tcp_max_connections.max(1),
        },
    })
}

fn run_reflector(listen: SocketAddr, threads: usize, batch: usize) -> ExitCode {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stopping = Arc::new(AtomicBool::new(false));
    let settings = UdpSettings {
        batch,
        recv_buffer: None,
        send_buffer: None,
    };
    let (bound, workers) =
        match timepool::server::start_reflector(listen, threads, settings, stopping.clone()) {
            Ok(started) => started,
            Err(error) => {
                tracing::error!("cannot start the reflector: {error}");
                return ExitCode::FAILURE;
            }
        };
    tracing::info!(address = %bound, "null reflector listening");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
    });
    stopping.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    ExitCode::SUCCESS
}

/// Where geoipupdate and Debian's packages put the GeoLite2 Country file.
const DEFAULT_GEOIP_PATHS: [&str; 2] = [
    "/var/lib/GeoIP/GeoLite2-Country.mmdb",
    "/usr/share/GeoIP/GeoLite2-Country.mmdb",
];

fn default_geoip() -> Option<PathBuf> {
    DEFAULT_GEOIP_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}
