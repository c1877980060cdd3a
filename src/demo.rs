//! `timepool demo`: the whole pool on one machine, on embedded defaults.
//!
//! Every part is the real one, wired together in one process: the web app
//! and its zone builder on SQLite in the data directory, two monitor agents
//! talking to the ingest API over HTTP, the DNS daemon following the
//! control plane's `/api/v1/snapshot`, and the bundled test GeoIP database.
//! Only the NTP servers are simulated: the project's test responder on
//! 127.0.0.x (and ::1), each told to keep good time, to be 200 ms or 5 s
//! off, to send Kiss-o'-Death or to stay silent. The monitors check them and
//! the pool's scoring decides: the healthy ones reach a score of 10 and are
//! published, the others never are.
//!
//! Time runs faster than in the pool: a monitor checks each server every
//! few seconds instead of every 9 minutes (the web app's check schedule is
//! a setting), so the healthy servers are in DNS within about two minutes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::agent::MonitorArgs;
use crate::answer::AnswerConfig;
use crate::db::ingest::CheckSchedule;
use crate::db::servers::NewServer;
use crate::db::{Db, audit, monitors, servers};
use crate::ntp::packet::KissCode;
use crate::ntp::responder::{Behaviour, Responder};
use crate::server::{DnsConfig, DnsServer, SnapshotSource, TcpSettings, UdpSettings};
use crate::web::zonebuilder::Schedule;
use crate::web::{BoxError, PublishSettings, Settings};

/// The pool's DNS origin in the demo.
pub const ORIGIN: &str = "pool.ntp.org";
/// The file in the data directory that marks it as the demo's and keeps
/// the logins and monitor tokens (stored only hashed in the database).
const STATE_FILE: &str = "demo-state.json";
const STATE_VERSION: u32 = 1;

/// `timepool demo` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where the demo keeps its database, snapshot and logins.
    #[arg(long, default_value = "demo-data")]
    pub data_dir: PathBuf,
    /// Start from scratch: delete the data directory's demo data first
    /// (new database, new passwords). Without it, a second run reuses the
    /// data of the first (same logins, the servers keep their scores).
    #[arg(long)]
    pub reset: bool,
    /// The web app's address [default: 127.0.0.1:8080, or a free port
    /// when that one is taken].
    #[arg(long)]
    pub web_listen: Option<SocketAddr>,
    /// The DNS daemon's address, UDP and TCP [default: 127.0.0.1:5353, or
    /// a free port when that one is taken].
    #[arg(long)]
    pub dns_listen: Option<SocketAddr>,
    /// The DNS daemon's Prometheus metrics [default: 127.0.0.1:9153, or a
    /// free port when that one is taken].
    #[arg(long)]
    pub dns_metrics_listen: Option<SocketAddr>,
    /// Seconds between two checks of a server by one monitor (the pool: 540).
    #[arg(long, default_value_t = 5)]
    pub check_interval_secs: i64,
    /// The UDP port of the simulated NTP servers [default: one free on
    /// every simulated address].
    #[arg(long)]
    pub ntp_port: Option<u16>,
}

/// One simulated NTP server.
#[derive(Clone, Copy, Debug)]
pub struct SimulatedServer {
    pub address: IpAddr,
    /// The zone its operator chose (loopback has no GeoIP location).
    pub zone: &'static str,
    pub netspeed: i64,
    pub behaviour: Behaviour,
    /// What it simulates, for the table.
    pub simulates: &'static str,
    /// Whether the pool's rules let it into DNS.
    pub expected_in_dns: bool,
    /// Index into the operators (0: alice, 1: bob).
    pub operator: usize,
}

const HEALTHY: Behaviour = Behaviour::Offset {
    offset: 0.0,
    stratum: 2,
};

/// The simulated servers: 26 healthy ones in 10 countries on 6 continents
/// (one of them IPv6), and 5 that the scoring must keep out.
pub fn simulated_servers() -> Vec<SimulatedServer> {
    let healthy_v4: [(&str, i64); 25] = [
        ("de", 100_000),
        ("de", 50_000),
        ("de", 25_000),
        ("de", 12_000),
        ("de", 3_000),
        ("fr", 50_000),
        ("fr", 12_000),
        ("fr", 1_500),
        ("uk", 25_000),
        ("uk", 10_000),
        ("uk", 3_000),
        ("us", 250_000),
        ("us", 100_000),
        ("us", 25_000),
        ("us", 6_000),
        ("ca", 12_000),
        ("jp", 50_000),
        ("jp", 25_000),
        ("jp", 3_000),
        ("au", 25_000),
        ("au", 6_000),
        ("br", 12_000),
        ("br", 3_000),
        ("za", 6_000),
        ("nz", 1_500),
    ];
    let mut list = Vec::new();
    let mut next_host = 2u8;
    let mut v4 = || {
        let address = IpAddr::V4(Ipv4Addr::new(127, 0, 0, next_host));
        next_host += 1;
        address
    };
    for (i, (zone, netspeed)) in healthy_v4.iter().enumerate() {
        list.push(SimulatedServer {
            address: v4(),
            zone,
            netspeed: *netspeed,
            behaviour: HEALTHY,
            simulates: "healthy",
            expected_in_dns: true,
            operator: usize::from(i % 4 == 3),
        });
    }
    list.push(SimulatedServer {
        address: IpAddr::V6(Ipv6Addr::LOCALHOST),
        zone: "de",
        netspeed: 25_000,
        behaviour: HEALTHY,
        simulates: "healthy (IPv6)",
        expected_in_dns: true,
        operator: 0,
    });
    let bad = [
        (
            "de",
            Behaviour::Offset {
                offset: 0.2,
                stratum: 2,
            },
            "200 ms ahead (score stays near 5)",
        ),
        (
            "us",
            Behaviour::Offset {
                offset: -0.2,
                stratum: 2,
            },
            "200 ms behind (score stays near 5)",
        ),
        (
            "jp",
            Behaviour::Offset {
                offset: 5.0,
                stratum: 2,
            },
            "5 s ahead (score capped at -20)",
        ),
        (
            "fr",
            Behaviour::Kod(KissCode::Deny),
            "Kiss-o'-Death DENY (capped at -50)",
        ),
        ("uk", Behaviour::Silent, "silent (no reply)"),
    ];
    for (i, (zone, behaviour, simulates)) in bad.into_iter().enumerate() {
        list.push(SimulatedServer {
            address: v4(),
            zone,
            netspeed: 25_000,
            behaviour,
            simulates,
            expected_in_dns: false,
            operator: i % 2,
        });
    }
    list
}

/// A login the demo created.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Login {
    pub role: String,
    pub email: String,
    pub password: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct MonitorLogin {
    name: String,
    token: String,
}

/// What the demo keeps between runs besides the database.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DemoState {
    version: u32,
    logins: Vec<Login>,
    monitors: Vec<MonitorLogin>,
}

/// The demo's settings (the flags, or a test's).
#[derive(Clone, Debug)]
pub struct DemoConfig {
    pub data_dir: PathBuf,
    pub reset: bool,
    pub web_listen: SocketAddr,
    pub dns_listen: SocketAddr,
    pub dns_metrics_listen: Option<SocketAddr>,
    pub check_interval_secs: i64,
    pub ntp_port: Option<u16>,
}

/// The demo's usual ports, when free.
const DEFAULT_WEB: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
const DEFAULT_DNS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5353);
const DEFAULT_DNS_METRICS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9153);

/// `address` given on the command line, else `usual` when it is free (for
/// TCP, and UDP too for DNS), else the same address with port 0: another
/// service on the machine (mDNS on 5353, a web server on 8080) must not
/// stop the demo. The banner prints the ports in use.
fn free_or_any(address: Option<SocketAddr>, usual: SocketAddr, udp_too: bool) -> SocketAddr {
    if let Some(address) = address {
        return address;
    }
    let tcp_free = std::net::TcpListener::bind(usual).is_ok();
    let udp_free = !udp_too || UdpSocket::bind(usual).is_ok();
    if tcp_free && udp_free {
        usual
    } else {
        tracing::warn!("{usual} is taken: the demo uses a free port instead (see the banner)");
        SocketAddr::new(usual.ip(), 0)
    }
}

impl From<&DemoArgs> for DemoConfig {
    fn from(args: &DemoArgs) -> DemoConfig {
        DemoConfig {
            data_dir: args.data_dir.clone(),
            reset: args.reset,
            web_listen: free_or_any(args.web_listen, DEFAULT_WEB, false),
            dns_listen: free_or_any(args.dns_listen, DEFAULT_DNS, true),
            dns_metrics_listen: Some(free_or_any(
                args.dns_metrics_listen,
                DEFAULT_DNS_METRICS,
                false,
            )),
            check_interval_secs: args.check_interval_secs,
            ntp_port: args.ntp_port,
        }
    }
}

/// The running demo. `stop` ends every part; dropping it without `stop`
/// ends them too, less politely.
pub struct Demo {
    runtime: tokio::runtime::Runtime,
    dns: Option<DnsServer>,
    responders: Vec<(SimulatedServer, Responder)>,
    stop_agents: watch::Sender<bool>,
    agents: Vec<tokio::task::JoinHandle<()>>,
    stop_web: Option<oneshot::Sender<()>>,
    web: Option<tokio::task::JoinHandle<()>>,
    pub web_address: SocketAddr,
    pub dns_address: SocketAddr,
    pub dns_metrics_address: Option<SocketAddr>,
    pub ntp_port: u16,
    pub logins: Vec<Login>,
    pub check_schedule: CheckSchedule,
    pub data_dir: PathBuf,
    /// Whether this run created the data (false: reused a previous run's).
    pub fresh: bool,
}

impl Demo {
    /// Prepare the data directory and start every part. Returns once the DNS
    /// daemon serves the control plane's first snapshot.
    pub fn start(config: DemoConfig) -> Result<Demo, BoxError> {
        let schedule = CheckSchedule {
            active_interval: config.check_interval_secs,
            min_gap: (config.check_interval_secs / 2).max(1),
        }
        .validated()?;
        let fresh = prepare_data_dir(&config.data_dir, config.reset)?;
        let geoip = config.data_dir.join("geo-test.mmdb");
        crate::atomic_file::write(&geoip, &crate::geo::testdata::write_test_database())
            .map_err(|e| format!("{}: {e}", geoip.display()))?;
        let database_url = crate::db::default_sqlite_url(&config.data_dir);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("timepool-demo")
            .enable_all()
            .build()?;

        let ipv6_loopback = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_ok();
        if !ipv6_loopback {
            tracing::warn!("no IPv6 loopback (::1): the demo runs without its IPv6 server");
        }
        let servers: Vec<SimulatedServer> = simulated_servers()
            .into_iter()
            .filter(|server| ipv6_loopback || server.address.is_ipv4())
            .collect();
        let ntp_port = match config.ntp_port {
            Some(port) => port,
            None => common_free_port(&servers)?,
        };
        let state = runtime.block_on(seed(&config.data_dir, &database_url, &servers))?;

        // The simulated NTP servers.
        let responders = runtime.block_on(async {
            let mut started = Vec::new();
            for server in &servers {
                let address = SocketAddr::new(server.address, ntp_port);
                let responder = Responder::start(address, server.behaviour)
                    .await
                    .map_err(|e| format!("simulated NTP server {address}: {e}"))?;
                started.push((*server, responder));
            }
            Ok::<_, BoxError>(started)
        })?;

        // The control plane.
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(config.web_listen))
            .map_err(|e| {
                format!(
                    "web app: cannot listen on {}: {e} (choose another with --web-listen)",
                    config.web_listen
                )
            })?;
        let web_address = listener.local_addr()?;
        let settings = Settings {
            listen: web_address,
            database_url,
            origin: ORIGIN.to_string(),
            allow_loopback: true,
            secure_cookies: false,
            counts_cache_secs: 2,
            geoip: Some(geoip.clone()),
            check_schedule: schedule,
        };
        let publish = PublishSettings {
            snapshot_out: config.data_dir.join("snapshot.json"),
            nameservers: Vec::new(),
            schedule: Schedule {
                check: Duration::from_secs(1),
                debounce: Duration::from_millis(500),
                ..Schedule::default()
            },
        };
        let (stop_web, web_stopped) = oneshot::channel::<()>();
        let web = runtime.spawn(async move {
            let shutdown = async {
                let _ = web_stopped.await;
            };
            if let Err(error) = crate::web::serve(settings, publish, listener, shutdown).await {
                tracing::error!(%error, "demo: the web app stopped");
            }
        });
        let api = format!("http://{web_address}");
        let snapshot_url = format!("{api}/api/v1/snapshot");
        wait_for_snapshot(&snapshot_url)?;

        // The monitors.
        let (stop_agents, agents_stop) = watch::channel(false);
        let mut agents = Vec::new();
        for monitor in &state.monitors {
            let args = MonitorArgs {
                api: api.clone(),
                token: monitor.token.clone(),
                batch_size: 100,
                concurrency: 32,
                samples: 3,
                sample_gap_ms: 300,
                timeout_ms: 1000,
                max_unsent_results: 10_000,
                retry_ms: 500,
                ntp_port,
                max_batches: 0,
            };
            let stop = agents_stop.clone();
            let name = monitor.name.clone();
            agents.push(runtime.spawn(async move {
                if let Err(error) = crate::agent::run_until(args, stop).await {
                    tracing::error!(monitor = name, %error, "demo: monitor stopped");
                }
            }));
        }

        // The DNS daemon, following the control plane.
        let dns = DnsServer::start(DnsConfig {
            listen: vec![config.dns_listen],
            threads: 2,
            pin_workers: false,
            snapshot: SnapshotSource::Url {
                url: snapshot_url,
                cache: Some(config.data_dir.join("dns-snapshot-cache.json")),
                poll: Duration::from_secs(1),
                timeout: Duration::from_secs(5),
            },
            geoip: Some(geoip),
            reload_interval: Duration::from_secs(5),
            answer: AnswerConfig {
                identity: Some(b"timepool-demo".to_vec().into_boxed_slice()),
                ..AnswerConfig::default()
            },
            udp: UdpSettings {
                batch: 64,
                recv_buffer: None,
                send_buffer: None,
            },
            tcp: TcpSettings {
                idle_timeout: Duration::from_secs(10),
                max_connections: 1000,
            },
            metrics_listen: config.dns_metrics_listen,
        })
        .map_err(|e| {
            format!(
                "DNS daemon on {}: {e} (choose others with --dns-listen, --dns-metrics-listen)",
                config.dns_listen
            )
        })?;
        let dns_address = dns.udp_addresses()[0];
        let dns_metrics_address = dns.metrics_address();
        Ok(Demo {
            runtime,
            dns: Some(dns),
            responders,
            stop_agents,
            agents,
            stop_web: Some(stop_web),
            web: Some(web),
            web_address,
            dns_address,
            dns_metrics_address,
            ntp_port,
            logins: state.logins,
            check_schedule: schedule,
            data_dir: config.data_dir,
            fresh,
        })
    }

    /// The simulated servers and how they behave now.
    pub fn servers(&self) -> Vec<SimulatedServer> {
        self.responders.iter().map(|(server, _)| *server).collect()
    }

    /// Make a simulated server behave differently from now on (tests: a
    /// healthy server going bad).
    pub fn set_behaviour(&mut self, address: IpAddr, behaviour: Behaviour) -> bool {
        for (server, responder) in &mut self.responders {
            if server.address == address {
                responder.set_behaviour(behaviour);
                server.behaviour = behaviour;
                return true;
            }
        }
        false
    }

    /// Block until Ctrl-C or SIGTERM.
    pub fn wait_for_signal(&self) {
        self.runtime.block_on(crate::web::shutdown_signal());
    }

    /// Stop every part: the monitors finish the batch in flight and send its
    /// results, the web app finishes its requests, then the DNS daemon and
    /// the simulated servers stop.
    pub fn stop(mut self) {
        let _ = self.stop_agents.send(true);
        let agents = std::mem::take(&mut self.agents);
        self.runtime.block_on(async {
            for agent in agents {
                if tokio::time::timeout(Duration::from_secs(15), agent)
                    .await
                    .is_err()
                {
                    tracing::warn!("demo: a monitor did not stop in 15 s");
                }
            }
        });
        if let Some(stop) = self.stop_web.take() {
            let _ = stop.send(());
        }
        if let Some(web) = self.web.take() {
            self.runtime.block_on(async {
                if tokio::time::timeout(Duration::from_secs(10), web)
                    .await
                    .is_err()
                {
                    tracing::warn!("demo: the web app did not stop in 10 s");
                }
            });
        }
        if let Some(dns) = self.dns.take() {
            dns.shutdown();
        }
        for (_, responder) in &self.responders {
            responder.stop();
        }
    }

    /// What the demo prints at start: where everything is, the logins, what
    /// to try, and the simulated servers.
    pub fn banner(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let dns_ip = self.dns_address.ip();
        let dns_port = self.dns_address.port();
        let dig = format!("dig @{dns_ip} -p {dns_port}");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "timepool demo is running ({} data in {}). Ctrl-C stops it.",
            if self.fresh { "new" } else { "reused" },
            self.data_dir.display()
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "  web app      http://{}/", self.web_address);
        let _ = writeln!(
            out,
            "  DNS          {dns_ip} port {dns_port}, UDP and TCP, origin {ORIGIN}"
        );
        let _ = writeln!(out, "  web metrics  http://{}/metrics", self.web_address);
        if let Some(metrics) = self.dns_metrics_address {
            let _ = writeln!(out, "  DNS metrics  http://{metrics}/metrics");
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "Logins (demo only; kept in {STATE_FILE}):");
        for login in &self.logins {
            let _ = writeln!(
                out,
                "  {:<9} {:<20} {}",
                login.role, login.email, login.password
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Two monitors check every server every {} s (the pool: every 9 minutes);",
            self.check_schedule.active_interval
        );
        let _ = writeln!(
            out,
            "a healthy server reaches score 10 after about 14 checks, so the healthy"
        );
        let _ = writeln!(
            out,
            "servers are in DNS within about two minutes and the others never are."
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "Try:");
        let tries = [
            (
                format!("{dig} pool.ntp.org"),
                "the global zone (loopback has no location)",
            ),
            (
                format!("{dig} pool.ntp.org +subnet=85.214.1.0/24"),
                "a client in Germany (ECS): German servers",
            ),
            (
                format!("{dig} pool.ntp.org +subnet=126.0.0.0/24"),
                "a client in Japan",
            ),
            (
                format!("{dig} 2.pool.ntp.org AAAA +subnet=85.214.1.0/24"),
                "IPv6 (only 2.* names answer AAAA)",
            ),
            (format!("{dig} de.pool.ntp.org"), "an explicit zone"),
            (
                format!("{dig} _country.pool.ntp.org TXT +subnet=81.2.69.0/24"),
                "how a client was located",
            ),
        ];
        for (command, what) in tries {
            let _ = writeln!(out, "  {command:<58} # {what}");
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Simulated NTP servers (UDP port {} on each address; score pages at http://{}/scores/ADDRESS):",
            self.ntp_port, self.web_address
        );
        let _ = writeln!(
            out,
            "  {:<12} {:<5} {:>9}  {:<36} in DNS",
            "address", "zone", "netspeed", "simulates"
        );
        for (server, _) in &self.responders {
            let _ = writeln!(
                out,
                "  {:<12} {:<5} {:>9}  {:<36} {}",
                server.address.to_string(),
                server.zone,
                server.netspeed,
                server.simulates,
                if server.expected_in_dns {
                    "yes, within ~2 min"
                } else {
                    "never"
                }
            );
        }
        out
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.stop_agents.send(true);
        if let Some(stop) = self.stop_web.take() {
            let _ = stop.send(());
        }
        if let Some(dns) = self.dns.take() {
            dns.shutdown();
        }
    }
}

/// Create the data directory, or empty it first with `reset`. Returns
/// whether the demo data is new. A directory that is not the demo's (no
/// state file, not empty) is never deleted.
fn prepare_data_dir(dir: &Path, reset: bool) -> Result<bool, BoxError> {
    let state_file = dir.join(STATE_FILE);
    if dir.exists() {
        let is_empty = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .next()
            .is_none();
        let is_demo = state_file.exists();
        if !is_demo && !is_empty {
            return Err(format!(
                "{} exists and is not the demo's data directory (no {STATE_FILE}); \
                 choose another with --data-dir",
                dir.display()
            )
            .into());
        }
        if reset && is_demo {
            std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        } else if is_demo {
            return Ok(false);
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(true)
}

/// A UDP port free on every simulated server's address.
fn common_free_port(servers: &[SimulatedServer]) -> Result<u16, BoxError> {
    for _ in 0..200 {
        let Ok(first) = UdpSocket::bind((servers[0].address, 0)) else {
            continue;
        };
        let port = first.local_addr()?.port();
        let held: Result<Vec<UdpSocket>, _> = servers[1..]
            .iter()
            .map(|server| UdpSocket::bind((server.address, port)))
            .collect();
        if held.is_ok() {
            return Ok(port);
        }
    }
    Err("no UDP port is free on all of the simulated servers' addresses (127.0.0.2-32, ::1)".into())
}

/// The database, logins, servers and monitors: created on a new data
/// directory, read back on a reused one.
async fn seed(
    dir: &Path,
    database_url: &str,
    servers: &[SimulatedServer],
) -> Result<DemoState, BoxError> {
    let db = Db::connect(database_url).await?;
    let state_file = dir.join(STATE_FILE);
    let state = if state_file.exists() {
        let text = std::fs::read_to_string(&state_file)
            .map_err(|e| format!("{}: {e}", state_file.display()))?;
        let state: DemoState = serde_json::from_str(&text)
            .map_err(|e| format!("{}: {e} (start over with --reset)", state_file.display()))?;
        if state.version != STATE_VERSION {
            return Err(format!(
                "{} is from another version of the demo; start over with --reset",
                state_file.display()
            )
            .into());
        }
        state
    } else {
        let state = create_logins_and_monitors(&db).await?;
        let text = serde_json::to_vec_pretty(&state)?;
        crate::atomic_file::write(&state_file, &text)
            .map_err(|e| format!("{}: {e}", state_file.display()))?;
        restrict_to_owner(&state_file);
        state
    };
    add_missing_servers(&db, &state, servers).await?;
    db.pool.close().await;
    Ok(state)
}

fn restrict_to_owner(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(file = %path.display(), %error, "cannot make the file private");
    }
}

const LOGINS: [(&str, &str); 3] = [
    ("staff", "staff@example.org"),
    ("operator", "alice@example.org"),
    ("operator", "bob@example.org"),
];
const MONITORS: [&str; 2] = ["demo-monitor-1", "demo-monitor-2"];

async fn create_logins_and_monitors(db: &Db) -> Result<DemoState, BoxError> {
    let actor = audit::Actor {
        user_id: None,
        name: "demo".to_string(),
    };
    let mut logins = Vec::new();
    let mut monitors_out = Vec::new();
    let mut tx = db.begin().await?;
    for (role, email) in LOGINS {
        let password = crate::web::admin::generate_password(16);
        let hash = crate::web::session::hash_password(&password)
            .map_err(|e| format!("hashing a password: {e:?}"))?;
        let user = crate::db::accounts::create_account_with_user(&mut tx, email, &hash, role)
            .await
            .map_err(|e| format!("creating {email}: {e} (start over with --reset)"))?;
        audit::record(
            &mut tx,
            &actor,
            "user.create",
            &format!("user:{}", user.id),
            &format!("{email} role={role}"),
        )
        .await?;
        logins.push(Login {
            role: role.to_string(),
            email: email.to_string(),
            password,
        });
    }
    for name in MONITORS {
        let (id, token) = monitors::create(&mut tx, name).await?;
        // The demo's monitors run on the same host as the simulated servers,
        // all on loopback: registering 127.0.0.1 as their address would put
        // every server in their own /24, which they are never given. Staff
        // make them active at once instead of waiting for the 41 healthy
        // batches that promote a new monitor.
        monitors::set_state(&mut tx, id, "active").await?;
        audit::record(
            &mut tx,
            &actor,
            "monitor.create",
            &format!("monitor:{id} {name}"),
            "state=active",
        )
        .await?;
        monitors_out.push(MonitorLogin {
            name: name.to_string(),
            token,
        });
    }
    tx.commit().await?;
    Ok(DemoState {
        version: STATE_VERSION,
        logins,
        monitors: monitors_out,
    })
}

/// Register the simulated servers not in the database yet, each in its
/// operator's account, as an operator would with the zone chosen by hand.
async fn add_missing_servers(
    db: &Db,
    state: &DemoState,
    servers: &[SimulatedServer],
) -> Result<(), BoxError> {
    let mut accounts = Vec::new();
    for login in state.logins.iter().filter(|l| l.role == "operator") {
        let (user, _) = crate::db::accounts::find_login(db, &login.email)
            .await?
            .ok_or_else(|| {
                format!(
                    "the demo database has no user {} (start over with --reset)",
                    login.email
                )
            })?;
        accounts.push(user);
    }
    let mut tx = db.begin().await?;
    for server in servers {
        let address = server.address.to_string();
        if servers::address_exists(&mut tx, &address).await? {
            continue;
        }
        let owner = accounts
            .get(server.operator)
            .ok_or("the demo has fewer operators than its servers name")?;
        let id = servers::insert(
            &mut tx,
            &NewServer {
                account_id: owner.account_id,
                address: &address,
                ip_version: if server.address.is_ipv6() { 6 } else { 4 },
                hostname: None,
                geo_zone: None,
                zone_override: Some(server.zone),
                netspeed: server.netspeed,
            },
        )
        .await?;
        audit::record(
            &mut tx,
            &audit::Actor {
                user_id: Some(owner.id),
                name: owner.email.clone(),
            },
            "server.add",
            &format!("server:{id} {address}"),
            &format!("zone={} netspeed={}", server.zone, server.netspeed),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Wait until the control plane serves its first snapshot (the zone
/// builder publishes at start).
fn wait_for_snapshot(url: &str) -> Result<(), BoxError> {
    let follower = crate::server::follow::Follower::new(url, None, Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match follower.fetch() {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() > deadline => {
                return Err(format!("the control plane never served a snapshot: {error}").into());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `timepool demo`: start, print the banner, run until Ctrl-C, stop.
pub fn run(args: DemoArgs) -> Result<(), BoxError> {
    let demo = Demo::start(DemoConfig::from(&args))?;
    println!("{}", demo.banner());
    demo.wait_for_signal();
    println!("stopping the demo...");
    demo.stop();
    println!("stopped; run `timepool demo` again to continue, or with --reset to start over");
    Ok(())
}
