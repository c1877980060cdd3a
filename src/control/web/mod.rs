//! `timepool web`: the control plane's web app (operators, staff, public
//! pages, JSON API).
//!
//! Architecture invariant: the web layer never answers DNS and the DNS path
//! never imports this module; the two meet only at the snapshot file.
//!
//! Code map: `mod.rs` settings, the router and its guards (body limits,
//! request timeout, headers), `run_every` for the background jobs; `listener` the accept loop (TLS via `tls`,
//! connection cap, header timeout); `public` pages anyone can see;
//! `account` sign-up, login, users and invites (`mails` how mails
//! are written, and those that tell an account's users of a change); `reset` password reset
//! by mail; `login_settings` a user's own password and address; `user_data`
//! their data (download) and the deletion of their login; `alerts` the
//! bad-server rules' background pass; `servers` an operator's
//! servers (`address` what may be added, `join_check` the NTP query a new
//! server must answer); `vendor` vendor zone applications; `staff` staff pages;
//! `nodes` where each DNS node stands; `api` the JSON API; `admin` the CLI;
//! `session`/`csrf` who is asking and form protection, `client_addr` from
//! where, `hashing` the bounded password hasher; `error` the one place
//! errors become responses; `notice` the line a page shows after an
//! action; `templates`/`graph` rendering.

/// `minijinja::context!` for serde values: `ctx! { servers, form => f }`.
macro_rules! ctx {
    ($($key:ident $(=> $value:expr)?),* $(,)?) => {
        minijinja::context! { $($key => minijinja::value::Serde(ctx!(@value $key $(=> $value)?))),* }
    };
    (@value $key:ident) => { $key };
    (@value $key:ident => $value:expr) => { $value };
}

pub mod account;
pub mod address;
pub mod admin;
pub mod alerts;
pub mod api;
pub mod client_addr;
pub mod csrf;
pub mod error;
pub mod form;
pub mod graph;
pub mod hashing;
pub mod i18n;
pub mod ingest;
pub mod join_check;
pub mod listener;
pub mod login_settings;
pub mod mails;
pub mod metrics;
pub mod news;
pub mod nodes;
pub mod notice;
pub mod public;
pub mod reset;
pub mod selector;
pub mod servers;
pub mod session;
pub mod staff;
pub mod templates;
pub mod tls;
pub mod user_data;
pub mod vendor;
pub mod verify_server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::control::db::Db;
use crate::control::db::accounts::User;
use crate::control::db::servers::ZoneCount;
use crate::control::{zone_builder, zone_rules};
use csrf::CsrfToken;
use error::AppError;

/// `timepool web` flags. Each can also come from the environment
/// (TIMEPOOL_*) or the config file; a flag wins over the environment, which
/// wins over the file.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WebArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "TIMEPOOL_LISTEN")]
    pub listen: Option<String>,
    /// Database URL: sqlite://PATH or postgres://... [default: SQLite in the data dir].
    #[arg(long, env = "TIMEPOOL_DATABASE")]
    pub database: Option<String>,
    /// Directory for the SQLite database [default: ./data].
    #[arg(long, env = "TIMEPOOL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file, TOML (.toml) or JSON (.json), with the same keys as the flags.
    #[arg(long, env = "TIMEPOOL_CONFIG")]
    pub config: Option<PathBuf>,
    /// The pool's DNS origin the pages talk about [default: pool.ntp.org].
    #[arg(long, env = "TIMEPOOL_ORIGIN")]
    pub origin: Option<String>,
    /// Where the pages' "Community" link goes
    /// [default: https://community.ntppool.org/].
    #[arg(long, env = "TIMEPOOL_COMMUNITY_URL")]
    pub community_url: Option<String>,
    /// Accept loopback addresses as servers (tests and demos only).
    #[arg(long, env = "TIMEPOOL_ALLOW_LOOPBACK")]
    pub allow_loopback: bool,
    /// Add servers without first asking them the time (instances that
    /// cannot send NTP; tests).
    #[arg(long, env = "TIMEPOOL_NO_JOIN_CHECK")]
    pub no_join_check: bool,
    /// A server not yet verified (an HTTP request from its address, or
    /// staff) has at most this netspeed, in kbit/s; an account with one
    /// adds no more [default: 10000].
    #[arg(long, env = "TIMEPOOL_UNVERIFIED_NETSPEED_MAX")]
    pub unverified_netspeed_max: Option<i64>,
    /// Neither cap unverified servers nor hold an account's next server
    /// until they are verified (tests).
    #[arg(long, env = "TIMEPOOL_NO_SERVER_VERIFICATION")]
    pub no_server_verification: bool,
    /// The UDP port a new server is asked the time on [default: 123].
    #[arg(long, env = "TIMEPOOL_JOIN_CHECK_PORT")]
    pub join_check_port: Option<u16>,
    /// Mark cookies Secure (when served over HTTPS).
    #[arg(long, env = "TIMEPOOL_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// The SMTP server mail goes through: smtp://[user:pass@]host[:port]
    /// (add ?tls=required for STARTTLS) or smtps://... [default: none:
    /// mail stays queued, for staff to read on /staff/mail].
    #[arg(long, env = "TIMEPOOL_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Check the SMTP server's certificate against this CA (PEM) only,
    /// not the system's roots (a private mail relay).
    #[arg(long, env = "TIMEPOOL_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<PathBuf>,
    /// The From of every mail [default: timepool <noreply@ORIGIN>].
    #[arg(long, env = "TIMEPOOL_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// The site's address as its users reach it, for links in mails
    /// [default: http://LISTEN, or https:// with --tls-cert].
    #[arg(long, env = "TIMEPOOL_SITE_URL")]
    pub site_url: Option<String>,
    /// Seconds the zone counts are reused between page views [default: 10].
    #[arg(long, env = "TIMEPOOL_COUNTS_CACHE_SECS")]
    pub counts_cache_secs: Option<u64>,
    /// MaxMind .mmdb that places new servers in their country (the DNS
    /// daemon's database) [default: /var/lib/GeoIP/GeoLite2-Country.mmdb or
    /// /usr/share/GeoIP/GeoLite2-Country.mmdb when present].
    #[arg(long, env = "TIMEPOOL_GEOIP")]
    pub geoip: Option<PathBuf>,
    /// Where the zone builder publishes the snapshot file (replaced
    /// atomically) [default: snapshot.json in the data dir].
    #[arg(long, env = "TIMEPOOL_SNAPSHOT_OUT")]
    pub snapshot_out: Option<PathBuf>,
    /// The origin's NS names in the snapshot; repeat for several
    /// [default: ns1.<origin>].
    #[arg(
        long = "nameserver",
        env = "TIMEPOOL_NAMESERVERS",
        value_delimiter = ','
    )]
    pub nameservers: Vec<String>,
    /// Seconds between the zone builder's looks for changed servers
    /// (it also rebuilds at least every minute) [default: 2].
    #[arg(long, env = "TIMEPOOL_ZONE_CHECK_SECS")]
    pub zone_check_secs: Option<f64>,
    /// Seconds between two checks of a server by one active pair
    /// [default: 540].
    #[arg(long, env = "TIMEPOOL_CHECK_INTERVAL_SECS")]
    pub check_interval_secs: Option<i64>,
    /// Seconds between two checks of a server by one testing (or
    /// candidate) pair [default: 2700].
    #[arg(long, env = "TIMEPOOL_TESTING_CHECK_INTERVAL_SECS")]
    pub testing_check_interval_secs: Option<i64>,
    /// A candidate pair checks only when no monitor was handed the server
    /// for this long [default: 60].
    #[arg(long, env = "TIMEPOOL_MIN_CHECK_GAP_SECS")]
    pub min_check_gap_secs: Option<i64>,
    /// Serve HTTPS with this certificate chain (PEM; read again when it
    /// changes). Needs --tls-key. Cookies become Secure `__Host-` ones.
    #[arg(long, env = "TIMEPOOL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM; read again when it changes).
    #[arg(long, env = "TIMEPOOL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A second, private listener for /metrics, /api/v1/snapshot and the
    /// monitor ingest API, which then leave the main listener.
    #[arg(long, env = "TIMEPOOL_INTERNAL_LISTEN")]
    pub internal_listen: Option<String>,
    /// A reverse proxy (ADDRESS or ADDRESS/PREFIX) whose X-Forwarded-For
    /// names the client; repeat for several. Others' headers are ignored.
    #[arg(
        long = "trusted-proxy",
        env = "TIMEPOOL_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// Connections open at once; more are closed at accept [default: 1024].
    #[arg(long, env = "TIMEPOOL_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's head (and to finish the
    /// TLS handshake); also the idle time of a kept-alive connection
    /// [default: 10].
    #[arg(long, env = "TIMEPOOL_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<f64>,
    /// Seconds a request may take from its head to the response, body
    /// included [default: 30].
    #[arg(long, env = "TIMEPOOL_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<f64>,
    /// Password hashes computed at once (argon2id, ~19 MiB each)
    /// [default: one per CPU].
    #[arg(long, env = "TIMEPOOL_HASH_THREADS")]
    pub hash_threads: Option<usize>,
    /// Logins and sign-ups waiting for a hashing thread; more get 503 at
    /// once [default: 8 per hashing thread].
    #[arg(long, env = "TIMEPOOL_HASH_QUEUE")]
    pub hash_queue: Option<usize>,
    /// Sign every published snapshot with this Ed25519 private key (PEM,
    /// from `timepool admin gen-snapshot-key`).
    #[arg(long, env = "TIMEPOOL_SNAPSHOT_SIGNING_KEY")]
    pub snapshot_signing_key: Option<PathBuf>,
    /// Seconds the zone builder's lease lasts: with several instances on
    /// one database, the longest a dead leader keeps the others from
    /// publishing [default: 15].
    #[arg(long, env = "TIMEPOOL_LEADER_LEASE_SECS")]
    pub leader_lease_secs: Option<u64>,
    /// LOW:HIGH: a server's weight in DNS grows from 0 at score LOW to its
    /// full netspeed at score HIGH (e.g. 10:15), instead of all or nothing
    /// at score 10 [default: off].
    #[arg(long, env = "TIMEPOOL_SCORE_RAMP")]
    pub score_ramp: Option<zone_rules::ScoreRamp>,
    /// Serve the snapshot only to DNS nodes with a token (`timepool admin
    /// create-node`).
    #[arg(long, env = "TIMEPOOL_REQUIRE_NODE_TOKENS")]
    pub require_node_tokens: bool,
}

/// The config file's keys; all optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub origin: Option<String>,
    pub community_url: Option<String>,
    pub allow_loopback: Option<bool>,
    pub join_check: Option<bool>,
    pub join_check_port: Option<u16>,
    pub server_verification: Option<bool>,
    pub unverified_netspeed_max: Option<i64>,
    pub secure_cookies: Option<bool>,
    pub smtp_url: Option<String>,
    pub smtp_ca_file: Option<PathBuf>,
    pub mail_from: Option<String>,
    pub site_url: Option<String>,
    pub counts_cache_secs: Option<u64>,
    pub geoip: Option<PathBuf>,
    pub snapshot_out: Option<PathBuf>,
    pub nameservers: Option<Vec<String>>,
    pub zone_check_secs: Option<f64>,
    pub check_interval_secs: Option<i64>,
    pub testing_check_interval_secs: Option<i64>,
    pub min_check_gap_secs: Option<i64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub internal_listen: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub header_timeout_secs: Option<f64>,
    pub request_timeout_secs: Option<f64>,
    pub hash_threads: Option<usize>,
    pub hash_queue: Option<usize>,
    pub snapshot_signing_key: Option<PathBuf>,
    pub leader_lease_secs: Option<u64>,
    pub require_node_tokens: Option<bool>,
    pub score_ramp: Option<String>,
    /// `[alerts]`: the bad-server rules' thresholds (`alert_rules`).
    pub alerts: Option<crate::control::alert_rules::AlertRules>,
    /// `[selector]`: the monitor selector's targets and thresholds
    /// (`monitor_selector`).
    pub selector: Option<crate::control::monitor_selector::SelectorRules>,
}

/// The certificate and key files of HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What bounds the work a client can cause.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: std::time::Duration,
    pub request_timeout: std::time::Duration,
    pub hash_threads: usize,
    pub hash_queue: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Limits {
            max_connections: 1024,
            header_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(30),
            hash_threads: cpus,
            hash_queue: 8 * cpus,
        }
    }
}

/// Largest request body of a form (the ingest API has its own).
pub const FORM_BODY_LIMIT: usize = 16 * 1024;

/// The resolved settings the app runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub origin: String,
    /// The pages' "Community" link.
    pub community_url: String,
    pub allow_loopback: bool,
    /// How a server is checked before it joins; `None`: not at all.
    pub join_check: Option<join_check::JoinCheck>,
    /// The netspeed (kbit/s) a server has at most until it is verified,
    /// and an account with an unverified server adds no more; `None`: no
    /// such rule (verification is still offered).
    pub unverified_netspeed_max: Option<i64>,
    pub secure_cookies: bool,
    /// Mail: the SMTP server (`None`: mail stays queued) and the From.
    pub smtp_url: Option<String>,
    /// The CA the SMTP server's certificate is checked against, instead of
    /// the system's roots.
    pub smtp_ca_file: Option<PathBuf>,
    pub mail_from: String,
    /// The site's address for links in mails, without a trailing `/`.
    pub site_url: String,
    /// How long zone counts (home, zone pages, API) are reused; 0 = always fresh.
    pub counts_cache_secs: u64,
    /// The GeoIP database, if any.
    pub geoip: Option<PathBuf>,
    /// How often monitors are handed each server.
    pub check_schedule: crate::control::db::schedule::CheckSchedule,
    /// HTTPS on the main listener; `None`: plain HTTP (behind a proxy).
    pub tls: Option<TlsFiles>,
    /// The listener of /metrics, the snapshot and the ingest API, when
    /// they are not on the main one.
    pub internal_listen: Option<SocketAddr>,
    /// Reverse proxies whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<crate::shared::netaddr::Prefix>,
    pub limits: Limits,
    /// Pulls of the snapshot need a registered node's token.
    pub require_node_tokens: bool,
    /// Bad-server alerts and automatic removal (`alerts`).
    pub alerts: crate::control::alert_rules::AlertRules,
    /// Which monitors watch which server (`selector`).
    pub selector: crate::control::monitor_selector::SelectorRules,
}

/// The zone builder's settings, resolved like `Settings`.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    pub snapshot_out: PathBuf,
    pub nameservers: Vec<String>,
    pub schedule: zone_builder::Schedule,
    /// The Ed25519 key every publish is signed with.
    pub signing_key: Option<PathBuf>,
    pub score_ramp: Option<zone_rules::ScoreRamp>,
}

impl PublishSettings {
    pub fn resolve(args: &WebArgs) -> Result<PublishSettings, BoxError> {
        let file = match &args.config {
            Some(path) => read_config(path)?,
            None => FileConfig::default(),
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| "data".into());
        let check = args.zone_check_secs.or(file.zone_check_secs).unwrap_or(2.0);
        let check = std::time::Duration::try_from_secs_f64(check)
            .map_err(|_| format!("--zone-check-secs {check}: not a duration"))?;
        let lease = args
            .leader_lease_secs
            .or(file.leader_lease_secs)
            .unwrap_or(15);
        if lease < 2 {
            return Err(format!("--leader-lease-secs {lease}: at least 2").into());
        }
        // The lease is renewed every check: it must outlive a missed one,
        // or leadership moves between instances on every cycle.
        if (lease as f64) < 3.0 * check.as_secs_f64() {
            return Err(format!(
                "--leader-lease-secs {lease}: at least three times --zone-check-secs ({})",
                check.as_secs_f64()
            )
            .into());
        }
        let score_ramp = match (args.score_ramp, file.score_ramp) {
            (Some(ramp), _) => Some(ramp),
            (None, Some(text)) => Some(
                text.parse::<zone_rules::ScoreRamp>()
                    .map_err(|e| format!("score_ramp in the config file: {e}"))?,
            ),
            (None, None) => None,
        };
        Ok(PublishSettings {
            score_ramp,
            signing_key: args
                .snapshot_signing_key
                .clone()
                .or(file.snapshot_signing_key),
            snapshot_out: args
                .snapshot_out
                .clone()
                .or(file.snapshot_out)
                .unwrap_or_else(|| data_dir.join("snapshot.json")),
            nameservers: if args.nameservers.is_empty() {
                file.nameservers.unwrap_or_default()
            } else {
                args.nameservers.clone()
            },
            schedule: zone_builder::Schedule {
                check,
                debounce: check.min(std::time::Duration::from_secs(1)),
                lease: std::time::Duration::from_secs(lease),
                ..zone_builder::Schedule::default()
            },
        })
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Settings {
    /// Merges flags/environment (already merged by clap) over the config file.
    pub fn resolve(args: &WebArgs) -> Result<Settings, BoxError> {
        let file = match &args.config {
            Some(path) => read_config(path)?,
            None => FileConfig::default(),
        };
        let listen = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_string());
        let listen: SocketAddr = listen
            .parse()
            .map_err(|e| format!("--listen {listen:?}: {e}"))?;
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| "data".into());
        let database_url = args
            .database
            .clone()
            .or(file.database)
            .unwrap_or_else(|| crate::control::db::default_sqlite_url(&data_dir));
        let origin = args
            .origin
            .clone()
            .or(file.origin)
            .unwrap_or_else(|| "pool.ntp.org".to_string())
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let community_url = args
            .community_url
            .clone()
            .or(file.community_url)
            .unwrap_or_else(|| "https://community.ntppool.org/".to_string());
        if !(community_url.starts_with("https://") || community_url.starts_with("http://")) {
            return Err(format!("--community-url {community_url:?}: not an http(s) URL").into());
        }
        let default_schedule = crate::control::db::schedule::CheckSchedule::default();
        let tls = match (
            args.tls_cert.clone().or(file.tls_cert),
            args.tls_key.clone().or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        let internal_listen = args
            .internal_listen
            .clone()
            .or(file.internal_listen)
            .map(|text| {
                text.parse::<SocketAddr>()
                    .map_err(|e| format!("--internal-listen {text:?}: {e}"))
            })
            .transpose()?;
        let trusted_proxies = if args.trusted_proxies.is_empty() {
            file.trusted_proxies.unwrap_or_default()
        } else {
            args.trusted_proxies.clone()
        }
        .iter()
        .map(|text| text.parse().map_err(|e| format!("--trusted-proxy {e}")))
        .collect::<Result<Vec<crate::shared::netaddr::Prefix>, String>>()?;
        let defaults = Limits::default();
        let secs = |value: Option<f64>, flag: &str, default: std::time::Duration| {
            value
                .map(|v| {
                    std::time::Duration::try_from_secs_f64(v)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| format!("{flag} {v}: not a positive duration"))
                })
                .unwrap_or(Ok(default))
        };
        let hash_threads = args
            .hash_threads
            .or(file.hash_threads)
            .unwrap_or(defaults.hash_threads)
            .max(1);
        let limits = Limits {
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(defaults.max_connections)
                .max(1),
            header_timeout: secs(
                args.header_timeout_secs.or(file.header_timeout_secs),
                "--header-timeout-secs",
                defaults.header_timeout,
            )?,
            request_timeout: secs(
                args.request_timeout_secs.or(file.request_timeout_secs),
                "--request-timeout-secs",
                defaults.request_timeout,
            )?,
            hash_threads,
            hash_queue: args
                .hash_queue
                .or(file.hash_queue)
                .unwrap_or(8 * hash_threads),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let site_url = args
            .site_url
            .clone()
            .or(file.site_url)
            .unwrap_or_else(|| format!("{scheme}://{listen}"));
        if !(site_url.starts_with("https://") || site_url.starts_with("http://")) {
            return Err(format!("--site-url {site_url:?}: want http:// or https://").into());
        }
        let mail_from = args
            .mail_from
            .clone()
            .or(file.mail_from)
            .unwrap_or_else(|| format!("timepool <noreply@{origin}>"));
        Ok(Settings {
            smtp_url: args.smtp_url.clone().or(file.smtp_url),
            smtp_ca_file: args.smtp_ca_file.clone().or(file.smtp_ca_file),
            mail_from,
            site_url: site_url.trim_end_matches('/').to_string(),
            listen,
            database_url,
            origin,
            community_url,
            allow_loopback: args.allow_loopback || file.allow_loopback.unwrap_or(false),
            join_check: (!args.no_join_check && file.join_check.unwrap_or(true)).then(|| {
                join_check::JoinCheck {
                    port: args.join_check_port.or(file.join_check_port).unwrap_or(123),
                    ..join_check::JoinCheck::default()
                }
            }),
            unverified_netspeed_max: match (
                args.no_server_verification || file.server_verification == Some(false),
                args.unverified_netspeed_max
                    .or(file.unverified_netspeed_max),
            ) {
                (true, _) => None,
                (false, Some(cap)) if cap < 0 => {
                    return Err(format!(
                        "--unverified-netspeed-max {cap}: a netspeed in kbit/s, 0 or more"
                    )
                    .into());
                }
                (false, cap) => Some(cap.unwrap_or(servers::DEFAULT_NETSPEED)),
            },
            // Over HTTPS cookies are Secure whatever the setting says.
            secure_cookies: args.secure_cookies
                || file.secure_cookies.unwrap_or(false)
                || tls.is_some(),
            counts_cache_secs: args
                .counts_cache_secs
                .or(file.counts_cache_secs)
                .unwrap_or(10),
            geoip: args
                .geoip
                .clone()
                .or(file.geoip)
                .or_else(crate::shared::geo::default_path),
            check_schedule: crate::control::db::schedule::CheckSchedule {
                active_interval: args
                    .check_interval_secs
                    .or(file.check_interval_secs)
                    .unwrap_or(default_schedule.active_interval),
                testing_interval: args
                    .testing_check_interval_secs
                    .or(file.testing_check_interval_secs)
                    .unwrap_or(default_schedule.testing_interval),
                min_gap: args
                    .min_check_gap_secs
                    .or(file.min_check_gap_secs)
                    .unwrap_or(default_schedule.min_gap),
            }
            .validated()?,
            tls,
            internal_listen,
            trusted_proxies,
            limits,
            require_node_tokens: args.require_node_tokens
                || file.require_node_tokens.unwrap_or(false),
            alerts: file
                .alerts
                .unwrap_or_default()
                .validated()
                .map_err(|e| format!("config file: {e}"))?,
            selector: file
                .selector
                .unwrap_or_default()
                .validated()
                .map_err(|e| format!("config file: {e}"))?,
        })
    }
}

fn read_config(path: &std::path::Path) -> Result<FileConfig, BoxError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("config file {}: {e}", path.display()))?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?
    } else {
        toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?
    };
    Ok(parsed)
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub settings: Arc<Settings>,
    /// Password hashing, bounded (`hashing`).
    pub hasher: Arc<hashing::PasswordHasher>,
    /// The CSRF tokens' HMAC key, read from the database on first use.
    pub csrf_key: Arc<tokio::sync::OnceCell<Arc<ring::hmac::Key>>>,
    /// When each DNS node's pull was last recorded.
    pub node_pulls: Arc<nodes::PullLog>,
    /// Connections of the listeners (metrics).
    pub connections: Arc<listener::ConnectionCounters>,
    counts: Arc<tokio::sync::Mutex<Option<CachedCounts>>>,
    /// Set while a background task recounts the zones.
    counts_refreshing: Arc<std::sync::atomic::AtomicBool>,
    pub graphs: Arc<graph::GraphCache>,
    /// GeoIP for new servers' zones; empty when no database is configured.
    pub geo: Arc<crate::shared::geo::GeoTable>,
    /// The snapshot the zone builder published last (`GET /api/v1/snapshot`).
    pub snapshot: Arc<zone_builder::SnapshotStore>,
    pub metrics: Arc<metrics::WebMetrics>,
}

/// Zone counts and when they were read. Counting joins every server's zones,
/// too much for every view of the front page; a few seconds old is fine.
struct CachedCounts {
    at: std::time::Instant,
    counts: Arc<HashMap<String, ZoneCount>>,
}

impl AppState {
    pub fn new(db: Db, settings: Settings) -> AppState {
        AppState {
            db,
            hasher: Arc::new(hashing::PasswordHasher::new(
                settings.limits.hash_threads,
                settings.limits.hash_queue,
            )),
            settings: Arc::new(settings),
            csrf_key: Arc::default(),
            node_pulls: Arc::default(),
            connections: Arc::default(),
            counts: Arc::default(),
            counts_refreshing: Arc::default(),
            graphs: Arc::default(),
            geo: Arc::new(crate::shared::geo::GeoTable::empty()),
            snapshot: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// Use this GeoIP table to place new servers.
    pub fn with_geo(mut self, geo: crate::shared::geo::GeoTable) -> AppState {
        self.geo = Arc::new(geo);
        self
    }

    /// The zone counts, about `counts_cache_secs` old at most. When they are
    /// stale, the request is served the previous counts while one
    /// background task recounts: no request waits for a recount (which
    /// joins every server's zones) except the very first, or every request
    /// when the cache is off (`counts_cache_secs = 0`).
    pub async fn zone_counts(
        &self,
    ) -> Result<Arc<HashMap<String, ZoneCount>>, crate::control::db::DbError> {
        use std::sync::atomic::Ordering;
        let ttl = std::time::Duration::from_secs(self.settings.counts_cache_secs);
        if !ttl.is_zero() {
            let cached = self.counts.lock().await;
            if let Some(c) = cached.as_ref() {
                if c.at.elapsed() >= ttl && !self.counts_refreshing.swap(true, Ordering::AcqRel) {
                    let state = self.clone();
                    tokio::spawn(async move {
                        match crate::control::db::servers::zone_counts(&state.db).await {
                            Ok(counts) => {
                                *state.counts.lock().await = Some(CachedCounts {
                                    at: std::time::Instant::now(),
                                    counts: Arc::new(counts),
                                });
                            }
                            Err(error) => {
                                tracing::warn!(%error, "recounting zones failed; serving the previous counts")
                            }
                        }
                        state.counts_refreshing.store(false, Ordering::Release);
                    });
                }
                return Ok(c.counts.clone());
            }
        }
        let counts = Arc::new(crate::control::db::servers::zone_counts(&self.db).await?);
        *self.counts.lock().await = Some(CachedCounts {
            at: std::time::Instant::now(),
            counts: counts.clone(),
        });
        Ok(counts)
    }

    /// The values every page's layout needs, merged with the page's own.
    pub fn page(
        &self,
        user: &Option<User>,
        csrf: &CsrfToken,
        extra: minijinja::Value,
    ) -> minijinja::Value {
        minijinja::context! {
            user => minijinja::value::Serde(user),
            csrf => csrf.0.as_str(),
            origin => self.settings.origin.as_str(),
            community_url => self.settings.community_url.as_str(),
            ..extra
        }
    }
}

/// A background job of `timepool web`: `pass` at once and then every
/// `every` (a slow pass delays the next rather than piling up), until
/// `stopping` turns true.
pub async fn run_every<F, Fut>(
    every: std::time::Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopping.changed() => return,
        }
        pass().await;
    }
}

/// Renders a template into an HTML response with the given status.
pub fn html(
    status: StatusCode,
    name: &str,
    ctx: minijinja::Value,
) -> Result<axum::response::Response, AppError> {
    use axum::response::IntoResponse;
    let body = templates::render(name, ctx)?;
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response())
}

/// Every route of the web app on one listener (tests, and `timepool web`
/// without `--internal-listen`).
pub fn router(state: AppState) -> Router {
    public_router(state, true)
}

/// The routers of the listeners: the main one, and with
/// `--internal-listen` a second one for /metrics, the snapshot and the
/// ingest API (then absent from the main one).
pub fn routers(state: AppState) -> (Router, Option<Router>) {
    match state.settings.internal_listen {
        None => (public_router(state, true), None),
        Some(_) => (
            public_router(state.clone(), false),
            Some(internal_router(state)),
        ),
    }
}

/// The pages, the API and, `with_internal`, the routes of DNS nodes,
/// monitors and Prometheus.
fn public_router(state: AppState, with_internal: bool) -> Router {
    let router = Router::new()
        // Public pages.
        .route("/", get(public::home))
        .route("/zone/{name}", get(public::zone))
        .route("/scores/{address}", get(public::scores))
        .route("/scores/{address}/graph.svg", get(public::score_graph))
        .route("/scores/{address}/log", get(public::score_log_csv))
        .route("/use", get(public::how_to_use))
        .route("/join", get(public::how_to_join))
        .route("/vendors", get(public::for_vendors))
        .route("/terms", get(public::terms))
        .route("/news", get(news::list))
        .route("/news/atom.xml", get(news::atom))
        .route("/static/style.css", get(public::style_css))
        // Accounts.
        .route("/signup", get(account::signup_form).post(account::signup))
        .route("/login", get(account::login_form).post(account::login))
        .route("/reset", get(reset::request_form).post(reset::request))
        .route("/verify/{token}", get(account::verify))
        .route("/manage/verify", post(account::resend_verification))
        .route("/manage/login", get(login_settings::show))
        .route(
            "/manage/login/password",
            post(login_settings::change_password),
        )
        .route("/manage/login/email", post(login_settings::change_email))
        .route("/manage/login/data.json", get(user_data::download))
        .route(
            "/manage/login/delete",
            get(user_data::show).post(user_data::request),
        )
        .route(
            "/reset/{token}",
            get(reset::password_form).post(reset::set_password),
        )
        .route("/logout", post(account::logout))
        .route(
            "/invite/{token}",
            get(account::invite_form).post(account::invite_accept),
        )
        .route("/manage/users", get(account::users))
        .route("/manage/users/invite", post(account::invite_create))
        .route("/manage/users/{id}/remove", post(account::user_remove))
        .route("/manage/users/{id}/role", post(account::user_role))
        .route("/manage/invites/{id}/revoke", post(account::invite_revoke))
        // An operator's servers.
        .route("/manage", get(servers::list))
        .route(
            "/manage/no-account",
            get(account::no_account).post(account::start_account),
        )
        .route("/manage/servers", post(servers::add))
        .route("/manage/servers/{id}/verify", post(verify_server::start))
        .route("/manage/claims", post(verify_server::claim))
        .route("/verify-server/{token}", get(verify_server::finish))
        .route(
            "/manage/servers/{id}",
            get(servers::detail).post(servers::update),
        )
        .route(
            "/manage/servers/{id}/delete",
            post(servers::schedule_deletion),
        )
        .route(
            "/manage/servers/{id}/undelete",
            post(servers::cancel_deletion),
        )
        .route("/manage/servers/{id}/check", post(servers::check_now))
        .route(
            "/manage/vendor",
            get(vendor::vendor_list).post(vendor::vendor_apply),
        )
        // Staff.
        .route("/staff", get(staff::index))
        .route("/staff/accounts", get(staff::accounts))
        .route(
            "/staff/monitors",
            get(staff::monitors).post(staff::monitor_create),
        )
        .route("/staff/monitors/{id}/state", post(staff::monitor_state))
        .route("/staff/monitors/{id}", get(staff::monitor_detail))
        .route("/staff/monitors/{id}/pairs", post(staff::pair_pause))
        .route("/staff/vendor-zones", get(staff::vendor_zones))
        .route(
            "/staff/vendor-zones/{id}/decide",
            post(staff::vendor_decide),
        )
        .route("/staff/audit", get(staff::audit))
        .route("/staff/mail", get(staff::mail))
        .route("/staff/servers", get(verify_server::staff_list))
        .route(
            "/staff/servers/{id}/verify",
            post(verify_server::staff_verify),
        )
        .route(
            "/staff/news",
            get(news::staff_page)
                .post(news::staff_create)
                .layer(axum::extract::DefaultBodyLimit::max(news::FORM_LIMIT)),
        )
        .route(
            "/staff/news/{id}",
            get(news::staff_edit)
                .post(news::staff_update)
                .layer(axum::extract::DefaultBodyLimit::max(news::FORM_LIMIT)),
        )
        .route("/staff/news/{id}/delete", post(news::staff_delete))
        .route("/staff/nodes", get(nodes::page))
        .route("/staff/nodes.json", get(nodes::json))
        // JSON API.
        .nest("/api/v1", api::router(with_internal))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            csrf::ensure_token,
        ))
        .layer(axum::middleware::from_fn(notice::read));
    let router = guarded(router, &state);
    let router = if with_internal {
        router.route("/metrics", get(metrics::scrape))
    } else {
        router
    };
    // The language is chosen before routing: the middleware strips a
    // `/LANG/` prefix, so it wraps the whole router as its fallback. The
    // headers go on every response, the language's redirects included.
    Router::new()
        .fallback_service(router.with_state(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            i18n::choose,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// The private listener's routes: Prometheus, the snapshot, the ingest API.
fn internal_router(state: AppState) -> Router {
    let router = Router::new()
        .nest("/api/v1", api::internal_router())
        .fallback(not_found);
    guarded(router, &state)
        .route("/metrics", get(metrics::scrape))
        .with_state(state)
}

/// What every routed request passes: the request count, the body limit
/// of forms (routes with larger bodies set their own), the request
/// timeout.
fn guarded(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    let timeout = state.settings.limits.request_timeout;
    router
        .layer(axum::extract::DefaultBodyLimit::max(FORM_BODY_LIMIT))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                match tokio::time::timeout(timeout, next.run(req)).await {
                    Ok(response) => response,
                    Err(_) => error::error_page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        i18n::tr("Timed out"),
                        i18n::tr("The request took too long and was stopped. Nothing was changed."),
                    ),
                }
            },
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
}

/// Headers on every response: no framing, no MIME sniffing, resources only
/// from this site, and no Referer to other sites (invite links carry tokens).
async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let path = req.uri().path();
    let path = i18n::split_prefix(path).map_or(path, |(_, tail)| tail);
    let private = ["/manage", "/staff", "/invite/", "/login", "/signup"]
        .iter()
        .any(|prefix| path.starts_with(prefix));
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self'; img-src 'self'; script-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Private pages (tokens, invite links, an account's data) and anything
    // that sets a cookie are never kept by a browser or a proxy cache.
    if private && !headers.contains_key(header::CACHE_CONTROL)
        || headers.contains_key(header::SET_COOKIE)
    {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn not_found() -> AppError {
    AppError::NotFound
}

pub(crate) async fn method_not_allowed() -> axum::response::Response {
    error::error_page(
        StatusCode::METHOD_NOT_ALLOWED,
        i18n::tr("Method not allowed"),
        i18n::tr("This address does not accept that kind of request."),
    )
}

/// `timepool web`: connect, migrate, serve until Ctrl-C or SIGTERM.
pub async fn run(args: WebArgs) -> Result<(), BoxError> {
    crate::shared::process::raise_open_file_limit();
    let settings = Settings::resolve(&args)?;
    let publish = PublishSettings::resolve(&args)?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    // Installed now, before the app says it listens: a SIGTERM from then
    // on stops it gracefully.
    let mut signals = crate::shared::signals::Signals::stop_only()
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    serve(settings, publish, listener, async move {
        signals.next().await;
    })
    .await
}

/// The web app and its zone builder on `listener` (and the internal
/// listener, when set) until `shutdown` resolves; in-flight requests then
/// finish and the zone builder's lease is given up. (`timepool web`, and
/// the demo with its own listener and stop signal.)
pub async fn serve(
    mut settings: Settings,
    publish: PublishSettings,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    // `--listen HOST:0` picks a free port; links in mails and pages name
    // the one it got.
    if let Ok(bound) = listener.local_addr()
        && let Some(base) = settings.site_url.strip_suffix(":0")
    {
        settings.site_url = format!("{base}:{}", bound.port());
    }
    let signing_key = zone_builder::read_signing_key(publish.signing_key.as_deref())?;
    let tls = match &settings.tls {
        Some(files) => {
            Some(Arc::new(tls::CertificateFiles::open(&files.cert, &files.key)?).server_config()?)
        }
        None => None,
    };
    let internal = match settings.internal_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| format!("cannot listen on --internal-listen {address}: {e}"))?,
        ),
        None => None,
    };
    let db = Db::connect(&settings.database_url).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        tls = tls.is_some(),
        origin = %settings.origin,
        engine = ?db.engine,
        "timepool web listening"
    );
    if let Some(internal) = &internal {
        tracing::info!(
            internal_listen = %internal.local_addr()?,
            "/metrics, /api/v1/snapshot and the ingest API are served there only"
        );
    }
    let geo = match settings.geoip.clone() {
        Some(path) => {
            let geo =
                tokio::task::spawn_blocking(move || crate::shared::geo::GeoTable::open(&path))
                    .await??;
            tracing::info!(database = geo.description(), "GeoIP places new servers");
            geo
        }
        None => {
            tracing::warn!("no GeoIP database: operators choose each new server's country");
            crate::shared::geo::GeoTable::empty()
        }
    };
    let build_config = zone_builder::BuildConfig {
        signing_key,
        score_ramp: publish.score_ramp,
        ..zone_builder::BuildConfig::for_origin(
            &settings.origin,
            publish.nameservers.clone(),
            Some(publish.snapshot_out.clone()),
        )
    };
    let instance = build_config.instance.clone();
    // The snapshot's directory (the data dir by default; with PostgreSQL
    // nothing else makes it), owner-only when new.
    if let Some(parent) = publish.snapshot_out.parent()
        && !parent.as_os_str().is_empty()
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let listening = listener::ListenerConfig {
        tls,
        max_connections: settings.limits.max_connections,
        header_timeout: settings.limits.header_timeout,
    };
    let mail_sender = match &settings.smtp_url {
        Some(url) => Some(crate::control::mail::Sender::new(
            url,
            &settings.mail_from,
            settings.smtp_ca_file.as_deref(),
        )?),
        None => {
            tracing::warn!(
                "mail is off (no --smtp-url): mails stay queued; staff read them on /staff/mail"
            );
            None
        }
    };
    let state = AppState::new(db.clone(), settings).with_geo(geo);
    let builder = tokio::spawn(zone_builder::run(
        db.clone(),
        build_config,
        state.snapshot.clone(),
        publish.schedule,
    ));
    let (public, internal_app) = routers(state.clone());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let alert_job = tokio::spawn(alerts::run(state.clone(), stopping.clone()));
    let selector_job = tokio::spawn(selector::run(
        state.clone(),
        instance.clone(),
        stopping.clone(),
    ));
    let deletion_job = tokio::spawn(user_data::run(state.clone(), stopping.clone()));
    let mailer = mail_sender.map(|sender| {
        tokio::spawn(crate::control::mail::run(
            db.clone(),
            sender,
            stopping.clone(),
        ))
    });
    let main = listener::serve(
        listener,
        public,
        listening.clone(),
        state.connections.clone(),
        stopping.clone(),
    );
    match (internal, internal_app) {
        (Some(internal), Some(app)) => {
            let second = listener::serve(
                internal,
                app,
                listening,
                state.connections.clone(),
                stopping,
            );
            tokio::join!(main, second);
        }
        _ => main.await,
    }
    builder.abort();
    let _ = builder.await;
    for job in [alert_job, deletion_job, selector_job] {
        job.abort();
        let _ = job.await;
    }
    if let Some(mailer) = mailer {
        // A mail being handed over finishes (it stops at its next pass);
        // one not sent stays queued for the next start.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(35), mailer).await;
    }
    if let Err(error) = crate::control::db::leases::release(
        &db,
        crate::control::db::leases::ZONE_BUILDER,
        &instance,
    )
    .await
    {
        tracing::warn!(%error, "cannot give up the zone builder's lease; it expires by itself");
    }
    // The selector's job was stopped above, maybe mid-pass: its lease is
    // given up here so another instance takes over at once.
    if let Err(error) = crate::control::db::leases::release(
        &db,
        crate::control::db::pairs::SELECTOR_LEASE,
        &instance,
    )
    .await
    {
        tracing::warn!(%error, "cannot give up the selector's lease; it expires by itself");
    }
    db.pool.close().await;
    tracing::info!("timepool web stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sample_config_in_scripts_parses() {
        let text = include_str!("../../../scripts/timepool-web.toml");
        let config: super::FileConfig = toml::from_str(text).expect("scripts/timepool-web.toml");
        assert_eq!(config.nameservers.map(|n| n.len()), Some(3));
        assert!(config.snapshot_out.is_some());
    }
}
