//! Pages anyone can see: home, zones, server scores (HTML, SVG, CSV), how to
//! use and how to join.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::csrf::CsrfToken;
use super::error::AppError;
use super::i18n;
use super::session::MaybeUser;
use super::{AppState, html};
use crate::control::db::monitors;
use crate::control::db::scores::{self, LogQuery};
use crate::control::db::servers::{self, Server, ZoneCount};
use crate::control::timefmt;
use crate::control::zone_tree;

/// A zone with its counts, as pages and the API show it.
#[derive(Serialize, Clone, Debug)]
pub struct ZoneRow {
    pub zone: &'static str,
    pub name: &'static str,
    pub v4: i64,
    pub v6: i64,
    pub registered_v4: i64,
    pub registered_v6: i64,
}

pub fn zone_row(info: &zone_tree::ZoneInfo, counts: &HashMap<String, ZoneCount>) -> ZoneRow {
    let c = counts.get(info.zone).cloned().unwrap_or_default();
    ZoneRow {
        zone: info.zone,
        name: info.name,
        v4: c.v4,
        v6: c.v6,
        registered_v4: c.registered_v4,
        registered_v6: c.registered_v6,
    }
}

/// The DNS names clients should use for a zone, e.g. 0.de.pool.ntp.org.
pub fn names_for_zone(zone: &str, origin: &str) -> Vec<String> {
    let base = if zone == "@" {
        origin.to_string()
    } else {
        format!("{zone}.{origin}")
    };
    let mut names: Vec<String> = (0..4).map(|n| format!("{n}.{base}")).collect();
    names.push(base);
    names
}

pub async fn home(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let counts = state.zone_counts().await?;
    let continents: Vec<ZoneRow> = zone_tree::children("@")
        .iter()
        .map(|z| zone_row(z, &counts))
        .collect();
    let global = zone_row(&zone_tree::lookup("@").ok_or(AppError::NotFound)?, &counts);
    let news = super::news::front_page(&state).await?;
    let min_score = crate::control::db::servers::MIN_DNS_SCORE as i64;
    let ctx = ctx! { continents, global, news, min_score };
    html(StatusCode::OK, "home.html", state.page(&user, &csrf, ctx))
}

/// What vendor zones are and how to apply.
pub async fn for_vendors(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let ctx = minijinja::context! {};
    html(
        StatusCode::OK,
        "vendors.html",
        state.page(&user, &csrf, ctx),
    )
}

pub async fn terms(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let ctx = minijinja::context! {};
    html(StatusCode::OK, "terms.html", state.page(&user, &csrf, ctx))
}

pub async fn zone(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    let Some(canonical) = zone_tree::canonical(&name) else {
        return Err(AppError::NotFound);
    };
    if canonical != name {
        // /zone/GB -> /zone/uk, /zone/global -> /zone/@
        return Ok(Redirect::permanent(&i18n::url(&format!("/zone/{canonical}"))).into_response());
    }
    let info = zone_tree::lookup(canonical).ok_or(AppError::NotFound)?;
    let counts = state.zone_counts().await?;
    let this = zone_row(&info, &counts);
    let children: Vec<ZoneRow> = zone_tree::children(canonical)
        .iter()
        .map(|z| zone_row(z, &counts))
        .collect();
    let parents: Vec<&str> = zone_tree::with_parents(canonical)
        .into_iter()
        .skip(1)
        .collect();
    let names = names_for_zone(canonical, &state.settings.origin);
    let ctx = ctx! { zone => this, children, parents, names };
    html(StatusCode::OK, "zone.html", state.page(&user, &csrf, ctx))
}

/// Finds a server by the address in the URL, in any textual form of the IP.
async fn server_at(state: &AppState, address: &str) -> Result<Server, AppError> {
    let ip: IpAddr = address
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| AppError::NotFound)?;
    servers::get_by_address(&state.db, &ip.to_string())
        .await?
        .ok_or(AppError::NotFound)
}

pub async fn scores(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
    Path(address): Path<String>,
) -> Result<Response, AppError> {
    let server = server_at(&state, &address).await?;
    let monitors = crate::control::db::pairs::for_server(&state.db, server.id).await?;
    let recent = scores::log(
        &state.db,
        server.id,
        &LogQuery {
            limit: 20,
            since: None,
            monitor_id: None,
        },
    )
    .await?;
    let ctx = ctx! { server, monitors, recent, min_score => servers::MIN_DNS_SCORE };
    html(StatusCode::OK, "scores.html", state.page(&user, &csrf, ctx))
}

/// The score/offset graph as SVG, drawn by plotters.
pub async fn score_graph(
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> Result<Response, AppError> {
    let server = server_at(&state, &address).await?;
    let svg = state
        .graphs
        .get_or_render(server.id, || async {
            let since = crate::control::db::now() - super::graph::WINDOW_SECS;
            let query = LogQuery {
                limit: 10_000,
                since: Some(since),
                monitor_id: None,
            };
            let log = scores::log(&state.db, server.id, &query).await?;
            super::graph::score_svg(&log)
        })
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=60"),
        ],
        svg.as_str().to_owned(),
    )
        .into_response())
}

/// Query string of the CSV log; kept as text so bad values get a clear 400.
#[derive(Deserialize, Default)]
pub struct LogParams {
    pub limit: Option<String>,
    pub monitor: Option<String>,
    pub since: Option<String>,
}

pub const LOG_DEFAULT_LIMIT: i64 = 100;
pub const LOG_MAX_LIMIT: i64 = 10_000;

/// Turns the query string into a LogQuery, resolving a monitor name to its id.
pub async fn parse_log_params(state: &AppState, params: &LogParams) -> Result<LogQuery, AppError> {
    let limit = match params.limit.as_deref().map(str::trim) {
        None | Some("") => LOG_DEFAULT_LIMIT,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n >= 1 => n.min(LOG_MAX_LIMIT),
            _ => {
                return Err(AppError::BadRequest(format!(
                    "limit must be a whole number from 1 to {LOG_MAX_LIMIT}."
                )));
            }
        },
    };
    let since = match params.since.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => match text.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Err(AppError::BadRequest(
                    "since must be a unix timestamp in seconds.".into(),
                ));
            }
        },
    };
    let monitor_id = match params.monitor.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => match text.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => {
                let all = monitors::list(&state.db).await?;
                match all.iter().find(|m| m.name == text) {
                    Some(m) => Some(m.id),
                    None => {
                        return Err(AppError::BadRequest(format!(
                            "There is no monitor named \"{text}\"."
                        )));
                    }
                }
            }
        },
    };
    Ok(LogQuery {
        limit,
        since,
        monitor_id,
    })
}

/// A text cell of the CSV: quoted when needed (RFC 4180), and inert in
/// a spreadsheet: text that starts like a formula (`= + - @`, a tab or a
/// carriage return) gets a leading `'` (OWASP's advice), so a monitor's
/// error text `=HYPERLINK(...)` stays text.
pub fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

pub async fn score_log_csv(
    State(state): State<AppState>,
    Path(address): Path<String>,
    Query(params): Query<LogParams>,
) -> Result<Response, AppError> {
    let server = server_at(&state, &address).await?;
    let query = parse_log_params(&state, &params).await?;
    let log = scores::log(&state.db, server.id, &query).await?;
    let mut out =
        String::from("ts_epoch,ts,offset,step,score,monitor_id,monitor_name,rtt,leap,error\n");
    for e in &log {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            e.ts,
            timefmt::rfc3339(e.ts),
            opt(e.offset),
            opt(e.step),
            e.score,
            opt(e.monitor_id),
            csv_field(e.monitor_name.as_deref().unwrap_or("")),
            opt(e.rtt),
            opt(e.leap),
            csv_field(e.error.as_deref().unwrap_or("")),
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
}

pub async fn how_to_use(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let names = names_for_zone("@", &state.settings.origin);
    let ctx = ctx! { names };
    html(StatusCode::OK, "use.html", state.page(&user, &csrf, ctx))
}

pub async fn how_to_join(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let ctx = ctx! { min_score => servers::MIN_DNS_SCORE };
    html(StatusCode::OK, "join.html", state.page(&user, &csrf, ctx))
}

pub async fn style_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        super::templates::STYLE_CSS,
    )
        .into_response()
}
