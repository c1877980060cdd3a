//! Where each DNS node stands (the pool has such a page): a node says who
//! it is when it pulls the snapshot (`X-Timepool-Node`, the serial it
//! serves, its version in `User-Agent`, and its token when the operator
//! registered it with `timepool admin create-node`); the control plane
//! records the pull, and staff see every node with how far behind it is
//! (`/staff/nodes`, `/staff/nodes.json`). A node more than 10 minutes
//! behind, or silent for as long, is flagged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Serialize;

use super::csrf::CsrfToken;
use super::error::AppError;
use super::session::StaffUser;
use super::{AppState, html};
use crate::control::db::{self, nodes};
use crate::shared::snapshot::{NODE_HEADER, NODE_SERIAL_HEADER};

/// Behind (or silent) for longer than this: flagged.
pub const STALE_SECS: i64 = 600;

/// A pull is written to the database at most this often per node (and
/// whenever its serial changes): nodes poll every few seconds.
const RECORD_EVERY_SECS: i64 = 30;

/// Nodes whose last write is remembered; past this the memory is
/// dropped (and every node is written once more).
const MAX_REMEMBERED: usize = 4096;

/// When each node's pull was last written, and with which serial.
#[derive(Debug, Default)]
pub struct PullLog(Mutex<HashMap<String, (i64, Option<u32>)>>);

/// Who is pulling: a registered node (by its token), a node that only
/// gave its name, or nobody in particular. A wrong token, or none when
/// `--require-node-tokens` is set, is 401.
pub async fn identify(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(String, bool)>, StatusCode> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or(StatusCode::UNAUTHORIZED)?;
        return match nodes::by_token(&state.db, token).await {
            Ok(Some(name)) => Ok(Some((name, true))),
            Ok(None) => Err(StatusCode::UNAUTHORIZED),
            Err(error) => {
                tracing::error!(%error, "cannot look up a node token");
                Err(StatusCode::SERVICE_UNAVAILABLE)
            }
        };
    }
    if state.settings.require_node_tokens {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let name = headers
        .get(NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|name| super::form::is_short_name(name));
    Ok(name.map(|name| (name.to_string(), false)))
}

/// Records a node's pull (throttled). Failures are logged; the pull is
/// served anyway.
pub async fn record(
    state: &AppState,
    (name, registered): (&str, bool),
    address: Option<IpAddr>,
    headers: &HeaderMap,
) {
    let serial = headers
        .get(NODE_SERIAL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    let version = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(64).collect::<String>());
    let now = db::now();
    if let Ok(mut log) = state.node_pulls.0.lock() {
        if log
            .get(name)
            .is_some_and(|(at, held)| now - at < RECORD_EVERY_SECS && *held == serial)
        {
            return;
        }
        if log.len() >= MAX_REMEMBERED {
            log.clear();
        }
        log.insert(name.to_string(), (now, serial));
    }
    let address = address.map(|a| a.to_string()).unwrap_or_default();
    let pull = nodes::Pull {
        name,
        registered,
        address: &address,
        serial,
        version: version.as_deref(),
        at: now,
    };
    match nodes::record_pull(&state.db, &pull).await {
        Ok(true) => {}
        Ok(false) => tracing::debug!(
            node = name,
            "pull not recorded (unregistered names full, or a registered name without its token)"
        ),
        Err(error) => tracing::warn!(%error, node = name, "cannot record a node's pull"),
    }
}

/// A node as the page and the JSON show it.
#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub registered: bool,
    pub serial: Option<i64>,
    pub version: Option<String>,
    pub last_address: Option<String>,
    pub last_pull_at: Option<i64>,
    /// Seconds since the snapshot after the node's serial was published
    /// (0: it serves the current one).
    pub behind_secs: i64,
    pub behind_text: String,
    pub flagged: bool,
    pub problem: String,
}

/// The nodes with how far behind each is, at `now`.
pub async fn statuses(state: &AppState, now: i64) -> Result<Vec<NodeStatus>, AppError> {
    let nodes = nodes::list(&state.db).await?;
    Ok(nodes
        .into_iter()
        .map(|node| {
            let behind_secs = node.superseded_at.map_or(0, |at| (now - at).max(0));
            let silent = node.last_pull_at.is_none_or(|at| now - at > STALE_SECS);
            let problem = if node.last_pull_at.is_none() {
                "never pulled".to_string()
            } else if silent {
                format!(
                    "no pull for {} min",
                    (now - node.last_pull_at.unwrap_or(now)) / 60
                )
            } else if behind_secs > STALE_SECS {
                format!("{} min behind", behind_secs / 60)
            } else {
                String::new()
            };
            NodeStatus {
                flagged: !problem.is_empty(),
                behind_text: match behind_secs {
                    0 => "current".to_string(),
                    s if s < 120 => format!("{s} s"),
                    s => format!("{} min", s / 60),
                },
                name: node.name,
                registered: node.registered,
                serial: node.serial,
                version: node.version,
                last_address: node.last_address,
                last_pull_at: node.last_pull_at,
                behind_secs,
                problem,
            }
        })
        .collect())
}

/// `GET /staff/nodes`.
pub async fn page(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let nodes = statuses(&state, db::now()).await?;
    let current = state.snapshot.current();
    let ctx = ctx! {
        nodes,
        current_serial => current.as_ref().map(|c| c.serial),
        current_published_at => current.as_ref().map(|c| c.published_at),
        stale_minutes => STALE_SECS / 60,
    };
    html(
        StatusCode::OK,
        "staff_nodes.html",
        state.page(&Some(user), &csrf, ctx),
    )
}

#[derive(Serialize)]
pub struct NodesDocument {
    current_serial: Option<u32>,
    current_published_at: Option<i64>,
    stale_after_secs: i64,
    nodes: Vec<NodeStatus>,
}

/// `GET /staff/nodes.json`.
pub async fn json(
    State(state): State<AppState>,
    StaffUser(_): StaffUser,
) -> Result<Json<NodesDocument>, AppError> {
    let current = state.snapshot.current();
    Ok(Json(NodesDocument {
        current_serial: current.as_ref().map(|c| c.serial),
        current_published_at: current.as_ref().map(|c| c.published_at),
        stale_after_secs: STALE_SECS,
        nodes: statuses(&state, db::now()).await?,
    }))
}
