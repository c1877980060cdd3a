//! The DNS daemon's counters and its Prometheus `/metrics` endpoint
//! (`timepool dns --metrics-listen ADDR`).
//!
//! Nothing is shared on the hot path: each UDP worker counts into its own
//! [`LocalCounters`] (plain integers) and, once per batch, copies them into
//! its own slot of `Shared::worker_counters` with Relaxed stores. A slot is
//! written by one thread only and padded to its own cache lines, so
//! workers never contend; a scrape sums the slots. The TCP tasks share the
//! last slot and add to it atomically (TCP is the rare path).
//!
//! Answers per server: each UDP worker counts into its own array, one
//! counter per server of the table it answers from ([`ServerCounts`]),
//! replaced when the table changes. The old array is folded into the
//! `retired` totals (by address) under a mutex that scrapes take too, so a
//! scrape never sees a count twice or loses one. That mutex is touched per
//! reload, never per query (TCP answers add to it directly).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::Shared;
use crate::dns::answer::{Limited, NameKind, Outcome};
use crate::dns::cookie::CookieCheck;
use crate::dns::zone::ZoneTable;
use crate::shared::prometheus::{CONTENT_TYPE, Page};

/// Response codes counted one by one (0..=23: through BADCOOKIE); a
/// larger one counts as the last.
const RCODES: usize = 24;

/// The question types counted by name; the rest are "other".
const QTYPES: [(u16, &str); 8] = [
    (1, "A"),
    (28, "AAAA"),
    (2, "NS"),
    (6, "SOA"),
    (15, "MX"),
    (16, "TXT"),
    (255, "ANY"),
    (0, "other"),
];

fn qtype_index(qtype: u16) -> usize {
    QTYPES
        .iter()
        .position(|&(t, _)| t == qtype && t != 0)
        .unwrap_or(QTYPES.len() - 1)
}

fn rcode_name(rcode: usize) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        16 => "BADVERS".into(),
        23 => "BADCOOKIE".into(),
        other => format!("RCODE{other}"),
    }
}

/// A worker's counts as it keeps them: plain integers.
#[derive(Clone, Debug, Default)]
pub struct LocalCounters {
    by_rcode: [u64; RCODES],
    by_qtype: [u64; QTYPES.len()],
    by_name: [u64; NameKind::ALL.len()],
    ecs_present: u64,
    ecs_used: u64,
    truncated: u64,
    dropped: u64,
    /// UDP receive batches (recvmmsg calls that returned packets).
    batches: u64,
    /// UDP responses that could not be sent.
    send_errors: u64,
    /// Over the rate limit: sent truncated (or BADCOOKIE), and not sent.
    rrl_slipped: u64,
    rrl_dropped: u64,
    /// Queries by what their COOKIE option proved ([`cookie_index`]).
    by_cookie: [u64; 4],
}

/// The metrics' names of cookie check results, by [`cookie_index`].
const COOKIE_CHECKS: [&str; 4] = ["none", "client_only", "bad", "valid"];

fn cookie_index(check: CookieCheck) -> usize {
    match check {
        CookieCheck::None => 0,
        CookieCheck::ClientOnly => 1,
        CookieCheck::BadServer => 2,
        CookieCheck::Valid => 3,
    }
}

impl LocalCounters {
    pub fn record(&mut self, outcome: &Outcome) {
        self.by_cookie[cookie_index(outcome.cookie)] += 1;
        match outcome.limited {
            Limited::No => {}
            Limited::Slipped => self.rrl_slipped += 1,
            Limited::Dropped => {
                // Not answered: counted here only.
                self.rrl_dropped += 1;
                return;
            }
        }
        self.by_rcode[usize::from(outcome.rcode).min(RCODES - 1)] += 1;
        self.by_qtype[qtype_index(outcome.qtype)] += 1;
        self.by_name[outcome.name_kind.index()] += 1;
        self.ecs_present += u64::from(outcome.ecs_present);
        self.ecs_used += u64::from(outcome.ecs_used);
        self.truncated += u64::from(outcome.truncated);
    }

    pub fn dropped(&mut self) {
        self.dropped += 1;
    }

    pub fn batch(&mut self) {
        self.batches += 1;
    }

    pub fn send_errors(&mut self, count: u64) {
        self.send_errors += count;
    }
}

/// One worker's published counts: written by that worker only (Relaxed
/// stores), read by scrapes. Aligned to 128 bytes so two workers' slots
/// never share a cache line (or an adjacent-line prefetch pair).
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct WorkerCounters {
    by_rcode: [AtomicU64; RCODES],
    by_qtype: [AtomicU64; QTYPES.len()],
    by_name: [AtomicU64; NameKind::ALL.len()],
    ecs_present: AtomicU64,
    ecs_used: AtomicU64,
    truncated: AtomicU64,
    dropped: AtomicU64,
    batches: AtomicU64,
    send_errors: AtomicU64,
    rrl_slipped: AtomicU64,
    rrl_dropped: AtomicU64,
    by_cookie: [AtomicU64; 4],
}

fn store_all(slots: &[AtomicU64], values: &[u64]) {
    for (slot, &value) in slots.iter().zip(values) {
        slot.store(value, Ordering::Relaxed);
    }
}

impl WorkerCounters {
    /// Copy a worker's running totals in (its owner only).
    pub fn publish(&self, local: &LocalCounters) {
        store_all(&self.by_rcode, &local.by_rcode);
        store_all(&self.by_qtype, &local.by_qtype);
        store_all(&self.by_name, &local.by_name);
        self.ecs_present.store(local.ecs_present, Ordering::Relaxed);
        self.ecs_used.store(local.ecs_used, Ordering::Relaxed);
        self.truncated.store(local.truncated, Ordering::Relaxed);
        self.dropped.store(local.dropped, Ordering::Relaxed);
        self.batches.store(local.batches, Ordering::Relaxed);
        self.send_errors.store(local.send_errors, Ordering::Relaxed);
        self.rrl_slipped.store(local.rrl_slipped, Ordering::Relaxed);
        self.rrl_dropped.store(local.rrl_dropped, Ordering::Relaxed);
        store_all(&self.by_cookie, &local.by_cookie);
    }

    /// Count one query of a shared slot (the TCP tasks, never rate
    /// limited).
    pub fn add(&self, outcome: &Outcome) {
        self.by_cookie[cookie_index(outcome.cookie)].fetch_add(1, Ordering::Relaxed);
        self.by_rcode[usize::from(outcome.rcode).min(RCODES - 1)].fetch_add(1, Ordering::Relaxed);
        self.by_qtype[qtype_index(outcome.qtype)].fetch_add(1, Ordering::Relaxed);
        self.by_name[outcome.name_kind.index()].fetch_add(1, Ordering::Relaxed);
        self.ecs_present
            .fetch_add(u64::from(outcome.ecs_present), Ordering::Relaxed);
        self.ecs_used
            .fetch_add(u64::from(outcome.ecs_used), Ordering::Relaxed);
        self.truncated
            .fetch_add(u64::from(outcome.truncated), Ordering::Relaxed);
    }
}

/// One worker's answers per server of one table. Written by that worker
/// only (a load and a store, no atomic read-modify-write), read by scrapes.
#[derive(Debug)]
pub struct ServerCounts {
    /// The table counted for, by identity only: a weak pointer does not
    /// keep an old table's memory alive in an idle worker.
    table: Weak<ZoneTable>,
    /// That table's server addresses, in its order.
    addresses: Box<[IpAddr]>,
    counts: Box<[AtomicU64]>,
}

impl ServerCounts {
    /// Whether these counts belong to `table`.
    pub fn counts_for(&self, table: &Arc<ZoneTable>) -> bool {
        std::ptr::eq(self.table.as_ptr(), Arc::as_ptr(table))
    }

    /// Count one answer's servers (the owning worker only).
    #[inline]
    pub fn add(&self, servers: &[u32]) {
        for &server in servers {
            if let Some(count) = self.counts.get(server as usize) {
                count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
        }
    }

    fn add_into(&self, totals: &mut BTreeMap<IpAddr, u64>) {
        for (address, count) in self.addresses.iter().zip(self.counts.iter()) {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                *totals.entry(*address).or_insert(0) += count;
            }
        }
    }
}

/// Answers per server address, for `timepool_dns_answers_by_server_total`.
#[derive(Debug)]
pub struct ServerAnswers {
    /// Counts of tables no longer in use, and of TCP answers, by address.
    retired: Mutex<BTreeMap<IpAddr, u64>>,
    /// Each UDP worker's counts for the table it answers from.
    workers: Box<[ArcSwapOption<ServerCounts>]>,
}

impl ServerAnswers {
    pub fn new(workers: usize) -> ServerAnswers {
        ServerAnswers {
            retired: Mutex::default(),
            workers: (0..workers).map(|_| ArcSwapOption::empty()).collect(),
        }
    }

    /// Worker `slot` starts answering from `table`: fold its counts of the
    /// previous table into the totals and give it a fresh array. Called
    /// when the table changes, not per query (it allocates).
    pub fn switch_table(&self, slot: usize, table: &Arc<ZoneTable>) -> Option<Arc<ServerCounts>> {
        let worker = self.workers.get(slot)?;
        let fresh = Arc::new(ServerCounts {
            table: Arc::downgrade(table),
            addresses: table.servers.iter().map(|server| server.ip()).collect(),
            counts: (0..table.servers.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
        });
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = worker.swap(Some(Arc::clone(&fresh))) {
            old.add_into(&mut retired);
        }
        Some(fresh)
    }

    /// Count one TCP answer (the rare path: straight into the totals).
    pub fn add_direct(&self, table: &ZoneTable, servers: &[u32]) {
        if servers.is_empty() {
            return;
        }
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        for &server in servers {
            if let Some(address) = table.servers.get(server as usize) {
                *retired.entry(address.ip()).or_insert(0) += 1;
            }
        }
    }

    /// Every server's answers so far.
    pub fn totals(&self) -> BTreeMap<IpAddr, u64> {
        let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let mut totals = retired.clone();
        for worker in self.workers.iter() {
            if let Some(counts) = worker.load_full() {
                counts.add_into(&mut totals);
            }
        }
        totals
    }
}

/// The sum of every slot, read on scrape.
fn sum(slots: &[WorkerCounters]) -> LocalCounters {
    let mut total = LocalCounters::default();
    let add = |totals: &mut [u64], values: &[AtomicU64]| {
        for (total, value) in totals.iter_mut().zip(values) {
            *total += value.load(Ordering::Relaxed);
        }
    };
    for slot in slots {
        add(&mut total.by_rcode, &slot.by_rcode);
        add(&mut total.by_qtype, &slot.by_qtype);
        add(&mut total.by_name, &slot.by_name);
        total.ecs_present += slot.ecs_present.load(Ordering::Relaxed);
        total.ecs_used += slot.ecs_used.load(Ordering::Relaxed);
        total.truncated += slot.truncated.load(Ordering::Relaxed);
        total.dropped += slot.dropped.load(Ordering::Relaxed);
        total.batches += slot.batches.load(Ordering::Relaxed);
        total.send_errors += slot.send_errors.load(Ordering::Relaxed);
        total.rrl_slipped += slot.rrl_slipped.load(Ordering::Relaxed);
        total.rrl_dropped += slot.rrl_dropped.load(Ordering::Relaxed);
        add(&mut total.by_cookie, &slot.by_cookie);
    }
    total
}

/// The metrics page of a running daemon.
pub fn render(shared: &Shared) -> String {
    let total = sum(&shared.worker_counters);
    let counters = &shared.counters;
    let mut page = Page::default();
    page.family(
        "timepool_dns_queries_total",
        "counter",
        "Queries answered, by response code (UDP and TCP).",
    );
    for (rcode, &count) in total.by_rcode.iter().enumerate() {
        if count > 0 || rcode <= 5 {
            page.sample(
                "timepool_dns_queries_total",
                &[("rcode", &rcode_name(rcode))],
                count as f64,
            );
        }
    }
    page.family(
        "timepool_dns_queries_by_qtype_total",
        "counter",
        "Queries answered, by question type.",
    );
    for (i, &(_, name)) in QTYPES.iter().enumerate() {
        page.sample(
            "timepool_dns_queries_by_qtype_total",
            &[("qtype", name)],
            total.by_qtype[i] as f64,
        );
    }
    page.family(
        "timepool_dns_queries_by_name_total",
        "counter",
        "Queries answered, by kind of name (geo: apex, N. and vendor names; zone: de, europe...).",
    );
    for kind in NameKind::ALL {
        page.sample(
            "timepool_dns_queries_by_name_total",
            &[("kind", kind.name())],
            total.by_name[kind.index()] as f64,
        );
    }
    let one = |page: &mut Page, name: &str, kind: &str, help: &str, value: f64| {
        page.family(name, kind, help).sample(name, &[], value);
    };
    one(
        &mut page,
        "timepool_dns_ecs_queries_total",
        "counter",
        "Queries with an EDNS Client Subnet option.",
        total.ecs_present as f64,
    );
    one(
        &mut page,
        "timepool_dns_ecs_used_total",
        "counter",
        "Queries located by their ECS address.",
        total.ecs_used as f64,
    );
    one(
        &mut page,
        "timepool_dns_truncated_total",
        "counter",
        "Responses sent truncated (TC).",
        total.truncated as f64,
    );
    one(
        &mut page,
        "timepool_dns_dropped_total",
        "counter",
        "Packets dropped without a response (oversized, not a query).",
        (total.dropped + counters.dropped.load(Ordering::Relaxed)) as f64,
    );
    one(
        &mut page,
        "timepool_dns_udp_batches_total",
        "counter",
        "UDP receive batches (recvmmsg calls that returned packets); UDP queries / batches = mean batch size.",
        total.batches as f64,
    );
    one(
        &mut page,
        "timepool_dns_send_errors_total",
        "counter",
        "UDP responses that could not be sent.",
        total.send_errors as f64,
    );
    one(
        &mut page,
        "timepool_dns_tcp_connections_total",
        "counter",
        "TCP connections accepted.",
        counters.tcp_connections.load(Ordering::Relaxed) as f64,
    );
    one(
        &mut page,
        "timepool_dns_tcp_refused_total",
        "counter",
        "TCP connections closed at accept (connection limit).",
        counters.tcp_refused.load(Ordering::Relaxed) as f64,
    );
    one(
        &mut page,
        "timepool_dns_tcp_refused_per_client_total",
        "counter",
        "TCP connections closed at accept because their client had --tcp-max-per-client open.",
        counters.tcp_refused_per_client.load(Ordering::Relaxed) as f64,
    );
    page.family(
        "timepool_dns_rrl_limited_total",
        "counter",
        "UDP responses over the rate limit (--rrl-rate), by action: slipped (sent truncated, or BADCOOKIE) or dropped.",
    )
    .sample(
        "timepool_dns_rrl_limited_total",
        &[("action", "slipped")],
        total.rrl_slipped as f64,
    )
    .sample(
        "timepool_dns_rrl_limited_total",
        &[("action", "dropped")],
        total.rrl_dropped as f64,
    );
    page.family(
        "timepool_dns_cookie_queries_total",
        "counter",
        "Queries by their DNS cookie: none, a client cookie only, a bad server cookie, a valid one.",
    );
    for (i, name) in COOKIE_CHECKS.iter().enumerate() {
        page.sample(
            "timepool_dns_cookie_queries_total",
            &[("cookie", name)],
            total.by_cookie[i] as f64,
        );
    }
    page.family(
        "timepool_dns_reloads_total",
        "counter",
        "Snapshot and GeoIP reloads (and snapshot pulls that brought a new one), by result.",
    )
    .sample(
        "timepool_dns_reloads_total",
        &[("result", "ok")],
        counters.reloads.load(Ordering::Relaxed) as f64,
    )
    .sample(
        "timepool_dns_reloads_total",
        &[("result", "failed")],
        counters.reload_failures.load(Ordering::Relaxed) as f64,
    );
    one(
        &mut page,
        "timepool_dns_cache_write_failures_total",
        "counter",
        "Failed writes of the snapshot cache (--snapshot-cache; a full disk, say); the previous cache stays.",
        shared.cache_write_failures() as f64,
    );
    page.family(
        "timepool_dns_snapshot_rejections_total",
        "counter",
        "Snapshots refused (unsigned, unknown key, bad signature, invalid, older serial), by reason; the last good one kept serving.",
    );
    for (reason, count) in counters.rejections.totals() {
        page.sample(
            "timepool_dns_snapshot_rejections_total",
            &[("reason", reason)],
            count as f64,
        );
    }
    one(
        &mut page,
        "timepool_dns_snapshot_serial",
        "gauge",
        "Serial of the snapshot served.",
        f64::from(shared.serial()),
    );
    let loaded_at = shared.loaded_at.load(Ordering::Relaxed);
    one(
        &mut page,
        "timepool_dns_snapshot_loaded_timestamp_seconds",
        "gauge",
        "When the snapshot served was loaded (unix seconds).",
        loaded_at as f64,
    );
    one(
        &mut page,
        "timepool_dns_snapshot_age_seconds",
        "gauge",
        "Seconds since the snapshot served was loaded.",
        super::state::unix_now().saturating_sub(loaded_at) as f64,
    );
    page.family(
        "timepool_dns_answers_by_server_total",
        "counter",
        "Times each server address was handed out in an answer (UDP and TCP).",
    );
    for (address, count) in shared.server_answers.totals() {
        page.sample(
            "timepool_dns_answers_by_server_total",
            &[("address", &address.to_string())],
            count as f64,
        );
    }
    if !shared.xdp_queues.is_empty() {
        page.family(
            "timepool_dns_xdp_frames_total",
            "counter",
            "Frames of the AF_XDP sockets (--xdp) by interface, queue and outcome: received, answered, dropped as malformed (truncated, unexpected, bad_length, too_short, bad_source: to a group MAC or from a martian source), or not sent (tx_full).",
        );
        for queue in shared.xdp_queues.iter() {
            let number = queue.queue.to_string();
            let c = &queue.counters;
            for (outcome, counter) in [
                ("received", &c.received),
                ("answered", &c.answered),
                ("truncated", &c.truncated_frames),
                ("unexpected", &c.unexpected_frames),
                ("bad_length", &c.bad_lengths),
                ("too_short", &c.too_short),
                ("bad_source", &c.bad_sources),
                ("tx_full", &c.tx_full),
            ] {
                page.sample(
                    "timepool_dns_xdp_frames_total",
                    &[
                        ("interface", &queue.interface),
                        ("queue", &number),
                        ("outcome", outcome),
                    ],
                    counter.load(Ordering::Relaxed) as f64,
                );
            }
        }
        page.family(
            "timepool_dns_xdp_kernel_drops_total",
            "counter",
            "Datagrams the XDP program redirected to an AF_XDP socket that the kernel dropped (XDP_STATISTICS), by reason: rx_ring_full (the worker behind), no_frame (no free frame in the fill ring, or longer than a frame); invalid_rx and invalid_tx count refused descriptors.",
        );
        for queue in shared.xdp_queues.iter() {
            // A failed read (it should not fail on a live socket) leaves
            // the family without this queue's samples rather than zeros.
            let Ok(k) = super::xdp::socket::kernel_statistics(&queue.statistics) else {
                continue;
            };
            let number = queue.queue.to_string();
            for (reason, count) in [
                ("rx_ring_full", k.rx_ring_full),
                ("no_frame", k.rx_dropped),
                ("invalid_rx", k.rx_invalid_descs),
                ("invalid_tx", k.tx_invalid_descs),
            ] {
                page.sample(
                    "timepool_dns_xdp_kernel_drops_total",
                    &[
                        ("interface", &queue.interface),
                        ("queue", &number),
                        ("reason", reason),
                    ],
                    count as f64,
                );
            }
        }
        page.family(
            "timepool_dns_xdp_kick_errors_total",
            "counter",
            "Failed transmit wakeups of the AF_XDP sockets.",
        );
        for queue in shared.xdp_queues.iter() {
            page.sample(
                "timepool_dns_xdp_kick_errors_total",
                &[
                    ("interface", &queue.interface),
                    ("queue", &queue.queue.to_string()),
                ],
                queue.counters.kick_errors.load(Ordering::Relaxed) as f64,
            );
        }
    }
    if shared.follows_url() {
        one(
            &mut page,
            "timepool_dns_snapshot_last_pull_ok_timestamp_seconds",
            "gauge",
            "When a pull from the control plane last succeeded (0: not since start).",
            shared.last_pull_ok.load(Ordering::Relaxed) as f64,
        );
    }
    page.finish()
}

/// Serve `GET /metrics` on `listener` (HTTP/1.0-style: one request per
/// connection). Anything else gets 404.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(512);
            let mut buffer = [0u8; 1024];
            let read = async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                true
            };
            if !matches!(
                tokio::time::timeout(Duration::from_secs(5), read).await,
                Ok(true)
            ) {
                return;
            }
            let wanted = head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?");
            let (status, content_type, body) = if wanted {
                ("200 OK", CONTENT_TYPE, render(&shared))
            } else {
                (
                    "404 Not Found",
                    "text/plain; charset=utf-8",
                    "not found; see /metrics\n".to_string(),
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                stream.write_all(response.as_bytes()),
            )
            .await;
            let _ = stream.shutdown().await;
        });
    }
}
