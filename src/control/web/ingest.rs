//! The monitor ingest API (`/api/v1/monitor/...`): a monitor authenticates
//! with its bearer token, asks for a batch of servers, and submits the
//! results. Shapes are validated here with messages that name the field;
//! the rules and the transaction are in `crate::control::db::ingest`.

use std::collections::HashSet;
use std::net::IpAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use crate::control::db::ingest::{self, Applied, IngestError, ResultIn};
use crate::control::db::schedule::{self, Batch, MAX_BATCH, MonitorAuth};
use crate::control::scoring::MonitorState;
use crate::shared::monitor_protocol::ResultsDocument;
use crate::shared::monitor_protocol::SelfCheckReport;

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

/// Longest error text kept.
const MAX_ERROR_LEN: usize = 200;

/// Largest results document accepted: a full batch of results, each with
/// the longest error text written entirely in `\uXXXX` escapes, and room
/// for the other fields and spacing.
pub const MAX_BODY: usize = MAX_BATCH as usize * (MAX_ERROR_LEN * 6 + 400) + 4096;

/// Checks every result's shape; the first problem is the message.
fn validate(body: ResultsDocument) -> Result<(i64, Vec<ResultIn>), IngestFailure> {
    if body.results.len() > MAX_BATCH as usize {
        return Err(IngestFailure::bad_request(format!(
            "results: at most {MAX_BATCH} per batch, got {}",
            body.results.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(body.results.len());
    for (i, r) in body.results.into_iter().enumerate() {
        let field = |name: &str| format!("results[{i}].{name}");
        let address: IpAddr = r.server.parse().map_err(|_| {
            IngestFailure::bad_request(format!(
                "{}: {:?} is not an IP address",
                field("server"),
                r.server
            ))
        })?;
        let server = address.to_string();
        if !seen.insert(server.clone()) {
            return Err(IngestFailure::bad_request(format!(
                "{}: {server} appears more than once",
                field("server")
            )));
        }
        if r.ts <= 0 {
            return Err(IngestFailure::bad_request(format!(
                "{}: must be unix seconds, got {}",
                field("ts"),
                r.ts
            )));
        }
        for (name, value) in [("offset", r.offset), ("rtt", r.rtt)] {
            if let Some(v) = value
                && !v.is_finite()
            {
                return Err(IngestFailure::bad_request(format!(
                    "{}: must be a finite number of seconds",
                    field(name)
                )));
            }
        }
        if let Some(rtt) = r.rtt
            && !(0.0..=60.0).contains(&rtt)
        {
            return Err(IngestFailure::bad_request(format!(
                "{}: must be 0..60 seconds, got {rtt}",
                field("rtt")
            )));
        }
        if let Some(leap) = r.leap
            && !(0..=3).contains(&leap)
        {
            return Err(IngestFailure::bad_request(format!(
                "{}: must be 0..3, got {leap}",
                field("leap")
            )));
        }
        if let Some(stratum) = r.stratum
            && !(0..=16).contains(&stratum)
        {
            return Err(IngestFailure::bad_request(format!(
                "{}: must be 0..16, got {stratum}",
                field("stratum")
            )));
        }
        match &r.error {
            Some(e) if e.trim().is_empty() => {
                return Err(IngestFailure::bad_request(format!(
                    "{}: must not be empty (use null for no error)",
                    field("error")
                )));
            }
            Some(e) if e.len() > MAX_ERROR_LEN => {
                return Err(IngestFailure::bad_request(format!(
                    "{}: at most {MAX_ERROR_LEN} bytes",
                    field("error")
                )));
            }
            Some(_) => {}
            None => {
                // A reply: the numbers scoring needs must be there.
                for (name, present) in [
                    ("offset", r.offset.is_some()),
                    ("rtt", r.rtt.is_some()),
                    ("stratum", r.stratum.is_some()),
                    ("leap", r.leap.is_some()),
                ] {
                    if !present {
                        return Err(IngestFailure::bad_request(format!(
                            "{}: required when error is null",
                            field(name)
                        )));
                    }
                }
                if let Some(stratum) = r.stratum
                    && stratum > 10
                {
                    return Err(IngestFailure::bad_request(format!(
                        "{}: {stratum} is above 10, which must be reported as an error",
                        field("stratum")
                    )));
                }
            }
        }
        out.push(ResultIn {
            server,
            ts: r.ts,
            offset: r.offset,
            rtt: r.rtt,
            stratum: r.stratum,
            leap: r.leap,
            error: r.error,
        });
    }
    Ok((body.batch_id, out))
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
    let parsed: ResultsDocument = serde_json::from_slice(body)
        .map_err(|e| IngestFailure::bad_request(format!("invalid results document: {e}")))?;
    let (batch_id, results) = validate(parsed)?;
    Ok(ingest::apply_batch(
        &state.db,
        monitor_id,
        batch_id,
        &results,
        crate::control::db::now(),
    )
    .await?)
}

/// Largest self-check report accepted: `MAX_REFERENCES` references with
/// their longest texts, escaped.
pub const MAX_SELF_CHECK_BODY: usize = MAX_REFERENCES * (MAX_ERROR_LEN * 6 + 300 * 6 + 200) + 1024;

/// References a self-check may list.
const MAX_REFERENCES: usize = 16;

/// `POST /api/v1/monitor/self-check`: the monitor's own clock against its
/// references. Stored for staff; a report that is not ok stops the
/// monitor's batches and refuses the results of batches issued before it.
pub async fn post_self_check(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, IngestFailure> {
    let (monitor, _) = authenticate(&state, &headers).await?;
    let report: SelfCheckReport = serde_json::from_slice(&body)
        .map_err(|e| IngestFailure::bad_request(format!("invalid self-check report: {e}")))?;
    let detail = describe_self_check(&report)?;
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

/// Checks a self-check report's shape and words it for staff.
fn describe_self_check(report: &SelfCheckReport) -> Result<String, IngestFailure> {
    let finite = |v: f64, what: &str| {
        if v.is_finite() && v.abs() <= 1e6 {
            Ok(())
        } else {
            Err(IngestFailure::bad_request(format!(
                "{what}: must be a finite number of seconds"
            )))
        }
    };
    finite(report.max_offset, "max_offset")?;
    if let Some(offset) = report.offset {
        finite(offset, "offset")?;
    }
    if report.references.is_empty() || report.references.len() > MAX_REFERENCES {
        return Err(IngestFailure::bad_request(format!(
            "references: 1..{MAX_REFERENCES} expected, got {}",
            report.references.len()
        )));
    }
    let mut parts = Vec::with_capacity(report.references.len());
    for (i, reference) in report.references.iter().enumerate() {
        let printable = |text: &str, max: usize, what: &str| {
            if text.is_empty() || text.len() > max || text.chars().any(char::is_control) {
                Err(IngestFailure::bad_request(format!(
                    "references[{i}].{what}: 1..{max} bytes of printable text expected"
                )))
            } else {
                Ok(())
            }
        };
        printable(&reference.server, 300, "server")?;
        match (&reference.error, reference.offset) {
            (Some(error), _) => {
                printable(error, MAX_ERROR_LEN, "error")?;
                parts.push(format!("{}: {error}", reference.server));
            }
            (None, Some(offset)) => {
                finite(offset, &format!("references[{i}].offset"))?;
                parts.push(format!("{}: {:+.1} ms", reference.server, offset * 1000.0));
            }
            (None, None) => {
                return Err(IngestFailure::bad_request(format!(
                    "references[{i}]: an offset or an error expected"
                )));
            }
        }
    }
    let summary = match report.offset {
        Some(offset) => format!(
            "median offset {:+.1} ms (limit {:.1} ms)",
            offset * 1000.0,
            report.max_offset * 1000.0
        ),
        None => "no reference answered".to_string(),
    };
    Ok(format!("{summary}; {}", parts.join(", ")))
}
