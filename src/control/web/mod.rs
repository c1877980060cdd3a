//! `timepool web`: the control plane's web app (operators, staff, public
//! pages, JSON API).
//!
//! Architecture invariant: the web layer never answers DNS and the DNS path
//! never imports this module; the two meet only at the snapshot file.
//!
//! Code map: `mod.rs` settings and the router; `public` pages anyone can see;
//! `account` sign-up, login, users and invites; `servers` an operator's
//! servers; `vendor` vendor zone applications; `staff` staff pages; `api` the JSON API; `admin` the CLI;
//! `session`/`csrf` who is asking and form protection; `error` the one place
//! errors become responses; `templates`/`graph` rendering.

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
pub mod api;
pub mod csrf;
pub mod error;
pub mod form;
pub mod graph;
pub mod ingest;
pub mod metrics;
pub mod public;
pub mod servers;
pub mod session;
pub mod staff;
pub mod templates;
pub mod vendor;

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
use crate::control::zone_builder;
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
    /// Accept loopback addresses as servers (tests and demos only).
    #[arg(long, env = "TIMEPOOL_ALLOW_LOOPBACK")]
    pub allow_loopback: bool,
    /// Mark cookies Secure (when served over HTTPS).
    #[arg(long, env = "TIMEPOOL_SECURE_COOKIES")]
    pub secure_cookies: bool,
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
    /// Seconds between two checks of a server by one active monitor
    /// (testing monitors: 2x, candidates: 4x) [default: 540].
    #[arg(long, env = "TIMEPOOL_CHECK_INTERVAL_SECS")]
    pub check_interval_secs: Option<i64>,
    /// No two checks of one server closer than this, by any monitors
    /// [default: 60].
    #[arg(long, env = "TIMEPOOL_MIN_CHECK_GAP_SECS")]
    pub min_check_gap_secs: Option<i64>,
}

/// The config file's keys; all optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub origin: Option<String>,
    pub allow_loopback: Option<bool>,
    pub secure_cookies: Option<bool>,
    pub counts_cache_secs: Option<u64>,
    pub geoip: Option<PathBuf>,
    pub snapshot_out: Option<PathBuf>,
    pub nameservers: Option<Vec<String>>,
    pub zone_check_secs: Option<f64>,
    pub check_interval_secs: Option<i64>,
    pub min_check_gap_secs: Option<i64>,
}

/// The resolved settings the app runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub origin: String,
    pub allow_loopback: bool,
    pub secure_cookies: bool,
    /// How long zone counts (home, zone pages, API) are reused; 0 = always fresh.
    pub counts_cache_secs: u64,
    /// The GeoIP database, if any.
    pub geoip: Option<PathBuf>,
    /// How often monitors are handed each server.
    pub check_schedule: crate::control::db::schedule::CheckSchedule,
}

/// The zone builder's settings, resolved like `Settings`.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    pub snapshot_out: PathBuf,
    pub nameservers: Vec<String>,
    pub schedule: zone_builder::Schedule,
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
        Ok(PublishSettings {
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
        let default_schedule = crate::control::db::schedule::CheckSchedule::default();
        Ok(Settings {
            listen,
            database_url,
            origin,
            allow_loopback: args.allow_loopback || file.allow_loopback.unwrap_or(false),
            secure_cookies: args.secure_cookies || file.secure_cookies.unwrap_or(false),
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
                min_gap: args
                    .min_check_gap_secs
                    .or(file.min_check_gap_secs)
                    .unwrap_or(default_schedule.min_gap),
            }
            .validated()?,
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
    pub limiter: Arc<session::LoginLimiter>,
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
            settings: Arc::new(settings),
            limiter: Arc::default(),
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
            ..extra
        }
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

/// Every route of the web app.
pub fn router(state: AppState) -> Router {
    Router::new()
        // Public pages.
        .route("/", get(public::home))
        .route("/zone/{name}", get(public::zone))
        .route("/scores/{address}", get(public::scores))
        .route("/scores/{address}/graph.svg", get(public::score_graph))
        .route("/scores/{address}/log", get(public::score_log_csv))
        .route("/use", get(public::how_to_use))
        .route("/join", get(public::how_to_join))
        .route("/static/style.css", get(public::style_css))
        // Accounts.
        .route("/signup", get(account::signup_form).post(account::signup))
        .route("/login", get(account::login_form).post(account::login))
        .route("/logout", post(account::logout))
        .route(
            "/invite/{token}",
            get(account::invite_form).post(account::invite_accept),
        )
        .route("/manage/users", get(account::users))
        .route("/manage/users/invite", post(account::invite_create))
        .route("/manage/users/{id}/remove", post(account::user_remove))
        .route("/manage/invites/{id}/revoke", post(account::invite_revoke))
        // An operator's servers.
        .route("/manage", get(servers::list))
        .route("/manage/servers", post(servers::add))
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
        .route("/staff/vendor-zones", get(staff::vendor_zones))
        .route(
            "/staff/vendor-zones/{id}/decide",
            post(staff::vendor_decide),
        )
        .route("/staff/audit", get(staff::audit))
        // JSON API.
        .nest("/api/v1", api::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            csrf::ensure_token,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .route("/metrics", get(metrics::scrape))
        .with_state(state)
}

/// Headers on every response: no framing, no MIME sniffing, resources only
/// from this site, and no Referer to other sites (invite links carry tokens).
async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
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
    response
}

async fn not_found() -> AppError {
    AppError::NotFound
}

async fn method_not_allowed() -> axum::response::Response {
    error::error_page(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "This address does not accept that kind of request.",
    )
}

/// `timepool web`: connect, migrate, serve until Ctrl-C or SIGTERM.
pub async fn run(args: WebArgs) -> Result<(), BoxError> {
    let settings = Settings::resolve(&args)?;
    let publish = PublishSettings::resolve(&args)?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    serve(
        settings,
        publish,
        listener,
        crate::shared::signals::shutdown(),
    )
    .await
}

/// The web app and its zone builder on `listener` until `shutdown`
/// resolves; in-flight requests then finish. (`timepool web`, and the demo
/// with its own listener and stop signal.)
pub async fn serve(
    settings: Settings,
    publish: PublishSettings,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let db = Db::connect(&settings.database_url).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        origin = %settings.origin,
        engine = ?db.engine,
        "timepool web listening"
    );
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
    let build_config = zone_builder::BuildConfig::for_origin(
        &settings.origin,
        publish.nameservers.clone(),
        Some(publish.snapshot_out.clone()),
    );
    let state = AppState::new(db.clone(), settings).with_geo(geo);
    let builder = tokio::spawn(zone_builder::run(
        db.clone(),
        build_config,
        state.snapshot.clone(),
        publish.schedule,
    ));
    let app = router(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    builder.abort();
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
