//! The JSON API under /api/v1. Its OpenAPI document, openapi.json next to
//! this file, is hand-written: change both together (a test checks that
//! every route here is in the document).

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::AppState;
use super::error::AppError;
use super::public::{LogParams, ZoneRow, names_for_zone, parse_log_params, zone_row};
use crate::control::db::scores::{self, LogEntry};
use crate::control::db::servers;
use crate::control::zone_tree;
use crate::shared::zones::Continent;

pub const OPENAPI: &str = include_str!("openapi.json");

/// The routes, as (path in the OpenAPI document, router path).
pub const ROUTES: &[&str] = &[
    "/zones",
    "/zones/{zone}",
    "/servers/{address}/scores",
    "/snapshot",
    "/monitor/batch",
    "/monitor/results",
    "/monitor/self-check",
    "/monitors",
    "/openapi.json",
];

/// The whole API, or (`with_internal` false) without the routes for DNS
/// nodes and monitors, which `--internal-listen` moves to its own
/// listener ([`internal_router`]).
pub fn router(with_internal: bool) -> Router<AppState> {
    let public = Router::new()
        .route("/zones", get(zones))
        .route("/zones/{zone}", get(zone))
        .route("/servers/{address}/scores", get(server_scores))
        .route("/monitors", get(monitors))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError(AppError::NotFound) });
    if with_internal {
        public.merge(internal_router())
    } else {
        public
    }
}

/// The routes DNS nodes and monitors use: the snapshot and the ingest API
/// (whose results may be a whole batch: its own body limit).
pub fn internal_router() -> Router<AppState> {
    Router::new()
        .route("/snapshot", get(snapshot))
        .route("/monitor/batch", get(super::ingest::get_batch))
        .route(
            "/monitor/results",
            post(super::ingest::post_results).layer(axum::extract::DefaultBodyLimit::max(
                crate::shared::monitor_protocol::MAX_RESULTS_BODY,
            )),
        )
        .route(
            "/monitor/self-check",
            post(super::ingest::post_self_check).layer(axum::extract::DefaultBodyLimit::max(
                crate::shared::monitor_protocol::MAX_SELF_CHECK_BODY,
            )),
        )
}

/// API errors are JSON `{"error": "..."}` with the status the page would get.
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(err: AppError) -> ApiError {
        ApiError(err)
    }
}

impl From<crate::control::db::DbError> for ApiError {
    fn from(err: crate::control::db::DbError) -> ApiError {
        ApiError(AppError::Db(err))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use axum::http::StatusCode;
        let (status, message) = match self.0 {
            AppError::NotFound => (StatusCode::NOT_FOUND, "not found".to_string()),
            AppError::BadRequest(msg) => (StatusCode::BAD_REQUEST, msg),
            AppError::Db(err) if crate::control::db::is_unavailable(&err) => {
                tracing::warn!(error = %err, "the database is unavailable to the API");
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(serde_json::json!({
                        "error": "the database is unavailable; try again later"
                    })),
                )
                    .into_response();
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("30"),
                );
                return response;
            }
            // The rest are not expected here; let the page mapping log them.
            other => {
                let status = other.into_response().status();
                (status, "internal error; nothing was changed".to_string())
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

#[derive(Serialize)]
struct ZonesResponse {
    zones: Vec<ZoneRow>,
}

/// The global zone, the continents and every country with servers.
async fn zones(State(state): State<AppState>) -> Result<Json<ZonesResponse>, ApiError> {
    let counts = state.zone_counts().await?;
    let mut out = Vec::new();
    for zone in std::iter::once("@").chain(Continent::ALL.iter().map(|c| c.zone_name())) {
        if let Some(info) = zone_tree::lookup(zone) {
            out.push(zone_row(&info, &counts));
        }
    }
    let mut countries: Vec<ZoneRow> = zone_tree::all_countries()
        .iter()
        .filter(|c| counts.contains_key(c.zone))
        .map(|c| zone_row(c, &counts))
        .collect();
    countries.sort_by(|a, b| a.zone.cmp(b.zone));
    out.extend(countries);
    Ok(Json(ZonesResponse { zones: out }))
}

#[derive(Serialize)]
struct ZoneResponse {
    #[serde(flatten)]
    zone: ZoneRow,
    parent: Option<&'static str>,
    names: Vec<String>,
    children: Vec<ZoneRow>,
}

async fn zone(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ZoneResponse>, ApiError> {
    let zone = zone_tree::canonical(&name)
        .and_then(zone_tree::lookup)
        .ok_or(AppError::NotFound)?;
    let counts = state.zone_counts().await?;
    Ok(Json(ZoneResponse {
        zone: zone_row(&zone, &counts),
        parent: zone.parent,
        names: names_for_zone(zone.zone, &state.settings.origin),
        children: zone_tree::children(zone.zone)
            .iter()
            .map(|z| zone_row(z, &counts))
            .collect(),
    }))
}

#[derive(Serialize)]
struct ServerSummary {
    address: String,
    ip_version: i64,
    score: f64,
    status: &'static str,
    zones: Vec<String>,
}

#[derive(Serialize)]
struct ScoresResponse {
    server: ServerSummary,
    /// The server's (server, monitor) pairs, active first, then testing,
    /// candidates and paused.
    monitors: Vec<crate::control::db::pairs::PairView>,
    history: Vec<LogEntry>,
}

async fn server_scores(
    State(state): State<AppState>,
    Path(address): Path<String>,
    Query(params): Query<LogParams>,
) -> Result<Json<ScoresResponse>, ApiError> {
    let ip: std::net::IpAddr = address.parse().map_err(|_| AppError::NotFound)?;
    let server = servers::get_by_address(&state.db, &ip.to_string())
        .await?
        .ok_or(AppError::NotFound)?;
    let query = parse_log_params(&state, &params).await?;
    let history = scores::log(&state.db, server.id, &query).await?;
    let monitors = crate::control::db::pairs::for_server(&state.db, server.id).await?;
    Ok(Json(ScoresResponse {
        monitors,
        server: ServerSummary {
            address: server.address,
            ip_version: server.ip_version,
            score: server.score,
            status: server.status,
            zones: server.zones,
        },
        history,
    }))
}

/// A monitor as the public API shows it (no address, no account).
#[derive(Serialize)]
struct MonitorSummary {
    name: String,
    state: String,
    /// The country of its address (GeoIP), when known.
    country: Option<String>,
    /// Its pairs by state.
    pairs: PairCounts,
    /// The latest self-check of its own clock.
    self_check: Option<SelfCheckSummary>,
}

#[derive(Serialize, Default)]
pub struct PairCounts {
    pub active: i64,
    pub testing: i64,
    pub candidate: i64,
    pub paused: i64,
}

impl PairCounts {
    pub fn from_slots(slots: [i64; 4]) -> PairCounts {
        PairCounts {
            active: slots[0],
            testing: slots[1],
            candidate: slots[2],
            paused: slots[3],
        }
    }
}

#[derive(Serialize)]
struct SelfCheckSummary {
    ok: bool,
    ts: Option<i64>,
    offset: Option<f64>,
}

/// The country of a monitor's address, from the GeoIP database.
pub fn monitor_country(state: &AppState, ip: Option<&str>) -> Option<String> {
    let ip: std::net::IpAddr = ip?.parse().ok()?;
    let found = state.geo.lookup(ip);
    found.country.map(|c| c.as_str().to_string())
}

/// `GET /api/v1/monitors`: every monitor with its pairs by state, its
/// country and its latest self-check.
async fn monitors(State(state): State<AppState>) -> Result<Json<Vec<MonitorSummary>>, ApiError> {
    let counts = crate::control::db::pairs::counts_by_monitor(&state.db).await?;
    let list = crate::control::db::monitors::list(&state.db).await?;
    Ok(Json(
        list.into_iter()
            .map(|m| MonitorSummary {
                country: monitor_country(&state, m.ip.as_deref()),
                pairs: PairCounts::from_slots(counts.get(&m.id).copied().unwrap_or_default()),
                self_check: m.self_check_ok.map(|ok| SelfCheckSummary {
                    ok,
                    ts: m.self_check_at,
                    offset: m.self_check_offset,
                }),
                name: m.name,
                state: m.state,
            })
            .collect(),
    ))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The header that carries the snapshot's serial.
pub const SERIAL_HEADER: &str = "x-timepool-serial";

/// `GET /api/v1/snapshot`: the zone builder's current snapshot, for DNS
/// daemons following this control plane (`timepool dns --snapshot-url`).
/// Strong ETag (of the uncompressed bytes; the gzip form gets its own tag
/// with a `-gzip` suffix, as representations differ); If-None-Match gives
/// 304 for either tag; gzip when the client accepts it; the signature of
/// the uncompressed bytes in `X-Timepool-Signature`. The pulling node is
/// recorded for the nodes page (`web::nodes`).
async fn snapshot(
    State(state): State<AppState>,
    connect: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: header::HeaderMap,
) -> Response {
    use axum::http::{HeaderValue, StatusCode};
    let node = match super::nodes::identify(&state, &headers).await {
        Ok(node) => node,
        Err(status) => {
            let message = if status == StatusCode::UNAUTHORIZED {
                "a registered node's token is needed (Authorization: Bearer)"
            } else {
                "try again later"
            };
            return (status, Json(serde_json::json!({ "error": message }))).into_response();
        }
    };
    if let Some((name, registered)) = &node {
        let peer = connect.map(|axum::Extension(c)| c.0);
        let address =
            super::client_addr::client_ip(peer, &headers, &state.settings.trusted_proxies);
        super::nodes::record(&state, (name, *registered), address, &headers).await;
    }
    let Some(current) = state.snapshot.current() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            Json(serde_json::json!({"error": "no snapshot published yet"})),
        )
            .into_response();
    };
    let gzip_etag = format!("{}-gzip\"", current.etag.trim_end_matches('"'));
    let wants_gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        });
    let etag = if wants_gzip {
        &gzip_etag
    } else {
        &current.etag
    };
    let not_modified = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == current.etag || tag == gzip_etag);
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else if wants_gzip {
        let mut response = current.gzip.clone().into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        current.bytes.clone().into_response()
    };
    let headers = response.headers_mut();
    if !not_modified {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(SERIAL_HEADER, HeaderValue::from(current.serial));
    if let Some(signature) = current
        .signature
        .as_deref()
        .and_then(|line| HeaderValue::from_str(line).ok())
    {
        headers.insert(crate::shared::snapshot::signature::HEADER, signature);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
