//! The soak run of scripts/soak.sh (issue 18, point 5): the pool's parts at
//! once on loopback under mixed load for MINUTES, sampled every 10 s.
//!
//!   soak TIMEPOOL GEOIP QUERIES MINUTES WORK CGROUP
//!
//! TIMEPOOL is the binary, GEOIP a GeoLite2 `.mmdb`, QUERIES a dnsperf -B
//! file (scripts/bench-queries.py; its names are those of WORK/pool-1.json,
//! which the script made with `timepool bench-snapshot`, and WORK/pool-2.json
//! the same pool drawn with another seed). CGROUP is a cgroup directory whose
//! CPU quota caps the DNS node (the script makes it).
//!
//! What runs:
//! - `timepool demo`: the web app and its zone builder on SQLite, three
//!   monitors checking the simulated NTP servers every 5 s and sending their
//!   results to the ingest API, and a DNS node following the control plane.
//! - `timepool dns`, its UDP worker in CGROUP, on a signed pool-sized snapshot file and the
//!   GeoIP database, as a production node runs: the snapshot is re-signed
//!   and replaced every 10 s (alternating the two pools, the serial rising)
//!   and the GeoIP file every minute; each must be served by the end of its
//!   10-s window.
//! - DNS load at 80% of the capped node's capacity (measured first): the
//!   query mix of bench-dns.sh (ECS from every country, NXDOMAIN names),
//!   open-loop over UDP; every query is matched to its answer by socket and
//!   ID, so a query never answered is counted lost.
//! - Web load at 200 requests/s, open-loop (latency counts from when a
//!   request was due, so a stalled server cannot hide it), over the public
//!   pages, a score graph and the monitors' list.
//!
//! Every 10 s a row: DNS q/s, lost, p50/p99, rcodes; web req/s, errors,
//! p50/p99; results ingested; RSS, open file descriptors and threads of
//! both processes; the demo's database size. At the end a condensed table
//! and a verdict; the exit status is 1 when any check fails.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timepool::dns::server::udp;
use timepool::shared::snapshot::signature::{SigningKey, generate_key_pair, write_signed};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[path = "support/http.rs"]
mod http;
#[path = "support/proc.rs"]
mod proc;
use http::{BoxError, get, get_request, read_response};

/// One row per WINDOW.
const WINDOW: Duration = Duration::from_secs(10);
/// The DNS load, as a share of the capped node's measured capacity.
const DNS_LOAD_SHARE: f64 = 0.8;
const WEB_RATE: u64 = 200;
/// The web load's connections (kept alive, reopened after an error).
const WEB_CONNECTIONS: usize = 16;
/// A request not answered in this time is an error.
const WEB_TIMEOUT: Duration = Duration::from_secs(10);
/// Client sockets of the DNS load; each has its own 65 536 query IDs, so a
/// query is only given up as lost when its ID comes round again
/// (4 x 65 536 queries later: several seconds at the rates here).
const DNS_SOCKETS: usize = 4;
const IDS: usize = 65_536;
/// Latency histogram: 10 µs buckets up to 500 ms, then one for the rest
/// (a percentile there reads 500.01; the slowest answer is kept apart).
const BUCKET_US: u64 = 10;
const BUCKETS: usize = 50_001;
/// The verdict's growth check: the last quarter's median may exceed the
/// second quarter's (after warm-up) by this share plus a small slack.
const GROWTH_SHARE: f64 = 0.10;
const RCODE_NOERROR: usize = 0;
const RCODE_NXDOMAIN: usize = 3;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let [_, timepool, geoip, queries, minutes, work, cgroup] = &args[..] else {
        return Err("usage: soak TIMEPOOL GEOIP QUERIES MINUTES WORK CGROUP".into());
    };
    let config = Config {
        timepool: PathBuf::from(timepool),
        geoip: PathBuf::from(geoip),
        queries: read_queries(Path::new(queries))?,
        windows: minutes
            .parse::<u64>()
            .map_err(|e| format!("MINUTES {minutes:?}: {e}"))?
            * 6,
        work: PathBuf::from(work),
        cgroup: PathBuf::from(cgroup),
    };
    if config.windows == 0 {
        return Err("MINUTES must be at least 1".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let passed = runtime.block_on(soak(config))?;
    if passed {
        Ok(())
    } else {
        std::process::exit(1)
    }
}

struct Config {
    timepool: PathBuf,
    geoip: PathBuf,
    queries: Vec<Vec<u8>>,
    windows: u64,
    work: PathBuf,
    cgroup: PathBuf,
}

/// dnsperf's -B format: each message preceded by its length (2 bytes,
/// network order).
fn read_queries(path: &Path) -> Result<Vec<Vec<u8>>, BoxError> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut queries = Vec::new();
    let mut rest = &bytes[..];
    while let [high, low, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        if !(12..=512).contains(&len) || tail.len() < len {
            return Err(format!(
                "{}: query {} has length {len}",
                path.display(),
                queries.len() + 1
            )
            .into());
        }
        queries.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    if queries.is_empty() || !rest.is_empty() {
        return Err(format!("{}: no queries, or a cut one at the end", path.display()).into());
    }
    Ok(queries)
}

async fn soak(config: Config) -> Result<bool, BoxError> {
    let work = &config.work;
    // The node's snapshot: signed, as production nodes require.
    let (private_pem, public_pem) = generate_key_pair()?;
    let key = SigningKey::from_pem(private_pem.as_bytes())?;
    let public_key = work.join("snapshot.pub");
    std::fs::write(&public_key, public_pem)?;
    let pools = [
        read_json(&work.join("pool-1.json"))?,
        read_json(&work.join("pool-2.json"))?,
    ];
    let snapshot = work.join("pool.json");
    let mut serial = 1u32;
    publish(&snapshot, &pools[0], serial, &key)?;
    let geo_file = work.join("geo.mmdb");
    replace_geoip(&config.geoip, &geo_file)?;

    let dns_port = free_port()?;
    let dns_metrics = format!("127.0.0.1:{}", free_port()?);
    let mut node = Process::start(
        "dns",
        Command::new(&config.timepool)
            .args(["dns", "--listen", &format!("127.0.0.1:{dns_port}")])
            .arg("--snapshot")
            .arg(&snapshot)
            .arg("--snapshot-public-key")
            .arg(&public_key)
            .arg("--geoip")
            .arg(&geo_file)
            .args(["--threads", "1", "--reload-interval", "1"])
            // As a busy node should run (README, "Running behind anycast"):
            // a receive buffer that holds about a second of queries. While
            // a GeoIP reload flattens the database (0.6 s of CPU on the
            // other core) the worker answers slower and a queue builds
            // that it drains in the 20% it has to spare; the system's
            // 208 KiB (~200 queries) overflowed at every reload, 4 MiB at
            // some.
            .args(["--udp-recv-buffer", "33554432"])
            .args(["--metrics-listen", &dns_metrics]),
        &work.join("dns.log"),
    )?;
    wait_until(
        "the DNS node serves serial 1",
        Duration::from_secs(30),
        || async { metric(&dns_metrics, "timepool_dns_snapshot_serial").await == Some(1.0) },
    )
    .await?;
    // Its workers exist once it serves.
    let capped = put_workers_in_cgroup(node.pid(), &config.cgroup)?;

    let web = format!("127.0.0.1:{}", free_port()?);
    let demo_data = work.join("demo");
    let mut demo = Process::start(
        "demo",
        Command::new(&config.timepool)
            .args(["demo", "--reset", "--check-interval-secs", "5"])
            .arg("--data-dir")
            .arg(&demo_data)
            .args(["--web-listen", &web])
            .args(["--dns-listen", &format!("127.0.0.1:{}", free_port()?)])
            .args([
                "--dns-metrics-listen",
                &format!("127.0.0.1:{}", free_port()?),
            ]),
        &work.join("demo.log"),
    )?;
    wait_until(
        "the demo's web app answers",
        Duration::from_secs(120),
        || async { matches!(get(&web, "/").await, Ok((200, _))) },
    )
    .await?;

    // The web load's pages: public ones, a simulated server's scores and
    // graph, the monitors' list; one demo server address is enough.
    let paths: Vec<String> = [
        "/",
        "/zone/europe",
        "/zone/de",
        "/scores/127.0.0.2",
        "/scores/127.0.0.2/graph.svg",
        "/api/v1/zones",
        "/api/v1/monitors",
        "/use",
        "/news",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    for path in &paths {
        let (status, _) = get(&web, path).await?;
        if status != 200 {
            return Err(format!("GET {path} gave {status} before the load").into());
        }
    }
    // The web load runs from here on, so that the DNS node's capacity is
    // measured beside it.
    let web_stats = Arc::new(WebStats::default());
    let stop_web = Arc::new(AtomicBool::new(false));
    let web_load = tokio::spawn(web_load(
        web.clone(),
        paths,
        web_stats.clone(),
        stop_web.clone(),
    ));
    // The DNS node's capacity under its cap: a load far above it for 11 s,
    // the answers counted in each second after the first, and the worst
    // second taken: this small shared machine's speed moves from second to
    // second, and 80% of a lucky second's rate would be more than 80% of
    // what the node can always do.
    let dns = DnsLoad::start(&config.queries, dns_port)?;
    dns.set_rate(2_000_000);
    tokio::time::sleep(Duration::from_secs(1)).await;
    dns.take();
    let mut seconds = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        seconds.push(dns.take().answered);
    }
    let capacity = seconds.iter().copied().min().unwrap_or(0);
    dns.set_rate(0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    dns.forget_outstanding();
    dns.take();
    web_stats.take();
    let dns_rate = (capacity as f64 * DNS_LOAD_SHARE) as u64;
    if dns_rate == 0 {
        return Err("the DNS node answered nothing while its capacity was measured".into());
    }
    println!(
        "soak: {} minutes; the DNS node's {capped} UDP worker(s) capped by {} (CPU µs per period: {}): capacity {capacity} q/s (the worst second of {seconds:?}), load {dns_rate} q/s; web {WEB_RATE} req/s",
        config.windows / 6,
        config.cgroup.display(),
        cpu_quota(&config.cgroup),
    );
    dns.set_rate(dns_rate);

    println!("{}", Row::header());
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let started = Instant::now();
    let mut ingest_before = metric(&web, "timepool_ingest_results_total").await;
    let mut refused_before = metric(&web, "timepool_ingest_batches_refused_total").await;
    let mut geo_reloads = 0u64;
    for window in 0..config.windows {
        let window_start = started + WINDOW * window as u32;
        // A new snapshot at the start of every window but the first.
        if window > 0 {
            serial += 1;
            publish(&snapshot, &pools[(window % 2) as usize], serial, &key)?;
        }
        if window % 6 == 5 {
            replace_geoip(&config.geoip, &geo_file)?;
            geo_reloads += 1;
        }
        tokio::time::sleep_until((window_start + WINDOW).into()).await;
        let dns_window = dns.take();
        let web_window = web_stats.take();
        let served = metric(&dns_metrics, "timepool_dns_snapshot_serial").await;
        let ingested = metric(&web, "timepool_ingest_results_total").await;
        let refused = metric(&web, "timepool_ingest_batches_refused_total").await;
        let row = Row {
            minute: (window + 1) as f64 / 6.0,
            dns: dns_window,
            web: web_window,
            serial_served: served == Some(f64::from(serial)),
            ingested: delta(ingested, ingest_before),
            refused: delta(refused, refused_before),
            node: Sample::of(node.pid()),
            demo: Sample::of(demo.pid()),
            database_mib: database_size(&demo_data) as f64 / 1048576.0,
        };
        ingest_before = ingested;
        refused_before = refused;
        if !row.serial_served {
            failures.push(format!(
                "minute {:.1}: the node served serial {served:?}, not {serial}",
                row.minute
            ));
        }
        println!("{}", row.line());
        let _ = std::io::stdout().flush();
        rows.push(row);
        if !node.running() || !demo.running() {
            failures.push(format!(
                "minute {:.1}: a process ended (dns running: {}, demo running: {})",
                (window + 1) as f64 / 6.0,
                node.running(),
                demo.running()
            ));
            break;
        }
    }

    stop_web.store(true, Ordering::Relaxed);
    dns.set_rate(0);
    let _ = web_load.await;
    // Answers still on their way, then what never came.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last_lost = dns.stop();
    let reloads_ok = metric(&dns_metrics, "timepool_dns_reloads_total{result=\"ok\"}").await;
    let reloads_failed = metric(
        &dns_metrics,
        "timepool_dns_reloads_total{result=\"failed\"}",
    )
    .await;
    let rejections = metric_sum(&dns_metrics, "timepool_dns_snapshot_rejections_total").await;
    node.stop();
    demo.stop();

    print_condensed(&rows);
    let swaps = u64::from(serial - 1);
    failures.extend(verdict(&rows, last_lost, web_stats.error_kinds()));
    // Each swap and each GeoIP replacement is one successful reload.
    match (reloads_ok, reloads_failed, rejections) {
        (Some(ok), Some(failed), Some(rejected)) => {
            if (ok as u64) < swaps + geo_reloads || failed > 0.0 || rejected > 0.0 {
                failures.push(format!(
                    "reloads: {ok} ok (want at least {swaps} snapshots + {geo_reloads} GeoIP), {failed} failed, {rejected} snapshots rejected"
                ));
            }
        }
        other => failures.push(format!(
            "the node's reload metrics were not read: {other:?}"
        )),
    }
    for (name, log) in [
        ("dns", work.join("dns.log")),
        ("demo", work.join("demo.log")),
    ] {
        let (errors, warnings, first) = log_levels(&log);
        println!("{name} log: {errors} errors, {warnings} warnings");
        if errors > 0 {
            failures.push(format!("{name} logged {errors} errors, the first: {first}"));
        }
    }
    println!(
        "snapshot swaps: {swaps}, every one served within its window: {}; GeoIP replacements: {geo_reloads}",
        rows.iter().all(|r| r.serial_served)
    );
    if failures.is_empty() {
        println!(
            "verdict: PASS: nothing grew without bound (RSS, file descriptors, threads), no errors, no lost queries"
        );
        Ok(true)
    } else {
        println!("verdict: FAIL");
        for failure in &failures {
            println!("  - {failure}");
        }
        Ok(false)
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, BoxError> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?)
}

/// The pool with `serial`, signed, replaced as the control plane does.
fn publish(
    path: &Path,
    pool: &serde_json::Value,
    serial: u32,
    key: &SigningKey,
) -> Result<(), BoxError> {
    let mut document = pool.clone();
    document["serial"] = serial.into();
    let bytes = serde_json::to_vec(&document)?;
    write_signed(path, &bytes, Some(&key.sign(&bytes)))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// A fresh copy of the GeoIP database put in place by rename, as a weekly
/// update arrives.
fn replace_geoip(source: &Path, target: &Path) -> Result<(), BoxError> {
    let temporary = target.with_extension("mmdb.new");
    std::fs::copy(source, &temporary).map_err(|e| format!("{}: {e}", source.display()))?;
    std::fs::rename(&temporary, target).map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(())
}

fn free_port() -> Result<u16, BoxError> {
    // Free for both UDP and TCP (the DNS node takes both).
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no port free for both UDP and TCP".into())
}

/// Moves the node's UDP workers (threads `timepool-udp-N`) into the
/// cgroup and checks that they are there. Only they: the cap stands for a
/// core kept 80% busy answering, while reloads run in the time the rest of
/// the machine leaves, as on a production node. With the whole process
/// capped, a reload (idle scheduling class, see dns::server::os) spends the
/// quota the workers leave in a period, the group is throttled for the rest
/// of it, and the workers' queue then behaves as at 100% load for the
/// reload's whole length: a second of GeoIP flattening lost queries in
/// every run, at any receive buffer size, which a node whose workers own
/// their cores does not see. Per-thread placement needs the cgroup v1 cpu
/// hierarchy (its `tasks` file); v2 would need a threaded subtree.
fn put_workers_in_cgroup(pid: u32, cgroup: &Path) -> Result<usize, BoxError> {
    let tasks = cgroup.join("tasks");
    if !tasks.exists() {
        return Err(format!(
            "{}: no tasks file (cgroup v2?): capping the UDP workers alone needs the cgroup v1 cpu hierarchy",
            cgroup.display()
        )
        .into());
    }
    let relative = cgroup
        .strip_prefix("/sys/fs/cgroup/cpu")
        .or_else(|_| cgroup.strip_prefix("/sys/fs/cgroup"))
        .map_err(|_| format!("{} is not under /sys/fs/cgroup", cgroup.display()))?;
    let want = format!(":/{}", relative.display());
    let mut moved = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = entry?.path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if !name.starts_with("timepool-udp") {
            continue;
        }
        let tid = task
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::fs::write(&tasks, &tid).map_err(|e| format!("{}: {e}", tasks.display()))?;
        let membership = std::fs::read_to_string(task.join("cgroup"))?;
        if !membership
            .lines()
            .any(|line| line.contains("cpu") && line.ends_with(&want))
        {
            return Err(format!("thread {tid} is not in {want}: {membership}").into());
        }
        moved += 1;
    }
    if moved == 0 {
        return Err(format!("process {pid} has no timepool-udp thread").into());
    }
    Ok(moved)
}

/// The cgroup's CPU quota as "QUOTA PERIOD" (µs; v2's cpu.max, or v1's
/// two files).
fn cpu_quota(cgroup: &Path) -> String {
    let read =
        |name: &str| std::fs::read_to_string(cgroup.join(name)).map(|s| s.trim().to_string());
    match read("cpu.max") {
        Ok(max) => max,
        Err(_) => match (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")) {
            (Ok(quota), Ok(period)) => format!("{quota} {period}"),
            _ => "quota unreadable".into(),
        },
    }
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<(), BoxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("{what}: not within {limit:?}").into())
}

/// One sample's value (`name` with its labels, as written) from a
/// Prometheus page; None when the page or the sample is missing.
async fn metric(host: &str, name: &str) -> Option<f64> {
    let (status, body) = get(host, "/metrics").await.ok()?;
    if status != 200 {
        return None;
    }
    body.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// The sum of every sample of a family (0 when it has none).
async fn metric_sum(host: &str, family: &str) -> Option<f64> {
    let (status, body) = get(host, "/metrics").await.ok()?;
    if status != 200 {
        return None;
    }
    Some(
        body.lines()
            .filter(|line| line.starts_with(family) && !line.starts_with('#'))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

fn delta(now: Option<f64>, before: Option<f64>) -> Option<u64> {
    Some((now? - before?).max(0.0) as u64)
}

/// The demo's SQLite files (database, WAL), bytes.
fn database_size(data_dir: &Path) -> u64 {
    std::fs::read_dir(data_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("timepool.db"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Errors and warnings in a log (tracing's text format), and the first
/// error line.
fn log_levels(path: &Path) -> (usize, usize, String) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let errors: Vec<&str> = text.lines().filter(|l| l.contains(" ERROR ")).collect();
    let warnings = text.lines().filter(|l| l.contains(" WARN ")).count();
    let first = errors.first().map(|l| l.to_string()).unwrap_or_default();
    (errors.len(), warnings, first)
}

/// A child process, stopped by its PID (SIGTERM, then SIGKILL after 10 s)
/// when dropped.
struct Process {
    name: &'static str,
    child: Child,
    stopped: bool,
}

impl Process {
    fn start(name: &'static str, command: &mut Command, log: &Path) -> Result<Process, BoxError> {
        let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Process {
            name,
            child,
            stopped: false,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if self.running() {
            let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
                let _ = self.child.kill();
                return;
            };
            // SAFETY: kill(2) takes no pointers; the PID is our child's,
            // not yet reaped, so it cannot name another process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && self.running() {
                std::thread::sleep(Duration::from_millis(100));
            }
            if self.running() {
                eprintln!("soak: {} did not stop on SIGTERM; SIGKILL", self.name);
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// RSS, open file descriptors and threads of a process, from /proc.
#[derive(Clone, Copy, Default)]
struct Sample {
    rss_mib: f64,
    fds: u64,
    threads: u64,
}

impl Sample {
    fn of(pid: u32) -> Sample {
        let field = |name: &str| proc::status_value(Some(pid), name).unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        Sample {
            rss_mib: field("VmRSS") as f64 / 1024.0,
            fds,
            threads: field("Threads"),
        }
    }
}

/// The DNS load: a sender thread paced to the rate, a receiver per socket.
struct DnsLoad {
    shared: Arc<DnsShared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

struct DnsShared {
    start: Instant,
    /// Per socket and query ID: when the query went out (ns since start,
    /// plus one; 0: none outstanding).
    sent_at: Vec<Vec<AtomicU64>>,
    rate: AtomicU64,
    stop: AtomicBool,
    sent: AtomicU64,
    send_errors: AtomicU64,
    answered: AtomicU64,
    /// Answers to no outstanding query (late beyond an ID's reuse).
    unmatched: AtomicU64,
    lost: AtomicU64,
    rcodes: [AtomicU64; 16],
    latency: Vec<AtomicU64>,
    /// The slowest answer, µs (the histogram ends at 500 ms).
    slowest_us: AtomicU64,
}

/// What the DNS load saw in one window.
#[derive(Clone, Default)]
struct DnsWindow {
    sent: u64,
    send_errors: u64,
    answered: u64,
    unmatched: u64,
    lost: u64,
    rcodes: [u64; 16],
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl DnsLoad {
    fn start(queries: &[Vec<u8>], port: u16) -> Result<DnsLoad, BoxError> {
        let shared = Arc::new(DnsShared {
            start: Instant::now(),
            sent_at: (0..DNS_SOCKETS)
                .map(|_| (0..IDS).map(|_| AtomicU64::new(0)).collect())
                .collect(),
            rate: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            rcodes: Default::default(),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            slowest_us: AtomicU64::new(0),
        });
        let mut sockets = Vec::new();
        for _ in 0..DNS_SOCKETS {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            // The client must never be what drops answers: a node draining
            // a queue sends them as fast as it can.
            force_receive_buffer(&socket, CLIENT_RECEIVE_BUFFER)?;
            socket.connect(("127.0.0.1", port))?;
            socket.set_read_timeout(Some(Duration::from_millis(100)))?;
            sockets.push(socket);
        }
        let mut threads = Vec::new();
        for (index, socket) in sockets.iter().enumerate() {
            let (socket, shared) = (socket.try_clone()?, shared.clone());
            threads.push(std::thread::spawn(move || receive(index, &socket, &shared)));
        }
        let queries = queries.to_vec();
        let sender = shared.clone();
        threads.push(std::thread::spawn(move || {
            send(&sockets, &queries, &sender)
        }));
        Ok(DnsLoad { shared, threads })
    }

    fn set_rate(&self, rate: u64) {
        self.shared.rate.store(rate, Ordering::SeqCst);
    }

    /// Drops every outstanding query without counting it (after the
    /// capacity run, whose overload loses queries on purpose).
    fn forget_outstanding(&self) {
        for slots in &self.shared.sent_at {
            for slot in slots {
                slot.store(0, Ordering::SeqCst);
            }
        }
    }

    /// The window's figures; the counters start again from zero.
    fn take(&self) -> DnsWindow {
        let s = &self.shared;
        let mut rcodes = [0u64; 16];
        for (count, counter) in rcodes.iter_mut().zip(&s.rcodes) {
            *count = counter.swap(0, Ordering::SeqCst);
        }
        let histogram: Vec<u64> = s
            .latency
            .iter()
            .map(|b| b.swap(0, Ordering::SeqCst))
            .collect();
        DnsWindow {
            sent: s.sent.swap(0, Ordering::SeqCst),
            send_errors: s.send_errors.swap(0, Ordering::SeqCst),
            answered: s.answered.swap(0, Ordering::SeqCst),
            unmatched: s.unmatched.swap(0, Ordering::SeqCst),
            lost: s.lost.swap(0, Ordering::SeqCst),
            rcodes,
            p50_ms: percentile(&histogram, 0.50),
            p99_ms: percentile(&histogram, 0.99),
            max_ms: s.slowest_us.swap(0, Ordering::SeqCst) as f64 / 1000.0,
        }
    }

    /// Ends the load; returns the queries still unanswered (lost).
    fn stop(self) -> u64 {
        self.shared.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            let _ = thread.join();
        }
        let outstanding = self
            .shared
            .sent_at
            .iter()
            .flatten()
            .filter(|slot| slot.load(Ordering::SeqCst) != 0)
            .count() as u64;
        outstanding + self.shared.lost.load(Ordering::SeqCst)
    }
}

/// The DNS load's socket receive buffers, bytes.
const CLIENT_RECEIVE_BUFFER: usize = 32 << 20;

/// A receive buffer of `bytes`, past rmem_max as the node's own (the
/// script runs as root for the cgroup, so it must get all of it).
fn force_receive_buffer(socket: &UdpSocket, bytes: usize) -> Result<(), BoxError> {
    let socket = socket2::SockRef::from(socket);
    udp::set_buffer_size(&socket, udp::Buffer::Receive, bytes)?;
    let got = udp::buffer_size(&socket, udp::Buffer::Receive)? / 2;
    if got < bytes {
        return Err(
            format!("receive buffer: {got} bytes of {bytes} (CAP_NET_ADMIN needed)").into(),
        );
    }
    Ok(())
}

fn nanos_since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// Open loop: query n is due at n / rate seconds after the rate was set;
/// the sender catches up in bursts when it falls behind.
fn send(sockets: &[UdpSocket], queries: &[Vec<u8>], shared: &DnsShared) {
    let mut buf = [0u8; 512];
    let mut rate = 0u64;
    let mut since = Instant::now();
    let mut sent_at_rate = 0u64;
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let wanted = shared.rate.load(Ordering::SeqCst);
        if wanted != rate {
            rate = wanted;
            since = Instant::now();
            sent_at_rate = 0;
        }
        if rate == 0 {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let due = (since.elapsed().as_nanos() * u128::from(rate) / 1_000_000_000) as u64;
        // At most 256 at a time, so that a new rate is seen soon.
        let mut burst = 0;
        while sent_at_rate < due && burst < 256 {
            let socket = (n % DNS_SOCKETS as u64) as usize;
            let id = ((n / DNS_SOCKETS as u64) % IDS as u64) as usize;
            let query = &queries[(n % queries.len() as u64) as usize];
            buf[..query.len()].copy_from_slice(query);
            buf[..2].copy_from_slice(&(id as u16).to_be_bytes());
            let previous =
                shared.sent_at[socket][id].swap(nanos_since(shared.start) + 1, Ordering::SeqCst);
            if previous != 0 {
                // Its ID came round again and it was never answered.
                shared.lost.fetch_add(1, Ordering::Relaxed);
            }
            if sockets[socket].send(&buf[..query.len()]).is_err() {
                shared.send_errors.fetch_add(1, Ordering::Relaxed);
            }
            shared.sent.fetch_add(1, Ordering::Relaxed);
            sent_at_rate += 1;
            n += 1;
            burst += 1;
        }
        if sent_at_rate >= due {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn receive(index: usize, socket: &UdpSocket, shared: &DnsShared) {
    let mut buf = [0u8; 4096];
    while !shared.stop.load(Ordering::Relaxed) {
        let Ok(len) = socket.recv(&mut buf) else {
            continue; // the read timeout: look at the stop flag
        };
        if len < 12 {
            shared.unmatched.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
        let sent = shared.sent_at[index][id].swap(0, Ordering::SeqCst);
        if sent == 0 {
            shared.unmatched.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let latency_us = nanos_since(shared.start).saturating_sub(sent - 1) / 1000;
        let bucket = ((latency_us / BUCKET_US) as usize).min(BUCKETS - 1);
        shared.latency[bucket].fetch_add(1, Ordering::Relaxed);
        shared.slowest_us.fetch_max(latency_us, Ordering::Relaxed);
        shared.rcodes[usize::from(buf[3] & 0x0f)].fetch_add(1, Ordering::Relaxed);
        shared.answered.fetch_add(1, Ordering::Relaxed);
    }
}

/// The latency (ms) below which a share `p` of the histogram's answers
/// fall (the bucket's upper edge); 0 for none.
fn percentile(histogram: &[u64], p: f64) -> f64 {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let wanted = ((total as f64 * p).ceil() as u64).max(1);
    let mut seen = 0;
    for (bucket, count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= wanted {
            return ((bucket as u64 + 1) * BUCKET_US) as f64 / 1000.0;
        }
    }
    (BUCKETS as u64 * BUCKET_US) as f64 / 1000.0
}

/// What the web load saw in one window.
#[derive(Default)]
struct WebStats {
    ok: AtomicU64,
    errors: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    error_kinds: Mutex<BTreeMap<String, u64>>,
}

#[derive(Clone, Default)]
struct WebWindow {
    ok: u64,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl WebStats {
    fn take(&self) -> WebWindow {
        let mut latencies =
            std::mem::take(&mut *self.latencies_us.lock().unwrap_or_else(|e| e.into_inner()));
        latencies.sort_unstable();
        let at = |p: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let index =
                ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[index] as f64 / 1000.0
        };
        WebWindow {
            ok: self.ok.swap(0, Ordering::SeqCst),
            errors: self.errors.swap(0, Ordering::SeqCst),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }

    fn error(&self, kind: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self
            .error_kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    fn error_kinds(&self) -> BTreeMap<String, u64> {
        self.error_kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Open loop at WEB_RATE over `paths` in turn until `stop`.
async fn web_load(host: String, paths: Vec<String>, stats: Arc<WebStats>, stop: Arc<AtomicBool>) {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WEB_CONNECTIONS {
        let (host, paths, stats, stop, next) = (
            host.clone(),
            paths.clone(),
            stats.clone(),
            stop.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut stream: Option<TcpStream> = None;
            let mut buf = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let due = start + Duration::from_nanos(i * 1_000_000_000 / WEB_RATE);
                tokio::time::sleep_until(due.into()).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let path = &paths[(i % paths.len() as u64) as usize];
                let outcome = tokio::time::timeout(WEB_TIMEOUT, async {
                    if stream.is_none() {
                        stream = Some(TcpStream::connect(&host).await?);
                    }
                    let Some(s) = stream.as_mut() else {
                        return Err::<u16, BoxError>("no connection".into());
                    };
                    s.write_all(get_request(&host, path).as_bytes()).await?;
                    Ok(read_response(s, &mut buf).await?.0)
                })
                .await;
                match outcome {
                    Ok(Ok(200)) => {
                        stats.ok.fetch_add(1, Ordering::Relaxed);
                        stats
                            .latencies_us
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(due.elapsed().as_micros() as u64);
                    }
                    Ok(Ok(status)) => stats.error(format!("{path}: status {status}")),
                    Ok(Err(error)) => {
                        stats.error(format!("{path}: {error}"));
                        stream = None;
                    }
                    Err(_) => {
                        stats.error(format!("{path}: no answer in {WEB_TIMEOUT:?}"));
                        stream = None;
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// One window's row.
struct Row {
    minute: f64,
    dns: DnsWindow,
    web: WebWindow,
    serial_served: bool,
    ingested: Option<u64>,
    refused: Option<u64>,
    node: Sample,
    demo: Sample,
    database_mib: f64,
}

fn secs(window: Duration) -> f64 {
    window.as_secs_f64()
}

impl Row {
    fn header() -> String {
        format!(
            "{:>6} | {:>6} {:>5} {:>6} {:>6} {:>13} | {:>5} {:>4} {:>6} {:>6} | {:>7} | {:>20} | {:>20} | {:>6}\n{:>6} | {:>6} {:>5} {:>6} {:>6} {:>13} | {:>5} {:>4} {:>6} {:>6} | {:>7} | {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} | {:>6}",
            "",
            "dns",
            "",
            "",
            "",
            "",
            "web",
            "",
            "",
            "",
            "ingest",
            "dns node",
            "demo (web, monitors)",
            "db",
            "minute",
            "q/s",
            "lost",
            "p50ms",
            "p99ms",
            "NOERR/NXD/oth",
            "req/s",
            "err",
            "p50ms",
            "p99ms",
            "res/s",
            "RSS MB",
            "fds",
            "thr",
            "RSS MB",
            "fds",
            "thr",
            "MB",
        )
    }

    fn rcodes(&self) -> String {
        let r = &self.dns.rcodes;
        let other: u64 = r.iter().sum::<u64>() - r[RCODE_NOERROR] - r[RCODE_NXDOMAIN];
        let total = r.iter().sum::<u64>().max(1) as f64;
        format!(
            "{:.0}/{:.0}/{}",
            r[RCODE_NOERROR] as f64 * 100.0 / total,
            r[RCODE_NXDOMAIN] as f64 * 100.0 / total,
            other
        )
    }

    fn line(&self) -> String {
        format!(
            "{:>6.1} | {:>6.0} {:>5} {:>6.2} {:>6.2} {:>13} | {:>5.0} {:>4} {:>6.1} {:>6.1} | {:>7} | {:>6.1} {:>6} {:>6} | {:>6.1} {:>6} {:>6} | {:>6.1}",
            self.minute,
            self.dns.answered as f64 / secs(WINDOW),
            self.dns.lost,
            self.dns.p50_ms,
            self.dns.p99_ms,
            self.rcodes(),
            self.web.ok as f64 / secs(WINDOW),
            self.web.errors,
            self.web.p50_ms,
            self.web.p99_ms,
            self.ingested
                .map(|n| format!("{:.1}", n as f64 / secs(WINDOW)))
                .unwrap_or_else(|| "?".into()),
            self.node.rss_mib,
            self.node.fds,
            self.node.threads,
            self.demo.rss_mib,
            self.demo.fds,
            self.demo.threads,
            self.database_mib,
        )
    }
}

/// About a dozen rows for the whole run (the README's table): each group
/// of windows as the sum of its counts, the worst of its latencies, the
/// last of its samples.
fn print_condensed(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let group = rows.len().div_ceil(12).max(1);
    println!(
        "\nsummary, one row per {:.1} minutes (counts summed, latencies the worst window's, samples the last):",
        group as f64 / 6.0
    );
    println!("{}", Row::header());
    for chunk in rows.chunks(group) {
        let Some(last) = chunk.last() else { continue };
        let windows = chunk.len() as u64;
        let mut dns = DnsWindow::default();
        let mut web = WebWindow::default();
        let mut ingested = Some(0u64);
        for row in chunk {
            dns.answered += row.dns.answered;
            dns.lost += row.dns.lost;
            dns.p50_ms = dns.p50_ms.max(row.dns.p50_ms);
            dns.p99_ms = dns.p99_ms.max(row.dns.p99_ms);
            for (sum, count) in dns.rcodes.iter_mut().zip(row.dns.rcodes) {
                *sum += count;
            }
            web.ok += row.web.ok;
            web.errors += row.web.errors;
            web.p50_ms = web.p50_ms.max(row.web.p50_ms);
            web.p99_ms = web.p99_ms.max(row.web.p99_ms);
            ingested = ingested.zip(row.ingested).map(|(a, b)| a + b);
        }
        dns.answered /= windows;
        web.ok /= windows;
        let summary = Row {
            minute: last.minute,
            dns,
            web,
            serial_served: chunk.iter().all(|r| r.serial_served),
            ingested: ingested.map(|n| n / windows),
            refused: None,
            node: last.node,
            demo: last.demo,
            database_mib: last.database_mib,
        };
        println!("{}", summary.line());
    }
}

/// Every check of the verdict but the node's reload counters and the logs.
fn verdict(rows: &[Row], last_lost: u64, web_errors: BTreeMap<String, u64>) -> Vec<String> {
    let mut failures = Vec::new();
    let sum = |f: fn(&Row) -> u64| -> u64 { rows.iter().map(f).sum() };
    let lost = sum(|r| r.dns.lost) + last_lost;
    let send_errors = sum(|r| r.dns.send_errors);
    let answered = sum(|r| r.dns.answered);
    let sent = sum(|r| r.dns.sent);
    let other_rcodes = sum(|r| {
        r.dns.rcodes.iter().sum::<u64>()
            - r.dns.rcodes[RCODE_NOERROR]
            - r.dns.rcodes[RCODE_NXDOMAIN]
    });
    let max_ms = rows.iter().map(|r| r.dns.max_ms).fold(0.0, f64::max);
    println!(
        "\ndns: {sent} queries sent, {answered} answered, {lost} lost, {send_errors} send errors, {} late or unknown answers, {other_rcodes} rcodes other than NOERROR/NXDOMAIN, slowest answer {max_ms:.1} ms",
        sum(|r| r.dns.unmatched)
    );
    if lost > 0 || send_errors > 0 || other_rcodes > 0 {
        failures.push(format!(
            "dns: {lost} queries lost, {send_errors} not sent, {other_rcodes} answered with an unexpected rcode"
        ));
    }
    let web_ok = sum(|r| r.web.ok);
    let web_failed = sum(|r| r.web.errors);
    let web_max_ms = rows.iter().map(|r| r.web.max_ms).fold(0.0, f64::max);
    println!(
        "web: {web_ok} requests answered 200, {web_failed} errors {web_errors:?}, slowest answer {web_max_ms:.1} ms"
    );
    if web_failed > 0 {
        failures.push(format!("web: {web_failed} requests failed: {web_errors:?}"));
    }
    // The monitors: results in every window after the first minute, no
    // batch refused.
    let refused: u64 = rows.iter().filter_map(|r| r.refused).sum();
    let silent: Vec<String> = rows
        .iter()
        .skip(6)
        .filter(|r| r.ingested.unwrap_or(0) == 0)
        .map(|r| format!("{:.1}", r.minute))
        .collect();
    println!(
        "ingest: {} results from the monitors, {refused} batches refused",
        rows.iter().filter_map(|r| r.ingested).sum::<u64>()
    );
    if refused > 0 || !silent.is_empty() {
        failures.push(format!(
            "ingest: {refused} batches refused; no results in the windows ending at minutes {silent:?}"
        ));
    }
    // Growth: after a warm-up quarter, the last quarter's median against
    // the second's. A leak raises every sample from one quarter to the
    // next; a cache filling up or a pool of connections levels off, and
    // the peak of a GeoIP reload (two tables for a while) comes and goes
    // alike in every quarter, which the median sees through.
    if rows.len() < 4 {
        println!("growth: too short a run to judge (fewer than 4 samples)");
        return failures;
    }
    let quarter = rows.len() / 4;
    let second = &rows[quarter..2 * quarter];
    let last = &rows[rows.len() - quarter..];
    type Measure = (&'static str, fn(&Row) -> f64, f64);
    let measures: [Measure; 6] = [
        ("dns node RSS (MB)", |r| r.node.rss_mib, 4.0),
        ("dns node file descriptors", |r| r.node.fds as f64, 4.0),
        ("dns node threads", |r| r.node.threads as f64, 2.0),
        ("demo RSS (MB)", |r| r.demo.rss_mib, 8.0),
        ("demo file descriptors", |r| r.demo.fds as f64, 8.0),
        ("demo threads", |r| r.demo.threads as f64, 2.0),
    ];
    for (name, value, slack) in measures {
        let median = |rows: &[Row]| {
            let mut values: Vec<f64> = rows.iter().map(value).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let (before, after) = (median(second), median(last));
        let limit = before * (1.0 + GROWTH_SHARE) + slack;
        println!(
            "growth: {name}: second quarter's median {before:.1}, last quarter's {after:.1} (limit {limit:.1})"
        );
        if after > limit {
            failures.push(format!("{name} grew: {before:.1} -> {after:.1}"));
        }
    }
    failures
}
