//! The web app's Prometheus metrics at `/metrics`: requests by route and
//! status, and the zone builder's publishes and current serial.
//!
//! Web requests are few next to DNS queries; one mutex-guarded map per
//! process is plenty.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::prometheus::{CONTENT_TYPE, Page};

/// Requests counted by (route pattern, status).
#[derive(Debug, Default)]
pub struct WebMetrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

/// Middleware: count every routed request by its route pattern (never the
/// raw path, which would let clients create series at will).
pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if let Ok(mut requests) = state.metrics.requests.lock() {
        *requests.entry((route, status)).or_insert(0) += 1;
    }
    response
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<AppState>) -> Response {
    let mut page = Page::default();
    page.family(
        "timepool_web_requests_total",
        "counter",
        "HTTP requests by route pattern and status.",
    );
    if let Ok(requests) = state.metrics.requests.lock() {
        for ((route, status), count) in requests.iter() {
            page.sample(
                "timepool_web_requests_total",
                &[("route", route), ("status", &status.to_string())],
                *count as f64,
            );
        }
    }
    let store = &state.snapshot;
    page.family(
        "timepool_snapshots_published_total",
        "counter",
        "Zone snapshots published with a new serial by this process.",
    )
    .sample(
        "timepool_snapshots_published_total",
        &[],
        store.published.load(Ordering::Relaxed) as f64,
    )
    .family(
        "timepool_snapshot_build_failures_total",
        "counter",
        "Zone builds that published nothing because of an error.",
    )
    .sample(
        "timepool_snapshot_build_failures_total",
        &[],
        store.failures.load(Ordering::Relaxed) as f64,
    );
    if let Some(current) = store.current() {
        page.family(
            "timepool_snapshot_serial",
            "gauge",
            "Serial of the snapshot served at /api/v1/snapshot.",
        )
        .sample("timepool_snapshot_serial", &[], f64::from(current.serial))
        .family(
            "timepool_snapshot_published_timestamp_seconds",
            "gauge",
            "When the served snapshot was published (unix seconds).",
        )
        .sample(
            "timepool_snapshot_published_timestamp_seconds",
            &[],
            current.published_at as f64,
        );
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], page.finish()).into_response()
}
