//! The monitor ingest API (`/api/v1/monitor/...`): a monitor authenticates
//! with its bearer token, asks for a batch of servers, and submits the
//! results. Bodies are parsed and their shapes validated, with messages
//! that name the field, by `crate::shared::monitor_protocol`; the rules
//! and the transaction are in `crate::control::db::ingest`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use crate::control::db::ingest::{self, Applied, IngestError};
use crate::control::db::schedule::{self, Batch, MAX_BATCH, MonitorAuth};
use crate::control::scoring::MonitorState;
use crate::shared::monitor_protocol;

/// An ingest failure: a status and a message, sent as `{"error": ...}`.
#[derive(Debug)]
pub struct IngestFailure {
    pub status: StatusCode,
    pub message: String,
}

impl IngestFailure {
    fn bad_request(message: impl Into<String>) -> IngestFailure {
        IngestFailure {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<crate::control::db::DbError> for IngestFailure {
    fn from(err: crate::control::db::DbError) -> IngestFailure {
        if crate::control::db::is_unavailable(&err) {
            // The agent keeps its results and sends them again.
            tracing::warn!(error = %err, "the database is unavailable to the ingest API");
            return IngestFailure {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "the database is unavailable; nothing was changed; send again later"
                    .to_string(),
            };
        }
        tracing::error!(error = %err, "database error in the ingest API");
        IngestFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "database error; nothing was changed".to_string(),
        }
    }
}

impl From<IngestError> for IngestFailure {
    fn from(err: IngestError) -> IngestFailure {
        let status = match &err {
            IngestError::Replayed(_) | IngestError::Stale { .. } | IngestError::ClockNotOk(_) => {
                StatusCode::CONFLICT
            }
            IngestError::UnknownBatch(_)
            | IngestError::NotInBatch(_)
            | IngestError::BadTimestamp { .. } => StatusCode::BAD_REQUEST,
            IngestError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        match err {
            IngestError::Db(e) => IngestFailure::from(e),
            other => IngestFailure {
                status,
                message: other.to_string(),
            },
        }
    }
}

impl IntoResponse for IngestFailure {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        response
    }
}

/// The monitor behind the request's bearer token, if it may report.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(MonitorAuth, MonitorState), IngestFailure> {
    let unauthorized = |message: &str| IngestFailure {
        status: StatusCode::UNAUTHORIZED,
        message: message.to_string(),
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <monitor token>"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("Authorization must be: Bearer <monitor token>"))?;
    let monitor = schedule::monitor_by_token(&state.db, token)
        .await?
        .ok_or_else(|| unauthorized("unknown monitor token"))?;
    match MonitorState::parse(&monitor.state) {
        Some(s) => Ok((monitor, s)),
        None => Err(IngestFailure {
            status: StatusCode::FORBIDDEN,
            message: format!("monitor {} is {}", monitor.name, monitor.state),
        }),
    }
}

#[derive(Deserialize)]
pub struct BatchParams {
    limit: Option<i64>,
}

#[derive(serde::Serialize)]
pub struct BatchResponse {
    #[serde(flatten)]
    batch: Batch,
    /// Seconds to wait before asking again when nothing was due.
    wait_s: u64,
    /// The monitor's last self-check said its clock is off: it gets no
    /// batch until it checks itself again and reports.
    self_check_required: bool,
}

/// `GET /api/v1/monitor/batch?limit=N`: servers due for this monitor.
pub async fn get_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<BatchParams>,
) -> Result<Json<BatchResponse>, IngestFailure> {
    let (monitor, _) = authenticate(&state, &headers).await?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_BATCH).contains(&limit) {
        return Err(IngestFailure::bad_request(format!(
            "limit must be 1..{MAX_BATCH}, got {limit}"
        )));
    }
    let schedule = state.settings.check_schedule;
    let batch = schedule::issue_batch(
        &state.db,
        &monitor,
        &schedule,
        limit,
        crate::control::db::now(),
    )
    .await?;
    if !batch.servers.is_empty() {
        use std::sync::atomic::Ordering::Relaxed;
        state.metrics.batches_issued.fetch_add(1, Relaxed);
        (state.metrics.servers_issued).fetch_add(batch.servers.len() as u64, Relaxed);
    }
    let wait_s = if batch.servers.is_empty() {
        schedule.idle_wait()
    } else {
        0
    };
    Ok(Json(BatchResponse {
        batch,
        wait_s,
        self_check_required: monitor.clock_not_ok,
    }))
}

/// `POST /api/v1/monitor/results`: applies a batch of results, all or nothing.
pub async fn post_results(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Applied>, IngestFailure> {
    let (monitor, _) = authenticate(&state, &headers).await?;
    use std::sync::atomic::Ordering::Relaxed;
    let outcome = apply_results(&state, monitor.id, &body).await;
    match &outcome {
        Ok(applied) => {
            state.metrics.batches_applied.fetch_add(1, Relaxed);
            (state.metrics.results_applied).fetch_add(applied.results as u64, Relaxed);
        }
        Err(_) => {
            state.metrics.batches_refused.fetch_add(1, Relaxed);
        }
    }
    outcome.map(Json)
}

/// Parse, validate and apply one results document.
async fn apply_results(
    state: &AppState,
    monitor_id: i64,
    body: &[u8],
) -> Result<Applied, IngestFailure> {
    let (batch_id, results) =
        monitor_protocol::parse_results(body).map_err(IngestFailure::bad_request)?;
    Ok(ingest::apply_batch(
        &state.db,
        monitor_id,
        batch_id,
        &results,
        crate::control::db::now(),
    )
    .await?)
}

/// `POST /api/v1/monitor/self-check`: the monitor's own clock against its
/// references. Stored for staff; a report that is not ok stops the
/// monitor's batches and refuses the results of batches issued before it.
pub async fn post_self_check(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, IngestFailure> {
    let (monitor, _) = authenticate(&state, &headers).await?;
    let (report, detail) =
        monitor_protocol::parse_self_check(&body).map_err(IngestFailure::bad_request)?;
    // The control plane's own limit holds whatever the agent was told: ok
    // only when the agent says so and the offset is within both.
    let limit =
        (state.settings.selector.max_monitor_clock_offset_ms / 1000.0).min(report.max_offset);
    let ok = report.ok && report.offset.is_some_and(|o| o.abs() <= limit);
    crate::control::db::monitors::record_self_check(
        &state.db,
        monitor.id,
        ok,
        report.offset,
        &detail,
        crate::control::db::now(),
    )
    .await?;
    if !ok {
        tracing::warn!(monitor = monitor.name, %detail, "monitor's clock is off its references");
    }
    Ok(Json(serde_json::json!({ "ok": ok })))
}
