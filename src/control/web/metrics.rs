//! The web app's Prometheus metrics at `/metrics`: requests by route and
//! status, the ingest API's batches and results, and the zone builder's
//! publishes, current serial and the servers it publishes.
//!
//! Web requests are few next to DNS queries; one mutex-guarded map per
//! process is plenty.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::shared::prometheus::{CONTENT_TYPE, Page};

/// Requests counted by (route pattern, status).
#[derive(Debug, Default)]
pub struct WebMetrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Batches handed to monitors, and the servers in them.
    pub batches_issued: AtomicU64,
    pub servers_issued: AtomicU64,
    /// Result batches applied, and the results (checks) in them.
    pub batches_applied: AtomicU64,
    pub results_applied: AtomicU64,
    /// Result batches refused (invalid, replayed, stale) or failed.
    pub batches_refused: AtomicU64,
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
    let ingest = &state.metrics;
    let counter = |page: &mut Page, name: &str, help: &str, value: &AtomicU64| {
        page.family(name, "counter", help)
            .sample(name, &[], value.load(Ordering::Relaxed) as f64);
    };
    counter(
        &mut page,
        "timepool_ingest_batches_issued_total",
        "Batches of servers handed to monitors.",
        &ingest.batches_issued,
    );
    counter(
        &mut page,
        "timepool_ingest_servers_issued_total",
        "Servers handed to monitors in those batches.",
        &ingest.servers_issued,
    );
    counter(
        &mut page,
        "timepool_ingest_batches_applied_total",
        "Result batches applied (scored).",
        &ingest.batches_applied,
    );
    counter(
        &mut page,
        "timepool_ingest_results_total",
        "Check results applied (one per server per check).",
        &ingest.results_applied,
    );
    counter(
        &mut page,
        "timepool_ingest_batches_refused_total",
        "Result batches refused (invalid, replayed, stale) or failed; nothing was applied.",
        &ingest.batches_refused,
    );
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
    )
    .family(
        "timepool_zone_builder_leader",
        "gauge",
        "1 when this instance holds the zone builder's lease (builds and publishes), else 0.",
    )
    .sample(
        "timepool_zone_builder_leader",
        &[],
        if store.leading.load(Ordering::Relaxed) {
            1.0
        } else {
            0.0
        },
    );
    let connections = &state.connections;
    counter(
        &mut page,
        "timepool_web_connections_total",
        "Connections accepted.",
        &connections.accepted,
    );
    counter(
        &mut page,
        "timepool_web_connections_refused_total",
        "Connections closed at accept: over --max-connections.",
        &connections.refused,
    );
    counter(
        &mut page,
        "timepool_web_tls_handshake_failures_total",
        "TLS handshakes that failed or took longer than the header timeout.",
        &connections.tls_failed,
    );
    page.family(
        "timepool_web_password_hashes_total",
        "counter",
        "Password hashes computed or checked (sign-ups, logins).",
    )
    .sample(
        "timepool_web_password_hashes_total",
        &[],
        state.hasher.done.load(Ordering::Relaxed) as f64,
    );
    counter(
        &mut page,
        "timepool_web_password_hashes_refused_total",
        "Logins and sign-ups answered 503 at once: the hashing queue was full.",
        &state.hasher.refused,
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
        )
        .family(
            "timepool_snapshot_servers",
            "gauge",
            "Servers in the served snapshot (eligible for DNS: score >= 10 and the other rules), by family.",
        )
        .sample(
            "timepool_snapshot_servers",
            &[("family", "ipv4")],
            current.servers_v4 as f64,
        )
        .sample(
            "timepool_snapshot_servers",
            &[("family", "ipv6")],
            current.servers_v6 as f64,
        );
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], page.finish()).into_response()
}
