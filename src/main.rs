//! The `timepool` command: one binary, one subcommand per role. Which
//! subcommands a build has follows its cargo features (`dns`, `control`,
//! `monitor`; `demo` needs all three): a DNS node built with
//! `--no-default-features --features dns` has `dns` and `check-snapshot`
//! and links none of the control plane.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[cfg(feature = "control")]
mod bench;

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
    #[cfg(feature = "dns")]
    Dns(Box<timepool::dns::cli::DnsArgs>),
    /// Validate a snapshot file and print every problem with its JSON path.
    #[cfg(feature = "dns")]
    CheckSnapshot {
        /// The snapshot file (JSON, format v1).
        file: std::path::PathBuf,
        /// Check FILE.sig against this Ed25519 public key first; repeat
        /// for several.
        #[arg(long = "public-key")]
        public_keys: Vec<std::path::PathBuf>,
    },
    /// Run the control plane's web app.
    #[cfg(feature = "control")]
    Web(Box<timepool::control::web::WebArgs>),
    /// Staff tasks from the command line.
    #[cfg(feature = "control")]
    Admin {
        #[command(subcommand)]
        command: timepool::control::web::admin::AdminCommand,
    },
    /// Build the zone snapshot from the database and publish it to a file
    /// (atomically; unchanged content keeps its serial). For cron.
    #[cfg(feature = "control")]
    BuildZones(timepool::control::zone_builder::BuildZonesArgs),
    /// Run a monitoring agent: check the servers the control plane hands
    /// out and report the results.
    #[cfg(feature = "monitor")]
    Monitor(timepool::monitor::agent::MonitorArgs),
    /// The whole pool on this machine: the web app on SQLite, simulated NTP
    /// servers, two monitors, the zone builder and the DNS daemon with the
    /// bundled test GeoIP database.
    #[cfg(all(feature = "dns", feature = "control", feature = "monitor"))]
    Demo(timepool::demo::DemoArgs),
    /// Benchmarks: write a pool-sized snapshot of made-up servers in the
    /// countries of a GeoIP database, and a sample network per country.
    #[cfg(feature = "control")]
    #[command(hide = true)]
    BenchSnapshot {
        #[arg(long)]
        geoip: std::path::PathBuf,
        #[arg(long, default_value_t = 3000)]
        servers: usize,
        /// Country zones (the countries of the database, by code).
        #[arg(long, default_value_t = 243)]
        countries: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: std::path::PathBuf,
        /// Where to write "COUNTRY IPV4/PREFIX IPV6/PREFIX" lines.
        #[arg(long)]
        clients: std::path::PathBuf,
    },
    /// Benchmark baseline: echo every UDP query with QR set, using the
    /// DNS workers' own recvmmsg/sendmmsg loop (scripts/bench-dns.sh).
    #[cfg(feature = "dns")]
    #[command(hide = true)]
    BenchReflector {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread: what this process creates (databases, keys,
    // snapshots, caches) is its owner's alone.
    timepool::shared::process::restrict_new_files();
    // The demo prints a table at start; the monitors' line per batch would
    // push it off the screen.
    let default_filter = match cli.command {
        #[cfg(all(feature = "dns", feature = "control", feature = "monitor"))]
        Command::Demo(_) => "info,timepool::monitor::agent=warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_filter);
    match cli.command {
        #[cfg(feature = "dns")]
        Command::Dns(args) => timepool::dns::cli::run_dns(*args),
        #[cfg(feature = "dns")]
        Command::CheckSnapshot { file, public_keys } => {
            timepool::dns::cli::check_snapshot(&file, &public_keys)
        }
        #[cfg(feature = "dns")]
        Command::BenchReflector {
            listen,
            threads,
            batch,
        } => report(
            "bench-reflector",
            timepool::dns::server::reflector::run(listen, threads, batch),
        ),
        #[cfg(feature = "control")]
        Command::Web(args) => run_async(timepool::control::web::run(*args)),
        #[cfg(feature = "control")]
        Command::Admin { command } => run_async(timepool::control::web::admin::run_admin(command)),
        #[cfg(feature = "control")]
        Command::BuildZones(args) => {
            run_async(timepool::control::zone_builder::build_zones_command(args))
        }
        #[cfg(feature = "control")]
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
            Err(error) => report("bench-snapshot", Err(error)),
        },
        #[cfg(feature = "monitor")]
        Command::Monitor(args) => run_async(timepool::monitor::agent::run(args)),
        #[cfg(all(feature = "dns", feature = "control", feature = "monitor"))]
        Command::Demo(args) => report("demo", timepool::demo::run(args)),
    }
}

/// Exit status of a command that returns its error: printed with the
/// command's name.
#[allow(dead_code, reason = "not every feature set has such a command")]
fn report<E: std::fmt::Display>(command: &str, outcome: Result<(), E>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("timepool {command}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Run an async command (control plane, monitor) on a tokio runtime.
#[allow(dead_code, reason = "a DNS-only build has no async command")]
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
