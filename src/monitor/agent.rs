//! `timepool monitor`: the monitoring agent. It asks the control plane for a
//! batch of servers, checks each with SNTP (`crate::shared::ntp`), and submits the
//! results with the batch id, in a loop.
//!
//! - Checks run concurrently, at most `concurrency` at a time.
//! - When the API cannot be reached, the agent retries with exponential
//!   backoff and keeps the unsent batches in memory, oldest first, up to
//!   `max_unsent_results`; beyond that it drops the oldest batch with a log
//!   line (a result that old would no longer be fresh for scoring anyway).
//! - SIGTERM (or Ctrl-C) lets the batch in flight finish, tries once to send
//!   what is unsent, and exits.
//! - Before a batch's results go out, the agent checks its own clock
//!   against its `--reference` NTP servers (the median offset of those
//!   that answer) and reports the outcome to the API. Off by more than
//!   `--max-clock-offset-ms` (or no reference answering): the batch's
//!   results are dropped, and no new batch is asked for until a self-check
//!   passes again (the control plane hands none out meanwhile either).
//!
//! HTTP is `ureq` over rustls (`shared::http_client`, blocking, run on
//! tokio's blocking threads): one request at a time is all the agent
//! needs. The token travels only over TLS or to loopback: the agent
//! refuses plain HTTP to another machine unless `--insecure-http`.
//!
//! Architecture invariant: talks to the control plane only over its HTTP
//! API; never opens the database.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Semaphore, watch};

use crate::shared::ntp::{CheckConfig, check};

/// `timepool monitor` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct MonitorArgs {
    /// The control plane's base URL, e.g. http://127.0.0.1:8080 (the agent
    /// adds /api/v1/...).
    #[arg(long, env = "TIMEPOOL_MONITOR_API")]
    pub api: String,
    /// This monitor's token (from `timepool admin create-monitor`).
    #[arg(long, env = "TIMEPOOL_MONITOR_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Trust only the CA certificates in this PEM file (a private CA)
    /// instead of the system's roots.
    #[arg(long, env = "TIMEPOOL_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Send the token over plain http:// to another machine anyway (a
    /// network you trust); without it the agent refuses to start.
    #[arg(long, env = "TIMEPOOL_INSECURE_HTTP")]
    pub insecure_http: bool,
    /// Servers per batch.
    #[arg(long, default_value_t = 100)]
    pub batch_size: u32,
    /// Checks in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Requests per check.
    #[arg(long, default_value_t = 3)]
    pub samples: u32,
    /// Milliseconds between the requests of a check.
    #[arg(long, default_value_t = 2000)]
    pub sample_gap_ms: u64,
    /// Milliseconds to wait for each reply.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Results kept in memory while the API is unreachable.
    #[arg(long, default_value_t = 10_000)]
    pub max_unsent_results: usize,
    /// First retry delay in milliseconds when the API is unreachable
    /// (doubles up to 60 s).
    #[arg(long, default_value_t = 1000)]
    pub retry_ms: u64,
    /// The NTP port to check (tests run servers on other ports).
    #[arg(long, default_value_t = 123, hide = true)]
    pub ntp_port: u16,
    /// Exit after this many batches (tests); 0 = run until SIGTERM.
    #[arg(long, default_value_t = 0, hide = true)]
    pub max_batches: u64,
    /// A reference NTP server for the monitor's check of its own clock:
    /// HOST, HOST:PORT, IP or [IPv6]:PORT; repeat the flag or separate
    /// with commas (the pool uses several, far apart). Without any the
    /// agent cannot check its clock and says so at start.
    #[arg(
        long = "reference",
        env = "TIMEPOOL_MONITOR_REFERENCES",
        value_delimiter = ','
    )]
    pub references: Vec<String>,
    /// The most the monitor's clock may be off the references' median, in
    /// milliseconds; beyond it the agent submits nothing.
    #[arg(long, default_value_t = 10.0)]
    pub max_clock_offset_ms: f64,
    /// Milliseconds between self-checks while the clock is off.
    #[arg(long, default_value_t = 30_000, hide = true)]
    pub self_check_retry_ms: u64,
}

/// References a self-check may use (the API takes at most this many).
const MAX_REFERENCES: usize = 16;

impl MonitorArgs {
    fn check_config(&self) -> CheckConfig {
        CheckConfig {
            samples: self.samples.max(1),
            gap: Duration::from_millis(self.sample_gap_ms),
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }
}

/// The API's answer to "give me a batch".
#[derive(Deserialize, Debug)]
struct BatchResponse {
    batch_id: Option<i64>,
    servers: Vec<String>,
    #[serde(default)]
    wait_s: u64,
    /// The control plane holds this monitor's clock off (its last report):
    /// no batch until a new self-check says otherwise.
    #[serde(default)]
    self_check_required: bool,
}

/// One result as the API takes it, and the document that carries a batch
/// of them: the shared definition of the protocol.
pub use crate::shared::monitor_protocol::{CheckResult as ResultOut, ResultsDocument};
use crate::shared::monitor_protocol::{ReferenceResult, SelfCheckReport};

/// Why a call to the API failed, and so what to do about it.
#[derive(Debug)]
enum ApiFailure {
    /// Could not reach it, or it failed (5xx): retry later.
    Unreachable(String),
    /// It refused the request for good (4xx): do not send it again.
    Refused { status: u16, message: String },
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiFailure::Unreachable(e) => write!(f, "API unreachable: {e}"),
            ApiFailure::Refused { status, message } => {
                write!(f, "API refused ({status}): {message}")
            }
        }
    }
}

/// The HTTP side of the agent.
struct Api {
    agent: ureq::Agent,
    base: String,
    authorization: String,
}

impl Api {
    /// The API client; refuses a URL that would carry the token in clear
    /// text to another machine (unless `--insecure-http`) and an
    /// unreadable `--ca-file`.
    fn new(args: &MonitorArgs) -> Result<Api, String> {
        use crate::shared::http_client;
        http_client::check_url(
            "--api",
            &args.api,
            Some("monitor token"),
            args.insecure_http,
        )?;
        let roots = http_client::root_certs(args.ca_file.as_deref())?;
        Ok(Api {
            agent: http_client::agent(Duration::from_secs(30), roots),
            base: format!("{}/api/v1", args.api.trim_end_matches('/')),
            authorization: format!("Bearer {}", args.token),
        })
    }

    /// Runs a blocking request on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        call: impl FnOnce(&Api) -> Result<T, ApiFailure> + Send + 'static,
    ) -> Result<T, ApiFailure> {
        let api = self.clone();
        tokio::task::spawn_blocking(move || call(&api))
            .await
            .map_err(|e| ApiFailure::Unreachable(format!("request task: {e}")))?
    }

    fn classify(response: &mut ureq::http::Response<ureq::Body>) -> Result<(), ApiFailure> {
        let status = response.status().as_u16();
        if status < 300 {
            return Ok(());
        }
        let body = response.body_mut().read_to_string().unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(body);
        if status >= 500 {
            Err(ApiFailure::Unreachable(format!("{status}: {message}")))
        } else {
            Err(ApiFailure::Refused { status, message })
        }
    }

    fn get_batch(&self, size: u32) -> Result<BatchResponse, ApiFailure> {
        let mut response = self
            .agent
            .get(format!("{}/monitor/batch?limit={size}", self.base))
            .header("Authorization", &self.authorization)
            .call()
            .map_err(|e| ApiFailure::Unreachable(e.to_string()))?;
        Api::classify(&mut response)?;
        response
            .body_mut()
            .read_json()
            .map_err(|e| ApiFailure::Unreachable(format!("batch response: {e}")))
    }

    fn report_self_check(&self, report: &SelfCheckReport) -> Result<(), ApiFailure> {
        let mut response = self
            .agent
            .post(format!("{}/monitor/self-check", self.base))
            .header("Authorization", &self.authorization)
            .send_json(report)
            .map_err(|e| ApiFailure::Unreachable(e.to_string()))?;
        Api::classify(&mut response)
    }

    fn submit(&self, document: &ResultsDocument) -> Result<(), ApiFailure> {
        let mut response = self
            .agent
            .post(format!("{}/monitor/results", self.base))
            .header("Authorization", &self.authorization)
            .send_json(document)
            .map_err(|e| ApiFailure::Unreachable(e.to_string()))?;
        Api::classify(&mut response)
    }
}

/// Batches checked but not yet accepted by the API, oldest first.
struct Unsent {
    batches: VecDeque<ResultsDocument>,
    results: usize,
    max_results: usize,
}

impl Unsent {
    fn push(&mut self, document: ResultsDocument) {
        self.results += document.results.len();
        self.batches.push_back(document);
        while self.results > self.max_results && self.batches.len() > 1 {
            if let Some(dropped) = self.batches.pop_front() {
                self.results -= dropped.results.len();
                tracing::warn!(
                    batch_id = dropped.batch_id,
                    results = dropped.results.len(),
                    "unsent results over the limit: dropped the oldest batch"
                );
            }
        }
    }

    fn pop_front(&mut self) -> Option<ResultsDocument> {
        let document = self.batches.pop_front()?;
        self.results -= document.results.len();
        Some(document)
    }

    fn push_front(&mut self, document: ResultsDocument) {
        self.results += document.results.len();
        self.batches.push_front(document);
    }
}

/// Sends unsent batches oldest first. Stops at the first one the API cannot
/// take now (kept for later); a batch it refuses for good is dropped.
async fn flush(api: &Arc<Api>, unsent: &mut Unsent) -> Result<(), ApiFailure> {
    while let Some(document) = unsent.pop_front() {
        let to_send = document.clone();
        match api.blocking(move |api| api.submit(&to_send)).await {
            Ok(()) => {
                tracing::info!(
                    batch_id = document.batch_id,
                    results = document.results.len(),
                    "results accepted"
                );
            }
            Err(ApiFailure::Refused { status, message }) => {
                // 409: applied already (an earlier answer was lost) or stale.
                tracing::warn!(batch_id = document.batch_id, status, %message, "results refused; dropped");
                if status == 401 || status == 403 {
                    return Err(ApiFailure::Refused { status, message });
                }
            }
            Err(failure) => {
                unsent.push_front(document);
                return Err(failure);
            }
        }
    }
    Ok(())
}

/// Checks a batch's servers, at most `concurrency` at a time.
async fn check_batch(servers: &[String], args: &MonitorArgs) -> Vec<ResultOut> {
    let config = Arc::new(args.check_config());
    let bound = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, server) in servers.iter().enumerate() {
        let config = config.clone();
        let bound = bound.clone();
        let server = server.clone();
        let port = args.ntp_port;
        tasks.spawn(async move {
            let _permit = bound.acquire_owned().await;
            (index, check_one(&server, port, &config).await)
        });
    }
    let mut results: Vec<(usize, ResultOut)> = Vec::with_capacity(servers.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            Err(e) => tracing::error!(error = %e, "check task failed"),
        }
    }
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, r)| r).collect()
}

/// One server's result as the API wants it.
pub async fn check_one(server: &str, port: u16, config: &CheckConfig) -> ResultOut {
    let ts = unix_now();
    let mut out = ResultOut {
        server: server.to_string(),
        ts,
        offset: None,
        rtt: None,
        stratum: None,
        leap: None,
        error: None,
    };
    let address: IpAddr = match server.parse() {
        Ok(a) => a,
        Err(_) => {
            out.error = Some(format!("not an IP address: {server}"));
            return out;
        }
    };
    match check(SocketAddr::new(address, port), config).await {
        Ok(m) => {
            out.offset = Some(m.offset);
            out.rtt = Some(m.rtt);
            out.stratum = Some(i64::from(m.stratum));
            out.leap = Some(i64::from(m.leap));
        }
        Err(e) => out.error = Some(e.code()),
    }
    out
}

/// Where a `--reference` is: an address and port as given, or a name
/// looked up now (port 123 unless given).
async fn resolve_reference(reference: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = reference.parse::<SocketAddr>() {
        return Ok(address);
    }
    if let Ok(ip) = reference.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 123));
    }
    let with_port = if reference.contains(':') {
        reference.to_string()
    } else {
        format!("{reference}:123")
    };
    let mut found = tokio::net::lookup_host(with_port)
        .await
        .map_err(|e| format!("cannot resolve: {e}"))?;
    found
        .next()
        .ok_or_else(|| "resolves to no address".to_string())
}

/// The median of the offsets (the mean of the two middle ones when even).
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// The monitor's clock against its references, all asked at once.
pub async fn self_check(
    references: &[String],
    config: &CheckConfig,
    max_offset: f64,
) -> SelfCheckReport {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, reference) in references.iter().take(MAX_REFERENCES).enumerate() {
        let reference = reference.clone();
        let config = config.clone();
        tasks.spawn(async move {
            // A name that does not resolve in 5 s is an error like any.
            let resolved =
                tokio::time::timeout(Duration::from_secs(5), resolve_reference(&reference))
                    .await
                    .unwrap_or_else(|_| Err("no answer from the resolver in 5 s".to_string()));
            let outcome = match resolved {
                Ok(address) => check(address, &config)
                    .await
                    .map(|m| m.offset)
                    .map_err(|e| e.code()),
                Err(e) => Err(e),
            };
            let result = match outcome {
                Ok(offset) => ReferenceResult {
                    server: reference,
                    offset: Some(offset),
                    error: None,
                },
                Err(error) => ReferenceResult {
                    server: reference,
                    offset: None,
                    error: Some(error),
                },
            };
            (index, result)
        });
    }
    let mut results: Vec<(usize, ReferenceResult)> = Vec::with_capacity(references.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            Err(e) => tracing::error!(error = %e, "self-check task failed"),
        }
    }
    results.sort_by_key(|(index, _)| *index);
    let references: Vec<ReferenceResult> = results.into_iter().map(|(_, r)| r).collect();
    let offset = median(references.iter().filter_map(|r| r.offset).collect());
    SelfCheckReport {
        ok: offset.is_some_and(|o| o.abs() <= max_offset),
        offset,
        max_offset,
        references,
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Sleeps, or returns early (true) when shutdown is asked for.
async fn sleep_or_stop(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

const MAX_RETRY: Duration = Duration::from_secs(60);

/// The agent's loop until `stop` turns true (or `max_batches` are done).
pub async fn run_until(
    args: MonitorArgs,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let api = Arc::new(Api::new(&args)?);
    let mut unsent = Unsent {
        batches: VecDeque::new(),
        results: 0,
        max_results: args.max_unsent_results.max(1),
    };
    let first_retry = Duration::from_millis(args.retry_ms.max(1));
    let mut retry = first_retry;
    let mut batches_done = 0u64;
    let max_offset = args.max_clock_offset_ms / 1000.0;
    if !max_offset.is_finite() || max_offset <= 0.0 {
        return Err(format!(
            "--max-clock-offset-ms must be a positive number, got {}",
            args.max_clock_offset_ms
        )
        .into());
    }
    if args.references.len() > MAX_REFERENCES {
        return Err(format!(
            "--reference: at most {MAX_REFERENCES}, got {}",
            args.references.len()
        )
        .into());
    }
    if args.references.is_empty() {
        tracing::warn!("no --reference: this monitor cannot check its own clock before it reports");
    }
    let check_config = args.check_config();
    // The latest self-check not yet delivered (sent before any results,
    // so the API knows the clock is fine again before they arrive).
    let mut report_unsent: Option<SelfCheckReport> = None;
    // Checked first thing: the control plane hands no batch to a monitor
    // whose last report said its clock was off, until a new one says it
    // is fine.
    let mut clock_off = !args.references.is_empty();
    tracing::info!(api = %args.api, references = args.references.len(), "monitor started");
    loop {
        if *stop.borrow() {
            break;
        }
        if args.max_batches > 0 && batches_done >= args.max_batches {
            break;
        }
        // While the clock is off: only self-checks, until one passes (a
        // report not yet delivered goes first, so a failure is never
        // overwritten by a later pass before the API has seen it).
        if clock_off && report_unsent.is_none() {
            let report = self_check(&args.references, &check_config, max_offset).await;
            clock_off = !report.ok;
            log_self_check(&report);
            report_unsent = Some(report);
        }
        if let Some(report) = report_unsent.take() {
            let to_send = report.clone();
            match api
                .blocking(move |api| api.report_self_check(&to_send))
                .await
            {
                Ok(()) => {}
                Err(ApiFailure::Refused {
                    status: 401,
                    message,
                }) => {
                    return Err(format!("the API does not know this token: {message}").into());
                }
                Err(ApiFailure::Refused {
                    status: 400,
                    message,
                }) => {
                    // Malformed: sending it again would not help.
                    tracing::warn!(%message, "the API refused the self-check report");
                }
                Err(failure) => {
                    // Unreachable, or refused for now (a paused monitor's
                    // 403): kept, and sent before anything else.
                    tracing::warn!(%failure, "cannot report the self-check; will retry");
                    report_unsent = Some(report);
                    if sleep_or_stop(retry, &mut stop).await {
                        break;
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                    continue;
                }
            }
        }
        if clock_off {
            if sleep_or_stop(
                Duration::from_millis(args.self_check_retry_ms.max(1)),
                &mut stop,
            )
            .await
            {
                break;
            }
            continue;
        }
        // Older results first: the API refuses a batch older than one applied.
        if let Err(failure) = flush(&api, &mut unsent).await {
            if let ApiFailure::Refused { status: 401, .. } = failure {
                return Err(format!("{failure}: check --token").into());
            }
            tracing::warn!(%failure, unsent = unsent.results, retry_ms = retry.as_millis() as u64, "cannot send results; will retry");
            if sleep_or_stop(retry, &mut stop).await {
                break;
            }
            retry = (retry * 2).min(MAX_RETRY);
            continue;
        }
        let size = args.batch_size.clamp(1, 500);
        let batch = match api.blocking(move |api| api.get_batch(size)).await {
            Ok(batch) => {
                retry = first_retry;
                batch
            }
            Err(ApiFailure::Refused {
                status: 401,
                message,
            }) => {
                return Err(format!("the API does not know this token: {message}").into());
            }
            Err(failure) => {
                tracing::warn!(%failure, retry_ms = retry.as_millis() as u64, "cannot get a batch; will retry");
                if sleep_or_stop(retry, &mut stop).await {
                    break;
                }
                retry = (retry * 2).min(MAX_RETRY);
                continue;
            }
        };
        let Some(batch_id) = batch.batch_id else {
            if batch.self_check_required {
                // The control plane holds the clock off though this agent
                // found it fine (a stricter limit there): check again
                // after the self-check pause, not at once.
                tracing::warn!(
                    "the control plane holds this monitor's clock off; checking again later"
                );
                if args.references.is_empty() {
                    return Err("the control plane holds this monitor's clock off (its last self-check failed), and without --reference it cannot check itself again: restart it with --reference".into());
                }
                clock_off = true;
                if sleep_or_stop(
                    Duration::from_millis(args.self_check_retry_ms.max(1)),
                    &mut stop,
                )
                .await
                {
                    break;
                }
                continue;
            }
            tracing::debug!(wait_s = batch.wait_s, "nothing due");
            if sleep_or_stop(Duration::from_secs(batch.wait_s.max(1)), &mut stop).await {
                break;
            }
            continue;
        };
        // The batch in flight is finished even when SIGTERM arrives now.
        let results = check_batch(&batch.servers, &args).await;
        tracing::info!(batch_id, servers = results.len(), "batch checked");
        batches_done += 1;
        if !args.references.is_empty() {
            let report = self_check(&args.references, &check_config, max_offset).await;
            log_self_check(&report);
            clock_off = !report.ok;
            report_unsent = Some(report);
            if clock_off {
                tracing::warn!(
                    batch_id,
                    dropped = results.len(),
                    "the clock is off its references: this batch's results are not submitted"
                );
                continue;
            }
        }
        unsent.push(ResultsDocument { batch_id, results });
    }
    // Leaving: one try to send what is unsent, the self-check first.
    if let Some(report) = report_unsent.take()
        && let Err(failure) = api
            .blocking(move |api| api.report_self_check(&report))
            .await
    {
        tracing::warn!(%failure, "exiting with the self-check unreported");
    }
    if unsent.results > 0
        && let Err(failure) = flush(&api, &mut unsent).await
    {
        tracing::warn!(%failure, dropped = unsent.results, "exiting with results unsent");
    }
    tracing::info!("monitor stopped");
    Ok(())
}

fn log_self_check(report: &SelfCheckReport) {
    let offset_ms = report.offset.map(|o| o * 1000.0);
    if report.ok {
        tracing::debug!(?offset_ms, "self-check ok");
    } else {
        let errors: Vec<String> = report
            .references
            .iter()
            .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.server)))
            .collect();
        tracing::warn!(
            ?offset_ms,
            max_ms = report.max_offset * 1000.0,
            ?errors,
            "self-check failed: the clock is off or no reference answered"
        );
    }
}

/// `timepool monitor`: runs until SIGTERM or Ctrl-C.
pub async fn run(args: MonitorArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        crate::shared::signals::shutdown().await;
        tracing::info!("stopping after the batch in flight");
        let _ = tx.send(true);
    });
    run_until(args, rx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(batch_id: i64, results: usize) -> ResultsDocument {
        ResultsDocument {
            batch_id,
            results: (0..results)
                .map(|i| ResultOut {
                    server: format!("192.0.2.{i}"),
                    ts: 1,
                    offset: None,
                    rtt: None,
                    stratum: None,
                    leap: None,
                    error: Some("timeout".into()),
                })
                .collect(),
        }
    }

    #[test]
    fn unsent_results_drop_the_oldest_batch_over_the_bound() {
        let mut unsent = Unsent {
            batches: VecDeque::new(),
            results: 0,
            max_results: 5,
        };
        unsent.push(document(1, 2));
        unsent.push(document(2, 2));
        assert_eq!(unsent.results, 4);
        unsent.push(document(3, 2));
        let ids: Vec<i64> = unsent.batches.iter().map(|d| d.batch_id).collect();
        assert_eq!(ids, vec![2, 3]);
        assert_eq!(unsent.results, 4);
        // A single batch over the bound is kept: it is the newest data.
        unsent.push(document(4, 9));
        let ids: Vec<i64> = unsent.batches.iter().map(|d| d.batch_id).collect();
        assert_eq!(ids, vec![4]);
        assert_eq!(unsent.pop_front().map(|d| d.batch_id), Some(4));
        assert_eq!(unsent.results, 0);
    }
}
