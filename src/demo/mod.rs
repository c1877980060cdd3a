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
//!
//! This file starts and stops the parts; `fixtures` is what is simulated,
//! `seed` the data directory and database, `banner` what is printed.
//!
//! Architecture invariant: the one module that imports every wing, and
//! nothing imports it. No shortcut around the pieces: scores come only from
//! monitor results through the ingest API, DNS sees servers only through
//! the published snapshot.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::control::db::schedule::CheckSchedule;
use crate::control::web::{BoxError, Limits, PublishSettings, Settings};
use crate::control::zone_builder::Schedule;
use crate::dns::answer::AnswerConfig;
use crate::dns::server::{
    DnsConfig, DnsServer, PullClient, SnapshotSource, SnapshotTrust, TcpSettings, UdpSettings,
};
use crate::monitor::agent::MonitorArgs;
use crate::shared::ntp::responder::{Behaviour, Responder};

mod banner;
mod fixtures;
mod seed;

pub use fixtures::{SimulatedServer, simulated_servers};
pub use seed::Login;

/// The pool's DNS origin in the demo.
pub const ORIGIN: &str = "pool.ntp.org";

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
    /// The monitors' reference NTP servers: true time, and 50 ms ahead.
    references: Vec<Responder>,
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
            testing_interval: config.check_interval_secs * 2,
            min_gap: (config.check_interval_secs / 2).max(1),
        }
        .validated()?;
        let fresh = seed::prepare_data_dir(&config.data_dir, config.reset)?;
        let geoip = config.data_dir.join("geo-test.mmdb");
        crate::shared::atomic_file::write(
            &geoip,
            &crate::shared::geo::testdata::write_test_database(),
        )
        .map_err(|e| format!("{}: {e}", geoip.display()))?;
        let database_url = crate::control::db::default_sqlite_url(&config.data_dir);
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
            None => fixtures::common_free_port(&servers)?,
        };
        let state = runtime.block_on(seed::seed(&config.data_dir, &database_url, &servers))?;

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
        // The monitors' references for their self-check: one with the
        // machine's time, one 50 ms ahead (the skewed monitor's).
        let references = runtime.block_on(async {
            let mut started = Vec::new();
            for offset in [0.0, fixtures::SKEWED_REFERENCE_OFFSET] {
                let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
                let responder = Responder::start(any, Behaviour::Offset { offset, stratum: 1 })
                    .await
                    .map_err(|e| format!("reference NTP server: {e}"))?;
                started.push(responder);
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
            community_url: "https://community.ntppool.org/".to_string(),
            allow_loopback: true,
            // No SMTP server: the demo's mails wait in the queue, where
            // staff read them on /staff/mail.
            smtp_url: None,
            smtp_ca_file: None,
            mail_from: format!("timepool demo <noreply@{ORIGIN}>"),
            site_url: format!("http://{web_address}"),
            // A server added in the demo is asked the time where the
            // demo's simulated servers answer.
            join_check: Some(crate::control::web::join_check::JoinCheck {
                port: ntp_port,
                ..Default::default()
            }),
            // The pool's rule: a new server stays at 10 Mbit and holds the
            // account's next one until it is verified.
            unverified_netspeed_max: Some(crate::control::web::servers::DEFAULT_NETSPEED),
            secure_cookies: false,
            counts_cache_secs: 2,
            geoip: Some(geoip.clone()),
            check_schedule: schedule,
            tls: None,
            internal_listen: None,
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
            require_node_tokens: false,
            // The pool's rules, looked at every minute rather than every
            // ten: the demo's silent server gets its alert soon after its
            // score falls (its mails wait on /staff/mail).
            alerts: crate::control::alert_rules::AlertRules {
                interval_secs: 60,
                ..Default::default()
            },
            // The pool's selector on the demo's clock: a pass every 5 s,
            // and fewer points to earn, so pairs become testing and then
            // active within minutes.
            selector: crate::control::monitor_selector::SelectorRules {
                interval_secs: 5,
                points_to_testing: 3,
                points_to_active: 6,
                ..Default::default()
            },
        };
        // Snapshots are signed, and the DNS daemon takes only those.
        let (signing_key, public_key) = seed::snapshot_keys(&config.data_dir)?;
        let publish = PublishSettings {
            signing_key: Some(signing_key),
            score_ramp: None,
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
            if let Err(error) =
                crate::control::web::serve(settings, publish, listener, shutdown).await
            {
                tracing::error!(%error, "demo: the web app stopped");
            }
        });
        let api = format!("http://{web_address}");
        let snapshot_url = format!("{api}/api/v1/snapshot");
        let trust = SnapshotTrust {
            keys: vec![public_key],
            allow_serial_rollback: false,
        };
        wait_for_snapshot(&snapshot_url, &trust)?;

        // The monitors.
        let (stop_agents, agents_stop) = watch::channel(false);
        let mut agents = Vec::new();
        for monitor in &state.monitors {
            let args = MonitorArgs {
                api: api.clone(),
                token: monitor.token.clone(),
                ca_file: None,
                insecure_http: false,
                batch_size: 100,
                concurrency: 32,
                samples: 3,
                sample_gap_ms: 300,
                timeout_ms: 1000,
                max_unsent_results: 10_000,
                retry_ms: 500,
                ntp_port,
                max_batches: 0,
                references: vec![
                    references[usize::from(monitor.name == fixtures::SKEWED_MONITOR)]
                        .local_addr()
                        .to_string(),
                ],
                max_clock_offset_ms: 10.0,
                self_check_retry_ms: 5_000,
            };
            let stop = agents_stop.clone();
            let name = monitor.name.clone();
            agents.push(runtime.spawn(async move {
                if let Err(error) = crate::monitor::agent::run_until(args, stop).await {
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
                client: PullClient {
                    node_name: Some("demo".to_string()),
                    ..PullClient::default()
                },
            },
            trust,
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
                ..UdpSettings::default()
            },
            tcp: TcpSettings {
                idle_timeout: Duration::from_secs(10),
                max_connections: 1000,
                ..TcpSettings::default()
            },
            metrics_listen: config.dns_metrics_listen,
            cookie_secret_file: None,
            rrl: None,
            xdp: None,
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
            references,
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
        self.runtime.block_on(crate::shared::signals::shutdown());
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
        for responder in &self.references {
            responder.stop();
        }
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

/// Wait until the control plane serves its first snapshot (the zone
/// builder publishes at start).
fn wait_for_snapshot(url: &str, trust: &SnapshotTrust) -> Result<(), BoxError> {
    let follower = crate::dns::server::follow::Follower::new(
        url,
        None,
        Duration::from_secs(5),
        &PullClient::default(),
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match follower.fetch(trust, None) {
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
